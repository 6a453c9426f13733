"""Subject holds (contract rule 11): one order or customer, held by many invoices.

Runs keyed by subject, fed the `Signal`s that invoices send. A subject takes the highest level
any of its unpaid invoices asks for, gets one command per change of level, is restored only when
its last holding invoice lets go, and once deleted takes no provisioning command ever again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dunning.rules import model as m
from dunning.rules.ids import command_id
from dunning.rules.invoice import (
    DELETED,
    LIMITED,
    NONE,
    NOTICES,
    SUSPENDED,
    Signal,
    notifications,
)
from dunning.rules.times import format_time
from dunning.rules.undo import Copier
from dunning.streams.topics import NOTIFICATIONS, PROVISIONING

_ACTIONS = {
    LIMITED: ("service.limit", "notify.limited"),
    SUSPENDED: ("service.suspend", "notify.suspended"),
    DELETED: ("service.delete", "notify.deleted"),
}
_HOLDS = frozenset(service for service, _ in _ACTIONS.values())


class Subject:
    __slots__ = ("epoch", "holders", "id", "key", "kind", "level", "versions", "waiting")

    def __init__(self, kind: str, sid: str) -> None:
        self.kind = kind
        self.id = sid
        self.key = f"{kind}:{sid}"
        self.level = NONE
        self.epoch = 0  # one per hold-and-restore cycle, so each cycle's commands differ
        self.holders: dict[str, int] = {}  # invoice_id -> the level it holds
        self.versions: dict[str, int] = {}  # invoice_id -> last signal version applied
        # Notifications held for an invoice's notice hours (v1.1), replaced whole.
        self.waiting: tuple[dict[str, Any], ...] | None = None


def _provision(subj: Subject, ctype: str, key: object, sig: Signal, **fields: Any) -> m.Command:
    value = {
        "command_id": command_id(subj.key, ctype, key),
        "type": ctype,
        "issued_at": format_time(sig.now),
        "causation_id": sig.cause,
        "invoice_id": sig.invoice_id,
        "subject": {"kind": subj.kind, "id": subj.id},
        "invoice_ids": sorted(subj.holders),
        **fields,
    }
    return m.Command(PROVISIONING, subj.key, value)


def apply_signal(subj: Subject, sig: Signal) -> tuple[str, list[m.Command]]:
    """Apply one signal; returns the outcome and the commands it causes."""
    if sig.version <= subj.versions.get(sig.invoice_id, 0):
        return m.DUPLICATE, []  # redelivered after a crash or rebalance
    subj.versions[sig.invoice_id] = sig.version
    if sig.action == NOTICES:
        return m.APPLIED, _let_go(subj, sig)
    if subj.level == DELETED:
        subj.holders.pop(sig.invoice_id, None)
        return m.IGNORED, []  # deletion is irreversible: nothing follows it
    commands: list[m.Command] = []
    if sig.action == "hold":
        subj.holders[sig.invoice_id] = sig.level
        if sig.level > subj.level:
            subj.level = sig.level
            service, notice = _ACTIONS[sig.level]
            commands.append(_provision(subj, service, subj.epoch, sig))
            commands += _notices(subj, notice, sig)
    elif sig.action == "release":
        subj.holders.pop(sig.invoice_id, None)
        if not subj.holders and subj.level in (LIMITED, SUSPENDED):
            subj.level = NONE
            commands.append(_provision(subj, "service.unsuspend", subj.epoch, sig))
            commands += _notices(subj, "notify.unsuspended", sig)
            subj.epoch += 1
    elif sig.action == "cancel_request":
        # The invoice's own release, if it held the subject, follows as a separate signal.
        commands.append(
            _provision(subj, "request.cancel", sig.invoice_id, sig, request_id=sig.request_id)
        )
    return m.APPLIED, commands


def _notices(subj: Subject, ctype: str, sig: Signal) -> list[m.Command]:
    commands = notifications(
        subj.key, ctype, subj.epoch, sig.now, sig.cause, sig.notice, sig.audiences
    )
    if not sig.quiet:
        return commands
    subj.waiting = (*(subj.waiting or ()), *(c.value for c in commands))
    return []


_DEADLINE_KEYS = ("amount_due", "due_at", "suspend_at", "delete_at", "request_cancel_at")


def _let_go(subj: Subject, sig: Signal) -> list[m.Command]:
    """The held notices of the invoice that signals, now its notice hours are open: issued
    now, with that invoice's amount due and deadlines as they stand now."""
    if not subj.waiting:
        return []
    mine = [v for v in subj.waiting if v["invoice_id"] == sig.invoice_id]
    subj.waiting = tuple(v for v in subj.waiting if v["invoice_id"] != sig.invoice_id) or None
    commands = []
    for value in mine:
        sent = {k: v for k, v in value.items() if k not in _DEADLINE_KEYS}
        sent.update({k: v for k, v in sig.notice.items() if k in _DEADLINE_KEYS})
        sent["issued_at"] = format_time(sig.now)
        commands.append(m.Command(NOTIFICATIONS, value["invoice_id"], sent))
    return commands


SUBJECT_STATE = Copier(Subject, ("holders", "versions"))


def apply_safely(subj: Subject, sig: Signal) -> tuple[str, list[m.Command]]:
    """`apply_signal`, leaving the subject as it was if the rules raise (which they pass on)."""
    kept = SUBJECT_STATE.copy(subj)
    try:
        return apply_signal(subj, sig)
    except Exception:
        SUBJECT_STATE.restore(subj, kept)
        raise


def apply_signals(subject_of: Callable[[Signal], Subject], signals: Iterable[Signal],
                  failed: Callable[[Signal, Exception], None] | None = None,
                  ) -> list[m.Command]:
    """Apply one step's signals (a tick's, in the order their actions fell due) and return
    the commands they cause, each hold naming in `invoice_ids` every unpaid invoice that holds
    its subject once the step is done: four invoices suspending one order in one tick give one
    `service.suspend` naming all four. A hold cycle that ends within the step (restored) keeps
    the holders it had, and a deletion those it deleted.

    With `failed`, a signal whose rules raise leaves its subject as it was and is passed to
    it; the other signals go on (contract v1.1 §2).
    """
    commands: list[m.Command] = []
    open_: dict[str, tuple[int, list[dict[str, Any]]]] = {}  # subject -> (epoch, hold values)
    for sig in signals:
        subj = subject_of(sig)
        if failed is None:
            _, out = apply_signal(subj, sig)
        else:
            try:
                _, out = apply_safely(subj, sig)
            except Exception as exc:
                failed(sig, exc)
                continue
        commands += out
        held = [c.value for c in out if c.value["type"] in _HOLDS]
        entry = open_.get(subj.key)
        if entry is not None and entry[0] != subj.epoch:
            del open_[subj.key]  # restored since: those commands keep what they named
            entry = None
        if entry is None:
            if held and subj.level != DELETED:
                open_[subj.key] = (subj.epoch, held)
            continue
        entry[1].extend(held)
        ids = sorted(subj.holders)
        for value in entry[1]:
            value["invoice_ids"] = list(ids)
        if subj.level == DELETED:
            del open_[subj.key]  # nothing joins a deleted subject
    return commands
