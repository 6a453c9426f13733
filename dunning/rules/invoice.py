"""The collection rules for one invoice (contract §2), as plain Python.

`issue()` makes the state, `apply()` reacts to an event, `advance()` fires what a tick makes
due. Each takes the logical time it runs at, mutates the invoice it is given and appends what
it decides to an `Out`; nothing here does I/O or reads a clock. Work that concerns a subject
(limit, suspend, delete, restore, request.cancel) leaves as a `Signal` for `rules.subject`, which
runs keyed by subject so one order held by many invoices gets one suspend.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from dunning.config.policy import Terms
from dunning.rules import model as m
from dunning.rules.calendar import Calendar
from dunning.rules.ids import command_id
from dunning.rules.money import EXPONENTS, ZERO, fmt, quantize
from dunning.rules.times import DAY, format_time
from dunning.streams.topics import BILLING, NOTIFICATIONS

# Order of actions that fall on the same second: a request cancellation first (it ends
# everything), the charge before any notice, then the overdue stage in the contract's order.
REQUEST_CANCEL, CHARGE, DUE_SOON, REMINDER, OVERDUE, LATE_FEE, LIMIT, SUSPEND, DELETE = range(9)
# At OVERDUE priority, by name: "overdue" (the status marker; the stage starts), its notice
# when the threshold set it aside, and "restage" (the stage starts again once a paid or skipped
# invoice owes past due_at).
OVERDUE_NOTICE, RESTAGE = "overdue_notice", "restage"
STAGE = frozenset(("late_fee", "limit", "suspend", "delete"))
ENFORCEMENT = frozenset(("limit", "suspend", "delete"))  # what the calendar moves (v1.1)
_SET_ASIDE = STAGE | {OVERDUE_NOTICE}  # what the threshold sets aside, unless explicit
_STARTS = frozenset(("overdue", RESTAGE))

# How hard a subject is held; a subject takes the highest level any holding invoice asks for.
NONE, LIMITED, SUSPENDED, DELETED = range(4)


@dataclass(slots=True)
class Signal:
    """A message from an invoice to its subject (order or customer)."""

    subject_kind: str
    subject_id: str
    invoice_id: str
    version: int  # per invoice, increasing: the subject ignores what it has already seen
    action: str  # "hold" | "release" | "cancel_request"
    level: int
    now: int
    cause: str
    notice: dict[str, Any] = field(default_factory=dict)  # notification fields, sans audience
    audiences: tuple[str, ...] = ("customer",)
    request_id: str | None = None
    # Outside the invoice's notice hours (v1.1 calendar): the subject holds the notices this
    # signal causes until the invoice's "notices" signal at the next opening.
    quiet: bool = False

    @property
    def subject_key(self) -> str:
        return f"{self.subject_kind}:{self.subject_id}"


@dataclass(slots=True)
class Out:
    """What one step decided: commands to send, signals to subjects, records to reject."""

    commands: list[m.Command] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    dead_letters: list[m.DeadLetter] = field(default_factory=list)
    # For each signal a tick caused, the action time it fired for: the streaming layer merges
    # signals from several partitions into the order one engine would have made them in.
    signal_at: list[int] = field(default_factory=list)


class Invoice:
    """Everything the rules need to know about one invoice, and nothing more."""

    __slots__ = (
        "actions",
        "amount",
        "calendar",
        "charge_at",
        "charge_next",
        "charge_retry",
        "charge_sent",
        "currency",
        "customer_id",
        "debit",
        "delete_at",
        "due_at",
        "explicit",
        "fee_fixed",
        "fee_percent",
        "hold_version",
        "invoice_id",
        "issued_at",
        "issued_by",
        "level",
        "limit_at",
        "next_reminder",
        "notify_reseller",
        "order_id",
        "paid",
        "parked",
        "pause_reason",
        "pause_until",
        "paused_at",
        "payments",
        "pending_request",
        "reminder_every",
        "reminder_start",
        "request_cancel_at",
        "request_id",
        "reseller_id",
        "seen",
        "skipped",
        "status",
        "status_seq",
        "suspend_at",
        "threshold",
        "waiting",
    )

    def __init__(self) -> None:
        self.invoice_id = ""
        self.customer_id = ""
        self.currency = "USD"
        self.amount = ZERO
        self.paid = ZERO
        # payment_id -> what still stands of it; made on the first payment (most never get one
        # and millions of invoices stay in memory).
        self.payments: dict[str, Decimal] | None = None
        self.issued_at = 0
        self.due_at = 0
        self.debit = False
        self.order_id: str | None = None
        self.reseller_id: str | None = None
        self.request_id: str | None = None
        self.pending_request = False
        self.notify_reseller = False
        self.status = ""
        self.status_seq = 0
        # Pending one-shot actions, sorted: [time, priority, name].
        self.actions: list[tuple[int, int, str]] = []
        self.limit_at: int | None = None
        self.suspend_at: int | None = None
        self.delete_at: int | None = None
        self.request_cancel_at: int | None = None
        self.reminder_every = 0  # seconds; 0 = off
        self.reminder_start: int | None = None  # None until collection starts
        self.next_reminder: int | None = None
        self.charge_retry: tuple[int, ...] = ()
        self.charge_at: int | None = None  # when attempt `charge_next` is due
        self.charge_next = 0
        self.charge_sent = 0  # the attempt awaiting its result, 0 = none
        self.threshold = ZERO
        self.fee_fixed: Decimal | None = None
        self.fee_percent: Decimal | None = None
        self.skipped = False  # overdue stage skipped: due when it started was within threshold
        # The stage's actions the threshold set aside while skipped, to resume if it owes more.
        self.parked: list[tuple[int, int, str]] | None = None
        # Stage actions whose dates the invoice set itself (overrides): the threshold keeps them.
        self.explicit: tuple[str, ...] = ()
        self.level = NONE
        self.hold_version = 0
        self.issued_by = ""  # the invoice.issued event_id
        self.seen: set[str] | None = None  # event ids applied since; made on the first
        # A pause (v1.1): when it began (None: not paused), and when it ends by itself.
        self.paused_at: int | None = None
        self.pause_until: int | None = None
        self.pause_reason: str | None = None  # the operator's (promise_to_pay, dispute...)
        # The business calendar (v1.1) its enforcement lands by; None: any day.
        self.calendar: Calendar | None = None
        # Notifications held for notice hours (v1.1): (when they may go, the record's value),
        # in the order they were decided; replaced whole, never changed in place.
        self.waiting: tuple[tuple[int, dict[str, Any]], ...] | None = None

    # -- derived -------------------------------------------------------------------------

    @property
    def due(self) -> Decimal:
        """What is still due; negative when overpaid. paid + due == amount, always."""
        return self.amount - self.paid

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def subject(self) -> tuple[str, str]:
        if self.order_id is not None:
            return ("order", self.order_id)
        return ("customer", self.customer_id)

    def status_at(self, now: int) -> str:
        """Contract §2: overdue is past due_at with something due.

        Once overdue it stays so while something is due: a catch-up judges actions at their
        own (earlier) times, and statuses must follow logical time (v1.1), never go back.
        """
        if self.status == "cancelled":
            return "cancelled"
        if self.amount - self.paid <= 0:
            return "paid"
        if self.paused_at is not None:  # time stands still for a paused invoice
            now = min(now, self.paused_at)
        if now >= self.due_at or self.status == "overdue":
            return "overdue"
        return "partially_paid" if self.paid > 0 else "unpaid"

    def next_at(self) -> int | None:
        """When this invoice next needs a tick; None while nothing can happen by time alone."""
        held = self.waiting[0][0] if self.waiting else None
        if self.paused_at is not None:
            return self.pause_until  # nothing time-driven fires before the pause ends
        if self.status == "cancelled" or self.amount - self.paid <= 0:
            return held  # its last notices may still wait for notice hours
        best = self.actions[0][0] if self.actions else None
        for t in (self.next_reminder, self.charge_at, held):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def pending(self, name: str) -> int | None:
        for at, _, action in self.actions:
            if action == name:
                return at
        return None

    def deadlines(self, now: int) -> dict[str, str]:
        """The deadlines still ahead that will fire if nothing changes (v1.1), for notices.

        None once paid, cancelled or deleted; none already past; no policy suspension or
        deletion that the threshold will skip when the stage starts; and nothing after a
        request cancellation or a deletion that comes first, as each ends what follows.
        """
        if self.status == "cancelled" or self.amount <= self.paid or self.level == DELETED:
            return {}
        out = {"due_at": format_time(self.due_at)} if self.due_at >= now else {}
        small = False  # the stage will start within the threshold: its policy dates go
        for at, prio, name in self.actions:
            if name in _STARTS:
                small = self.amount - self.paid <= self.threshold
            elif name in _DEADLINES:
                if small and name != "request_cancel" and name not in self.explicit:
                    continue
                if name in ENFORCEMENT:  # notices announce the moved times (v1.1)
                    at = self.enforce_at(at)
                if at >= now:
                    out[_DEADLINES[name]] = format_time(at)
                if name != "suspend":  # a deletion or request cancellation ends what follows
                    if (at, prio) < (self.due_at, OVERDUE):
                        out.pop("due_at", None)
                    break
        return out

    def enforce_at(self, at: int) -> int:
        """When a limitation, suspension or deletion due at `at` lands (v1.1 calendar)."""
        return at if self.calendar is None else self.calendar.enforce_at(at)

    def zero(self) -> str:
        return fmt(ZERO, self.currency)

    def audiences(self) -> tuple[str, ...]:
        if self.notify_reseller and self.reseller_id is not None:
            return ("customer", "reseller")
        return ("customer",)

    def notice(self, now: int) -> dict[str, Any]:
        """The fields every notification about this invoice carries, but its audience."""
        body: dict[str, Any] = {
            "invoice_id": self.invoice_id,
            "customer_id": self.customer_id,
            "amount_due": str(self.due) if self.amount > self.paid else self.zero(),
            "currency": self.currency,
            **self.deadlines(now),
        }
        if self.order_id is not None:
            body["order_id"] = self.order_id
        if self.reseller_id is not None:
            body["reseller_id"] = self.reseller_id
        return body


# -- output helpers -------------------------------------------------------------------------


def _command(
    inv: Invoice, topic: str, ctype: str, key: object, now: int, cause: str, **fields: Any
) -> m.Command:
    value = {
        "command_id": command_id(inv.invoice_id, ctype, key),
        "type": ctype,
        "issued_at": format_time(now),
        "causation_id": cause,
        "invoice_id": inv.invoice_id,
        **fields,
    }
    return m.Command(topic, inv.invoice_id, value)


def notifications(
    scope: str,
    ctype: str,
    key: object,
    now: int,
    cause: str,
    notice: dict[str, Any],
    audiences: tuple[str, ...],
) -> list[m.Command]:
    """One notification per audience; the reseller's copy has an id of its own."""
    issued_at = format_time(now)
    return [
        m.Command(
            NOTIFICATIONS,
            notice["invoice_id"],
            {
                "command_id": command_id(scope, ctype, key, audience),
                "type": ctype,
                "issued_at": issued_at,
                "causation_id": cause,
                "audience": audience,
                **notice,
            },
        )
        for audience in audiences
    ]


def _notify(inv: Invoice, ctype: str, key: object, now: int, cause: str, out: Out) -> None:
    _tell(inv, notifications(
        inv.invoice_id, ctype, key, now, cause, inv.notice(now), inv.audiences()
    ), now, out)


def _tell(inv: Invoice, commands: list[m.Command], now: int, out: Out) -> None:
    """Send the invoice's notifications now, or hold them for the next opening of its notice
    hours (v1.1 calendar)."""
    cal = inv.calendar
    opens = now if cal is None else cal.notice_at(now)
    if opens == now:
        out.commands += commands
    else:
        inv.waiting = (*(inv.waiting or ()), *((opens, c.value) for c in commands))
        inv.waiting = tuple(sorted(inv.waiting, key=lambda w: w[0]))  # stable: order kept


NOTICES = "notices"  # the signal (and held entry) that lets a subject's held notices go
# Notices that ask for payment: a held one is dropped if nothing is due by the time it may go.
_CHASING = frozenset(("notify.due_soon", "notify.reminder", "notify.overdue", "notify.late_fee",
                      "notify.charge_failed"))
_DEADLINE_KEYS = ("due_at", "suspend_at", "delete_at", "request_cancel_at")


def _release(inv: Invoice, until: int, now: int, cause: str, out: Out) -> None:
    """Send the held notifications whose notice hours have opened by `until`, as of `now`:
    issued now, with what is due and the deadlines as they stand now (notices tell only what
    will happen). After the invoice's deletion they go nowhere (pursuit ended)."""
    assert inv.waiting
    ready = [w for w in inv.waiting if w[0] <= until]
    if not ready:
        return
    opens = now if inv.calendar is None else inv.calendar.notice_at(now)
    if opens != now:  # the tick comes after the window closed again: the next opening
        inv.waiting = tuple(sorted((((opens if at <= until else at), value)
                                    for at, value in inv.waiting), key=lambda w: w[0]))
        return
    inv.waiting = tuple(w for w in inv.waiting if w[0] > until) or None
    fresh = inv.notice(now)
    for _, value in ready:
        ctype = value["type"]
        if ctype == NOTICES:  # the subject's own notices go now, also a deletion's
            _signal(inv, NOTICES, inv.level, now, cause, out)
            continue
        if inv.level == DELETED or (ctype in _CHASING and (inv.due <= 0 or inv.cancelled)):
            continue
        if ctype == "notify.due_soon" and now >= inv.due_at:
            continue  # due-soon is before due (v1.1)
        sent = {k: v for k, v in value.items() if k not in _DEADLINE_KEYS}
        sent.update(fresh)
        sent["issued_at"] = format_time(now)
        out.commands.append(m.Command(NOTIFICATIONS, inv.invoice_id, sent))


_DEADLINES = {"suspend": "suspend_at", "delete": "delete_at", "request_cancel": "request_cancel_at"}
_EXPLICIT = (("suspend", "suspend_at"), ("delete", "delete_at"))


def _emit_status(inv: Invoice, now: int, cause: str, out: Out, at: int | None = None) -> None:
    """Emit invoice.status if the status at logical time `at` (default `now`) changed."""
    status = inv.status_at(now if at is None else at)
    if status == inv.status:
        return
    inv.status = status
    _status_command(inv, now, cause, out)


def _status_command(inv: Invoice, now: int, cause: str, out: Out) -> None:
    inv.status_seq += 1
    iid = inv.invoice_id
    value = {
        "command_id": command_id(iid, "invoice.status", inv.status_seq),
        "type": "invoice.status",
        "issued_at": format_time(now),
        "causation_id": cause,
        "invoice_id": iid,
        "status": inv.status,
        "amount_due": str(inv.amount - inv.paid),  # kept quantized: str() is the wire form
        "amount_paid": str(inv.paid),
        "currency": inv.currency,
    }
    if inv.paid > inv.amount:  # money on output is never negative: the excess is a credit
        value["amount_due"] = inv.zero()
        value["amount_credit"] = str(inv.paid - inv.amount)
    out.commands.append(m.Command(BILLING, iid, value))


def _signal(inv: Invoice, action: str, level: int, now: int, cause: str, out: Out) -> None:
    kind, sid = inv.subject
    inv.hold_version += 1
    opens = now if inv.calendar is None or action == NOTICES else inv.calendar.notice_at(now)
    if opens != now:  # wake the subject's held notices at the opening
        inv.waiting = tuple(sorted((*(inv.waiting or ()), (opens, {"type": NOTICES})),
                                   key=lambda w: w[0]))
    out.signals.append(
        Signal(
            kind,
            sid,
            inv.invoice_id,
            inv.hold_version,
            action,
            level,
            now,
            cause,
            inv.notice(now),
            inv.audiences(),
            inv.request_id,
            opens != now,
        )
    )


def _schedule(inv: Invoice, at: int, priority: int, name: str) -> None:
    inv.actions.append((at, priority, name))
    inv.actions.sort()


def _plan(inv: Invoice, at: int, priority: int, name: str) -> None:
    """Add an action while issuing; `issue` sorts the plan once at the end."""
    inv.actions.append((at, priority, name))


def _drop(inv: Invoice, names: frozenset[str]) -> None:
    inv.actions = [a for a in inv.actions if a[2] not in names]


def _end_request_cancel(inv: Invoice) -> None:
    if inv.request_cancel_at is not None:
        inv.request_cancel_at = None
        _drop(inv, frozenset(("request_cancel",)))


# -- issue ----------------------------------------------------------------------------------


def _after(start: int, days: int | None) -> int | None:
    return None if days is None else start + days * DAY


def _override(overrides: dict[str, Any], name: str, default: int | None) -> int | None:
    """An invoice's own value wins over the policy's; False turns the stage off."""
    if name not in overrides:
        return default
    value = overrides[name]
    return None if value is False else value


def issue(
    event: m.InvoiceIssued, terms: Terms, clock: int, out: Out, held: Iterable[m.Event] = (),
) -> Invoice:
    """A new invoice: its dates from the policy and its overrides, and what issue triggers.

    `held` are the events that arrived before the invoice, in arrival order; they apply before
    the on-issue charge so that a customer who paid early is charged only what is still due.
    """
    inv = Invoice()
    now = max(clock, event.issued_at)
    inv.invoice_id = event.invoice_id
    inv.customer_id = event.customer_id
    inv.currency = event.currency
    inv.amount = quantize(event.amount, event.currency)
    inv.paid = quantize(ZERO, event.currency)  # every amount kept in the currency's places
    inv.issued_at = event.issued_at
    inv.due_at = due_at = (
        event.due_at if event.due_at is not None else event.issued_at + terms.terms_days * DAY
    )
    inv.debit = event.document == "debit_note"
    inv.order_id = event.order_id
    inv.reseller_id = event.reseller_id
    inv.request_id = event.request_id
    inv.pending_request = event.request_status == "pending"
    inv.notify_reseller = terms.notify_reseller
    inv.issued_by = event.event_id
    inv.calendar = terms.calendar
    ov = event.overrides

    if event.origin == "system":
        # Seed 002: suspension and deletion dates apply to system invoices "with the exception
        # of Domain Registration Orders": where the policy turns a stage off, so is its date.
        if terms.suspend_after_days is None:
            ov = {k: v for k, v in ov.items() if k != "suspend_at"}
        if terms.delete_after_days is None:
            ov = {k: v for k, v in ov.items() if k != "delete_at"}
    every = _override(ov, "reminder_every_days", terms.reminder_every_days)
    inv.reminder_every = (every or 0) * DAY
    if not inv.pending_request:
        _start_collection(inv, event.issued_at)

    # The status marker: at due_at an invoice with something due becomes overdue.
    _plan(inv, due_at, OVERDUE, "overdue")
    if not inv.debit:  # debit notes get reminder days only (rule 13)
        for days in terms.due_soon_days:
            at = due_at - days * DAY
            if at >= now:  # a moment already past at issue is skipped
                _plan(inv, at, DUE_SOON, f"due_soon:{days}")
        inv.threshold = terms.threshold_in(inv.currency)
        inv.fee_fixed, inv.fee_percent = terms.late_fee_in(inv.currency), terms.late_fee_percent
        if inv.fee_fixed is not None or inv.fee_percent is not None:
            _plan(inv, due_at + terms.late_fee_after_days * DAY, LATE_FEE, "late_fee")
        if terms.limit_after_days is not None:
            inv.limit_at = due_at + terms.limit_after_days * DAY
            _plan(inv, inv.limit_at, LIMIT, "limit")
        inv.suspend_at = _override(ov, "suspend_at", _after(due_at, terms.suspend_after_days))
        if inv.suspend_at is not None:
            _plan(inv, inv.suspend_at, SUSPEND, "suspend")
        inv.delete_at = _override(ov, "delete_at", _after(due_at, terms.delete_after_days))
        if inv.delete_at is not None:
            _plan(inv, inv.delete_at, DELETE, "delete")
        if ov:  # the stage dates the invoice set itself; most set none
            inv.explicit = tuple(name for name, key in _EXPLICIT if ov.get(key, False) is not False)
        if event.origin == "system" and inv.pending_request:
            default = _after(event.issued_at, terms.request_cancel_after_days)
            inv.request_cancel_at = _override(ov, "request_cancel_at", default)
            if inv.request_cancel_at is not None:
                _plan(inv, inv.request_cancel_at, REQUEST_CANCEL, "request_cancel")
        inv.charge_retry = terms.charge_retry_days
        if terms.auto_charge == "on_due":
            inv.charge_at, inv.charge_next = due_at, 1

    inv.actions.sort()
    _emit_status(inv, now, event.event_id, out)
    for early in held:
        apply(inv, early, clock, out)
    if not inv.debit and terms.auto_charge == "on_issue" and inv.due > 0 and not inv.cancelled:
        inv.charge_next = 1
        _charge(inv, now, event.event_id, out)
    return inv


def _end_pause(inv: Invoice, end: int, now: int, cause: str, out: Out, reason: str = "") -> None:
    """The pause ends at `end`: every pending date moves later by the time it lasted, so the
    customer keeps the time they had, and with a `reason` the customer is told (v1.1)."""
    began = inv.paused_at
    assert began is not None
    inv.paused_at = inv.pause_until = inv.pause_reason = None
    controls.shift(inv, max(0, end - began))
    if reason:
        notice = inv.notice(now)
        notice["reason"] = reason
        _tell(inv, notifications(inv.invoice_id, "notify.collection_resumed", began, now,
                                 cause, notice, inv.audiences()), now, out)


def _start_collection(inv: Invoice, at: int) -> None:
    inv.reminder_start = at
    inv.next_reminder = at + inv.reminder_every if inv.reminder_every else None


# -- events ---------------------------------------------------------------------------------


def apply(inv: Invoice, event: m.Event, clock: int, out: Out) -> str:
    """React to one event for an issued invoice; returns the outcome for metrics."""
    eid = event.event_id
    if eid == inv.issued_by or (inv.seen is not None and eid in inv.seen):
        return m.DUPLICATE
    if inv.cancelled:
        return m.IGNORED
    now = max(clock, inv.issued_at)
    handler = _HANDLERS.get(type(event))
    if handler is None:  # a second invoice.issued for the same invoice
        out.dead_letters.append(
            m.DeadLetter(event.source or m.Source(""), m.INVALID_FIELD,
                         f"invoice {inv.invoice_id} was already issued")
        )
        return m.DEAD_LETTERED
    outcome = handler(inv, event, now, out)
    # Remember the id whatever the outcome: a redelivery must not apply an event that was
    # ignored the first time (a charge.failed for an attempt not yet requested, say).
    if inv.seen is None:
        inv.seen = set()
    inv.seen.add(eid)
    return outcome


def _reject(event: m.Event, error: str, reason: str, out: Out) -> str:
    out.dead_letters.append(m.DeadLetter(event.source or m.Source(""), error, reason))
    return m.DEAD_LETTERED


def _fits(inv: Invoice, amount: Decimal) -> bool:
    return -amount.as_tuple().exponent <= EXPONENTS[inv.currency]  # type: ignore[operator]


def _on_payment(inv: Invoice, event: m.PaymentApplied, now: int, out: Out) -> str:
    if event.currency != inv.currency:
        return _reject(
            event,
            m.CURRENCY_MISMATCH,
            f"payment in {event.currency} for invoice {inv.invoice_id} in {inv.currency}",
            out,
        )
    if inv.payments is None:
        inv.payments = {}
    elif event.payment_id in inv.payments:
        return m.DUPLICATE
    amount = quantize(event.amount, inv.currency)
    before = inv.due
    inv.payments[event.payment_id] = amount
    inv.paid += amount
    # Any payment, even partial and even if reversed later, ends request cancellation (rule 12).
    _end_request_cancel(inv)
    _amounts_changed(inv, before, now, event.event_id, out)
    return m.APPLIED


def _on_reversal(inv: Invoice, event: m.PaymentReversed, now: int, out: Out) -> str:
    standing = inv.payments.get(event.payment_id) if inv.payments else None
    if standing is None:
        return _reject(
            event, m.INVALID_FIELD, f"payment {event.payment_id} was never applied to "
            f"invoice {inv.invoice_id}", out,
        )
    if not _fits(inv, event.amount) or event.amount > standing:
        return _reject(
            event, m.INVALID_FIELD, f"reversal of {event.amount} exceeds the {standing} "
            f"{inv.currency} that stands of payment {event.payment_id}", out,
        )
    amount = quantize(event.amount, inv.currency)
    before = inv.due
    inv.payments[event.payment_id] = standing - amount  # type: ignore[index]
    inv.paid -= amount
    _amounts_changed(inv, before, now, event.event_id, out)
    return m.APPLIED


def _on_adjusted(inv: Invoice, event: m.InvoiceAdjusted, now: int, out: Out) -> str:
    if not _fits(inv, event.amount):
        return _reject(
            event, m.INVALID_FIELD, f"amount {event.amount} has more places than {inv.currency}",
            out,
        )
    before = inv.due
    inv.amount = quantize(event.amount, inv.currency)
    _amounts_changed(inv, before, now, event.event_id, out)
    return m.APPLIED


def _on_cancelled(inv: Invoice, event: m.InvoiceCancelled, now: int, out: Out) -> str:
    _cancel(inv, now, event.event_id, out)
    return m.APPLIED


def _on_charge_failed(inv: Invoice, event: m.ChargeFailed, now: int, out: Out) -> str:
    if event.attempt != inv.charge_sent or inv.level == DELETED:
        # Not the attempt we are waiting on (late, repeated or foreign), or the invoice's
        # deletion ended its pursuit (v1.1): nothing is retried or told.
        return m.IGNORED
    inv.charge_sent = 0
    if event.hard or event.attempt > len(inv.charge_retry):
        # A hard failure stops retries; a soft one for the last attempt ends them (v1.1):
        # either way the customer is told.
        inv.charge_at = None
        if inv.due > 0:  # paid some other way meanwhile: nothing to tell the customer
            _notify(inv, "notify.charge_failed", event.attempt, now, event.event_id, out)
    else:
        inv.charge_next = event.attempt + 1
        inv.charge_at = now + inv.charge_retry[event.attempt - 1] * DAY
    return m.APPLIED


def _on_request_completed(inv: Invoice, event: m.RequestCompleted, now: int, out: Out) -> str:
    if not inv.pending_request or inv.level == DELETED:
        return m.IGNORED  # after deletion collection never starts (v1.1)
    inv.pending_request = False
    _end_request_cancel(inv)
    _start_collection(inv, now)
    return m.APPLIED


_HANDLERS: dict[type, Any] = {
    m.PaymentApplied: _on_payment,
    m.PaymentReversed: _on_reversal,
    m.InvoiceAdjusted: _on_adjusted,
    m.InvoiceCancelled: _on_cancelled,
    m.ChargeFailed: _on_charge_failed,
    m.RequestCompleted: _on_request_completed,
}  # and the operator controls, which `rules.controls` adds


def _amounts_changed(inv: Invoice, before: Decimal, now: int, cause: str, out: Out) -> None:
    due = inv.due
    if due <= 0 and inv.paused_at is not None:
        _end_pause(inv, now, now, cause, out)  # full payment ends the pause (v1.1)
    if inv.level == DELETED:
        pass  # deletion ended pursuit: only the status follows (v1.1)
    elif due <= 0:
        if inv.level in (LIMITED, SUSPENDED):
            # Fully paid: let go of the subject. Should it owe again (a chargeback), the limit
            # and suspension dates still stand, so those actions wait to fire again.
            _signal(inv, "release", NONE, now, cause, out)
            inv.level = NONE
            for at, prio, name in ((inv.limit_at, LIMIT, "limit"),
                                   (inv.suspend_at, SUSPEND, "suspend")):
                if at is not None and inv.pending(name) is None:
                    _keep(inv, (at, prio, name))
    elif (inv.threshold > 0 and (before <= 0 or (inv.skipped and due > before))
          and not inv.debit and inv.pending("overdue") is None
          and inv.pending(RESTAGE) is None):
        # Owing again after the stage started (paid, or more than was skipped): the threshold
        # is judged again at the next tick, on what is due then (v1.1). RESTAGE sorts first
        # among the stage's dates, all of them at or after due_at.
        _schedule(inv, inv.due_at, OVERDUE, RESTAGE)
    _emit_status(inv, now, cause, out)


def _keep(inv: Invoice, action: tuple[int, int, str]) -> None:
    """Schedule a stage action again, or set it aside with the others while skipped."""
    if inv.skipped and action[2] not in inv.explicit:
        inv.parked = [*(inv.parked or ()), action]
    else:
        _schedule(inv, *action)


def _cancel(inv: Invoice, now: int, cause: str, out: Out, notice: str = "") -> None:
    inv.actions = []
    inv.parked = None
    inv.next_reminder = inv.charge_at = None
    inv.paused_at = inv.pause_until = inv.pause_reason = None
    inv.status = "cancelled"  # first: its notices then announce no deadline (v1.1)
    if notice:
        _notify(inv, notice, "", now, cause, out)
    if inv.level in (LIMITED, SUSPENDED):  # a cancelled invoice releases its subject (rule 14)
        _signal(inv, "release", NONE, now, cause, out)
        inv.level = NONE
    _status_command(inv, now, cause, out)


# -- time -----------------------------------------------------------------------------------


def advance(inv: Invoice, now: int, cause: str, out: Out, until: int | None = None) -> None:
    """On a tick at `now`, fire in time order every action due by `until` (default `now`).

    The engine passes `until` to interleave invoices by action time when a tick jumps, so
    that the subjects they share see their actions in time order. A reminder fires at most
    once per tick: once fired, the next slot is after `now`.
    """
    until = now if until is None else until
    if inv.paused_at is not None:
        if inv.pause_until is None or inv.pause_until > until:
            return  # held notices too: no notice while paused
        _end_pause(inv, inv.pause_until, now, cause, out, reason="expired")
    if inv.waiting:
        _release(inv, until, now, cause, out)
    while inv.status != "cancelled" and inv.amount > inv.paid:
        best: tuple[int, int] | None = None
        if inv.actions and inv.actions[0][0] <= until:
            best = inv.actions[0][:2]
        at = inv.charge_at
        if at is not None and at <= until and (best is None or (at, CHARGE) < best):
            best = (at, CHARGE)
        at = inv.next_reminder
        if at is not None and at <= until and (best is None or (at, REMINDER) < best):
            best = (at, REMINDER)
        if best is None:
            break
        if best[1] in _MOVES and inv.calendar is not None and _moved(inv, now):
            continue  # off an enforcement day: it now waits for the next one
        if best[1] == CHARGE:
            inv.charge_at = None
            _charge(inv, now, cause, out)
        elif best[1] == REMINDER:
            _remind(inv, now, cause, out)
        else:
            _fire(inv, inv.actions.pop(0)[2], now, cause, out)
    _emit_status(inv, now, cause, out, at=until)


_MOVES = frozenset((LIMIT, SUSPEND, DELETE))


def _moved(inv: Invoice, now: int) -> bool:
    """Move the first action, an enforcement, off a day the calendar does not enforce on.

    It lands at the start of the next enforcement day after its own time; and since it fires
    at the tick that reaches it, that tick's local day must be one too (after a gap in the
    ticks, a Saturday tick waits for Monday). Moving it when it comes due, rather than where
    each date is set (issue, update, pause, restore), keeps one place that knows the calendar;
    `deadlines` announces the same time.
    """
    at, prio, name = inv.actions[0]
    target = inv.enforce_at(at)
    if target <= now:
        later = inv.enforce_at(now)
        if later != now:
            target = later
    if target == at:
        return False
    inv.actions.pop(0)
    _schedule(inv, target, prio, name)
    setattr(inv, f"{name}_at", target)
    return True


def _charge(inv: Invoice, now: int, cause: str, out: Out) -> None:
    inv.charge_sent = inv.charge_next
    out.commands.append(
        _command(
            inv, BILLING, "charge.request", inv.charge_next, now, cause,
            amount=str(inv.due), currency=inv.currency, attempt=inv.charge_next,
            customer_id=inv.customer_id,
        )
    )


def _remind(inv: Invoice, now: int, cause: str, out: Out) -> None:
    slot = inv.next_reminder
    assert slot is not None and inv.reminder_start is not None
    if inv.skipped and slot > inv.due_at and not _enforced(inv):
        # Rule 6: a skipped overdue stage stops later reminders; but not while an explicit
        # date still acts on the invoice (a suspension in force or to come), or a customer
        # would be held with no word of what to pay.
        inv.next_reminder = None
        return
    every, start = inv.reminder_every, inv.reminder_start
    _notify(inv, "notify.reminder", f"{start}:{(slot - start) // every}", now, cause, out)
    inv.next_reminder = start + ((now - start) // every + 1) * every  # next slot after now


def _enforced(inv: Invoice) -> bool:
    return inv.level in (LIMITED, SUSPENDED) or any(a[2] in STAGE for a in inv.actions)


def _fire(inv: Invoice, name: str, now: int, cause: str, out: Out) -> None:
    if name == "overdue":
        _emit_status(inv, now, cause, out, at=inv.due_at)  # status first, then the notice
        if inv.debit or inv.level == DELETED:
            return  # the status turns; no overdue stage for debit notes or after deletion
        if inv.due <= inv.threshold:
            _skip(inv, (inv.due_at, OVERDUE, OVERDUE_NOTICE))
        elif not inv.pending_request:
            _notify(inv, "notify.overdue", "", now, cause, out)
    elif name == RESTAGE:
        if inv.due <= inv.threshold:
            _skip(inv)
        elif inv.skipped:
            _resume(inv, now)
    elif name == OVERDUE_NOTICE:
        if not inv.pending_request:
            _notify(inv, "notify.overdue", "", now, cause, out)
    elif name.startswith("due_soon:"):
        # v1.1: due-soon is before due (one that became due in a gap past due_at is dropped),
        # and, as part of PortaBilling's stage 3, not for what is within the threshold.
        if not inv.pending_request and now < inv.due_at and inv.due > inv.threshold:
            _notify(inv, "notify.due_soon", name[9:], now, cause, out)
    elif name == "late_fee":
        _late_fee(inv, now, cause, out)
    elif name == "limit":
        _hold(inv, LIMITED, now, cause, out)
    elif name == "suspend":
        _hold(inv, SUSPENDED, now, cause, out)
    elif name == "delete":
        _hold(inv, DELETED, now, cause, out)
        # Deletion ends pursuit, not bookkeeping (v1.1): no more reminders, charges or stage;
        # only the status marker stays, so it still turns overdue at due_at.
        inv.actions = [a for a in inv.actions if a[2] == "overdue"]
        inv.parked = None
        inv.next_reminder = inv.charge_at = None
    elif name == "request_cancel":
        _signal(inv, "cancel_request", inv.level, now, cause, out)
        out.commands.append(_command(inv, BILLING, "invoice.cancel", "", now, cause,
                                     reason="request_cancelled"))
        _cancel(inv, now, cause, out, notice="notify.request_cancelled")


def _skip(inv: Invoice, notice: tuple[int, int, str] | None = None) -> None:
    """Within the threshold: set the stage's policy actions aside (and the overdue notice,
    when the stage starts for the first time); explicit dates stand (v1.1)."""
    if inv.skipped:
        return
    inv.skipped = True
    parked = [a for a in inv.actions if a[2] in _SET_ASIDE and a[2] not in inv.explicit]
    if notice is not None:
        parked.append(notice)
    if parked:
        inv.actions = [a for a in inv.actions if a not in parked]
        inv.parked = sorted([*(inv.parked or ()), *parked])


def _resume(inv: Invoice, now: int) -> None:
    """Owing above the threshold after a skip: the stage runs from where its dates stand."""
    inv.skipped = False
    if inv.parked:
        inv.actions = sorted(inv.actions + inv.parked)
    inv.parked = None
    if inv.next_reminder is None and inv.reminder_every and inv.reminder_start is not None:
        start, every = inv.reminder_start, inv.reminder_every
        inv.next_reminder = start + ((now - start) // every + 1) * every


def _late_fee(inv: Invoice, now: int, cause: str, out: Out) -> None:
    if inv.fee_fixed is not None:
        fee = quantize(inv.fee_fixed, inv.currency)
    else:
        assert inv.fee_percent is not None
        fee = quantize(inv.due * inv.fee_percent / 100, inv.currency)
    if fee <= 0:
        return
    out.commands.append(_command(inv, BILLING, "invoice.late_fee", "", now, cause,
                                 amount=fmt(fee, inv.currency), currency=inv.currency))
    if not inv.pending_request:
        notice = inv.notice(now)
        notice["late_fee"] = fmt(fee, inv.currency)
        _tell(inv, notifications(inv.invoice_id, "notify.late_fee", "", now, cause, notice,
                                 inv.audiences()), now, out)


def _hold(inv: Invoice, level: int, now: int, cause: str, out: Out) -> None:
    if level > inv.level:
        inv.level = level
        _signal(inv, "hold", level, now, cause, out)


# The operator controls build on this module and add their handlers to _HANDLERS.
from dunning.rules import controls  # noqa: E402
