"""Contract §2 rule 15 at the engine: duplicates, early arrivals, orphans, odd events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from dunning.streams.codec import feed
from tests.driver import Driver

POLICY = """
[defaults]
terms_days = 30
auto_charge = "on_issue"
charge_retry_days = [3]
reminder_every_days = 7
suspend_after_days = 15
delete_after_days = 60
request_cancel_after_days = 9
"""

ISSUE = {"type": "invoice.issued", "invoice_id": "inv-1", "customer_id": "cust-1",
         "amount": "100.00", "currency": "USD", "issued_at": "2026-01-01T00:00:00Z"}
PENDING = {**ISSUE, "origin": "system", "request_id": "req-1", "request_status": "pending"}


def pay_record(amount: str = "30.00", payment_id: str = "pay-1", **fields: Any) -> dict:
    return {"type": "payment.applied", "invoice_id": "inv-1", "payment_id": payment_id,
            "amount": amount, "currency": "USD", **fields}


def started(issue: dict[str, Any] = ISSUE) -> Driver:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.send(dict(issue))
    return d


# -- duplicates -------------------------------------------------------------------------------


def _dup_issued(d: Driver) -> dict:
    return {**ISSUE, "event_id": "e-issue"}


def _dup_adjusted(d: Driver) -> dict:
    d.send(dict(ISSUE))
    d.send(pay_record("80.00"))
    return {"type": "invoice.adjusted", "invoice_id": "inv-1", "amount": "80.00",
            "event_id": "e-adj"}


def _dup_cancelled(d: Driver) -> dict:
    d.send(dict(ISSUE))
    return {"type": "invoice.cancelled", "invoice_id": "inv-1", "event_id": "e-cancel"}


def _dup_applied(d: Driver) -> dict:
    d.send(dict(ISSUE))
    return pay_record(event_id="e-pay")


def _dup_reversed(d: Driver) -> dict:
    d.send(dict(ISSUE))
    d.send(pay_record("100.00"))
    return {"type": "payment.reversed", "invoice_id": "inv-1", "payment_id": "pay-1",
            "amount": "40.00", "event_id": "e-rev"}


def _dup_charge_failed(d: Driver) -> dict:
    d.send(dict(ISSUE))
    assert d.of("charge.request")
    return {"type": "charge.failed", "invoice_id": "inv-1", "attempt": 1, "hard": True,
            "event_id": "e-fail"}


def _dup_completed(d: Driver) -> dict:
    d.send(dict(PENDING))
    return {"type": "request.completed", "invoice_id": "inv-1", "event_id": "e-done"}


DUPLICATES: dict[str, Callable[[Driver], dict]] = {
    "invoice.issued": _dup_issued,
    "invoice.adjusted": _dup_adjusted,
    "invoice.cancelled": _dup_cancelled,
    "payment.applied": _dup_applied,
    "payment.reversed": _dup_reversed,
    "charge.failed": _dup_charge_failed,
    "request.completed": _dup_completed,
}


@pytest.mark.parametrize("setup", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_a_redelivered_event_is_a_duplicate(setup: Callable[[Driver], dict]) -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    record = setup(d)
    first = d.send(dict(record))
    assert first.outcome == "applied"
    assert first.commands or record["type"] == "request.completed"
    again = d.send(dict(record))
    assert again.outcome == "duplicate"
    assert again.commands == []
    assert again.dead_letters == []


def test_a_redelivered_reversal_is_counted_once() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    rev = _dup_reversed(d)
    d.send(dict(rev))
    d.send(dict(rev))
    d.send(pay_record("40.00", "pay-2"))
    last = d.of("invoice.status")[-1]
    assert (last["status"], last["amount_paid"]) == ("paid", "100.00")


def test_a_redelivered_tick_sends_nothing_again() -> None:
    d = started()
    assert d.types(d.tick("2026-01-08", event_id="t-8")) == ["notify.reminder"]
    again = d.tick("2026-01-08", event_id="t-8")
    assert again.commands == []
    assert again.dead_letters == []


def test_the_same_payment_id_is_counted_once() -> None:
    d = started()
    d.pay(amount="60.00", payment_id="pay-1")
    again = d.pay(amount="60.00", payment_id="pay-1")
    assert again.outcome == "duplicate"
    assert again.commands == []
    assert d.of("invoice.status")[-1]["amount_paid"] == "60.00"
    d.pay(amount="40.00", payment_id="pay-2")
    assert d.statuses()[-1] == "paid"


# -- early arrivals and orphans ---------------------------------------------------------------


def test_a_payment_before_its_invoice_is_held_then_applied() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    r = d.send(pay_record("30.00"))
    assert r.outcome == "held"
    assert r.commands == []
    assert r.dead_letters == []
    d.send(dict(ISSUE))
    last = d.of("invoice.status")[-1]
    assert (last["status"], last["amount_due"], last["amount_paid"]) == (
        "partially_paid", "70.00", "30.00")


def test_a_full_payment_before_its_invoice_leaves_nothing_to_collect() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    assert d.send(pay_record("100.00")).outcome == "held"
    d.send(dict(ISSUE))
    assert d.statuses()[-1] == "paid"
    mark = len(d.log)
    d.tick("2027-01-01")
    assert d.log[mark:] == []


def test_held_payments_and_reversal_apply_in_arrival_order() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.send(pay_record("50.00", "pay-1"))
    d.send({"type": "payment.reversed", "invoice_id": "inv-1", "payment_id": "pay-1",
            "amount": "20.00"})
    d.send(dict(ISSUE))
    assert d.dead == []
    assert d.statuses()[-1] == "partially_paid"
    d.send(pay_record("70.00", "pay-2"))
    last = d.of("invoice.status")[-1]
    assert (last["status"], last["amount_paid"]) == ("paid", "100.00")


def test_a_held_payment_ends_request_cancellation() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.send(pay_record("1.00"))
    d.send(dict(PENDING))
    d.ticks("2026-01-02", "2026-01-15")
    assert d.of("request.cancel") == []
    assert d.statuses()[-1] != "cancelled"


def test_request_completed_before_its_invoice_is_held_then_applied() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    r = d.complete_request()
    assert r.outcome == "held"
    d.send(dict(PENDING))
    d.ticks("2026-01-02", "2026-01-15")
    assert d.of("request.cancel") == []
    assert d.of("notify.reminder")  # collection started: the request is no longer pending


def test_a_payment_orphaned_for_seven_days_is_dead_lettered() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01T12:00:00Z")
    raw = orjson.dumps({**pay_record(), "event_id": "e-orphan"})
    assert d.send(raw, topic="billing.payments", key=b"inv-1").outcome == "held"
    r = d.tick("2026-01-08T11:00:00Z")  # 6 days 23 hours
    assert r.dead_letters == []
    r = d.tick("2026-01-08T12:00:00Z")
    (dead,) = r.dead_letters
    assert dead.error == "orphan"
    assert dead.reason
    assert (dead.source.topic, dead.source.key, dead.source.value) == (
        "billing.payments", b"inv-1", raw)
    assert d.tick("2026-01-20").dead_letters == []
    d.send(dict(ISSUE, issued_at="2026-01-20T00:00:00Z"))
    assert d.statuses() == ["unpaid"]


def test_a_request_completed_orphaned_for_seven_days_is_dead_lettered() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.complete_request()
    assert d.tick("2026-01-07T23:00:00Z").dead_letters == []
    (dead,) = d.tick("2026-01-08").dead_letters
    assert dead.error == "orphan"


def test_a_redelivered_held_payment_is_a_duplicate_and_counted_once() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    record = pay_record("30.00", event_id="e-early")
    assert d.send(dict(record)).outcome == "held"
    assert d.send(dict(record)).outcome == "duplicate"
    d.send(dict(ISSUE))
    d.send(pay_record("70.00", "pay-2"))
    last = d.of("invoice.status")[-1]
    assert (last["status"], last["amount_paid"]) == ("paid", "100.00")


def test_an_orphan_held_before_the_first_tick_waits_seven_days_from_it() -> None:
    d = Driver(POLICY)
    assert d.send(pay_record()).outcome == "held"
    d.tick("2026-03-01")
    assert d.tick("2026-03-07T23:00:00Z").dead_letters == []
    assert [x.error for x in d.tick("2026-03-08").dead_letters] == ["orphan"]


def test_each_orphan_expires_seven_days_after_it_arrived() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.send(pay_record("10.00", "pay-1"))
    d.tick("2026-01-03")
    d.send(pay_record("20.00", "pay-2"))
    assert len(d.tick("2026-01-08").dead_letters) == 1
    assert d.tick("2026-01-09T23:00:00Z").dead_letters == []
    (dead,) = d.tick("2026-01-10").dead_letters
    assert orjson.loads(dead.source.value)["payment_id"] == "pay-2"


def test_a_held_event_is_not_dead_lettered_once_its_invoice_arrives() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.send(pay_record())
    d.tick("2026-01-05")
    d.send(dict(ISSUE))
    d.tick("2026-01-20")
    assert d.dead == []


# -- odd events -------------------------------------------------------------------------------


CANCELLED_EVENTS = {
    "payment.applied": lambda d: d.pay(amount="100.00"),
    "invoice.adjusted": lambda d: d.adjust("50.00"),
    "request.completed": lambda d: d.complete_request(),
    "charge.failed": lambda d: d.charge_failed(1, hard=True),
    "invoice.cancelled": lambda d: d.cancel(),
}


@pytest.mark.parametrize("event", CANCELLED_EVENTS.values(), ids=CANCELLED_EVENTS.keys())
def test_events_for_a_cancelled_invoice_are_ignored(event: Callable[[Driver], Any]) -> None:
    d = started(PENDING)
    d.cancel()
    r = event(d)
    assert r.outcome == "ignored"
    assert r.commands == []
    assert r.dead_letters == []
    assert d.statuses() == ["unpaid", "cancelled"]


def test_a_payment_in_another_currency_is_dead_lettered() -> None:
    d = started()
    r = d.pay(amount="30.00", currency="EUR")
    assert r.outcome == "dead_lettered"
    assert r.commands == []
    (dead,) = r.dead_letters
    assert dead.error == "currency_mismatch"
    assert d.statuses() == ["unpaid"]


def test_a_held_payment_in_another_currency_is_dead_lettered_when_the_invoice_comes() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.pay(amount="30.00", currency="EUR")
    r = d.send(dict(ISSUE))
    assert [x.error for x in r.dead_letters] == ["currency_mismatch"]
    assert d.statuses() == ["unpaid"]


def test_a_reversal_of_an_unknown_payment_is_dead_lettered() -> None:
    d = started()
    d.pay(amount="30.00", payment_id="pay-1")
    r = d.reverse("pay-404", "30.00")
    assert r.outcome == "dead_lettered"
    (dead,) = r.dead_letters
    assert dead.error == "invalid_field"
    assert d.of("invoice.status")[-1]["amount_paid"] == "30.00"


def test_a_reversal_of_more_than_was_paid_is_dead_lettered() -> None:
    d = started()
    d.pay(amount="30.00", payment_id="pay-1")
    r = d.reverse("pay-1", "30.01")
    assert [x.error for x in r.dead_letters] == ["invalid_field"]
    assert d.of("invoice.status")[-1]["amount_paid"] == "30.00"


def test_a_second_issue_of_an_invoice_is_dead_lettered() -> None:
    d = started()
    r = d.send({**ISSUE, "amount": "5.00"})
    assert [x.error for x in r.dead_letters] == ["invalid_field"]
    assert r.commands == []


def test_a_dead_letter_keeps_the_original_record_and_where_it_came_from() -> None:
    d = started()
    raw = b'{"type":"payment.applied","event_id":"e-x","invoice_id":"inv-1",' \
          b'"payment_id":"p-x","amount":"1.00","currency":"EUR"}'
    r = feed(d.engine, "billing.payments", b"some-key", raw, 5, 4242)
    (dead,) = r.dead_letters
    assert dead.error == "currency_mismatch"
    src = dead.source
    assert (src.topic, src.partition, src.offset, src.key, src.value) == (
        "billing.payments", 5, 4242, b"some-key", raw)


def test_an_undecodable_record_keeps_its_bytes_and_origin() -> None:
    d = started()
    r = feed(d.engine, "billing.payments", None, b"\xff not json", 2, 17)
    assert r.outcome == "dead_lettered"
    (dead,) = r.dead_letters
    assert dead.error == "malformed_json"
    assert (dead.source.topic, dead.source.partition, dead.source.offset, dead.source.key,
            dead.source.value) == ("billing.payments", 2, 17, None, b"\xff not json")


def test_bad_input_does_not_stop_the_engine() -> None:
    d = started()
    d.send(b"garbage", topic="billing.payments")
    d.send({"type": "payment.applied", "invoice_id": "inv-1"})
    d.pay(amount="100.00")
    assert d.statuses() == ["unpaid", "paid"]
    assert [x.error for x in d.dead] == ["malformed_json", "missing_field"]
