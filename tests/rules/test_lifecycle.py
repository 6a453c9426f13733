"""Contract §2 rules 12-14 and jumps in logical time.

Request cancellation with REQUEST_POLICY: an invoice issued 2026-01-01 is cancelled on 01-10.
"""

from __future__ import annotations

from typing import Any

import pytest

from dunning.streams.topics import PROVISIONING
from tests.driver import Driver

REQUEST_POLICY = """
[defaults]
terms_days = 30
suspend_after_days = 15
delete_after_days = 60
request_cancel_after_days = 9
"""

CANCEL_TYPES = ("request.cancel", "invoice.cancel", "notify.request_cancelled")


def pending(d: Driver, invoice_id: str = "inv-1", **fields: Any) -> None:
    fields.setdefault("origin", "system")
    d.issue(invoice_id, request_id=f"req-{invoice_id}", request_status="pending", **fields)


def cancelled_request(d: Driver) -> bool:
    return any(t in CANCEL_TYPES for t in d.types())


def provisioning_types(d: Driver, since: int = 0) -> list[str]:
    return [c.value["type"] for c in d.log[since:] if c.topic == PROVISIONING]


# -- rule 12: request cancellation ------------------------------------------------------------


def test_request_is_cancelled_at_issued_plus_days() -> None:
    d = Driver(REQUEST_POLICY)
    d.tick("2026-01-01")
    pending(d)
    d.tick("2026-01-09")
    assert not cancelled_request(d)
    r = d.tick("2026-01-10")
    assert set(CANCEL_TYPES) <= set(d.types(r))
    (cmd,) = d.of("request.cancel")
    assert cmd["request_id"] == "req-inv-1"
    assert cmd["invoice_id"] == "inv-1"
    assert d.of("invoice.cancel")[0]["invoice_id"] == "inv-1"
    assert d.statuses() == ["unpaid", "cancelled"]


def test_request_cancel_at_override_wins() -> None:
    d = Driver(REQUEST_POLICY)
    d.tick("2026-01-01")
    pending(d, overrides={"request_cancel_at": "2026-01-04"})
    d.tick("2026-01-03")
    assert not cancelled_request(d)
    d.tick("2026-01-04")
    assert len(d.of("request.cancel")) == 1


def test_cancelled_request_invoice_is_never_collected() -> None:
    d = Driver(REQUEST_POLICY)
    d.tick("2026-01-01")
    pending(d)
    d.tick("2026-01-10")
    mark = len(d.log)
    d.tick("2027-01-01")
    assert d.log[mark:] == []


@pytest.mark.parametrize("origin", [{"origin": "manual"}, {}], ids=["manual", "default"])
def test_manual_invoice_request_is_never_cancelled(origin: dict[str, str]) -> None:
    d = Driver(REQUEST_POLICY)
    d.tick("2026-01-01")
    d.issue(request_id="req-1", request_status="pending", **origin)
    d.ticks("2026-01-02", "2026-01-20")
    assert not cancelled_request(d)
    assert d.statuses() == ["unpaid"]


@pytest.mark.parametrize("fields", [
    {},
    {"request_id": "req-1", "request_status": "completed"},
], ids=["no_request", "completed_request"])
def test_system_invoice_without_pending_request_is_never_cancelled(fields: dict) -> None:
    d = Driver(REQUEST_POLICY)
    d.tick("2026-01-01")
    d.issue(origin="system", **fields)
    d.ticks("2026-01-02", "2026-01-20")
    assert not cancelled_request(d)


def test_partial_payment_removes_request_cancellation_for_good() -> None:
    d = Driver(REQUEST_POLICY)
    d.tick("2026-01-01")
    pending(d)
    d.pay(amount="10.00", payment_id="pay-1")
    d.tick("2026-01-05")
    d.reverse("pay-1", "10.00")
    d.ticks("2026-01-06", "2026-01-20")
    assert not cancelled_request(d)


@pytest.mark.parametrize("without_payment", [False, True])
def test_request_completed_removes_request_cancellation(without_payment: bool) -> None:
    d = Driver(REQUEST_POLICY)
    d.tick("2026-01-01")
    pending(d)
    d.tick("2026-01-05")
    d.complete_request(without_payment=without_payment)
    d.ticks("2026-01-06", "2026-01-20")
    assert not cancelled_request(d)


def test_request_cancelled_notice_is_sent_while_the_request_is_pending() -> None:
    d = Driver(REQUEST_POLICY)
    d.tick("2026-01-01")
    pending(d)
    d.tick("2026-01-10")
    (notice,) = d.of("notify.request_cancelled")
    assert notice["customer_id"] == "cust-1"
    assert notice["currency"] == "USD"


# -- rule 13: debit notes ---------------------------------------------------------------------

EVERYTHING_ON = """
[defaults]
terms_days = 30
due_soon_days = [3, 1]
reminder_every_days = false
late_fee = "5.00"
limit_after_days = 1
suspend_after_days = 15
delete_after_days = 60
request_cancel_after_days = 9
notify_reseller = true

[debit_note]
reminder_every_days = 5
"""

ONLY_REMINDERS = {"notify.reminder", "invoice.status"}


def test_debit_note_reminds_every_five_days() -> None:
    d = Driver(EVERYTHING_ON)
    d.tick("2026-01-01")
    d.issue(document="debit_note")
    d.tick("2026-01-05")
    assert d.of("notify.reminder") == []
    d.tick("2026-01-06")
    assert len(d.of("notify.reminder")) == 1
    d.ticks("2026-01-07", "2026-01-10")
    assert len(d.of("notify.reminder")) == 1
    d.tick("2026-01-11")
    assert len(d.of("notify.reminder")) == 2


def test_debit_note_reminders_stop_when_paid() -> None:
    d = Driver(EVERYTHING_ON)
    d.tick("2026-01-01")
    d.issue(document="debit_note")
    d.tick("2026-01-06")
    d.pay(amount="100.00")
    d.ticks("2026-01-07", "2026-03-01")
    assert len(d.of("notify.reminder")) == 1


def test_debit_note_gets_nothing_but_reminders() -> None:
    d = Driver(EVERYTHING_ON)
    d.tick("2026-01-01")
    d.issue(document="debit_note", order_id="ord-1", reseller_id="res-1")
    d.ticks("2026-01-02", "2026-06-01")
    assert set(d.types(audience=None)) == ONLY_REMINDERS
    assert len(d.of("notify.reminder")) > 20


def test_debit_note_ignores_enforcement_overrides() -> None:
    d = Driver(EVERYTHING_ON)
    d.tick("2026-01-01")
    d.issue(document="debit_note",
            overrides={"suspend_at": "2026-01-03", "delete_at": "2026-01-04"})
    d.ticks("2026-01-02", "2026-06-01")
    assert set(d.types(audience=None)) == ONLY_REMINDERS


def test_system_debit_note_with_pending_request_is_not_cancelled() -> None:
    d = Driver(EVERYTHING_ON)
    d.tick("2026-01-01")
    pending(d, document="debit_note")
    d.ticks("2026-01-02", "2026-06-01")
    assert not cancelled_request(d)
    assert provisioning_types(d) == []


def test_debit_note_reminder_override_wins() -> None:
    d = Driver(EVERYTHING_ON)
    d.tick("2026-01-01")
    d.issue(document="debit_note", overrides={"reminder_every_days": 2})
    d.tick("2026-01-02")
    assert d.of("notify.reminder") == []
    d.tick("2026-01-03")
    assert len(d.of("notify.reminder")) == 1


# -- rule 14: reversals, adjustments, cancellation -------------------------------------------

POLICY = """
[defaults]
terms_days = 30
suspend_after_days = 15
delete_after_days = 60
"""


def _last_status(d: Driver) -> dict[str, Any]:
    return d.of("invoice.status")[-1]


def test_reversal_reopens_a_paid_invoice() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.pay(amount="100.00", payment_id="pay-1")
    d.tick("2026-01-10")
    d.reverse("pay-1", "100.00")
    assert d.statuses() == ["unpaid", "paid", "unpaid"]
    assert _last_status(d)["amount_due"] == "100.00"
    assert _last_status(d)["amount_paid"] == "0.00"


def test_partial_reversal_leaves_the_invoice_partially_paid() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.pay(amount="100.00", payment_id="pay-1")
    d.reverse("pay-1", "30.00")
    assert d.statuses() == ["unpaid", "paid", "partially_paid"]
    assert _last_status(d)["amount_due"] == "30.00"


def test_paid_before_suspension_reversed_after_it_suspends_on_the_next_tick() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-01-20")
    d.pay(amount="100.00", payment_id="pay-1")
    d.tick("2026-02-20")
    assert provisioning_types(d) == []
    r = d.reverse("pay-1", "100.00")
    assert "service.suspend" not in d.types(r)  # time-driven: fires on a tick
    assert d.statuses()[-1] == "overdue"
    r = d.tick("2026-02-21")
    assert provisioning_types(d) == ["service.suspend"]
    assert "notify.suspended" in d.types(r)


def test_reversal_after_a_restore_suspends_again() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-02-15")
    d.pay(amount="100.00", payment_id="pay-1")
    d.reverse("pay-1", "100.00")
    d.tick("2026-02-16")
    assert provisioning_types(d) == ["service.suspend", "service.unsuspend", "service.suspend"]
    first, second = d.of("service.suspend")
    assert first["command_id"] != second["command_id"]  # a new hold, not a redelivery


def test_reversal_after_the_deletion_date_deletes() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-01-20")
    d.pay(amount="100.00", payment_id="pay-1")
    d.tick("2026-05-01")
    d.reverse("pay-1", "100.00")
    d.tick("2026-05-02")
    assert provisioning_types(d) == ["service.suspend", "service.delete"]


def test_adjusting_down_to_the_paid_amount_pays_and_restores() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.pay(amount="60.00")
    d.tick("2026-02-15")
    r = d.adjust("60.00")
    assert d.statuses()[-1] == "paid"
    assert {"service.unsuspend", "notify.unsuspended"} <= set(d.types(r))


def test_adjusting_down_before_suspension_prevents_it() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.pay(amount="60.00")
    d.adjust("60.00")
    d.tick("2027-01-01")
    assert provisioning_types(d) == []


def test_adjusting_up_reopens_a_paid_invoice() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.pay(amount="100.00")
    d.adjust("120.00")
    assert d.statuses() == ["unpaid", "paid", "partially_paid"]
    assert _last_status(d)["amount_due"] == "20.00"
    d.tick("2026-02-14")
    assert provisioning_types(d) == []
    d.tick("2026-02-15")
    assert provisioning_types(d) == ["service.suspend"]


def test_cancellation_stops_everything() -> None:
    d = Driver(POLICY + "due_soon_days = [3]\nreminder_every_days = 2\nlate_fee = \"5.00\"\n")
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    r = d.cancel()
    assert d.statuses() == ["unpaid", "cancelled"]
    assert d.types(r) == ["invoice.status"]
    mark = len(d.log)
    d.ticks("2026-01-02", "2026-01-10")
    d.tick("2027-01-01")
    assert d.log[mark:] == []


def test_cancellation_after_suspension_releases_and_stops_deletion() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-02-15")
    d.cancel()
    d.tick("2027-01-01")
    assert provisioning_types(d) == ["service.suspend", "service.unsuspend"]
    assert d.statuses()[-1] == "cancelled"


# -- jumps in logical time --------------------------------------------------------------------

STAGES = """
[defaults]
terms_days = 30
due_soon_days = [3]
reminder_every_days = 7
late_fee = "5.00"
late_fee_after_days = 2
limit_after_days = 5
suspend_after_days = 15
delete_after_days = 60
"""

# issued 01-01: due-soon 01-28, overdue 01-31, fee 02-02, limit 02-05, suspend 02-15, delete 04-01
# (a jump past due_at drops the due-soon notice: it is sent only before due, v1.1)
IN_TIME_ORDER = [
    "invoice.status",
    "notify.overdue",
    "invoice.late_fee",
    "notify.late_fee",
    "service.limit",
    "notify.limited",
    "service.suspend",
    "notify.suspended",
    "service.delete",
    "notify.deleted",
]


def _one_shots(d: Driver, result: Any = None) -> list[str]:
    return [t for t in d.types(result) if t != "notify.reminder"]


def test_one_jump_fires_each_one_shot_once_in_time_order() -> None:
    d = Driver(STAGES)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    r = d.tick("2026-06-01")
    assert _one_shots(d, r) == IN_TIME_ORDER
    assert d.types(r).count("notify.reminder") == 1
    assert {c.value["issued_at"] for c in r.commands} == {"2026-06-01T00:00:00Z"}
    assert _one_shots(d, d.tick("2026-12-01")) == []
    assert d.statuses() == ["unpaid", "overdue"]


def test_one_jump_gives_the_one_shots_of_daily_ticks() -> None:
    daily, jump = Driver(STAGES), Driver(STAGES)
    for d in (daily, jump):
        d.tick("2026-01-01")
        d.issue(order_id="ord-1")
    daily.ticks("2026-01-02", "2026-06-01")
    jump.tick("2026-06-01")
    # The due-soon notice goes only before due (v1.1): the daily ticks send it, the jump not.
    assert [t for t in _one_shots(daily) if t != "notify.due_soon"] == _one_shots(jump)
    assert (daily.types().count("notify.due_soon"), jump.types().count("notify.due_soon")) == (
        1, 0)


def test_jump_across_two_invoices_of_one_order_keeps_time_order() -> None:
    policy = "[defaults]\nterms_days = 30\n[product.lim]\nlimit_after_days = 1\n"
    daily, jump = Driver(policy), Driver(policy)
    for d in (daily, jump):
        d.tick("2026-01-01")
        # inv-a: limit 02-01, delete 02-20; inv-b: suspend 02-10. One order.
        d.issue("inv-a", order_id="ord-1", product="lim", overrides={"delete_at": "2026-02-20"})
        d.issue("inv-b", order_id="ord-1", overrides={"suspend_at": "2026-02-10"})
    daily.ticks("2026-01-02", "2026-03-01")
    jump.tick("2026-03-01")
    expected = ["service.limit", "service.suspend", "service.delete"]
    assert provisioning_types(daily) == expected
    assert provisioning_types(jump) == expected


def test_jump_across_two_invoices_keeps_an_earlier_limit() -> None:
    policy = "[defaults]\nterms_days = 30\n[product.lim]\nlimit_after_days = 5\n"
    daily, jump = Driver(policy), Driver(policy)
    for d in (daily, jump):
        d.tick("2026-01-01")
        d.issue("inv-a", order_id="ord-1", overrides={"suspend_at": "2026-02-10"})
        d.issue("inv-b", order_id="ord-1", product="lim")  # limit 02-05
    daily.ticks("2026-01-02", "2026-03-01")
    jump.tick("2026-03-01")
    assert provisioning_types(daily) == ["service.limit", "service.suspend"]
    assert provisioning_types(jump) == ["service.limit", "service.suspend"]


def test_a_reminder_fires_at_most_once_per_tick() -> None:
    d = Driver("[defaults]\nterms_days = 30\nreminder_every_days = 2\n")
    d.tick("2026-01-01")
    d.issue()
    r = d.tick("2026-01-11")  # slots 01-03, 05, 07, 09, 11 all passed
    assert d.types(r).count("notify.reminder") == 1
    assert d.of("notify.reminder")[-1]["issued_at"] == "2026-01-11T00:00:00Z"
    assert d.types(d.tick("2026-01-12")).count("notify.reminder") == 0
    assert d.types(d.tick("2026-01-13")).count("notify.reminder") == 1


def test_reminders_every_n_days_from_issue() -> None:
    d = Driver("[defaults]\nterms_days = 30\nreminder_every_days = 3\n")
    d.tick("2026-01-01")
    d.issue()
    got = [day for day in range(2, 12)
           if "notify.reminder" in d.types(d.tick(f"2026-01-{day:02d}"))]
    assert got == [4, 7, 10]


def test_an_older_tick_is_ignored() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-02-20")
    mark = len(d.log)
    r = d.tick("2026-01-05")
    assert r.outcome == "ignored"
    assert r.commands == []
    d.pay(amount="100.00")
    assert d.log[mark:]
    assert {c.value["issued_at"] for c in d.log[mark:]} == {"2026-02-20T00:00:00Z"}
