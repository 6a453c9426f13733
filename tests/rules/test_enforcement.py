"""Contract §2 rules 9-11: suspension, deletion and restoring a subject.

Dates with POLICY for an invoice issued 2026-01-01: due 01-31, suspend 02-15, delete 04-01.
"""

from __future__ import annotations

from typing import Any

import pytest

from dunning.streams.topics import PROVISIONING
from tests.driver import Driver

POLICY = """
[defaults]
terms_days = 30
suspend_after_days = 15
delete_after_days = 60
"""

LIMIT_POLICY = POLICY + "limit_after_days = 5\n"

SERVICE = ("service.limit", "service.suspend", "service.unsuspend", "service.delete",
           "request.cancel")


def provisioning(d: Driver, since: int = 0) -> list[dict[str, Any]]:
    return [c.value for c in d.log[since:] if c.topic == PROVISIONING]


def service_types(d: Driver, since: int = 0) -> list[str]:
    return [v["type"] for v in provisioning(d, since)]


def suspended(order_id: str | None = "ord-1", **fields: Any) -> Driver:
    """One invoice, suspended on 2026-02-15."""
    d = Driver(POLICY)
    d.tick("2026-01-01")
    if order_id is not None:
        fields["order_id"] = order_id
    d.issue(**fields)
    d.tick("2026-02-15")
    assert d.of("service.suspend")
    return d


# -- rule 9: suspension -----------------------------------------------------------------------


def test_suspends_at_due_plus_suspend_after_days() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.tick("2026-02-14")
    assert "service.suspend" not in d.types()
    r = d.tick("2026-02-15")
    assert d.types(r) == ["service.suspend", "notify.suspended"]


def test_suspension_counts_from_an_explicit_due_at() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(due_at="2026-01-11")
    d.tick("2026-01-25")
    assert d.of("service.suspend") == []
    d.tick("2026-01-26")
    assert len(d.of("service.suspend")) == 1


def test_override_suspend_at_wins_over_the_policy() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(overrides={"suspend_at": "2026-02-05"})
    d.tick("2026-02-04")
    assert d.of("service.suspend") == []
    d.tick("2026-02-05")
    assert len(d.of("service.suspend")) == 1
    d.tick("2026-02-15")
    assert len(d.of("service.suspend")) == 1


def test_override_suspend_at_before_due_at_fires_on_its_own_date() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(overrides={"suspend_at": "2026-01-10"})
    d.tick("2026-01-09")
    assert d.of("service.suspend") == []
    r = d.tick("2026-01-10")
    assert d.types(r) == ["service.suspend", "notify.suspended"]


def test_override_suspend_at_works_without_a_policy_suspension() -> None:
    d = Driver("[defaults]\nterms_days = 30\n")
    d.tick("2026-01-01")
    d.issue(overrides={"suspend_at": "2026-03-01"})
    d.tick("2026-02-28")
    assert d.of("service.suspend") == []
    d.tick("2026-03-01")
    assert len(d.of("service.suspend")) == 1


def test_fully_paid_invoice_is_not_suspended() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.tick("2026-02-10")
    d.pay(amount="100.00")
    d.tick("2026-02-15")
    d.tick("2026-06-01")
    assert service_types(d) == []


def test_partial_payment_does_not_stop_suspension() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.pay(amount="99.99")
    d.tick("2026-02-14")
    assert d.of("service.suspend") == []
    d.tick("2026-02-15")
    assert len(d.of("service.suspend")) == 1


def test_suspend_names_the_order_as_subject() -> None:
    d = suspended(order_id="ord-7")
    (cmd,) = d.of("service.suspend")
    assert cmd["subject"] == {"kind": "order", "id": "ord-7"}
    assert cmd["invoice_ids"] == ["inv-1"]
    assert cmd["invoice_id"] == "inv-1"


def test_suspend_names_the_customer_as_subject_without_an_order() -> None:
    d = suspended(order_id=None, customer_id="cust-9")
    (cmd,) = d.of("service.suspend")
    assert cmd["subject"] == {"kind": "customer", "id": "cust-9"}
    assert cmd["invoice_ids"] == ["inv-1"]


def test_suspension_notice_says_what_is_due_and_when_deletion_comes() -> None:
    d = suspended()
    (notice,) = d.of("notify.suspended")
    assert notice["customer_id"] == "cust-1"
    assert notice["amount_due"] == "100.00"
    assert notice["currency"] == "USD"
    assert notice["delete_at"] == "2026-04-01T00:00:00Z"


# -- rule 10: deletion ------------------------------------------------------------------------


def test_deletes_at_due_plus_delete_after_days() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-03-31")
    assert d.of("service.delete") == []
    r = d.tick("2026-04-01")
    assert d.types(r) == ["service.delete", "notify.deleted"]
    (cmd,) = d.of("service.delete")
    assert cmd["subject"] == {"kind": "order", "id": "ord-1"}
    assert cmd["invoice_ids"] == ["inv-1"]


def test_override_delete_at_wins_over_the_policy() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(overrides={"suspend_at": "2026-01-10", "delete_at": "2026-01-30"})
    d.tick("2026-01-29")
    assert d.of("service.delete") == []
    d.tick("2026-01-30")
    assert len(d.of("service.delete")) == 1


def test_fully_paid_invoice_is_not_deleted() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.tick("2026-02-15")
    d.pay(amount="100.00")
    d.tick("2026-04-01")
    d.tick("2027-01-01")
    assert d.of("service.delete") == []


def test_partial_payment_does_not_stop_deletion() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.tick("2026-03-01")
    d.pay(amount="50.00")
    d.tick("2026-04-01")
    assert len(d.of("service.delete")) == 1


def _deleted() -> Driver:
    """inv-1 of ord-1, 10.00 paid by pay-1, deleted on 2026-04-01."""
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.pay(amount="10.00", payment_id="pay-1")
    d.tick("2026-04-01")
    assert service_types(d) == ["service.suspend", "service.delete"]
    return d


AFTER_DELETION = {
    "paid_in_full": lambda d: d.pay(amount="90.00"),
    "payment_reversed": lambda d: d.reverse("pay-1", "10.00"),
    "adjusted_to_what_was_paid": lambda d: d.adjust("10.00"),
    "adjusted_up": lambda d: d.adjust("500.00"),
    "cancelled": lambda d: d.cancel(),
    "another_invoice_goes_unpaid": lambda d: d.issue("inv-2", issued_at="2026-04-02",
                                                      order_id="ord-1"),
    "another_invoice_paid_after_its_suspension": lambda d: (
        d.issue("inv-2", issued_at="2026-04-02", order_id="ord-1"),
        d.tick("2026-05-20"),
        d.pay("inv-2", amount="100.00"),
    ),
    "another_invoice_cancels_its_request": lambda d: d.issue(
        "inv-2", issued_at="2026-04-02", order_id="ord-1", origin="system",
        request_id="req-2", request_status="pending",
    ),
}


@pytest.mark.parametrize("action", AFTER_DELETION.values(), ids=AFTER_DELETION.keys())
def test_deletion_is_irreversible(action: Any) -> None:
    d = _deleted()
    mark = len(d.log)
    action(d)
    d.ticks("2026-04-02", "2026-04-20")
    d.tick("2027-06-01")
    assert service_types(d, mark) == []
    assert not [c for c in d.log[mark:] if c.value["type"] in (
        "notify.unsuspended", "notify.suspended", "notify.deleted", "notify.limited")]


def test_deletion_of_a_customer_subject_is_irreversible_for_later_invoices() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue()
    d.tick("2026-04-01")
    mark = len(d.log)
    d.issue("inv-2", issued_at="2026-04-02")
    d.tick("2027-01-01")
    d.pay("inv-1")
    assert service_types(d, mark) == []


# -- rule 11: restore -------------------------------------------------------------------------


def test_full_payment_restores_a_suspended_subject() -> None:
    d = suspended()
    r = d.pay(amount="100.00")
    assert {"service.unsuspend", "notify.unsuspended"} <= set(d.types(r))
    (cmd,) = d.of("service.unsuspend")
    assert cmd["subject"] == {"kind": "order", "id": "ord-1"}
    assert cmd["invoice_ids"] == []


def test_restore_after_a_partial_then_the_final_payment() -> None:
    d = suspended()
    r = d.pay(amount="40.00")
    assert "service.unsuspend" not in d.types(r)
    r = d.pay(amount="60.00")
    assert "service.unsuspend" in d.types(r)


def test_overpayment_restores() -> None:
    d = suspended()
    r = d.pay(amount="150.00")
    assert "service.unsuspend" in d.types(r)


def test_restored_subject_is_not_deleted_later() -> None:
    d = suspended()
    d.pay(amount="100.00")
    d.tick("2027-01-01")
    assert service_types(d) == ["service.suspend", "service.unsuspend"]


def test_cancellation_restores_a_suspended_subject() -> None:
    d = suspended()
    r = d.cancel()
    assert {"service.unsuspend", "notify.unsuspended"} <= set(d.types(r))
    d.tick("2027-01-01")
    assert service_types(d) == ["service.suspend", "service.unsuspend"]


def test_full_payment_restores_a_limited_subject() -> None:
    d = Driver(LIMIT_POLICY)
    d.tick("2026-01-01")
    d.issue(order_id="ord-1")
    d.tick("2026-02-05")
    assert service_types(d) == ["service.limit"]
    r = d.pay(amount="100.00")
    assert {"service.unsuspend", "notify.unsuspended"} <= set(d.types(r))


def _two_invoices_one_order() -> Driver:
    """inv-1 (suspends 02-15) and inv-2 (suspends 02-19) both for ord-1."""
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue("inv-1", order_id="ord-1")
    d.issue("inv-2", issued_at="2026-01-05", order_id="ord-1")
    d.ticks("2026-01-06", "2026-02-25")
    return d


def test_a_subject_held_by_two_invoices_gets_one_suspend() -> None:
    d = _two_invoices_one_order()
    assert service_types(d) == ["service.suspend"]
    assert len(d.of("notify.suspended", invoice_id=None)) == 1
    assert d.of("service.suspend")[0]["invoice_ids"] == ["inv-1"]


def test_paying_one_of_two_holders_restores_nothing() -> None:
    d = _two_invoices_one_order()
    r = d.pay("inv-1", amount="100.00")
    assert "service.unsuspend" not in d.types(r)
    assert "notify.unsuspended" not in d.types(r)


def test_paying_the_last_holder_restores() -> None:
    d = _two_invoices_one_order()
    d.pay("inv-1", amount="100.00")
    r = d.pay("inv-2", amount="100.00")
    assert {"service.unsuspend", "notify.unsuspended"} <= set(d.types(r))
    assert service_types(d) == ["service.suspend", "service.unsuspend"]


def test_paying_the_holders_in_the_other_order_restores_on_the_last() -> None:
    d = _two_invoices_one_order()
    assert "service.unsuspend" not in d.types(d.pay("inv-2", amount="100.00"))
    assert "service.unsuspend" in d.types(d.pay("inv-1", amount="100.00"))


def test_cancelling_the_last_holder_restores() -> None:
    d = _two_invoices_one_order()
    d.pay("inv-1", amount="100.00")
    r = d.cancel("inv-2")
    assert "service.unsuspend" in d.types(r)


def test_orders_of_one_customer_are_different_subjects() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue("inv-1", order_id="ord-1")
    d.issue("inv-2", order_id="ord-2")
    d.tick("2026-02-15")
    suspends = [v for v in provisioning(d) if v["type"] == "service.suspend"]
    assert sorted(v["subject"]["id"] for v in suspends) == ["ord-1", "ord-2"]
    assert suspends[0]["command_id"] != suspends[1]["command_id"]
    r = d.pay("inv-1", amount="100.00")
    (restore,) = [v for v in provisioning(d) if v["type"] == "service.unsuspend"]
    assert restore["subject"] == {"kind": "order", "id": "ord-1"}
    assert "service.unsuspend" in d.types(r)


def test_an_order_and_its_customer_are_different_subjects() -> None:
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.issue("inv-1", order_id="ord-1")
    d.issue("inv-2")
    d.tick("2026-02-15")
    subjects = [v["subject"] for v in provisioning(d) if v["type"] == "service.suspend"]
    assert sorted((s["kind"], s["id"]) for s in subjects) == [
        ("customer", "cust-1"), ("order", "ord-1")]
    assert "service.unsuspend" in d.types(d.pay("inv-2", amount="100.00"))
