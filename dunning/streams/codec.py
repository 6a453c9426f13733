"""The edge: input records become validated events, or dead letters with a code and reason.

Everything past this module may trust its input: ids are non-empty strings, money is an exact
Decimal within its currency's places, times are epoch seconds.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson

from dunning.rules import model as m
from dunning.rules.engine import Engine, Result
from dunning.rules.money import is_currency, parse_amount
from dunning.rules.times import DAY, parse_time
from dunning.streams.topics import EVENT_TYPES

MAX_RECORD_BYTES = 64 * 1024  # invoice events are small; anything this big is a producer bug
MAX_ID_CHARS = 200
OVERRIDE_TIMES = ("request_cancel_at", "suspend_at", "delete_at")
# Contract §2: day counts and dates set on an invoice lie within 0 to 3 650 days (of its
# issue), so that nothing derived from them leaves the range times can be printed in.
MAX_DAYS = 3650
# Control characters (C0, DEL, C1): never part of an id, and PostgreSQL refuses NUL in text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A tick that carries this header got past the clock guard on purpose (contract §4).
H_CONFIRM, CONFIRM_JUMP = "dunning.confirm", b"jump"
_TOPIC_OF = {t: topic for topic, types in EVENT_TYPES.items() for t in types}


class Invalid(Exception):
    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


def _missing(name: str, kind: str) -> Invalid:
    return Invalid(m.MISSING_FIELD, f"{kind} has no {name!r}")


def _id(doc: dict[str, Any], name: str, kind: str, required: bool = True) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise _missing(name, kind)
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise Invalid(
            m.INVALID_FIELD, f"{name} must be a non-empty string of at most {MAX_ID_CHARS} chars"
        )
    if _CONTROL.search(value):
        raise Invalid(m.INVALID_FIELD, f"{name} must not contain control characters")
    return value


def _time(doc: dict[str, Any], name: str, kind: str, required: bool = True) -> int | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise _missing(name, kind)
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise Invalid(m.INVALID_FIELD, f"{name}: {exc}") from None


def _money(doc: dict[str, Any], name: str, kind: str, currency: str | None) -> Decimal:
    value = doc.get(name)
    if value is None:
        raise _missing(name, kind)
    try:
        return parse_amount(value, currency)
    except ValueError as exc:
        raise Invalid(m.INVALID_FIELD, f"{name}: {exc}") from None


def _currency(doc: dict[str, Any], kind: str) -> str:
    value = doc.get("currency")
    if value is None:
        raise _missing("currency", kind)
    if not is_currency(value):
        raise Invalid(m.INVALID_FIELD, f"currency {value!r} is not an ISO 4217 code")
    return value


def _choice(doc: dict[str, Any], name: str, allowed: tuple[str, ...], default: str | None) -> Any:
    value = doc.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise Invalid(m.INVALID_FIELD, f"{name} must be one of {', '.join(allowed)}")
    return value


def _bool(doc: dict[str, Any], name: str, kind: str, default: bool | None = None) -> bool:
    value = doc.get(name)
    if value is None:
        if default is None:
            raise _missing(name, kind)
        return default
    if not isinstance(value, bool):
        raise Invalid(m.INVALID_FIELD, f"{name} must be true or false")
    return value


def _within(name: str, at: int, issued_at: int) -> int:
    """A date set on an invoice: not before its issue, and within MAX_DAYS of it."""
    if at < issued_at:
        raise Invalid(m.INVALID_FIELD, f"{name} is before issued_at")
    if at > issued_at + MAX_DAYS * DAY:
        raise Invalid(m.INVALID_FIELD, f"{name} is more than {MAX_DAYS} days after issued_at")
    return at


def _overrides(doc: dict[str, Any], issued_at: int | None) -> dict[str, Any]:
    """An event's overrides; with no `issued_at` (an update: the invoice is not known here)
    the rules check the dates against the invoice."""
    raw = doc.get("overrides")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Invalid(m.INVALID_FIELD, "overrides must be an object")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            continue
        if name == "reminder_every_days":
            if value is False:
                out[name] = False
            elif isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_DAYS:
                out[name] = value
            else:
                raise Invalid(m.INVALID_FIELD, "overrides.reminder_every_days must be a whole "
                                               f"number from 1 to {MAX_DAYS}, or false")
        elif name in OVERRIDE_TIMES:
            if value is False:
                out[name] = False
            else:
                try:
                    at = parse_time(value)
                except ValueError as exc:
                    raise Invalid(m.INVALID_FIELD, f"overrides.{name}: {exc}") from None
                out[name] = at if issued_at is None else \
                    _within(f"overrides.{name}", at, issued_at)
        else:
            raise Invalid(m.INVALID_FIELD, f"overrides has an unknown key {name!r}")
    return out


def _issued(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    kind = "invoice.issued"
    currency = _currency(doc, kind)
    if doc.get("request_status") == "pending" and doc.get("request_id") is None:
        raise Invalid(m.MISSING_FIELD, "a pending request needs its request_id")
    issued_at = _time(doc, "issued_at", kind)
    assert issued_at is not None
    due_at = _time(doc, "due_at", kind, required=False)
    return m.InvoiceIssued(
        **base,
        customer_id=_id(doc, "customer_id", kind),
        amount=_money(doc, "amount", kind, currency),
        currency=currency,
        issued_at=issued_at,
        customer_class=_id(doc, "customer_class", kind, required=False),
        order_id=_id(doc, "order_id", kind, required=False),
        reseller_id=_id(doc, "reseller_id", kind, required=False),
        product=_id(doc, "product", kind, required=False),
        document=_choice(doc, "document", ("invoice", "debit_note"), "invoice"),
        kind=_choice(doc, "kind", ("regular", "out_of_turn"), "regular"),
        origin=_choice(doc, "origin", ("manual", "system"), "manual"),
        due_at=None if due_at is None else _within("due_at", due_at, issued_at),
        request_id=_id(doc, "request_id", kind, required=False),
        request_status=_choice(doc, "request_status", ("pending", "completed"), None),
        overrides=_overrides(doc, issued_at),
    )


def _adjusted(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    # The currency's places are checked against the invoice by the rules.
    return m.InvoiceAdjusted(**base, amount=_money(doc, "amount", "invoice.adjusted", None))


def _updated(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    return m.InvoiceUpdated(**base, due_at=_time(doc, "due_at", "invoice.updated", False),
                            overrides=_overrides(doc, None))


PAUSE_REASONS = ("promise_to_pay", "dispute", "other")


def _paused(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    if doc.get("reason") is None:
        raise _missing("reason", "collection.paused")
    return m.CollectionPaused(**base, reason=_choice(doc, "reason", PAUSE_REASONS, None),
                              until=_time(doc, "until", "collection.paused", False))


def _resumed(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    return m.CollectionResumed(**base)


def _cancelled(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    return m.InvoiceCancelled(**base)


def _applied(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    kind = "payment.applied"
    currency = _currency(doc, kind)
    amount = _money(doc, "amount", kind, currency)
    if not amount:
        raise Invalid(m.INVALID_FIELD, "amount of a payment must be greater than zero")
    return m.PaymentApplied(
        **base, payment_id=_id(doc, "payment_id", kind), amount=amount, currency=currency
    )


def _reversed(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    kind = "payment.reversed"
    amount = _money(doc, "amount", kind, None)
    if not amount:
        raise Invalid(m.INVALID_FIELD, "amount of a reversal must be greater than zero")
    return m.PaymentReversed(**base, payment_id=_id(doc, "payment_id", kind), amount=amount)


def _charge_failed(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    attempt = doc.get("attempt")
    if attempt is None:
        raise _missing("attempt", "charge.failed")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise Invalid(m.INVALID_FIELD, "attempt must be a whole number >= 1")
    return m.ChargeFailed(**base, attempt=attempt, hard=_bool(doc, "hard", "charge.failed"))


def _completed(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    return m.RequestCompleted(
        **base, without_payment=_bool(doc, "without_payment", "request.completed", False)
    )


def _tick(doc: dict[str, Any], base: dict[str, Any]) -> m.Event:
    source = base["source"]
    confirmed = source is not None and (H_CONFIRM, CONFIRM_JUMP) in source.headers
    return m.ClockTick(**base, now=_time(doc, "now", "clock.tick"), confirmed=confirmed)


_BUILDERS = {
    "invoice.issued": _issued,
    "invoice.adjusted": _adjusted,
    "invoice.cancelled": _cancelled,
    "invoice.updated": _updated,
    "collection.paused": _paused,
    "collection.resumed": _resumed,
    "payment.applied": _applied,
    "payment.reversed": _reversed,
    "charge.failed": _charge_failed,
    "request.completed": _completed,
    "clock.tick": _tick,
}


def parse(doc: Any, topic: str, source: m.Source | None = None) -> m.Event:
    """A decoded JSON value as an event of `topic`. Raises Invalid."""
    if not isinstance(doc, dict):
        raise Invalid(m.MALFORMED_JSON, "the record is JSON but not a JSON object")
    etype = doc.get("type")
    if etype is None:
        raise Invalid(m.MISSING_FIELD, "the record has no 'type'")
    # A type that is not a string (a list, an object) is no type dunning knows either.
    builder = _BUILDERS.get(etype) if isinstance(etype, str) else None
    if builder is None:
        raise Invalid(m.UNKNOWN_TYPE, f"{etype!r} is not an event type dunning knows")
    if topic in EVENT_TYPES and _TOPIC_OF[etype] != topic:
        raise Invalid(m.UNKNOWN_TYPE, f"{etype} belongs on {_TOPIC_OF[etype]}, not on {topic}")
    base = {
        "type": etype,
        "event_id": _id(doc, "event_id", etype),
        "invoice_id": "" if etype == "clock.tick" else _id(doc, "invoice_id", etype),
        "source": source,
    }
    return builder(doc, base)


def decode(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    partition: int = 0,
    offset: int = 0,
    headers: Any = (),
    max_bytes: int = MAX_RECORD_BYTES,
) -> m.Event | m.DeadLetter:
    """One input record as an event, or as a dead letter that says why not."""
    source = m.Source(topic, partition, offset, key, value, tuple(headers or ()))
    if value is None:
        return m.DeadLetter(source, m.MALFORMED_JSON, "the record has no value (a tombstone)")
    if len(value) > max_bytes:
        return m.DeadLetter(
            source, m.TOO_LARGE, f"the record is {len(value)} bytes; the limit is {max_bytes}"
        )
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return m.DeadLetter(source, m.MALFORMED_JSON, f"the value is not UTF-8 JSON: {exc}")
    try:
        return parse(doc, topic, source)
    except Invalid as exc:
        return m.DeadLetter(source, exc.error, exc.reason)


def feed(engine: Engine, topic: str, key: bytes | None, value: bytes | None,
         partition: int = 0, offset: int = 0, headers: Any = ()) -> Result:
    """One raw input record through the edge into the engine: its outcome, commands and
    dead letters (the record itself, when it fails validation)."""
    event = decode(topic, key, value, partition, offset, headers)
    if isinstance(event, m.DeadLetter):
        return Result(m.DEAD_LETTERED, [], [event])
    return engine.handle(event)


def encode(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)
