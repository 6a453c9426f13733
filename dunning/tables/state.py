"""Byte encodings of the rules' state for Kafka-backed tables and the invoice→subject topic.

Each record is one orjson array: a format version first, then the fields in a fixed order (no
field names: a billing run keeps millions of invoices and recovery reads every one). Decimals
travel as their str() and come back with the same exponent, because the rules keep amounts
quantized so that str() is the wire form. Sets, tuples and None come back as the types the
classes use. A later version appends or reorders fields under a new number; decoders then
migrate older numbers instead of rejecting them.

Decoding checks the frame (JSON, an array, the version, the field count) and every field that
needs converting, and raises ValueError naming the problem; plain str/int/bool fields are
trusted, as these bytes are only ever written by `encode_*`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import date
from decimal import Decimal
from operator import attrgetter
from typing import Any

import orjson

from dunning.rules import model as m
from dunning.rules.calendar import WEEKDAYS, Calendar
from dunning.rules.engine import Held
from dunning.rules.invoice import CHARGE, REMINDER, Invoice, Signal
from dunning.rules.money import ZERO, fmt
from dunning.rules.subject import Subject
from dunning.rules.times import DAY, format_time
from dunning.streams.codec import decode

# 2: the subject gains `waiting`, the signal `quiet` (v1.1 business calendar: notices held
# for an invoice's notice hours).
SUBJECT_VERSION = SIGNAL_VERSION = 2
# 2: the invoice gains `explicit` and `parked` (contract v1.1: the threshold keeps explicit
# dates and sets the others aside, to resume should the invoice owe more).
# 3: and `paused_at`, `pause_until` (v1.1 operator controls: a pause and when it ends).
# 4: and `calendar`, `waiting` (v1.1 business calendar: where its enforcement lands, and the
# notifications held for notice hours), `pause_reason` (why the operator paused it).
INVOICE_VERSION = 4
# Held v2 keeps each record's headers (v1 rows, without them, still decode).
HELD_VERSION = 2

Convert = Callable[[Any], Any]


# -- field converters: (to JSON, from JSON) -------------------------------------------------


def _need(value: Any, kind: type, what: str) -> Any:
    if type(value) is not kind:
        raise ValueError(f"expected {what}, got {type(value).__name__}")
    return value


def _decimal(text: Any) -> Decimal:
    if type(text) is str:
        return Decimal(text)  # Decimal(str) keeps the exponent: "5.00" stays 5.00
    raise ValueError(f"expected a decimal string, got {type(text).__name__}")


def _opt(convert: Convert) -> Convert:
    return lambda v: None if v is None else convert(v)


def _payments_out(payments: dict[str, Decimal] | None) -> dict[str, str] | None:
    return None if payments is None else {pid: str(a) for pid, a in payments.items()}


def _payments_in(payments: Any) -> dict[str, Decimal] | None:
    if payments is None:
        return None
    return {pid: _decimal(a) for pid, a in _need(payments, dict, "an object").items()}


def _actions_in(actions: Any) -> list[tuple[int, int, str]]:
    return [(at, prio, name) for at, prio, name in _need(actions, list, "an array")]


def _opt_actions_in(actions: Any) -> list[tuple[int, int, str]] | None:
    return None if actions is None else _actions_in(actions)


def _tuple_in(values: Any) -> tuple[Any, ...]:
    return tuple(_need(values, list, "an array"))


def _seen_out(seen: set[str] | None) -> list[str] | None:
    return None if seen is None else sorted(seen)  # sorted: the same state, the same bytes


def _seen_in(seen: Any) -> set[str] | None:
    return None if seen is None else set(_need(seen, list, "an array"))


def _dict_in(value: Any) -> dict[str, Any]:
    return _need(value, dict, "an object")


_DECIMAL = (str, _decimal)
_OPT_DECIMAL = (_opt(str), _opt(_decimal))
_PAYMENTS = (_payments_out, _payments_in)
_ACTIONS = (None, _actions_in)  # a list of tuples is already JSON
_OPT_ACTIONS = (None, _opt_actions_in)
_TUPLE = (None, _tuple_in)
_SEEN = (_seen_out, _seen_in)
_OBJECT = (None, _dict_in)


def _calendar_out(cal: Calendar | None) -> list[Any] | None:
    if cal is None:
        return None
    return [cal.time_zone, sorted(cal.enforce_on), sorted(d.isoformat() for d in cal.holidays),
            None if cal.notice_hours is None else list(cal.notice_hours)]


def _calendar_in(row: Any) -> Calendar | None:
    if row is None:
        return None
    zone, days, holidays, hours = _need(row, list, "a calendar")
    return Calendar(_need(zone, str, "a time zone"), frozenset(_need(days, list, "days")),
                    frozenset(date.fromisoformat(d) for d in _need(holidays, list, "holidays")),
                    None if hours is None else tuple(_need(hours, list, "notice hours")))


_CALENDAR = (_calendar_out, _calendar_in)


def _waiting_in(rows: Any) -> tuple[tuple[int, dict[str, Any]], ...] | None:
    if rows is None:
        return None
    return tuple((_need(at, int, "a time"), _dict_in(value))
                 for at, value in _need(rows, list, "held notices"))


_WAITING = (None, _waiting_in)


def _notices_in(rows: Any) -> tuple[dict[str, Any], ...] | None:
    return None if rows is None else tuple(_dict_in(v) for v in _need(rows, list, "notices"))


_NOTICES = (None, _notices_in)


# -- one layout: a class's slots in a fixed order -------------------------------------------


# An older version: its field count, and how a row of it becomes a row of the next version.
Migration = tuple[int, Callable[[list[Any]], list[Any]]]


class _Layout:
    """Fields of `cls` in wire order, each with an optional (to JSON, from JSON) pair;
    `migrations` bring rows of older versions up to this one."""

    def __init__(self, what: str, cls: type, version: int,
                 fields: tuple[tuple[str, tuple[Convert | None, Convert] | None], ...],
                 migrations: dict[int, Migration] | None = None) -> None:
        self.what, self.cls, self.version = what, cls, version
        self.migrations = migrations or {}
        self.names = tuple(name for name, _ in fields)
        self._get = attrgetter(*self.names)
        # Positions in the encoded row (the version is at 0).
        self._out = [(i + 1, c[0]) for i, (_, c) in enumerate(fields) if c and c[0]]
        self._in = [(i + 1, name, c[1]) for i, (name, c) in enumerate(fields) if c]

    def encode(self, obj: Any) -> bytes:
        row = [self.version, *self._get(obj)]
        for i, convert in self._out:
            row[i] = convert(row[i])
        return orjson.dumps(row)

    def decode(self, data: bytes) -> Any:
        row = _frame(data, self.what, self.version, self.migrations)
        while row[0] != self.version:
            fields, upgrade = self.migrations[row[0]]
            if len(row) != fields + 1:
                raise ValueError(f"{self.what} state has {len(row) - 1} fields; version "
                                 f"{row[0]} has {fields}")
            row = upgrade(row)
        if len(row) != len(self.names) + 1:
            raise ValueError(f"{self.what} state has {len(row) - 1} fields; version "
                             f"{self.version} has {len(self.names)}")
        for i, name, convert in self._in:
            try:
                row[i] = convert(row[i])
            except (TypeError, ValueError, ArithmeticError) as exc:
                raise ValueError(f"{self.what} state: field {name}: {exc}") from None
        # No __init__: every slot is set below, and one the layout lacks stays unset, so it
        # fails at first use (and in the round-trip tests) instead of taking a default.
        obj = self.cls.__new__(self.cls)
        for name, value in zip(self.names, row[1:], strict=True):
            setattr(obj, name, value)
        return obj


def _frame(data: bytes, what: str, version: int,
           older: Collection[int] | None = None) -> list[Any]:
    """The JSON array inside `data`, checked to be of `version` (or one `older` migrates)."""
    try:
        row = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} state is not JSON: {exc}") from None
    if type(row) is not list or not row:
        raise ValueError(f"{what} state is not a JSON array led by its format version")
    if type(row[0]) is not int or (row[0] != version and row[0] not in (older or ())):
        raise ValueError(f"{what} state has format version {row[0]!r}; this dunning reads "
                         f"version {version}")
    return row


_INVOICE = _Layout("invoice", Invoice, INVOICE_VERSION, (
    ("invoice_id", None),
    ("customer_id", None),
    ("order_id", None),
    ("reseller_id", None),
    ("request_id", None),
    ("issued_by", None),
    ("currency", None),
    ("amount", _DECIMAL),
    ("paid", _DECIMAL),
    ("payments", _PAYMENTS),
    ("threshold", _DECIMAL),
    ("fee_fixed", _OPT_DECIMAL),
    ("fee_percent", _OPT_DECIMAL),
    ("issued_at", None),
    ("due_at", None),
    ("status", None),
    ("status_seq", None),
    ("actions", _ACTIONS),
    ("limit_at", None),
    ("suspend_at", None),
    ("delete_at", None),
    ("request_cancel_at", None),
    ("reminder_every", None),
    ("reminder_start", None),
    ("next_reminder", None),
    ("charge_retry", _TUPLE),
    ("charge_at", None),
    ("charge_next", None),
    ("charge_sent", None),
    ("debit", None),
    ("pending_request", None),
    ("notify_reseller", None),
    ("skipped", None),
    ("level", None),
    ("hold_version", None),
    ("seen", _SEEN),
    ("explicit", _TUPLE),
    ("parked", _OPT_ACTIONS),
    ("paused_at", None),
    ("pause_until", None),
    ("calendar", _CALENDAR),
    ("waiting", _WAITING),
    ("pause_reason", None),
), migrations={
    # Version 1 did not record which dates were explicit (taken as the policy's) and dropped
    # what the threshold skipped (nothing set aside).
    1: (36, lambda row: [2, *row[1:], [], None]),
    # Version 2 knew no pauses (v1.1 operator controls): not paused.
    2: (38, lambda row: [3, *row[1:], None, None]),
    # Version 3 knew no business calendar (enforcement on any day, no notice held) and
    # kept no pause's reason.
    3: (40, lambda row: [4, *row[1:], None, None, None]),
})

# `key` is not stored: Subject derives it from kind and id.
_SUBJECT = _Layout("subject", Subject, SUBJECT_VERSION, (
    ("kind", None),
    ("id", None),
    ("level", None),
    ("epoch", None),
    ("holders", _OBJECT),
    ("versions", _OBJECT),
    ("waiting", _NOTICES),
), migrations={1: (6, lambda row: [2, *row[1:], None])})  # v1: none held

_SIGNAL = _Layout("signal", Signal, SIGNAL_VERSION, (
    ("subject_kind", None),
    ("subject_id", None),
    ("invoice_id", None),
    ("version", None),
    ("action", None),
    ("level", None),
    ("now", None),
    ("cause", None),
    ("notice", _OBJECT),
    ("audiences", _TUPLE),
    ("request_id", None),
    ("quiet", None),
), migrations={1: (11, lambda row: [2, *row[1:], False])})  # v1: notices at once


# -- public API -----------------------------------------------------------------------------


def encode_invoice(inv: Invoice) -> bytes:
    return _INVOICE.encode(inv)


def decode_invoice(data: bytes) -> Invoice:
    return _INVOICE.decode(data)


def encode_subject(subj: Subject) -> bytes:
    return _SUBJECT.encode(subj)


def decode_subject(data: bytes) -> Subject:
    subj = _SUBJECT.decode(data)
    subj.key = f"{subj.kind}:{subj.id}"
    return subj


def encode_signal(sig: Signal) -> bytes:
    return _SIGNAL.encode(sig)


def decode_signal(data: bytes) -> Signal:
    return _SIGNAL.decode(data)


# Held events are kept as their raw input records, so that an orphan can still be
# dead-lettered unchanged after a restart. Bytes go as latin-1 text: lossless for any bytes
# (keys need not be UTF-8), and ASCII, the usual case, stays as it is.


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("latin-1")


def encode_held(held: list[Held]) -> bytes:
    rows: list[Any] = [HELD_VERSION]
    for h in held:
        src = h.event.source
        if src is None:
            raise ValueError(f"held {h.event.type} {h.event.event_id} has no source record; "
                             "without one it could not be dead-lettered after a restart")
        rows.append([src.topic, src.partition, src.offset, _text(src.key), _text(src.value),
                     h.held_at, [[k, _text(v)] for k, v in src.headers]])
    return orjson.dumps(rows)


def decode_held(data: bytes) -> list[Held]:
    rows = _frame(data, "held", HELD_VERSION, (1,))
    if rows[0] == 1:  # before headers were kept
        rows[1:] = [[*row, []] if type(row) is list else row for row in rows[1:]]
    return [_held(row, n) for n, row in enumerate(rows[1:], 1)]


def _held(row: Any, n: int) -> Held:
    if type(row) is not list or len(row) != 7:
        raise ValueError(f"held event {n} is not [topic, partition, offset, key, value, "
                         "held_at, headers]")
    topic, partition, offset, key, value, held_at, headers = row
    try:
        raw_key = None if key is None else key.encode("latin-1")
        raw = value.encode("latin-1")
        raw_headers = tuple((k, None if v is None else v.encode("latin-1"))  # null values too
                            for k, v in headers)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"held event {n}: key, value and headers must be latin-1 text: "
                         f"{exc}") from None
    # The record passed the size limit when it arrived; a lower limit since must not drop it.
    event = decode(topic, raw_key, raw, partition, offset, raw_headers, max_bytes=len(raw))
    if isinstance(event, m.DeadLetter):
        raise ValueError(f"held event {n} ({topic} partition {partition} offset {offset}) no "
                         f"longer decodes: {event.error}: {event.reason}")
    return Held(event, held_at)


# -- the invoice as JSON for GET /invoices/{id} (contract §5) -------------------------------

_HOLDS = ("none", "limited", "suspended", "deleted")


def _time(at: int | None) -> str | None:
    return None if at is None else format_time(at)


def _scheduled(inv: Invoice) -> list[tuple[int, int, str]]:
    """Every pending action as (time, priority, name), in the order `advance` fires them."""
    pending = list(inv.actions)
    if inv.charge_at is not None:
        pending.append((inv.charge_at, CHARGE, "charge"))
    if inv.next_reminder is not None:
        pending.append((inv.next_reminder, REMINDER, "reminder"))
    return sorted(pending)


def invoice_view(inv: Invoice) -> dict[str, Any]:
    """The invoice's state in readable JSON terms: money as strings, times in RFC 3339."""
    cur = inv.currency
    scheduled = [{"action": name, "at": format_time(at)} for at, _, name in _scheduled(inv)]
    kind, sid = inv.subject
    return {
        "invoice_id": inv.invoice_id,
        "customer_id": inv.customer_id,
        "order_id": inv.order_id,
        "reseller_id": inv.reseller_id,
        "subject": {"kind": kind, "id": sid},
        "document": "debit_note" if inv.debit else "invoice",
        "status": inv.status,
        "currency": cur,
        "amount": fmt(inv.amount, cur),
        "amount_paid": fmt(inv.paid, cur),
        # Money shown is never negative (contract §1): an overpaid invoice owes 0.00 and has
        # the rest as credit.
        "amount_due": fmt(max(inv.due, ZERO), cur),
        "amount_credit": fmt(max(-inv.due, ZERO), cur),
        "payments": [{"payment_id": pid, "amount": fmt(a, cur)}  # what stands after reversals
                     for pid, a in (inv.payments or {}).items()],
        "issued_at": format_time(inv.issued_at),
        "due_at": format_time(inv.due_at),
        "limit_at": _time(inv.limit_at),
        "suspend_at": _time(inv.suspend_at),
        "delete_at": _time(inv.delete_at),
        "request_cancel_at": _time(inv.request_cancel_at),
        "request": None if inv.request_id is None else {
            "request_id": inv.request_id, "pending": inv.pending_request},
        # next_at() is None once paid or cancelled: then nothing fires, whatever is listed.
        "next_action": scheduled[0] if scheduled and inv.next_at() is not None else None,
        "scheduled": scheduled,
        # Operator controls (v1.1): a pause holds every date above until it ends.
        "pause": None if inv.paused_at is None else {
            "reason": inv.pause_reason, "since": format_time(inv.paused_at),
            "until": _time(inv.pause_until)},
        **_collection_terms(inv),
        **_calendar_view(inv),
    }


def calendar_view(cal: Calendar) -> dict[str, Any]:
    """A business calendar in the policy file's terms."""
    hours = cal.notice_hours
    return {
        "time_zone": cal.time_zone,
        "enforce_on": [WEEKDAYS[d] for d in sorted(cal.enforce_on)],
        "holidays": sorted(d.isoformat() for d in cal.holidays),
        "notice_hours": None if hours is None else
        [f"{m // 60:02d}:{m % 60:02d}" for m in hours],
    }


def _calendar_view(inv: Invoice) -> dict[str, Any]:
    """Only for an invoice under a business calendar (v1.1): the calendar, and the notices
    held for its notice hours."""
    if inv.calendar is None:
        return {}
    return {
        "calendar": calendar_view(inv.calendar),
        "notices_waiting": [{"type": value["type"], "at": format_time(at)}
                            for at, value in inv.waiting or ()],
    }


def _collection_terms(inv: Invoice) -> dict[str, Any]:
    cur = inv.currency
    return {
        "reminders": None if not inv.reminder_every else {
            "every_days": inv.reminder_every // DAY,
            "started_at": _time(inv.reminder_start),
            "next_at": _time(inv.next_reminder),
        },
        "charge": None if not inv.charge_next else {
            "next_attempt": inv.charge_next,
            "next_at": _time(inv.charge_at),
            "awaiting_attempt": inv.charge_sent or None,
            "retry_days": list(inv.charge_retry),
        },
        "late_fee": None if inv.fee_fixed is None and inv.fee_percent is None else {
            "amount": None if inv.fee_fixed is None else fmt(inv.fee_fixed, cur),
            "percent": None if inv.fee_percent is None else str(inv.fee_percent),
        },
        "collection_threshold": fmt(inv.threshold, cur),
        "overdue_stage_skipped": inv.skipped,
        "service": _HOLDS[inv.level],
        "issued_by": inv.issued_by,
        "events_applied": len(inv.seen or ()),
    }
