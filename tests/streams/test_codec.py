"""The edge (contract §1): records become events, or dead letters with a dlq.error code."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from dunning.rules import model as m
from dunning.streams.codec import MAX_RECORD_BYTES, decode
from tests.driver import Driver

INVOICES, PAYMENTS, REQUESTS, CLOCK = (
    "billing.invoices", "billing.payments", "billing.requests", "billing.clock")

T0 = "2026-01-10T00:00:00Z"
EPOCH_T0 = int(datetime(2026, 1, 10, tzinfo=UTC).timestamp())

# A minimal valid record of every type, with the topic it belongs on.
VALID: dict[str, tuple[str, dict[str, Any]]] = {
    "invoice.issued": (INVOICES, {
        "type": "invoice.issued", "event_id": "e-1", "invoice_id": "inv-1",
        "customer_id": "cust-1", "amount": "100.00", "currency": "USD", "issued_at": T0}),
    "invoice.adjusted": (INVOICES, {
        "type": "invoice.adjusted", "event_id": "e-2", "invoice_id": "inv-1", "amount": "80.00"}),
    "invoice.cancelled": (INVOICES, {
        "type": "invoice.cancelled", "event_id": "e-3", "invoice_id": "inv-1"}),
    "payment.applied": (PAYMENTS, {
        "type": "payment.applied", "event_id": "e-4", "invoice_id": "inv-1",
        "payment_id": "pay-1", "amount": "30.50", "currency": "USD"}),
    "payment.reversed": (PAYMENTS, {
        "type": "payment.reversed", "event_id": "e-5", "invoice_id": "inv-1",
        "payment_id": "pay-1", "amount": "30.50"}),
    "charge.failed": (PAYMENTS, {
        "type": "charge.failed", "event_id": "e-6", "invoice_id": "inv-1",
        "attempt": 2, "hard": False}),
    "request.completed": (REQUESTS, {
        "type": "request.completed", "event_id": "e-7", "invoice_id": "inv-1",
        "without_payment": True}),
    "clock.tick": (CLOCK, {"type": "clock.tick", "event_id": "e-8", "now": T0}),
    "invoice.updated": (INVOICES, {
        "type": "invoice.updated", "event_id": "e-9", "invoice_id": "inv-1", "due_at": T0,
        "overrides": {"suspend_at": T0, "delete_at": False, "reminder_every_days": 3}}),
    "collection.paused": (INVOICES, {
        "type": "collection.paused", "event_id": "e-10", "invoice_id": "inv-1",
        "reason": "promise_to_pay", "until": T0}),
    "collection.resumed": (INVOICES, {
        "type": "collection.resumed", "event_id": "e-11", "invoice_id": "inv-1"}),
}

REQUIRED = {
    "invoice.issued": ["type", "event_id", "invoice_id", "customer_id", "amount", "currency",
                       "issued_at"],
    "invoice.adjusted": ["type", "event_id", "invoice_id", "amount"],
    "invoice.cancelled": ["type", "event_id", "invoice_id"],
    "payment.applied": ["type", "event_id", "invoice_id", "payment_id", "amount", "currency"],
    "payment.reversed": ["type", "event_id", "invoice_id", "payment_id", "amount"],
    "charge.failed": ["type", "event_id", "invoice_id", "attempt", "hard"],
    "request.completed": ["type", "event_id", "invoice_id"],
    "clock.tick": ["type", "event_id", "now"],
    "invoice.updated": ["type", "event_id", "invoice_id"],
    "collection.paused": ["type", "event_id", "invoice_id", "reason"],
    "collection.resumed": ["type", "event_id", "invoice_id"],
}


def run(etype: str, value: bytes | None = None, **changes: Any) -> m.Event | m.DeadLetter:
    topic, record = VALID[etype]
    if value is None:
        value = orjson.dumps({**record, **changes})
    return decode(topic, record.get("invoice_id", "").encode() or None, value, 0, 0)


def error_of(result: m.Event | m.DeadLetter) -> str:
    assert isinstance(result, m.DeadLetter), f"expected a dead letter, got {result!r}"
    assert result.reason
    return result.error


# -- valid records ----------------------------------------------------------------------------


@pytest.mark.parametrize("etype", VALID)
def test_a_valid_record_decodes_to_its_event(etype: str) -> None:
    event = run(etype)
    assert isinstance(event, m.Event)
    assert event.type == etype
    assert event.event_id == VALID[etype][1]["event_id"]
    assert event.invoice_id == VALID[etype][1].get("invoice_id", "")


def test_issued_fields_and_defaults() -> None:
    e = run("invoice.issued")
    assert isinstance(e, m.InvoiceIssued)
    assert (e.customer_id, e.amount, e.currency, e.issued_at) == (
        "cust-1", Decimal("100.00"), "USD", EPOCH_T0)
    assert isinstance(e.amount, Decimal)
    assert (e.document, e.kind, e.origin) == ("invoice", "regular", "manual")
    assert (e.due_at, e.order_id, e.request_id, e.request_status) == (None, None, None, None)
    assert e.overrides == {}


def test_issued_with_every_optional_field() -> None:
    e = run("invoice.issued", customer_class="business", order_id="ord-1", reseller_id="res-1",
            product="domain_registration", document="debit_note", kind="out_of_turn",
            origin="system", due_at="2026-01-20T00:00:00Z", request_id="req-1",
            request_status="pending",
            overrides={"reminder_every_days": 4, "request_cancel_at": "2026-01-12T00:00:00Z",
                       "suspend_at": "2026-01-15T00:00:00Z",
                       "delete_at": "2026-01-30T00:00:00Z"})
    assert isinstance(e, m.InvoiceIssued)
    assert (e.customer_class, e.order_id, e.reseller_id, e.product) == (
        "business", "ord-1", "res-1", "domain_registration")
    assert (e.document, e.kind, e.origin) == ("debit_note", "out_of_turn", "system")
    assert e.due_at == EPOCH_T0 + 10 * 86_400
    assert (e.request_id, e.request_status) == ("req-1", "pending")
    assert e.overrides == {"reminder_every_days": 4,
                           "request_cancel_at": EPOCH_T0 + 2 * 86_400,
                           "suspend_at": EPOCH_T0 + 5 * 86_400,
                           "delete_at": EPOCH_T0 + 20 * 86_400}


def test_an_offset_is_converted_to_utc() -> None:
    e = run("clock.tick", now="2026-01-10T02:00:00+02:00")
    assert isinstance(e, m.ClockTick)
    assert e.now == EPOCH_T0
    e = run("clock.tick", now="2026-01-09T19:30:00-04:30")
    assert e.now == EPOCH_T0


def test_fractions_of_a_second_are_accepted() -> None:
    e = run("clock.tick", now="2026-01-10T00:00:00.250Z")
    assert isinstance(e, m.ClockTick)
    assert e.now == EPOCH_T0


def test_money_is_an_exact_decimal() -> None:
    e = run("payment.applied")
    assert isinstance(e, m.PaymentApplied)
    assert e.amount == Decimal("30.50")
    assert isinstance(e.amount, Decimal)
    assert (e.payment_id, e.currency) == ("pay-1", "USD")
    r = run("payment.reversed")
    assert isinstance(r, m.PaymentReversed)
    assert (r.payment_id, r.amount) == ("pay-1", Decimal("30.50"))
    a = run("invoice.adjusted")
    assert isinstance(a, m.InvoiceAdjusted)
    assert a.amount == Decimal("80.00")


@pytest.mark.parametrize(("amount", "currency"), [
    ("1000", "JPY"), ("1.5", "USD"), ("1.234", "KWD"), ("0.01", "EUR")])
def test_money_within_the_currency_places_is_accepted(amount: str, currency: str) -> None:
    e = run("payment.applied", amount=amount, currency=currency)
    assert isinstance(e, m.PaymentApplied)
    assert e.amount == Decimal(amount)


def test_charge_failed_and_request_completed_fields() -> None:
    e = run("charge.failed")
    assert isinstance(e, m.ChargeFailed)
    assert (e.attempt, e.hard) == (2, False)
    c = run("request.completed")
    assert isinstance(c, m.RequestCompleted)
    assert c.without_payment is True


def test_the_source_is_kept_on_the_event() -> None:
    value = orjson.dumps(VALID["payment.applied"][1])
    e = decode(PAYMENTS, b"k", value, 3, 99)
    assert isinstance(e, m.Event)
    assert e.source is not None
    assert (e.source.topic, e.source.key, e.source.value, e.source.partition,
            e.source.offset) == (PAYMENTS, b"k", value, 3, 99)


# -- malformed_json ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    b"not json", b'{"type": "clock.tick",', b"\xff\xfe{}", b'{"a": "\xc3\x28"}', b"[1, 2]",
    b'"a string"', b"42", b"null", b"",
], ids=["text", "truncated", "not_utf8", "bad_utf8_in_string", "array", "string", "number",
        "null", "empty"])
def test_malformed_json(value: bytes) -> None:
    assert error_of(decode(PAYMENTS, b"inv-1", value, 0, 0)) == "malformed_json"


# -- missing_field ----------------------------------------------------------------------------


@pytest.mark.parametrize(("etype", "name"),
                         [(t, f) for t, names in REQUIRED.items() for f in names])
def test_missing_field(etype: str, name: str) -> None:
    topic, record = VALID[etype]
    value = orjson.dumps({k: v for k, v in record.items() if k != name})
    assert error_of(decode(topic, b"inv-1", value, 0, 0)) == "missing_field"


def test_a_pending_request_needs_its_request_id() -> None:
    assert error_of(run("invoice.issued", request_status="pending")) == "missing_field"


# -- invalid_field ----------------------------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any]]] = [
    # money
    ("invoice.issued", {"amount": 100.0}),
    ("invoice.issued", {"amount": 100}),
    ("payment.applied", {"amount": 30.5}),
    ("invoice.issued", {"amount": "-1.00"}),
    ("payment.applied", {"amount": "-30.00"}),
    ("payment.reversed", {"amount": "-1.00"}),
    ("invoice.adjusted", {"amount": "-5.00"}),
    ("invoice.issued", {"amount": "1.001"}),
    ("payment.applied", {"amount": "1.001"}),
    ("invoice.issued", {"amount": "1.5", "currency": "JPY"}),
    ("payment.applied", {"amount": "1.5", "currency": "JPY"}),
    ("invoice.issued", {"amount": "1e3"}),
    ("invoice.issued", {"amount": "NaN"}),
    ("invoice.issued", {"amount": "Infinity"}),
    ("invoice.issued", {"amount": "1,000.00"}),
    ("invoice.issued", {"amount": ""}),
    ("invoice.issued", {"amount": " 1.00"}),
    ("payment.applied", {"amount": "0.00"}),
    # currency
    ("invoice.issued", {"currency": "XYZ"}),
    ("invoice.issued", {"currency": "usd"}),
    ("invoice.issued", {"currency": "US Dollar"}),
    ("payment.applied", {"currency": "ABC"}),
    ("invoice.issued", {"currency": 840}),
    # timestamps
    ("invoice.issued", {"issued_at": "2026-01-10T00:00:00"}),
    ("invoice.issued", {"issued_at": "2026-01-10"}),
    ("invoice.issued", {"issued_at": "yesterday"}),
    ("invoice.issued", {"issued_at": "2026-13-01T00:00:00Z"}),
    ("invoice.issued", {"issued_at": "2026-02-30T00:00:00Z"}),
    ("invoice.issued", {"issued_at": 1767225600}),
    ("invoice.issued", {"due_at": "not a date"}),
    ("clock.tick", {"now": "2026-01-10 00:00"}),
    ("clock.tick", {"now": "2026-01-10T00:00:00+0200"}),
    # enums
    ("invoice.issued", {"document": "receipt"}),
    ("invoice.issued", {"kind": "urgent"}),
    ("invoice.issued", {"origin": "robot"}),
    ("invoice.issued", {"request_status": "done", "request_id": "req-1"}),
    ("invoice.issued", {"document": "Invoice"}),
    # overrides
    ("invoice.issued", {"overrides": {"pay_by": "2026-01-10T00:00:00Z"}}),
    ("invoice.issued", {"overrides": {"suspend_after_days": 3}}),
    ("invoice.issued", {"overrides": {"suspend_at": "soon"}}),
    ("invoice.issued", {"overrides": {"reminder_every_days": 0}}),
    ("invoice.issued", {"overrides": {"reminder_every_days": "5"}}),
    ("invoice.issued", {"overrides": "none"}),
    # ids
    ("invoice.issued", {"invoice_id": 123}),
    ("invoice.issued", {"customer_id": 7}),
    ("invoice.issued", {"order_id": 5}),
    ("invoice.issued", {"event_id": ["e-1"]}),
    ("invoice.issued", {"invoice_id": ""}),
    ("payment.applied", {"payment_id": 1}),
    ("payment.reversed", {"payment_id": {"id": "p"}}),
    ("clock.tick", {"event_id": 8}),
    # charge.failed
    ("charge.failed", {"attempt": 0}),
    ("charge.failed", {"attempt": -1}),
    ("charge.failed", {"attempt": 1.5}),
    ("charge.failed", {"attempt": "1"}),
    ("charge.failed", {"attempt": True}),
    ("charge.failed", {"hard": "yes"}),
    ("charge.failed", {"hard": 1}),
    ("request.completed", {"without_payment": "no"}),
    # v1.1, validation at the edge (contract §2 "No record can stop the worker")
    # ids with control characters (PostgreSQL refuses NUL in text; C0, DEL and C1 in general)
    ("invoice.issued", {"invoice_id": "H-id-nul\u0000X"}),
    ("invoice.issued", {"customer_id": "c\u001f1"}),
    ("invoice.issued", {"order_id": "o\u007f1"}),
    ("invoice.issued", {"reseller_id": "r\u00851"}),
    ("invoice.issued", {"event_id": "e\n1"}),
    ("payment.applied", {"payment_id": "p\t1"}),
    ("clock.tick", {"event_id": "tick\u0000"}),
    # amounts in ASCII digits only
    ("invoice.issued", {"amount": "١٠٠.٠٠"}),  # Arabic-Indic
    ("payment.applied", {"amount": "３０.５０"}),  # full-width
    ("invoice.adjusted", {"amount": "८०.००"}),  # Devanagari
    # times in years 1970 to 9998, UTC, in ASCII digits
    ("invoice.issued", {"issued_at": "9999-12-31T23:59:59-01:00"}),  # year 10000 in UTC
    ("invoice.issued", {"issued_at": "9999-01-01T00:00:00Z"}),
    ("invoice.issued", {"issued_at": "1969-12-31T23:59:59Z"}),
    ("invoice.issued", {"issued_at": "1970-01-01T00:30:00+01:00"}),  # 1969 in UTC
    ("invoice.issued", {"issued_at": "٢٠٢٦-01-10T00:00:00Z"}),
    ("invoice.issued", {"issued_at": "2026-01-10T23:59:60Z"}),  # no leap seconds
    ("clock.tick", {"now": "9999-06-01T00:00:00Z"}),
    ("invoice.issued", {"overrides": {"delete_at": "9999-12-31T00:00:00Z"}}),
    # day counts and dates set on an invoice within 0 to 3 650 days of its issue
    ("invoice.issued", {"overrides": {"reminder_every_days": 1_000_000_000_000_000}}),
    ("invoice.issued", {"overrides": {"reminder_every_days": 3651}}),
    ("invoice.issued", {"due_at": "2026-01-09T23:59:59Z"}),  # before issued_at (T0)
    ("invoice.issued", {"overrides": {"suspend_at": "2026-01-09T00:00:00Z"}}),
    ("invoice.issued", {"overrides": {"delete_at": "2025-12-31T00:00:00Z"}}),
    ("invoice.issued", {"overrides": {"request_cancel_at": "2026-01-01T00:00:00Z"}}),
    ("invoice.issued", {"due_at": "2036-01-09T00:00:01Z"}),  # 3 650 days and a second
    ("invoice.issued", {"overrides": {"delete_at": "2040-01-01T00:00:00Z"}}),
    ("invoice.updated", {"due_at": "2026-13-01T00:00:00Z"}),
    ("invoice.updated", {"overrides": {"suspend_at": "soon"}}),
    ("invoice.updated", {"overrides": {"limit_at": T0}}),  # not a key overrides have
    ("invoice.updated", {"overrides": {"reminder_every_days": 0}}),
    ("invoice.updated", {"overrides": {"reminder_every_days": 3651}}),
    ("invoice.updated", {"overrides": []}),
    ("collection.paused", {"reason": "holiday"}),
    ("collection.paused", {"until": "tomorrow"}),
    ("collection.resumed", {"invoice_id": 7}),
]


@pytest.mark.parametrize(("etype", "changes"), INVALID,
                         ids=[f"{t}-{'-'.join(c)}-{i}" for i, (t, c) in enumerate(INVALID)])
def test_invalid_field(etype: str, changes: dict[str, Any]) -> None:
    assert error_of(run(etype, **changes)) == "invalid_field"


# -- unknown_type -----------------------------------------------------------------------------


@pytest.mark.parametrize("etype", ["invoice.deleted", "payment.refunded", "INVOICE.ISSUED", "",
                                   42])
def test_unknown_type(etype: Any) -> None:
    assert error_of(run("invoice.issued", type=etype)) == "unknown_type"


@pytest.mark.parametrize(("etype", "topic"), [
    ("payment.applied", INVOICES), ("invoice.issued", PAYMENTS), ("clock.tick", INVOICES),
    ("request.completed", PAYMENTS), ("invoice.cancelled", CLOCK), ("charge.failed", REQUESTS),
    ("invoice.updated", PAYMENTS), ("collection.paused", REQUESTS), ("collection.resumed", CLOCK),
])
def test_a_known_type_on_the_wrong_topic_is_unknown_type(etype: str, topic: str) -> None:
    value = orjson.dumps(VALID[etype][1])
    assert error_of(decode(topic, b"inv-1", value, 0, 0)) == "unknown_type"


# -- too_large --------------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    value = orjson.dumps(VALID["payment.applied"][1])
    return value + b" " * (size - len(value))


def test_a_record_over_the_limit_is_too_large() -> None:
    assert error_of(decode(PAYMENTS, b"inv-1", _padded(MAX_RECORD_BYTES + 1), 0, 0)) == (
        "too_large")


def test_a_megabyte_record_is_too_large() -> None:
    assert error_of(decode(PAYMENTS, b"inv-1", _padded(1 << 20), 0, 0)) == "too_large"


def test_a_record_at_the_limit_is_accepted() -> None:
    assert isinstance(decode(PAYMENTS, b"inv-1", _padded(MAX_RECORD_BYTES), 0, 0),
                      m.PaymentApplied)


def test_a_large_record_that_is_not_json_is_too_large_not_malformed() -> None:
    assert error_of(decode(PAYMENTS, None, b"x" * (MAX_RECORD_BYTES + 1), 0, 0)) == "too_large"


# -- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"someone-else", None, b""], ids=["other", "none", "empty"])
def test_a_record_keyed_otherwise_is_processed_by_its_invoice_id(key: bytes | None) -> None:
    d = Driver("[defaults]\nterms_days = 30\nsuspend_after_days = 15\n")
    d.tick("2026-01-01")
    issue = {"type": "invoice.issued", "event_id": "e-1", "invoice_id": "inv-1",
             "customer_id": "cust-1", "amount": "100.00", "currency": "USD",
             "issued_at": "2026-01-01T00:00:00Z"}
    pay = {"type": "payment.applied", "event_id": "e-2", "invoice_id": "inv-1",
           "payment_id": "pay-1", "amount": "40.00", "currency": "USD"}
    assert d.send(orjson.dumps(issue), topic=INVOICES, key=key).outcome == "applied"
    assert d.send(orjson.dumps(pay), topic=PAYMENTS, key=key).outcome == "applied"
    assert d.dead == []
    last = d.of("invoice.status", invoice_id="inv-1")[-1]
    assert (last["status"], last["amount_paid"]) == ("partially_paid", "40.00")
    d.tick("2026-02-15")
    assert len(d.of("service.suspend")) == 1


# -- v1.1: the edge keeps what it rejects exactly ---------------------------------------------


def test_dates_on_the_edge_of_their_range_are_accepted() -> None:
    e = run("invoice.issued", due_at=T0, overrides={
        "reminder_every_days": 3650, "suspend_at": T0,
        "delete_at": "2036-01-08T00:00:00Z"})  # 3 650 days after T0
    assert isinstance(e, m.InvoiceIssued)
    assert e.due_at == EPOCH_T0 and e.overrides["delete_at"] == EPOCH_T0 + 3650 * 86_400
    tick = run("clock.tick", now="9998-12-31T23:59:59Z")
    assert isinstance(tick, m.ClockTick)
    assert isinstance(run("clock.tick", now="1970-01-01T00:00:00Z"), m.ClockTick)


def test_a_type_that_is_not_a_string_is_an_unknown_type() -> None:
    for etype in (["invoice.issued"], {"name": "invoice.issued"}, None):
        value = orjson.dumps({**VALID["invoice.issued"][1], "type": etype})
        want = "missing_field" if etype is None else "unknown_type"
        assert error_of(decode(INVOICES, b"inv-1", value)) == want


def test_a_tombstone_is_dead_lettered_with_its_null_value() -> None:
    dead = decode(INVOICES, b"inv-1", None, 2, 9)
    assert isinstance(dead, m.DeadLetter) and dead.error == "malformed_json"
    assert "tombstone" in dead.reason
    assert (dead.source.key, dead.source.value, dead.source.partition, dead.source.offset) == (
        b"inv-1", None, 2, 9)


def test_the_producers_headers_are_kept_with_the_record() -> None:
    headers = [("trace-id", b"abc"), ("trace-id", b"def"), ("bin", b"\x00\xff")]
    value = orjson.dumps({**VALID["payment.applied"][1], "amount": "١٠٠.٠٠"})
    dead = decode(PAYMENTS, b"inv-1", value, 0, 1, headers)
    assert isinstance(dead, m.DeadLetter)
    assert dead.source.headers == tuple(headers)
    event = run("payment.applied")
    assert isinstance(event, m.Event) and event.source is not None
    assert event.source.headers == ()


def test_a_tick_is_confirmed_past_the_clock_guard_only_by_its_header() -> None:
    value = orjson.dumps(VALID["clock.tick"][1])
    plain = decode(CLOCK, None, value)
    confirmed = decode(CLOCK, None, value, 0, 0, [("dunning.confirm", b"jump")])
    other = decode(CLOCK, None, value, 0, 0, [("dunning.confirm", b"yes")])
    assert isinstance(plain, m.ClockTick) and not plain.confirmed
    assert isinstance(confirmed, m.ClockTick) and confirmed.confirmed
    assert isinstance(other, m.ClockTick) and not other.confirmed


def test_operator_controls_decode_to_their_events() -> None:
    updated = run("invoice.updated")
    assert isinstance(updated, m.InvoiceUpdated)
    assert (updated.due_at, updated.overrides) == (
        EPOCH_T0, {"suspend_at": EPOCH_T0, "delete_at": False, "reminder_every_days": 3})
    # The dates are checked against the invoice by the rules: the edge does not know it.
    assert isinstance(run("invoice.updated", due_at="1999-01-01T00:00:00Z"), m.InvoiceUpdated)
    assert run("invoice.updated", due_at=None, overrides=None) == m.InvoiceUpdated(
        type="invoice.updated", event_id="e-9", invoice_id="inv-1")
    paused = run("collection.paused", until=None)
    assert isinstance(paused, m.CollectionPaused)
    assert (paused.reason, paused.until) == ("promise_to_pay", None)
    assert isinstance(run("collection.paused"), m.CollectionPaused)
    assert run("collection.paused").until == EPOCH_T0  # type: ignore[union-attr]
    assert isinstance(run("collection.resumed"), m.CollectionResumed)
