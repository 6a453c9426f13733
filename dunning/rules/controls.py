"""Operator controls (contract v1.1 §1): `invoice.updated`, `collection.paused`,
`collection.resumed`, for one invoice, as the rest of `rules.invoice`.

Dates apply from the current logical time: a date moved into the past fires at the next tick,
once; what already happened is not redone; a date moved later postpones what has not happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dunning.rules import invoice as iv
from dunning.rules import model as m
from dunning.rules.times import DAY

if TYPE_CHECKING:
    from dunning.rules.invoice import Invoice, Out

# Dates set on an invoice lie within this many days of its issue (contract §2), as at issue.
MAX_DAYS = 3650
_DATES = ("suspend_at", "delete_at", "request_cancel_at")
# Stage dates an update may set: the action, its priority, the level it holds the subject at.
_STAGES = {"suspend": (iv.SUSPEND, iv.SUSPENDED), "delete": (iv.DELETE, iv.DELETED),
           "request_cancel": (iv.REQUEST_CANCEL, None)}
_FROM_DUE = frozenset(("late_fee", "limit", "suspend", "delete"))


def _pending(inv: Invoice) -> set[str]:
    return {a[2] for a in inv.actions} | {a[2] for a in inv.parked or ()}


# -- invoice.updated ------------------------------------------------------------------------


def on_updated(inv: Invoice, event: m.InvoiceUpdated, now: int, out: Out) -> str:
    if inv.level == iv.DELETED:
        return m.IGNORED  # deletion ended pursuit (v1.1): no date of it moves any more
    ov = event.overrides
    error = _invalid(inv, event)
    if error:
        return iv._reject(event, m.INVALID_FIELD, error, out)
    if event.due_at is not None and event.due_at != inv.due_at:
        _move_due(inv, event.due_at, ov)
    for key in _DATES:
        if key in ov:
            _set_date(inv, key[:-3], ov[key])
    if "reminder_every_days" in ov:
        _set_reminders(inv, ov["reminder_every_days"], now)
    return m.APPLIED


def _invalid(inv: Invoice, event: m.InvoiceUpdated) -> str:
    """Why the update cannot be right, or "" (checked before anything changes)."""
    ov = event.overrides
    if inv.debit:
        given = [k for k in _DATES if ov.get(k, False) is not False]
        if given:
            return f"a debit note has no {given[0][:-3].replace('_', ' ')} date ({given[0]})"
    dates = [("due_at", event.due_at)] + [(f"overrides.{k}", ov.get(k, False)) for k in _DATES]
    for name, at in dates:
        if at is None or at is False:
            continue
        if at < inv.issued_at:
            return f"{name} is before the invoice's issued_at"
        if at > inv.issued_at + MAX_DAYS * DAY:
            return f"{name} is more than {MAX_DAYS} days after the invoice's issued_at"
    return ""


def _move_due(inv: Invoice, due_at: int, ov: dict[str, Any]) -> None:
    """A new due date: the pending dates the policy counts from it move with it; dates the
    invoice set itself (overrides, earlier or in this update) stay."""
    delta = due_at - inv.due_at
    inv.due_at = due_at
    keep = set(inv.explicit) | {k[:-3] for k in _DATES if k in ov}

    def moved(action: tuple[int, int, str]) -> tuple[int, int, str]:
        at, prio, name = action
        if name in ("overdue", iv.RESTAGE, iv.OVERDUE_NOTICE):
            return (due_at, prio, name)
        if name.startswith("due_soon:"):
            return (due_at - int(name[9:]) * DAY, prio, name)
        if name in _FROM_DUE and name not in keep:
            return (at + delta, prio, name)
        return action

    pending = _pending(inv)
    inv.actions = sorted(map(moved, inv.actions))
    if inv.parked:
        inv.parked = sorted(map(moved, inv.parked))
    for name in ("limit", "suspend", "delete"):
        at = getattr(inv, f"{name}_at")
        if at is not None and name in pending and name not in keep:
            setattr(inv, f"{name}_at", at + delta)
    if inv.charge_at is not None and inv.charge_next == 1:  # the on-due charge, not a retry
        inv.charge_at = due_at


def _set_date(inv: Invoice, name: str, value: int | bool) -> None:
    prio, level = _STAGES[name]
    if name not in _pending(inv):
        if name == "request_cancel":
            return  # ended for good (a payment, the request done) or never possible
        if level is not None and inv.level >= level:
            return  # already happened: not redone
    inv.actions = [a for a in inv.actions if a[2] != name]
    if inv.parked:
        inv.parked = [a for a in inv.parked if a[2] != name] or None
    explicit = [n for n in inv.explicit if n != name]
    if value is False:
        setattr(inv, f"{name}_at", None)
    else:
        assert isinstance(value, int)
        setattr(inv, f"{name}_at", value)
        iv._schedule(inv, value, prio, name)
        if name != "request_cancel":
            explicit.append(name)  # the operator's decision: the threshold keeps it
    inv.explicit = tuple(explicit)


def _set_reminders(inv: Invoice, days: int | bool, now: int) -> None:
    """A new reminder cadence runs from now (a slot counted on the old one is not redone)."""
    inv.reminder_every = 0 if days is False else int(days) * DAY
    if inv.reminder_start is None:
        return  # collection has not started: it starts with the new cadence
    if inv.reminder_every:
        inv.reminder_start = now
        inv.next_reminder = now + inv.reminder_every
    else:
        inv.next_reminder = None


# -- pauses ---------------------------------------------------------------------------------


def on_paused(inv: Invoice, event: m.CollectionPaused, now: int, out: Out) -> str:
    if inv.due <= 0 or inv.level == iv.DELETED:
        return m.IGNORED  # pausing a paid or deleted invoice (cancelled: never reaches here)
    if event.until is not None and event.until <= now:
        return iv._reject(event, m.INVALID_FIELD, "until is not after the current logical "
                          "time: the pause would end before it began", out)
    if inv.paused_at is None:
        inv.paused_at = now
    inv.pause_until = event.until  # a second pause while paused sets when it ends
    inv.pause_reason = event.reason  # and why, as the operator says it now
    return m.APPLIED


def on_resumed(inv: Invoice, event: m.CollectionResumed, now: int, out: Out) -> str:
    if inv.paused_at is None:
        return m.IGNORED
    iv._end_pause(inv, now, now, event.event_id, out, reason="resumed")
    return m.APPLIED


def shift(inv: Invoice, by: int) -> None:
    """Move every pending date of the invoice `by` seconds later (what already happened, such
    as a past due date whose stage started, stays where it was)."""
    if by <= 0:
        return
    pending = _pending(inv)
    if "overdue" in pending:
        inv.due_at += by
    for name in ("limit", "suspend", "delete", "request_cancel"):
        at = getattr(inv, f"{name}_at")
        if at is not None and name in pending:
            setattr(inv, f"{name}_at", at + by)
    inv.actions = [(at + by, prio, name) for at, prio, name in inv.actions]
    if inv.parked:
        inv.parked = [(at + by, prio, name) for at, prio, name in inv.parked]
    if inv.charge_at is not None:
        inv.charge_at += by
    if inv.next_reminder is not None:
        inv.next_reminder += by
        if inv.reminder_start is not None:  # the same slots, later: their ids stay unique
            inv.reminder_start += by


iv._HANDLERS.update({
    m.InvoiceUpdated: on_updated,
    m.CollectionPaused: on_paused,
    m.CollectionResumed: on_resumed,
})
