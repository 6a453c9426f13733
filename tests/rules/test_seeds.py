"""The seed documents' worked examples (seeds/002_: LogicBoxes, seeds/000_: PortaBilling)."""

from __future__ import annotations

from tests.driver import Driver

PROVISIONING = ("service.limit", "service.suspend", "service.unsuspend", "service.delete",
                "request.cancel")

# The contract's sample policy (§3), without due-soon notices to keep the asserts short.
SAMPLE = """
[defaults]
terms_days = 30
auto_charge = "off"
charge_retry_days = [3, 5, 7]
due_soon_days = []
reminder_every_days = false
collection_threshold = "0.00"
late_fee = false
late_fee_percent = false
late_fee_after_days = 0
limit_after_days = false
suspend_after_days = 15
delete_after_days = 60
request_cancel_after_days = 9
notify_reseller = true

[debit_note]
reminder_every_days = 5

[class.business.out_of_turn]
terms_days = 6

[product.domain_registration]
suspend_after_days = false
delete_after_days = false
"""


def provisioning(d: Driver) -> list[tuple[str, str]]:
    """Every provisioning command so far as (day, type)."""
    return [(c.value["issued_at"][:10], c.value["type"]) for c in d.log
            if c.value["type"] in PROVISIONING]


# -- LogicBoxes: Order Suspension Date / Order Deletion Date ----------------------------------
# Invoice 1, web design of abcd.com, USD 100, 1 Jan 2003, suspension 10 Jan, deletion 30 Jan.


def web_design() -> Driver:
    d = Driver(SAMPLE)
    d.issue("1", issued_at="2003-01-01", amount="100.00", customer_id="A",
            order_id="abcd.com", overrides={"suspend_at": "2003-01-10",
                                            "delete_at": "2003-01-30"})
    return d


def test_web_design_paid_in_full_before_10_jan_is_never_suspended_or_deleted():
    d = web_design()
    d.tick("2003-01-05")
    d.pay("1", "100.00")
    d.ticks("2003-01-06", "2003-04-30")
    assert provisioning(d) == []


def test_web_design_partly_paid_is_still_suspended_on_10_jan_and_deleted_on_30_jan():
    d = web_design()
    d.tick("2003-01-05")
    d.pay("1", "99.99")
    assert d.tick("2003-01-09").commands == []
    assert d.types(d.tick("2003-01-10")) == ["service.suspend", "notify.suspended"]
    d.ticks("2003-01-11", "2003-01-29")
    assert d.types(d.tick("2003-01-30")) == ["service.delete", "notify.deleted"]
    assert provisioning(d) == [("2003-01-10", "service.suspend"),
                               ("2003-01-30", "service.delete")]


def test_web_design_not_paid_is_suspended_on_10_jan_and_deleted_on_30_jan_not_earlier():
    d = web_design()
    d.ticks("2003-01-02", "2003-01-09")
    assert provisioning(d) == []
    d.tick("2003-01-10")
    d.ticks("2003-01-11", "2003-01-29")
    assert provisioning(d) == [("2003-01-10", "service.suspend")]
    d.tick("2003-01-30")
    [suspend] = d.of("service.suspend")
    [delete] = d.of("service.delete")
    for cmd in (suspend, delete):
        assert cmd["subject"] == {"kind": "order", "id": "abcd.com"}
        assert cmd["invoice_ids"] == ["1"]
    assert d.of("notify.suspended")[0]["delete_at"] == "2003-01-30T00:00:00Z"


def test_web_design_gap_in_ticks_still_suspends_then_deletes_once_each_in_order():
    d = web_design()
    d.tick("2003-02-15")
    assert provisioning(d) == [("2003-02-15", "service.suspend"),
                               ("2003-02-15", "service.delete")]


def test_web_design_paid_in_full_after_suspension_is_reactivated():
    d = web_design()
    d.tick("2003-01-10")
    d.tick("2003-01-15")
    result = d.pay("1", "100.00")
    assert d.types(result) == ["invoice.status", "service.unsuspend", "notify.unsuspended"]
    [unsuspend] = d.of("service.unsuspend")
    assert unsuspend["subject"] == {"kind": "order", "id": "abcd.com"}
    d.ticks("2003-01-16", "2003-04-30")
    assert provisioning(d) == [("2003-01-10", "service.suspend"),
                               ("2003-01-15", "service.unsuspend")]


def test_web_design_partial_payment_after_suspension_does_not_reactivate():
    d = web_design()
    d.tick("2003-01-10")
    d.pay("1", "50.00")
    assert d.of("service.unsuspend") == []


def test_web_design_paying_after_deletion_restores_nothing():
    d = web_design()
    d.tick("2003-01-10")
    d.tick("2003-01-30")
    result = d.pay("1", "100.00")
    assert d.types(result) == ["invoice.status"]
    d.ticks("2003-01-31", "2003-03-31")
    assert provisioning(d) == [("2003-01-10", "service.suspend"),
                               ("2003-01-30", "service.delete")]


def test_a_deleted_order_takes_no_further_provisioning_command():
    d = web_design()
    d.tick("2003-01-30")
    d.issue("2", issued_at="2003-02-01", customer_id="A", order_id="abcd.com",
            overrides={"suspend_at": "2003-02-05"})
    d.ticks("2003-02-01", "2003-06-30")
    assert [t for _, t in provisioning(d)] == ["service.suspend", "service.delete"]
    assert d.of("notify.suspended", invoice_id="2") == []


# -- LogicBoxes: Request Cancellation Date ----------------------------------------------------
# Invoice 1, renewal of abcd.com, USD 100, 1 Jan 2003, renewal pending, cancellation 10 Jan.


def renewal(**fields: object) -> Driver:
    d = Driver(SAMPLE)
    fields = {"origin": "system", "request_status": "pending", **fields}
    d.issue("1", issued_at="2003-01-01", amount="100.00", customer_id="A",
            order_id="abcd.com", request_id="renew-abcd.com", **fields)
    return d


def test_renewal_not_paid_nor_executed_is_cancelled_on_10_jan_not_earlier():
    d = renewal()  # request_cancel_after_days = 9: 1 Jan + 9 days = 10 Jan
    d.ticks("2003-01-02", "2003-01-09")
    assert [t for t in d.types(audience=None) if t != "invoice.status"] == []
    result = d.tick("2003-01-10")
    assert set(d.types(result)) == {"request.cancel", "invoice.cancel",
                                    "notify.request_cancelled", "invoice.status"}
    [cancel] = d.of("request.cancel")
    assert cancel["request_id"] == "renew-abcd.com"
    assert cancel["invoice_id"] == "1"
    [void] = d.of("invoice.cancel")
    assert void["invoice_id"] == "1"
    assert d.statuses("1") == ["unpaid", "cancelled"]


def test_renewal_cancellation_date_set_on_the_invoice_wins():
    d = renewal(overrides={"request_cancel_at": "2003-01-20"})
    d.ticks("2003-01-02", "2003-01-19")
    assert d.of("request.cancel") == []
    d.tick("2003-01-20")
    assert len(d.of("request.cancel")) == 1


def test_renewal_cancelled_invoice_then_ignores_events_and_time():
    d = renewal()
    d.tick("2003-01-10")
    before = len(d.log)
    d.pay("1", "100.00")
    d.ticks("2003-01-11", "2003-04-30")
    assert len(d.log) == before


def test_renewal_payment_of_usd_10_removes_the_cancellation_date():
    d = renewal()
    d.tick("2003-01-05")
    d.pay("1", "10.00")
    d.ticks("2003-01-06", "2003-01-31")
    assert d.of("request.cancel") == []
    assert d.of("invoice.cancel") == []
    assert "cancelled" not in d.statuses("1")


def test_renewal_payment_removes_the_cancellation_date_for_good_even_if_reversed():
    d = renewal()
    d.tick("2003-01-05")
    d.pay("1", "10.00", payment_id="p-10")
    d.tick("2003-01-06")
    d.reverse("p-10", "10.00", invoice_id="1")
    d.ticks("2003-01-07", "2003-01-31")
    assert d.of("request.cancel") == []
    assert "cancelled" not in d.statuses("1")


def test_renewal_executed_without_payment_removes_the_cancellation_date():
    d = renewal()
    d.tick("2003-01-05")
    d.complete_request("1", without_payment=True)
    d.ticks("2003-01-06", "2003-01-31")
    assert d.of("request.cancel") == []
    assert d.of("notify.request_cancelled") == []
    assert d.statuses("1") == ["unpaid", "overdue"]


def test_manual_invoice_with_pending_request_has_no_cancellation_date():
    d = renewal(origin="manual")
    d.ticks("2003-01-02", "2003-01-31")
    assert d.of("request.cancel") == []


# -- PortaBilling: terms per class and kind, overdue stage, threshold --------------------------

PORTA = SAMPLE.replace("limit_after_days = false", "limit_after_days = 3").replace(
    'late_fee = false', 'late_fee = "5.00"') + """
[class.business]
collection_threshold = "10.00"
"""


def test_business_regular_invoice_is_net_30_and_overdue_stage_starts_on_day_30():
    d = Driver(PORTA)
    d.issue("r", issued_at="2026-01-01", customer_class="business")
    assert d.tick("2026-01-30").commands == []
    assert d.types(d.tick("2026-01-31")) == [
        "invoice.status", "notify.overdue", "invoice.late_fee", "notify.late_fee",
    ]
    assert d.of("notify.overdue")[0]["due_at"] == "2026-01-31T00:00:00Z"
    assert d.tick("2026-02-02").commands == []
    assert d.types(d.tick("2026-02-03")) == ["service.limit", "notify.limited"]


def test_business_out_of_turn_invoice_is_net_6_and_overdue_stage_starts_on_day_6():
    d = Driver(PORTA)
    d.issue("o", issued_at="2026-01-01", customer_class="business", kind="out_of_turn")
    assert d.tick("2026-01-06").commands == []
    assert d.types(d.tick("2026-01-07")) == [
        "invoice.status", "notify.overdue", "invoice.late_fee", "notify.late_fee",
    ]
    assert d.of("notify.overdue")[0]["due_at"] == "2026-01-07T00:00:00Z"
    assert d.tick("2026-01-09").commands == []
    assert d.types(d.tick("2026-01-10")) == ["service.limit", "notify.limited"]
    d.ticks("2026-01-11", "2026-01-21")
    assert d.types(d.tick("2026-01-22")) == ["service.suspend", "notify.suspended"]


def test_business_invoice_within_collection_threshold_skips_stage_3():
    d = Driver(PORTA)
    d.issue("small", issued_at="2026-01-01", amount="10.00", customer_class="business")
    assert d.types(d.tick("2026-01-31")) == ["invoice.status"]
    d.ticks("2026-02-01", "2026-04-30")
    assert d.statuses("small") == ["unpaid", "overdue"]
    assert [t for t in d.types(audience=None) if t != "invoice.status"] == []


def test_business_invoice_above_collection_threshold_runs_stage_3():
    d = Driver(PORTA)
    d.issue("big", issued_at="2026-01-01", amount="10.01", customer_class="business")
    assert d.types(d.tick("2026-01-31"))[:2] == ["invoice.status", "notify.overdue"]


def test_threshold_of_the_business_class_does_not_apply_to_other_classes():
    d = Driver(PORTA)
    d.issue("home", issued_at="2026-01-01", amount="10.00", customer_class="residential")
    assert d.types(d.tick("2026-01-31"))[:2] == ["invoice.status", "notify.overdue"]


def test_domain_registration_product_is_never_suspended_or_deleted():
    d = Driver(SAMPLE)
    d.issue("dom", issued_at="2026-01-01", product="domain_registration", order_id="ex.com")
    d.ticks("2026-01-31", "2026-05-31", 1)
    assert provisioning(d) == []


def test_renewal_payment_that_arrived_before_the_invoice_removes_the_cancellation_date():
    d = Driver(SAMPLE)
    d.tick("2003-01-01")
    d.pay("1", "10.00")  # held until the invoice arrives
    d.issue("1", issued_at="2003-01-01", customer_id="A", order_id="abcd.com",
            origin="system", request_id="renew-abcd.com", request_status="pending")
    d.ticks("2003-01-02", "2003-01-31")
    assert d.of("request.cancel") == []


def test_renewal_issued_with_completed_request_has_no_cancellation_date():
    d = renewal(request_status="completed")
    d.ticks("2003-01-02", "2003-01-31")
    assert d.of("request.cancel") == []
