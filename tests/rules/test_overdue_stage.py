"""Contract §2 rules 6-8 (overdue, late fee, limitation) and invoice.status."""

from __future__ import annotations

from tests.driver import Driver, policy

STAGE = ("notify.overdue", "invoice.late_fee", "notify.late_fee", "service.limit",
         "notify.limited", "service.suspend", "notify.suspended", "service.delete",
         "notify.deleted")


def status_rows(d: Driver, invoice_id: str = "inv-1") -> list[tuple[str, str, str]]:
    return [(v["status"], v["amount_due"], v["amount_paid"])
            for v in d.of("invoice.status", invoice_id=invoice_id)]


# -- rule 6: overdue -------------------------------------------------------------------------


def test_at_due_at_status_turns_overdue_then_overdue_notice():
    d = Driver(policy())
    d.issue()
    assert d.tick("2026-01-30").commands == []
    assert d.types(d.tick("2026-01-31")) == ["invoice.status", "notify.overdue"]
    assert d.statuses() == ["unpaid", "overdue"]
    [n] = d.of("notify.overdue")
    assert n["amount_due"] == "100.00"


def test_overdue_notice_is_sent_once():
    d = Driver(policy())
    d.issue()
    d.ticks("2026-01-31", "2026-03-31")
    assert len(d.of("notify.overdue")) == 1


def test_paid_invoice_never_becomes_overdue():
    d = Driver(policy(late_fee='"5.00"', limit_after_days="1", suspend_after_days="2"))
    d.issue()
    d.pay(amount="100.00")
    d.ticks("2026-01-02", "2026-03-31")
    assert d.statuses() == ["unpaid", "paid"]
    assert not set(d.types(audience=None)) & set(STAGE)


THRESHOLD = policy(collection_threshold='"5.00"', reminder_every_days="7", late_fee='"2.00"',
                   late_fee_after_days="1", limit_after_days="2", suspend_after_days="3",
                   delete_after_days="4")


def test_due_at_threshold_skips_the_whole_stage_but_turns_overdue():
    d = Driver(THRESHOLD)
    d.issue(order_id="ord-1")
    d.pay(amount="95.00")
    d.ticks("2026-01-02", "2026-01-30")
    assert d.types(d.tick("2026-01-31")) == ["invoice.status"]
    d.ticks("2026-02-01", "2026-04-30")
    assert d.statuses() == ["unpaid", "partially_paid", "overdue"]
    assert not set(d.types(audience=None)) & set(STAGE)


def test_skipped_stage_stops_reminders_after_due_at():
    d = Driver(THRESHOLD)
    d.issue()
    d.pay(amount="95.00")
    d.ticks("2026-01-02", "2026-03-31")
    reminders = [v["issued_at"][:10] for v in d.of("notify.reminder")]
    assert reminders == ["2026-01-08", "2026-01-15", "2026-01-22", "2026-01-29"]


def test_small_unpaid_invoice_within_threshold_skips_the_stage():
    d = Driver(THRESHOLD)
    d.issue(amount="3.00")
    d.ticks("2026-01-31", "2026-03-31")
    assert d.statuses() == ["unpaid", "overdue"]
    assert not set(d.types(audience=None)) & set(STAGE)


def test_just_above_threshold_runs_the_stage():
    d = Driver(THRESHOLD)
    d.issue(order_id="ord-1")
    d.pay(amount="94.99")
    d.ticks("2026-01-02", "2026-01-30")
    assert d.types(d.tick("2026-01-31")) == ["invoice.status", "notify.overdue"]
    d.ticks("2026-02-01", "2026-02-04")
    assert {"invoice.late_fee", "service.limit", "service.suspend", "service.delete"} <= set(
        d.types(audience=None))
    assert [v["issued_at"][:10] for v in d.of("notify.reminder")][-1] == "2026-01-29"


def test_threshold_uses_what_is_due_at_due_at_not_at_issue():
    d = Driver(THRESHOLD)
    d.issue()
    d.tick("2026-01-30")
    d.pay(amount="96.00")
    d.tick("2026-01-31")
    assert d.of("notify.overdue") == []


# -- rule 7: late fee ------------------------------------------------------------------------


def fees(d: Driver) -> list[tuple[str, str]]:
    return [(v["issued_at"][:10], v["amount"]) for v in d.of("invoice.late_fee")]


def test_fixed_late_fee_once_at_due_plus_after_days():
    d = Driver(policy(late_fee='"5.00"', late_fee_after_days="3"))
    d.issue()
    d.ticks("2026-01-31", "2026-02-02")
    assert fees(d) == []
    assert d.types(d.tick("2026-02-03")) == ["invoice.late_fee", "notify.late_fee"]
    d.ticks("2026-02-04", "2026-04-30")
    assert fees(d) == [("2026-02-03", "5.00")]
    assert len(d.of("notify.late_fee")) == 1
    assert d.of("invoice.late_fee")[0]["currency"] == "USD"


def test_late_fee_with_no_delay_follows_the_overdue_notice():
    d = Driver(policy(late_fee='"5.00"', late_fee_after_days="0"))
    d.issue()
    assert d.types(d.tick("2026-01-31")) == [
        "invoice.status", "notify.overdue", "invoice.late_fee", "notify.late_fee",
    ]


def test_percent_late_fee_of_what_is_due():
    d = Driver(policy(late_fee_percent='"1.5"'))
    d.issue(amount="200.00")
    d.pay(amount="50.00")
    d.tick("2026-01-31")
    assert fees(d) == [("2026-01-31", "2.25")]


def test_percent_late_fee_rounds_half_up_to_cents():
    d = Driver(policy(late_fee_percent='"2.5"'))
    d.issue(amount="100.00")
    d.pay(amount="39.00")  # 2.5 % of 61.00 = 1.525
    d.tick("2026-01-31")
    assert fees(d) == [("2026-01-31", "1.53")]


def test_percent_late_fee_rounds_down_below_half():
    d = Driver(policy(late_fee_percent='"1.5"'))
    d.issue(amount="100.33")  # 1.50495
    d.tick("2026-01-31")
    assert fees(d) == [("2026-01-31", "1.50")]


def test_percent_late_fee_in_a_zero_decimal_currency():
    d = Driver(policy(late_fee_percent='"1.5"'))
    d.issue(amount="10100", currency="JPY")  # 151.5 yen
    d.tick("2026-01-31")
    assert fees(d) == [("2026-01-31", "152")]


def test_no_late_fee_when_paid_before_it_is_due():
    d = Driver(policy(late_fee='"5.00"', late_fee_after_days="5"))
    d.issue()
    d.tick("2026-02-02")
    d.pay(amount="100.00")
    d.ticks("2026-02-03", "2026-03-31")
    assert fees(d) == []


# -- rule 8: limitation ----------------------------------------------------------------------


def test_limitation_at_due_plus_limit_after_days():
    d = Driver(policy(limit_after_days="5"))
    d.issue(order_id="ord-1")
    d.ticks("2026-01-31", "2026-02-04")
    assert d.of("service.limit") == []
    assert d.types(d.tick("2026-02-05")) == ["service.limit", "notify.limited"]
    [cmd] = d.of("service.limit")
    assert cmd["subject"] == {"kind": "order", "id": "ord-1"}
    assert cmd["invoice_ids"] == ["inv-1"]
    [n] = d.of("notify.limited")
    assert (n["customer_id"], n["amount_due"]) == ("cust-1", "100.00")


def test_limitation_subject_is_the_customer_without_an_order():
    d = Driver(policy(limit_after_days="0"))
    d.issue(customer_id="cust-7")
    d.tick("2026-01-31")
    [cmd] = d.of("service.limit")
    assert cmd["subject"] == {"kind": "customer", "id": "cust-7"}
    assert cmd["invoice_ids"] == ["inv-1"]


def test_an_already_limited_order_is_not_limited_again_by_a_second_invoice():
    d = Driver(policy(limit_after_days="0"))
    d.issue("inv-1", order_id="ord-1")
    d.issue("inv-2", order_id="ord-1", issued_at="2026-01-05")
    d.tick("2026-01-31")
    assert d.tick("2026-02-04").commands[0].value["status"] == "overdue"
    [cmd] = d.of("service.limit")
    assert cmd["invoice_ids"] == ["inv-1"]
    assert d.of("notify.limited", invoice_id="inv-2") == []


def test_no_limitation_when_paid():
    d = Driver(policy(limit_after_days="5"))
    d.issue()
    d.pay(amount="100.00")
    d.ticks("2026-01-31", "2026-03-31")
    assert d.of("service.limit") == []


# -- invoice.status --------------------------------------------------------------------------


def test_status_unpaid_on_issue():
    d = Driver(policy())
    result = d.issue(amount="80.00")
    assert d.types(result) == ["invoice.status"]
    assert status_rows(d) == [("unpaid", "80.00", "0.00")]


def test_status_partially_paid_then_paid():
    d = Driver(policy())
    d.issue()
    d.pay(amount="30.00")
    d.pay(amount="20.00")  # still partially paid: no new status
    d.pay(amount="50.00")
    assert status_rows(d) == [
        ("unpaid", "100.00", "0.00"),
        ("partially_paid", "70.00", "30.00"),
        ("paid", "0.00", "100.00"),
    ]


def test_status_overdue_then_paid():
    d = Driver(policy())
    d.issue()
    d.pay(amount="10.00")
    d.tick("2026-01-31")
    d.pay(amount="90.00")
    assert status_rows(d) == [
        ("unpaid", "100.00", "0.00"),
        ("partially_paid", "90.00", "10.00"),
        ("overdue", "90.00", "10.00"),
        ("paid", "0.00", "100.00"),
    ]


def test_status_back_to_unpaid_after_reversal_before_due():
    d = Driver(policy())
    d.issue()
    d.pay(amount="100.00", payment_id="p-1")
    d.reverse("p-1", "100.00")
    assert d.statuses() == ["unpaid", "paid", "unpaid"]


def test_status_cancelled():
    d = Driver(policy())
    d.issue()
    d.cancel()
    assert d.statuses() == ["unpaid", "cancelled"]


def test_overdue_notice_tells_when_suspension_and_deletion_come():
    d = Driver(policy(suspend_after_days="15", delete_after_days="60"))
    d.issue()
    d.tick("2026-01-31")
    [n] = d.of("notify.overdue")
    assert (n["due_at"], n["suspend_at"], n["delete_at"]) == (
        "2026-01-31T00:00:00Z", "2026-02-15T00:00:00Z", "2026-04-01T00:00:00Z")


def test_percent_late_fee_is_of_what_is_due_when_the_fee_falls():
    d = Driver(policy(late_fee_percent='"1.5"', late_fee_after_days="5"))
    d.issue()
    d.tick("2026-02-02")
    d.pay(amount="50.00")
    d.tick("2026-02-05")
    assert fees(d) == [("2026-02-05", "0.75")]
