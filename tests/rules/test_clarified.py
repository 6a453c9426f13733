"""Contract §2 "Clarified in v1.1": the edge cases customers see, one rule each.

Each test is written from the contract's rule (and names the issue's finding it holds).
Dates: an invoice issued 2026-01-01 on net 30 is due 2026-01-31.
"""

from __future__ import annotations

from typing import Any

from dunning.streams.topics import PROVISIONING
from tests.driver import Driver, policy


def T(day: str) -> str:
    return f"{day}T00:00:00Z"


def days(d: Driver, ctype: str, invoice_id: str = "inv-1") -> list[str]:
    return [v["issued_at"][:10] for v in d.of(ctype, invoice_id=invoice_id)]


def provisioning(d: Driver, since: int = 0) -> list[tuple[str, str]]:
    return [(c.value["issued_at"][:10], c.value["type"]) for c in d.log[since:]
            if c.topic == PROVISIONING]


def status_days(d: Driver, invoice_id: str = "inv-1") -> list[tuple[str, str]]:
    return [(v["issued_at"][:10], v["status"]) for v in d.of("invoice.status",
                                                              invoice_id=invoice_id)]


def fields(notice: dict[str, Any]) -> dict[str, Any]:
    """A notice without what differs between runs (its id)."""
    return {k: v for k, v in notice.items() if k != "command_id"}


# -- status moves forward in time (finding 1) -----------------------------------------------


def test_a_late_invoice_with_reminders_due_stays_overdue_through_the_catch_up() -> None:
    d = Driver(policy(reminder_every_days="7"))
    d.tick("2026-02-05")
    d.issue(issued_at="2026-01-01")  # due 01-31: overdue at once; reminder slots from 01-08
    d.tick("2026-02-06")
    assert d.statuses() == ["overdue"]


def test_a_full_payment_reversed_after_due_turns_overdue_once() -> None:
    d = Driver(policy(due_soon_days="[3]"))
    d.tick("2026-01-01")
    d.issue()
    d.tick("2026-01-10")
    d.pay(amount="100.00", payment_id="p-1")
    d.tick("2026-02-05")
    d.reverse("p-1", "100.00")
    d.tick("2026-02-06")
    assert status_days(d) == [("2026-01-01", "unpaid"), ("2026-01-10", "paid"),
                              ("2026-02-05", "overdue")]
    assert d.of("notify.due_soon") == []  # its moment (01-28) passed while paid


# -- deletion ends pursuit, not bookkeeping (findings 2 and 4) ------------------------------

SAMPLE = """
[defaults]
terms_days = 30
reminder_every_days = 5
suspend_after_days = 15
delete_after_days = 60
request_cancel_after_days = 9
notify_reseller = true

[product.domain_registration]
suspend_after_days = false
delete_after_days = false
"""


def web_design() -> Driver:
    """LogicBoxes (seed 002): invoice 1, USD 100, 1 Jan 2003, suspend 10 Jan, delete 30 Jan;
    on net 30 it is due 31 Jan, the day after its deletion."""
    d = Driver(SAMPLE)
    d.tick("2003-01-01")
    d.issue("1", issued_at="2003-01-01", amount="100.00", customer_id="A",
            order_id="abcd.com", overrides={"suspend_at": "2003-01-10",
                                            "delete_at": "2003-01-30"})
    return d


def test_web_design_example_still_turns_overdue_on_its_due_date_after_deletion() -> None:
    d = web_design()
    d.ticks("2003-01-02", "2003-03-31")
    assert status_days(d, "1") == [("2003-01-01", "unpaid"), ("2003-01-31", "overdue")]
    assert provisioning(d) == [("2003-01-10", "service.suspend"),
                               ("2003-01-30", "service.delete")]


def test_web_design_example_in_one_jump_ends_overdue() -> None:
    d = web_design()
    d.tick("2003-02-15")
    assert d.statuses("1") == ["unpaid", "overdue"]
    assert provisioning(d) == [("2003-02-15", "service.suspend"),
                               ("2003-02-15", "service.delete")]


def test_after_its_deletion_an_invoice_gets_only_status_changes() -> None:
    d = web_design()
    d.ticks("2003-01-02", "2003-01-30")
    mark = len(d.log)
    d.ticks("2003-01-31", "2003-03-31")
    d.pay("1", "40.00", payment_id="p-1")
    d.reverse("p-1", "40.00", invoice_id="1")
    d.pay("1", "100.00")
    assert {c.value["type"] for c in d.log[mark:]} == {"invoice.status"}
    assert d.statuses("1") == ["unpaid", "overdue", "paid"]


def test_a_late_request_completion_after_deletion_starts_no_reminders() -> None:
    d = Driver(SAMPLE)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1", origin="manual", request_id="req-1", request_status="pending",
            overrides={"suspend_at": "2026-01-10", "delete_at": "2026-01-20"})
    d.ticks("2026-01-02", "2026-01-20")
    mark = len(d.log)
    d.complete_request()
    d.ticks("2026-01-21", "2026-03-31")
    assert [c.value["type"] for c in d.log[mark:]] == ["invoice.status"]  # overdue on 01-31
    assert d.of("notify.reminder") == []


def test_a_charge_failure_after_deletion_is_not_retried_nor_told() -> None:
    d = Driver(policy(auto_charge='"on_issue"', charge_retry_days="[3]"))
    d.tick("2026-01-01")
    d.issue(order_id="ord-1", overrides={"delete_at": "2026-01-05"})
    d.tick("2026-01-05")
    mark = len(d.log)
    assert d.charge_failed(1).commands == []
    d.ticks("2026-01-06", "2026-01-20")
    assert d.log[mark:] == []
    assert [v["attempt"] for v in d.of("charge.request")] == [1]


def test_a_hard_charge_failure_after_deletion_sends_no_notice() -> None:
    d = Driver(policy(auto_charge='"on_issue"'))
    d.tick("2026-01-01")
    d.issue(order_id="ord-1", overrides={"delete_at": "2026-01-05"})
    d.tick("2026-01-05")
    assert d.charge_failed(1, hard=True).commands == []


# -- notices tell only what will happen (finding 3) -----------------------------------------

SUSPENDING = """
[defaults]
terms_days = 30
suspend_after_days = 15
delete_after_days = 60
notify_reseller = true
"""


def test_the_unsuspended_notice_after_full_payment_carries_no_deadline() -> None:
    d = Driver(SUSPENDING)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1", reseller_id="res-1")
    d.tick("2026-02-15")
    d.pay(amount="100.00", event_id="pay-ev")
    customer, reseller = d.of("notify.unsuspended", audience=None)
    assert fields(customer) == {
        "type": "notify.unsuspended", "issued_at": T("2026-02-15"), "causation_id": "pay-ev",
        "audience": "customer", "invoice_id": "inv-1", "customer_id": "cust-1",
        "amount_due": "0.00", "currency": "USD", "order_id": "ord-1", "reseller_id": "res-1",
    }
    assert fields(reseller) == {**fields(customer), "audience": "reseller"}


def test_the_unsuspended_notice_after_cancellation_carries_no_deadline() -> None:
    d = Driver(SUSPENDING)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-02-15")
    d.cancel()
    [n] = d.of("notify.unsuspended")
    assert not {"due_at", "suspend_at", "delete_at", "request_cancel_at"} & set(n)


def test_the_request_cancelled_notice_carries_no_deadline() -> None:
    d = Driver(SUSPENDING + "request_cancel_after_days = 9\n")
    d.tick("2026-01-01")
    d.issue(order_id="ord-1", origin="system", request_id="req-1", request_status="pending",
            overrides={"suspend_at": "2026-01-05"})
    d.tick("2026-01-10", event_id="t-10")
    [n] = d.of("notify.request_cancelled")
    assert fields(n) == {
        "type": "notify.request_cancelled", "issued_at": T("2026-01-10"),
        "causation_id": "t-10", "audience": "customer", "invoice_id": "inv-1",
        "customer_id": "cust-1", "amount_due": "100.00", "currency": "USD", "order_id": "ord-1",
    }


def test_a_reminder_within_the_threshold_announces_no_policy_suspension() -> None:
    d = Driver(policy(reminder_every_days="7", collection_threshold='"10.00"',
                      suspend_after_days="15", delete_after_days="60"))
    d.tick("2026-01-01")
    d.issue()
    d.pay(amount="95.00")
    d.tick("2026-01-08")
    [n] = d.of("notify.reminder")
    assert n["due_at"] == T("2026-01-31")
    assert not {"suspend_at", "delete_at"} & set(n)


def test_a_reminder_within_the_threshold_still_announces_an_explicit_suspension() -> None:
    d = Driver(policy(reminder_every_days="7", collection_threshold='"10.00"',
                      suspend_after_days="15", delete_after_days="60"))
    d.tick("2026-01-01")
    d.issue(overrides={"suspend_at": "2026-02-20"})
    d.pay(amount="95.00")
    d.tick("2026-01-08")
    [n] = d.of("notify.reminder")
    assert (n["due_at"], n["suspend_at"]) == (T("2026-01-31"), T("2026-02-20"))
    assert "delete_at" not in n


def test_a_notice_announces_nothing_after_a_request_cancellation_that_comes_first() -> None:
    d = Driver(SUSPENDING + "request_cancel_after_days = 9\n")
    d.tick("2026-01-01")
    d.issue(origin="system", request_id="req-1", request_status="pending",
            overrides={"suspend_at": "2026-01-05"})
    d.tick("2026-01-05")
    [n] = d.of("notify.suspended")
    assert n["request_cancel_at"] == T("2026-01-10")
    assert not {"due_at", "delete_at"} & set(n)  # cancelled on 01-10: neither comes


def test_a_notice_announces_nothing_after_a_deletion_that_comes_first() -> None:
    d = web_design()
    d.tick("2003-01-10")
    [n] = d.of("notify.suspended")
    assert n["delete_at"] == T("2003-01-30")
    assert "due_at" not in n  # due 01-31, the day after the order is gone


def test_notices_after_due_carry_no_past_due_date() -> None:
    d = Driver(policy(reminder_every_days="7", suspend_after_days="15"))
    d.tick("2026-01-01")
    d.issue()
    d.ticks("2026-01-02", "2026-02-12")
    late = [n for n in d.of("notify.reminder") if n["issued_at"] > T("2026-01-31")]
    assert late and all("due_at" not in n for n in late)
    assert all(n["suspend_at"] == T("2026-02-15") for n in late)


# -- due-soon is before due (finding 5) -------------------------------------------------------


def test_due_soon_is_skipped_for_an_amount_within_the_threshold() -> None:
    d = Driver(policy(due_soon_days="[3]", collection_threshold='"10.00"'))
    d.tick("2026-01-01")
    d.issue()
    d.pay(amount="90.00")
    d.ticks("2026-01-02", "2026-01-30")
    assert d.of("notify.due_soon") == []


def test_due_soon_is_sent_for_an_amount_just_above_the_threshold() -> None:
    d = Driver(policy(due_soon_days="[3]", collection_threshold='"10.00"'))
    d.tick("2026-01-01")
    d.issue()
    d.pay(amount="89.99")
    d.ticks("2026-01-02", "2026-01-30")
    assert days(d, "notify.due_soon") == ["2026-01-28"]


def test_a_due_soon_moment_passed_in_a_gap_past_due_is_dropped() -> None:
    d = Driver(policy(due_soon_days="[3]"))
    d.tick("2026-01-01")
    d.issue()
    d.tick("2026-01-27")
    d.tick("2026-02-02")
    assert d.of("notify.due_soon") == []
    assert d.of("notify.overdue")


def test_a_due_soon_moment_passed_in_a_gap_still_before_due_is_sent() -> None:
    d = Driver(policy(due_soon_days="[3]"))
    d.tick("2026-01-01")
    d.issue()
    d.tick("2026-01-27")
    d.tick("2026-01-30")
    assert days(d, "notify.due_soon") == ["2026-01-30"]


# -- the threshold never leaves a suspension without a word (finding 6) ---------------------


def test_an_explicit_suspension_within_the_threshold_keeps_the_customer_told() -> None:
    d = Driver(policy(reminder_every_days="7", collection_threshold='"10.00"',
                      suspend_after_days="15", delete_after_days="60"))
    d.tick("2026-01-01")
    d.issue(order_id="ord-1", overrides={"suspend_at": "2026-01-10"})
    d.ticks("2026-01-02", "2026-01-20")
    d.pay(amount="95.00")  # 5.00 left: within the threshold at due_at
    d.ticks("2026-01-21", "2026-04-30")
    assert provisioning(d) == [("2026-01-10", "service.suspend")]  # deletion was the policy's
    after_due = [n for n in d.of("notify.reminder") if n["issued_at"] > T("2026-01-31")]
    assert len(after_due) == 13 and all(n["amount_due"] == "5.00" for n in after_due)
    d.pay(amount="5.00")
    assert provisioning(d)[-1] == ("2026-04-30", "service.unsuspend")


# -- money on output is never negative (finding 7) --------------------------------------------


def test_an_overpaid_status_says_nothing_due_and_the_credit() -> None:
    d = Driver(policy())
    d.issue()
    d.pay(amount="150.00")
    [_, paid] = d.of("invoice.status")
    assert (paid["status"], paid["amount_due"], paid["amount_paid"], paid["amount_credit"]) == (
        "paid", "0.00", "150.00", "50.00")


def test_a_status_that_is_not_overpaid_has_no_credit() -> None:
    d = Driver(policy())
    d.issue()
    d.pay(amount="100.00")
    assert all("amount_credit" not in v for v in d.of("invoice.status"))


# -- the domain-registration exception (finding 8) ---------------------------------------------


def test_overrides_do_not_suspend_or_delete_a_system_domain_registration() -> None:
    d = Driver(SAMPLE)
    d.tick("2026-01-01")
    d.issue(product="domain_registration", origin="system", order_id="ex.com",
            overrides={"suspend_at": "2026-01-10", "delete_at": "2026-01-20"})
    d.ticks("2026-01-02", "2026-04-30")
    assert provisioning(d) == []


def test_overrides_still_suspend_a_manual_domain_registration_invoice() -> None:
    d = Driver(SAMPLE)
    d.tick("2026-01-01")
    d.issue(product="domain_registration", order_id="ex.com",
            overrides={"suspend_at": "2026-01-10", "delete_at": "2026-01-20"})
    d.ticks("2026-01-02", "2026-01-20")
    assert provisioning(d) == [("2026-01-10", "service.suspend"),
                               ("2026-01-20", "service.delete")]


def test_overrides_still_suspend_a_system_invoice_whose_policy_suspends() -> None:
    d = Driver(SAMPLE)
    d.tick("2026-01-01")
    d.issue(origin="system", order_id="ex.com", overrides={"suspend_at": "2026-01-10"})
    d.ticks("2026-01-02", "2026-01-10")
    assert provisioning(d) == [("2026-01-10", "service.suspend")]


def test_only_the_stage_the_policy_turns_off_ignores_its_override() -> None:
    d = Driver(SAMPLE + "[product.keep]\nsuspend_after_days = false\n")
    d.tick("2026-01-01")
    d.issue(product="keep", origin="system", order_id="ex.com",
            overrides={"suspend_at": "2026-01-10", "delete_at": "2026-01-20"})
    d.ticks("2026-01-02", "2026-01-20")
    assert provisioning(d) == [("2026-01-20", "service.delete")]


# -- the threshold is judged whenever the overdue stage starts (finding 10) ------------------

THRESHOLD = policy(collection_threshold='"10.00"', reminder_every_days="7",
                   suspend_after_days="15", delete_after_days="60")


def test_a_reopened_invoice_owing_within_the_threshold_is_not_suspended_again() -> None:
    d = Driver(THRESHOLD)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-02-15")
    d.pay(amount="100.00")  # restored
    d.tick("2026-02-20")
    d.adjust("100.01")
    d.ticks("2026-02-21", "2026-06-30")
    assert provisioning(d) == [("2026-02-15", "service.suspend"),
                               ("2026-02-15", "service.unsuspend")]
    assert d.statuses() == ["unpaid", "overdue", "paid", "overdue"]
    assert [n for n in d.of("notify.reminder") if n["issued_at"] >= T("2026-02-20")] == []


def test_a_reopened_invoice_owing_above_the_threshold_resumes_where_its_dates_stand() -> None:
    d = Driver(THRESHOLD)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-02-15")
    d.pay(amount="100.00", payment_id="p-1")
    d.tick("2026-02-20")
    d.reverse("p-1", "50.00")
    d.ticks("2026-02-21", "2026-04-01")
    assert provisioning(d) == [("2026-02-15", "service.suspend"),
                               ("2026-02-15", "service.unsuspend"),
                               ("2026-02-21", "service.suspend"),
                               ("2026-04-01", "service.delete")]
    assert len(d.of("notify.overdue")) == 1  # the overdue notice stays once only


def test_a_skipped_invoice_adjusted_above_the_threshold_after_due_is_pursued() -> None:
    d = Driver(THRESHOLD)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1", amount="5.00")
    d.ticks("2026-01-02", "2026-02-05")
    assert d.of("notify.overdue") == []
    d.adjust("500.00")
    assert d.types(d.tick("2026-02-06")) == ["notify.overdue"]  # the stage starts now
    d.ticks("2026-02-07", "2026-04-01")
    assert provisioning(d) == [("2026-02-15", "service.suspend"),
                               ("2026-04-01", "service.delete")]
    assert d.of("notify.overdue")[0]["amount_due"] == "500.00"
    assert days(d, "notify.reminder")[-2:] == ["2026-03-19", "2026-03-26"]


def test_a_skipped_invoice_adjusted_but_still_within_the_threshold_stays_skipped() -> None:
    d = Driver(THRESHOLD)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1", amount="5.00")
    d.ticks("2026-01-02", "2026-02-05")
    d.adjust("9.00")
    d.ticks("2026-02-06", "2026-04-30")
    assert provisioning(d) == [] and d.of("notify.overdue") == []


# -- retries that run out tell the customer (finding 11) ---------------------------------------


def test_the_last_soft_failure_tells_the_customer() -> None:
    d = Driver(policy(auto_charge='"on_issue"', charge_retry_days="[3]"))
    d.tick("2026-01-01")
    d.issue()
    d.tick("2026-01-02")
    assert d.charge_failed(1).commands == []  # attempt 2 on 01-05
    d.tick("2026-01-05")
    result = d.charge_failed(2)
    assert d.types(result) == ["notify.charge_failed"]
    assert result.commands[0].value["amount_due"] == "100.00"
    d.ticks("2026-01-06", "2026-02-28")
    assert [v["attempt"] for v in d.of("charge.request")] == [1, 2]


def test_a_soft_failure_without_retries_tells_the_customer() -> None:
    d = Driver(policy(auto_charge='"on_issue"', charge_retry_days="[]"))
    d.tick("2026-01-01")
    d.issue()
    assert d.types(d.charge_failed(1)) == ["notify.charge_failed"]


# -- amounts by currency (finding 13) -----------------------------------------------------------


def test_a_late_fee_table_charges_each_currency_its_own_amount() -> None:
    d = Driver(policy(late_fee='{ USD = "5.00", JPY = "500", BHD = "1.250" }'))
    d.tick("2026-01-01")
    for iid, amount, cur in (("usd", "100.00", "USD"), ("jpy", "10000", "JPY"),
                             ("bhd", "40.000", "BHD"), ("eur", "100.00", "EUR")):
        d.issue(iid, amount=amount, currency=cur)
    d.tick("2026-01-31")
    fees = {v["invoice_id"]: (v["amount"], v["currency"]) for v in d.of("invoice.late_fee")}
    assert fees == {"usd": ("5.00", "USD"), "jpy": ("500", "JPY"), "bhd": ("1.250", "BHD")}


def test_a_plain_late_fee_is_rounded_half_up_to_each_currency() -> None:
    d = Driver(policy(late_fee='"2.50"'))
    d.tick("2026-01-01")
    d.issue("jpy", amount="10000", currency="JPY")
    d.issue("bhd", amount="40.000", currency="BHD")
    d.tick("2026-01-31")
    fees = {v["invoice_id"]: v["amount"] for v in d.of("invoice.late_fee")}
    assert fees == {"jpy": "3", "bhd": "2.500"}


def test_a_threshold_table_applies_per_currency_and_is_none_for_others() -> None:
    d = Driver(policy(collection_threshold='{ USD = "10.00", JPY = "1000" }',
                      suspend_after_days="15"))
    d.tick("2026-01-01")
    d.issue("usd", amount="9.00", order_id="a")
    d.issue("jpy", amount="900", currency="JPY", order_id="b")
    d.issue("eur", amount="9.00", currency="EUR", order_id="c")
    d.ticks("2026-01-02", "2026-02-15")
    assert [v["invoice_id"] for v in d.of("notify.overdue")] == ["eur"]
    assert [v["invoice_ids"] for v in d.of("service.suspend")] == [["eur"]]


# -- invoice_ids is every holder once the tick is done (finding 14) ---------------------------


def one_order(count: int, spread: bool = False) -> Driver:
    """`count` invoices of ord-1, issued on 01-01 (or on 01-01, 01-02, ... with `spread`)."""
    d = Driver(SUSPENDING)
    d.tick("2026-01-01")
    for n in range(1, count + 1):
        d.issue(f"inv-{n}", order_id="ord-1", issued_at=f"2026-01-0{n if spread else 1}")
    return d


def test_four_invoices_suspending_one_order_on_one_tick_are_all_named() -> None:
    d = one_order(4)
    d.tick("2026-02-15")
    [suspend] = d.of("service.suspend", invoice_id=None)
    assert suspend["invoice_ids"] == ["inv-1", "inv-2", "inv-3", "inv-4"]
    assert len(d.of("notify.suspended", invoice_id=None)) == 1


def test_holders_that_join_during_a_jump_are_named_by_the_one_suspend() -> None:
    d = one_order(4, spread=True)
    d.tick("2026-03-01")  # suspensions fell on 02-15 .. 02-18
    [suspend] = d.of("service.suspend", invoice_id=None)
    assert suspend["invoice_id"] == "inv-1"
    assert suspend["invoice_ids"] == ["inv-1", "inv-2", "inv-3", "inv-4"]


def test_a_holder_cancelled_later_in_the_tick_is_not_named() -> None:
    d = Driver(SUSPENDING + "request_cancel_after_days = 9\n")
    d.tick("2026-01-01")
    d.issue("inv-1", order_id="ord-1", overrides={"suspend_at": "2026-01-05"})
    d.issue("inv-2", order_id="ord-1", origin="system", request_id="req-2",
            request_status="pending", overrides={"suspend_at": "2026-01-05"})
    d.tick("2026-01-12")  # both suspend on 01-05; inv-2's request is cancelled on 01-10
    [suspend] = d.of("service.suspend", invoice_id=None)
    assert suspend["invoice_ids"] == ["inv-1"]


def test_a_deletion_names_the_holders_it_deleted() -> None:
    d = one_order(3)
    d.tick("2026-04-01")
    [delete] = d.of("service.delete", invoice_id=None)
    assert delete["invoice_ids"] == ["inv-1", "inv-2", "inv-3"]
