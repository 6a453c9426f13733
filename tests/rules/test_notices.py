"""Contract §2 rules 3-5 (due-soon, reminder days, pending request) and notification fields."""

from __future__ import annotations

from tests.driver import Driver, policy

PAYMENT_NOTICES = ("notify.due_soon", "notify.reminder", "notify.overdue", "notify.late_fee")


def days(d: Driver, ctype: str, invoice_id: str = "inv-1") -> list[str]:
    """The days on which the customer got a notification of this type."""
    return [v["issued_at"][:10] for v in d.of(ctype, invoice_id=invoice_id)]


def T(day: str) -> str:
    return f"{day}T00:00:00Z"


# -- rule 3: before due ----------------------------------------------------------------------


def test_due_soon_fires_d_days_before_due_for_each_d():
    d = Driver(policy(due_soon_days="[7, 3]"))
    d.issue()  # due 2026-01-31
    assert d.tick("2026-01-23").commands == []
    assert d.types(d.tick("2026-01-24")) == ["notify.due_soon"]
    assert d.tick("2026-01-27").commands == []
    assert d.types(d.tick("2026-01-28")) == ["notify.due_soon"]
    d.ticks("2026-01-29", "2026-01-30")
    assert days(d, "notify.due_soon") == ["2026-01-24", "2026-01-28"]


def test_due_soon_is_not_sent_once_fully_paid():
    d = Driver(policy(due_soon_days="[3]"))
    d.issue()
    d.tick("2026-01-20")
    d.pay(amount="100.00")
    d.ticks("2026-01-21", "2026-01-31")
    assert d.of("notify.due_soon") == []


def test_due_soon_is_still_sent_after_a_partial_payment():
    d = Driver(policy(due_soon_days="[3]"))
    d.issue()
    d.pay(amount="40.00")
    d.tick("2026-01-28")
    [notice] = d.of("notify.due_soon")
    assert notice["amount_due"] == "60.00"


def test_due_soon_moment_before_issue_is_skipped():
    d = Driver(policy(due_soon_days="[7, 3]"))
    d.issue(issued_at="2026-01-01", due_at="2026-01-05")  # 7 days before is 2025-12-29
    assert d.types(d.tick("2026-01-02")) == ["notify.due_soon"]
    d.ticks("2026-01-03", "2026-01-04")
    assert days(d, "notify.due_soon") == ["2026-01-02"]


def test_due_soon_moment_already_past_when_a_late_invoice_arrives_is_skipped():
    d = Driver(policy(due_soon_days="[7, 3]"))
    d.tick("2026-01-26")
    d.issue(issued_at="2026-01-01")  # due 01-31; 01-24 is past, 01-28 is not
    assert d.tick("2026-01-27").commands == []
    assert d.types(d.tick("2026-01-28")) == ["notify.due_soon"]
    assert days(d, "notify.due_soon") == ["2026-01-28"]


# -- rule 4: reminder days -------------------------------------------------------------------


def test_reminder_every_n_days_from_issue():
    d = Driver(policy(reminder_every_days="5"))
    d.issue(issued_at="2026-01-01")
    assert d.tick("2026-01-05").commands == []
    assert d.types(d.tick("2026-01-06")) == ["notify.reminder"]
    assert d.tick("2026-01-10").commands == []
    assert d.types(d.tick("2026-01-11")) == ["notify.reminder"]


def test_reminders_continue_after_partial_payment_and_stop_when_fully_paid():
    d = Driver(policy(reminder_every_days="5"))
    d.issue()
    d.pay(amount="30.00")
    d.ticks("2026-01-02", "2026-01-11")
    assert days(d, "notify.reminder") == ["2026-01-06", "2026-01-11"]
    assert d.of("notify.reminder")[-1]["amount_due"] == "70.00"
    d.pay(amount="70.00")
    d.ticks("2026-01-12", "2026-03-31")
    assert days(d, "notify.reminder") == ["2026-01-06", "2026-01-11"]


def test_reminders_after_due_continue_until_paid():
    d = Driver(policy(reminder_every_days="10"))
    d.issue()
    d.ticks("2026-01-02", "2026-02-28")
    assert days(d, "notify.reminder") == [
        "2026-01-11", "2026-01-21", "2026-01-31", "2026-02-10", "2026-02-20",
    ]


def test_reminders_start_at_request_completed_for_a_pending_request():
    d = Driver(policy(reminder_every_days="5"))
    d.issue(request_id="req-1", request_status="pending")
    d.ticks("2026-01-02", "2026-01-08")
    assert d.of("notify.reminder") == []
    assert d.complete_request().commands == []
    assert d.tick("2026-01-12").commands == []
    assert d.types(d.tick("2026-01-13")) == ["notify.reminder"]
    assert d.tick("2026-01-17").commands == []
    assert d.types(d.tick("2026-01-18")) == ["notify.reminder"]


def test_invoice_issued_with_completed_request_reminds_from_issue():
    d = Driver(policy(reminder_every_days="5"))
    d.issue(request_id="req-1", request_status="completed")
    d.tick("2026-01-06")
    assert days(d, "notify.reminder") == ["2026-01-06"]


def test_override_reminder_days_win_over_policy():
    d = Driver(policy(reminder_every_days="5"))
    d.issue(overrides={"reminder_every_days": 3})
    d.ticks("2026-01-02", "2026-01-11")
    assert days(d, "notify.reminder") == ["2026-01-04", "2026-01-07", "2026-01-10"]


def test_override_reminder_days_apply_when_policy_has_none():
    d = Driver(policy())
    d.issue(overrides={"reminder_every_days": 4})
    assert d.tick("2026-01-04").commands == []
    assert d.types(d.tick("2026-01-05")) == ["notify.reminder"]


def test_no_reminders_without_reminder_days():
    d = Driver(policy())
    d.issue()
    d.ticks("2026-01-02", "2026-02-28")
    assert d.of("notify.reminder") == []


def test_a_gap_of_days_gives_at_most_one_reminder_per_tick():
    d = Driver(policy(reminder_every_days="2"))
    d.issue()
    result = d.tick("2026-01-12")  # slots 01-03 .. 01-11 all passed
    assert d.types(result) == ["notify.reminder"]
    assert d.types(d.tick("2026-01-13")) == ["notify.reminder"]  # docs: next slot after tick


# -- rule 5: pending request -----------------------------------------------------------------


PENDING = dict(
    due_soon_days="[3]", reminder_every_days="5", late_fee='"5.00"', late_fee_after_days="2",
)


def test_no_payment_notification_while_request_pending():
    d = Driver(policy(**PENDING))
    d.issue(request_id="req-1", request_status="pending")
    d.ticks("2026-01-02", "2026-03-15")
    assert not set(d.types(audience=None)) & set(PAYMENT_NOTICES)
    assert d.statuses() == ["unpaid", "overdue"]


def test_same_invoice_without_pending_request_gets_payment_notifications():
    d = Driver(policy(**PENDING))
    d.issue()
    d.ticks("2026-01-02", "2026-02-05")
    assert set(PAYMENT_NOTICES) <= set(d.types())


def test_request_cancelled_notice_is_sent_while_request_pending():
    d = Driver(policy(reminder_every_days="2", request_cancel_after_days="9"))
    d.issue(origin="system", request_id="req-1", request_status="pending")
    d.ticks("2026-01-02", "2026-01-10")
    assert days(d, "notify.request_cancelled") == ["2026-01-10"]
    assert d.of("notify.reminder") == []


def test_payment_without_request_completed_keeps_notifications_off():
    d = Driver(policy(reminder_every_days="5"))
    d.issue(request_id="req-1", request_status="pending")
    d.pay(amount="10.00")
    d.ticks("2026-01-02", "2026-02-10")
    assert not set(d.types()) & set(PAYMENT_NOTICES)


# -- notification fields ---------------------------------------------------------------------


def test_notification_carries_customer_amount_currency_and_due_at():
    d = Driver(policy(due_soon_days="[3]"))
    d.issue(customer_id="cust-9", amount="250.00", currency="EUR")
    d.pay(amount="50.00", currency="EUR")
    d.tick("2026-01-28")
    [n] = d.of("notify.due_soon")
    assert n["audience"] == "customer"
    assert (n["customer_id"], n["amount_due"], n["currency"]) == ("cust-9", "200.00", "EUR")
    assert n["due_at"] == T("2026-01-31")
    assert n["invoice_id"] == "inv-1"


def test_notification_carries_coming_suspend_and_delete_dates():
    d = Driver(policy(due_soon_days="[3]", suspend_after_days="15", delete_after_days="60"))
    d.issue()
    d.tick("2026-01-28")
    [n] = d.of("notify.due_soon")
    assert n["due_at"] == T("2026-01-31")
    assert n["suspend_at"] == T("2026-02-15")
    assert n["delete_at"] == T("2026-04-01")
    assert "request_cancel_at" not in n


def test_notification_omits_deadlines_that_do_not_apply():
    d = Driver(policy(due_soon_days="[3]"))
    d.issue()
    d.tick("2026-01-28")
    [n] = d.of("notify.due_soon")
    assert not {"suspend_at", "delete_at", "request_cancel_at"} & set(n)


def test_notification_omits_a_deadline_already_passed():
    d = Driver(policy())
    d.issue(due_at="2026-01-20",
            overrides={"suspend_at": "2026-01-10", "delete_at": "2026-03-01"})
    d.tick("2026-01-10")
    d.tick("2026-01-20")
    [n] = d.of("notify.overdue")
    assert "suspend_at" not in n
    assert n["delete_at"] == T("2026-03-01")


def test_notice_during_pending_request_carries_request_cancel_at():
    # The policy suspends: for a system invoice whose policy does not, suspend_at is ignored
    # (v1.1, the domain-registration exception).
    d = Driver(policy(request_cancel_after_days="9", suspend_after_days="15"))
    d.issue(origin="system", request_id="req-1", request_status="pending",
            overrides={"suspend_at": "2026-01-05"})
    d.tick("2026-01-05")
    [n] = d.of("notify.suspended")
    assert n["request_cancel_at"] == T("2026-01-10")
    assert "due_at" not in n  # v1.1: cancelled on 01-10 unless paid, it is never due


def test_request_cancel_at_is_gone_from_notices_after_request_completed():
    d = Driver(policy(reminder_every_days="3", request_cancel_after_days="9"))
    d.issue(origin="system", request_id="req-1", request_status="pending")
    d.tick("2026-01-02")
    d.complete_request()
    d.tick("2026-01-05")
    [n] = d.of("notify.reminder")
    assert "request_cancel_at" not in n
    assert d.of("request.cancel") == []


def test_reseller_gets_a_copy_when_policy_says_notify_reseller():
    d = Driver(policy(due_soon_days="[3]", notify_reseller="true"))
    d.issue(reseller_id="res-1")
    d.tick("2026-01-28")
    [customer] = d.of("notify.due_soon", audience="customer")
    [reseller] = d.of("notify.due_soon", audience="reseller")
    for key in ("customer_id", "amount_due", "currency", "due_at", "invoice_id", "type"):
        assert reseller[key] == customer[key]
    assert reseller["command_id"] != customer["command_id"]


def test_no_reseller_copy_without_reseller_id():
    d = Driver(policy(due_soon_days="[3]", notify_reseller="true"))
    d.issue()
    d.tick("2026-01-28")
    assert [v["audience"] for v in d.of("notify.due_soon", audience=None)] == ["customer"]


def test_no_reseller_copy_when_notify_reseller_is_false():
    d = Driver(policy(due_soon_days="[3]", notify_reseller="false"))
    d.issue(reseller_id="res-1")
    d.tick("2026-01-28")
    assert [v["audience"] for v in d.of("notify.due_soon", audience=None)] == ["customer"]


def test_reseller_copy_of_every_payment_notice():
    d = Driver(policy(notify_reseller="true", due_soon_days="[3]", reminder_every_days="10",
                      late_fee='"5.00"', limit_after_days="1", suspend_after_days="2"))
    d.issue(reseller_id="res-1", order_id="ord-1")
    d.ticks("2026-01-02", "2026-02-02")
    notices = [t for t in d.types(audience="customer") if t.startswith("notify.")]
    assert sorted(notices) == sorted(t for t in d.types(audience="reseller")
                                     if t.startswith("notify."))
    assert {"notify.due_soon", "notify.reminder", "notify.overdue", "notify.late_fee",
            "notify.limited", "notify.suspended"} <= set(notices)


def test_every_output_names_its_cause_time_and_invoice():
    d = Driver(policy(auto_charge='"on_issue"', charge_retry_days="[1]", due_soon_days="[3]",
                      reminder_every_days="10", late_fee='"5.00"', limit_after_days="1",
                      suspend_after_days="2", delete_after_days="3", notify_reseller="true"))
    issued = d.issue(order_id="ord-1", reseller_id="res-1", event_id="iss-1")
    for c in issued.commands:
        assert c.value["causation_id"] == "iss-1"
        assert c.value["issued_at"] == T("2026-01-01")
    d.tick("2026-01-02", event_id="t-0102")
    failed = d.charge_failed(1, hard=True)
    assert failed.commands
    for day in ("2026-01-11", "2026-01-28", "2026-01-31", "2026-02-01", "2026-02-02",
                "2026-02-03"):
        result = d.tick(day, event_id=f"t-{day}")
        assert result.commands, day
        for c in result.commands:
            assert c.value["causation_id"] == f"t-{day}"
            assert c.value["issued_at"] == T(day)
    types = set(d.types(audience=None))
    assert {"charge.request", "notify.charge_failed", "notify.due_soon", "notify.reminder",
            "notify.overdue", "invoice.late_fee", "notify.late_fee", "service.limit",
            "service.suspend", "service.delete", "invoice.status"} <= types
    for c in d.log:
        assert {"command_id", "type", "issued_at", "causation_id", "invoice_id"} <= set(c.value)
        assert c.value["invoice_id"] == "inv-1"
    assert len({c.command_id for c in d.log}) == len(d.log)


def test_a_gap_fires_each_one_shot_once_in_time_order():
    d = Driver(policy(due_soon_days="[7, 3]", late_fee='"5.00"', late_fee_after_days="1",
                      limit_after_days="2"))
    d.issue(order_id="ord-1")
    d.tick("2026-01-02")
    # Both due-soon moments fell in the gap, now past due: dropped (v1.1, before due only).
    assert d.types(d.tick("2026-02-10")) == [
        "invoice.status", "notify.overdue",
        "invoice.late_fee", "notify.late_fee", "service.limit", "notify.limited",
    ]
    assert d.ticks("2026-02-11", "2026-03-31") == []


def test_replaying_the_same_input_gives_the_same_command_ids():
    def run() -> list[str]:
        d = Driver(policy(due_soon_days="[3]", reminder_every_days="5", notify_reseller="true",
                          late_fee='"5.00"', suspend_after_days="3"))
        d.issue(reseller_id="res-1", order_id="ord-1", event_id="iss-1")
        d.pay(amount="10.00", payment_id="p-1", event_id="pay-1")
        d.ticks("2026-01-02", "2026-02-10")
        return [c.command_id for c in d.log]

    first = run()
    assert first == run()
    assert len(set(first)) == len(first)
