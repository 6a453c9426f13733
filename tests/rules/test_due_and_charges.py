"""Contract §2 rules 1 (due date) and 2 (auto-charge with retries)."""

from __future__ import annotations

from tests.driver import Driver, policy


def charging(when: str, retry: str = "[3, 5, 7]") -> Driver:
    return Driver(policy(auto_charge=f'"{when}"', charge_retry_days=retry))


def charges(d: Driver) -> list[tuple[str, int, str]]:
    """Every charge.request so far as (issued_at day, attempt, amount)."""
    return [(c["issued_at"][:10], c["attempt"], c["amount"]) for c in d.of("charge.request")]


def becomes_overdue(d: Driver, day_before: str, day: str) -> None:
    assert d.tick(day_before).commands == []
    assert d.types(d.tick(day)) == ["invoice.status", "notify.overdue"]
    assert d.statuses()[-1] == "overdue"
    assert d.of("notify.overdue")[0]["due_at"] == f"{day}T00:00:00Z"


# -- rule 1: due date ------------------------------------------------------------------------


def test_due_date_is_issued_at_plus_terms_days():
    d = Driver(policy(terms_days="10"))
    d.issue(issued_at="2026-01-01")
    becomes_overdue(d, "2026-01-10", "2026-01-11")


def test_explicit_due_at_wins_over_terms_days():
    d = Driver(policy(terms_days="30"))
    d.issue(issued_at="2026-01-01", due_at="2026-01-05")
    becomes_overdue(d, "2026-01-04", "2026-01-05")


BUSINESS = policy("\n[class.business.out_of_turn]\nterms_days = 6\n")


def test_business_out_of_turn_invoice_is_net_6():
    d = Driver(BUSINESS)
    d.issue(issued_at="2026-01-01", customer_class="business", kind="out_of_turn")
    becomes_overdue(d, "2026-01-06", "2026-01-07")


def test_business_regular_invoice_keeps_net_30():
    d = Driver(BUSINESS)
    d.issue(issued_at="2026-01-01", customer_class="business", kind="regular")
    becomes_overdue(d, "2026-01-30", "2026-01-31")


def test_out_of_turn_invoice_of_another_class_keeps_net_30():
    d = Driver(BUSINESS)
    d.issue(issued_at="2026-01-01", customer_class="residential", kind="out_of_turn")
    becomes_overdue(d, "2026-01-30", "2026-01-31")


def test_kind_section_overrides_class_section():
    d = Driver(policy("\n[class.business]\nterms_days = 20\n"
                      "\n[class.business.out_of_turn]\nterms_days = 6\n"))
    d.issue("inv-1", customer_class="business")
    d.issue("inv-2", customer_class="business", kind="out_of_turn")
    assert d.tick("2026-01-06").commands == []
    assert d.types(d.tick("2026-01-07")) == ["invoice.status", "notify.overdue"]
    assert d.statuses("inv-2") == ["unpaid", "overdue"]
    assert d.tick("2026-01-20").commands == []
    d.tick("2026-01-21")
    assert d.statuses("inv-1") == ["unpaid", "overdue"]


def test_explicit_due_at_wins_over_class_terms():
    d = Driver(BUSINESS)
    d.issue(customer_class="business", kind="out_of_turn", due_at="2026-01-15")
    becomes_overdue(d, "2026-01-14", "2026-01-15")


# -- rule 2: auto-charge ---------------------------------------------------------------------


def test_on_issue_charges_what_is_due_at_issue_as_attempt_1():
    d = charging("on_issue")
    result = d.issue(amount="120.50")
    [charge] = [c.value for c in result.commands if c.value["type"] == "charge.request"]
    assert (charge["amount"], charge["attempt"], charge["currency"]) == ("120.50", 1, "USD")
    assert charge["issued_at"] == "2026-01-01T00:00:00Z"


def test_on_issue_charges_only_what_early_payments_left_due():
    d = charging("on_issue")
    d.tick("2026-01-01")
    d.pay(amount="30.00")  # before its invoice: held, then applied when the invoice arrives
    d.issue(amount="100.00")
    assert charges(d) == [("2026-01-01", 1, "70.00")]


def test_on_issue_does_not_charge_an_invoice_paid_before_it_arrived():
    d = charging("on_issue")
    d.tick("2026-01-01")
    d.pay(amount="100.00")
    d.issue(amount="100.00")
    assert charges(d) == []
    assert d.statuses()[-1] == "paid"


def test_no_charge_when_auto_charge_is_off():
    d = Driver(policy(auto_charge='"off"'))
    d.issue()
    d.ticks("2026-01-01", "2026-02-15", 1)
    assert d.of("charge.request") == []


def test_on_due_charges_at_due_at_and_not_a_day_earlier():
    d = charging("on_due")
    assert d.types(d.issue()) == ["invoice.status"]
    d.ticks("2026-01-02", "2026-01-30")
    assert d.of("charge.request") == []
    d.tick("2026-01-31")
    assert charges(d) == [("2026-01-31", 1, "100.00")]


def test_on_due_charges_only_what_is_still_due():
    d = charging("on_due")
    d.issue()
    d.pay(amount="60.00")
    d.tick("2026-01-31")
    assert charges(d) == [("2026-01-31", 1, "40.00")]


def test_on_due_does_not_charge_a_paid_invoice():
    d = charging("on_due")
    d.issue()
    d.tick("2026-01-20")
    d.pay(amount="100.00")
    d.ticks("2026-01-21", "2026-02-28")
    assert d.of("charge.request") == []


def test_soft_failure_retries_after_the_first_retry_day():
    d = charging("on_issue", "[3, 5, 7]")
    d.issue()
    d.tick("2026-01-02")
    d.charge_failed(1)
    assert d.tick("2026-01-04").commands == []
    assert d.types(d.tick("2026-01-05")) == ["charge.request"]
    assert charges(d)[-1] == ("2026-01-05", 2, "100.00")


def test_soft_failures_walk_the_retry_list_then_stop():
    d = charging("on_issue", "[3, 5, 7]")
    d.issue()
    d.tick("2026-01-02")
    d.charge_failed(1)  # attempt 2 on 01-05
    d.tick("2026-01-05")
    d.charge_failed(2)  # attempt 3 five days later
    assert d.tick("2026-01-09").commands == []
    d.tick("2026-01-10")
    d.charge_failed(3)  # attempt 4 seven days later
    assert d.tick("2026-01-16").commands == []
    d.tick("2026-01-17")
    d.charge_failed(4)  # the list has run out
    d.ticks("2026-01-18", "2026-03-31")
    assert [c[:2] for c in charges(d)] == [
        ("2026-01-01", 1), ("2026-01-05", 2), ("2026-01-10", 3), ("2026-01-17", 4),
    ]


def test_retry_charges_only_what_is_still_due():
    d = charging("on_issue", "[3]")
    d.issue()
    d.tick("2026-01-02")
    d.charge_failed(1)
    d.pay(amount="25.00")
    d.tick("2026-01-05")
    assert charges(d)[-1] == ("2026-01-05", 2, "75.00")


def test_hard_failure_stops_retries_and_notifies():
    d = charging("on_issue", "[3, 5, 7]")
    d.issue()
    d.tick("2026-01-02")
    result = d.charge_failed(1, hard=True)
    assert d.types(result) == ["notify.charge_failed"]
    assert d.of("notify.charge_failed")[0]["customer_id"] == "cust-1"
    d.ticks("2026-01-03", "2026-02-28")
    assert [c[1] for c in charges(d)] == [1]


def test_hard_failure_of_a_retry_stops_retries():
    d = charging("on_issue", "[3, 5, 7]")
    d.issue()
    d.tick("2026-01-02")
    d.charge_failed(1)
    d.tick("2026-01-05")
    assert d.types(d.charge_failed(2, hard=True)) == ["notify.charge_failed"]
    d.ticks("2026-01-06", "2026-02-28")
    assert [c[1] for c in charges(d)] == [1, 2]


def test_soft_failure_sends_no_notice():
    d = charging("on_issue", "[3]")
    d.issue()
    d.tick("2026-01-02")
    assert d.charge_failed(1).commands == []


def test_failure_for_an_attempt_not_awaited_is_ignored():
    d = charging("on_issue", "[3, 5, 7]")
    d.issue()
    d.tick("2026-01-02")
    assert d.charge_failed(2).commands == []  # attempt 2 was never sent
    assert d.charge_failed(3, hard=True).commands == []
    d.ticks("2026-01-03", "2026-01-20")
    assert [c[1] for c in charges(d)] == [1]


def test_a_failure_ignored_once_stays_ignored_when_redelivered():
    d = charging("on_due", "[3]")
    d.issue()
    early = {"type": "charge.failed", "event_id": "fail-early", "invoice_id": "inv-1",
             "attempt": 1, "hard": True}
    assert d.send(early).commands == []  # attempt 1 is not out yet
    d.tick("2026-01-31")  # due: attempt 1 goes out
    assert charges(d) == [("2026-01-31", 1, "100.00")]
    assert d.send(early).commands == []  # the same event again: a duplicate, not a failure
    assert d.of("notify.charge_failed") == []
    d.charge_failed(1)  # the real (soft) failure of attempt 1 is still awaited
    d.tick("2026-02-03")
    assert charges(d)[-1] == ("2026-02-03", 2, "100.00")


def test_repeated_failure_for_a_handled_attempt_does_not_move_the_retry():
    d = charging("on_issue", "[3, 5, 7]")
    d.issue()
    d.tick("2026-01-02")
    d.charge_failed(1)  # retry on 01-05
    d.tick("2026-01-04")
    assert d.charge_failed(1).commands == []  # a new event for the same attempt: not awaited
    assert d.charge_failed(1, hard=True).commands == []
    d.tick("2026-01-05")
    assert charges(d)[-1] == ("2026-01-05", 2, "100.00")


def test_no_retry_charge_once_paid():
    d = charging("on_issue", "[3, 5, 7]")
    d.issue()
    d.tick("2026-01-02")
    d.charge_failed(1)
    d.tick("2026-01-03")
    d.pay(amount="100.00")
    d.ticks("2026-01-04", "2026-02-28")
    assert [c[1] for c in charges(d)] == [1]


def test_due_date_keeps_the_time_of_day_of_issue():
    d = Driver(policy(terms_days="30"))
    d.issue(issued_at="2026-01-01T15:30:00Z")
    assert d.tick("2026-01-31T15:29:59Z").commands == []
    assert d.types(d.tick("2026-01-31T15:30:00Z")) == ["invoice.status", "notify.overdue"]
    assert d.of("notify.overdue")[0]["due_at"] == "2026-01-31T15:30:00Z"


def test_nothing_fires_one_second_before_due_at():
    d = Driver(policy())
    d.issue()
    assert d.tick("2026-01-30T23:59:59Z").commands == []
    assert d.types(d.tick("2026-01-31T00:00:00Z")) == ["invoice.status", "notify.overdue"]


def test_retry_counts_days_from_the_failure():
    d = charging("on_issue", "[3]")
    d.issue()
    d.tick("2026-01-10")
    d.charge_failed(1)
    assert d.tick("2026-01-12").commands == []
    d.tick("2026-01-13")
    assert charges(d)[-1] == ("2026-01-13", 2, "100.00")
