"""Contract v1.1 §1 "Operator controls": invoice.updated, collection.paused and
collection.resumed, each test written from the contract's sentence it names.

Dates: an invoice issued 2026-01-01 on net 30 is due 2026-01-31; the base policy suspends
15 days after due (02-15) and deletes 60 days after (04-01).
"""

from __future__ import annotations

from typing import Any

from dunning.rules import model as m
from dunning.streams.topics import PROVISIONING
from tests.driver import Driver, at, policy


def update(d: Driver, due_at: str | None = None, invoice_id: str = "inv-1",
           **overrides: Any) -> Any:
    record: dict[str, Any] = {"type": "invoice.updated", "invoice_id": invoice_id}
    if due_at is not None:
        record["due_at"] = at(due_at)
    if overrides:
        record["overrides"] = {k: at(v) if isinstance(v, str) else v
                               for k, v in overrides.items()}
    return d.send(record)


def pause(d: Driver, until: str | None = None, reason: str = "promise_to_pay",
          invoice_id: str = "inv-1") -> Any:
    record: dict[str, Any] = {"type": "collection.paused", "invoice_id": invoice_id,
                              "reason": reason}
    if until is not None:
        record["until"] = at(until)
    return d.send(record)


def resume(d: Driver, invoice_id: str = "inv-1") -> Any:
    return d.send({"type": "collection.resumed", "invoice_id": invoice_id})


def provisioning(d: Driver) -> list[tuple[str, str]]:
    return [(c.value["issued_at"], c.value["type"]) for c in d.log if c.topic == PROVISIONING]


def sent(d: Driver, ctype: str) -> list[str]:
    return [v["issued_at"] for v in d.of(ctype)]


def issued(policy_text: str | None = None, **fields: Any) -> Driver:
    d = Driver(policy_text) if policy_text else Driver()
    d.tick("2026-01-01")
    d.issue(**fields)
    return d


# -- invoice.updated ------------------------------------------------------------------------


def test_a_suspension_moved_later_postpones_it() -> None:
    d = issued()
    d.tick("2026-02-10")
    update(d, suspend_at="2026-02-20")
    d.ticks("2026-02-11", "2026-02-25")
    assert provisioning(d) == [(at("2026-02-20"), "service.suspend")]


def test_a_suspension_moved_earlier_comes_earlier() -> None:
    d = issued()
    update(d, suspend_at="2026-02-03")
    d.ticks("2026-01-02", "2026-02-20")
    assert provisioning(d) == [(at("2026-02-03"), "service.suspend")]


def test_a_date_moved_into_the_past_fires_at_the_next_tick_once() -> None:
    d = issued()
    d.tick("2026-02-05")
    update(d, suspend_at="2026-02-02")
    assert provisioning(d) == []  # an update is no tick
    d.tick("2026-02-05T12:00:00Z")
    d.ticks("2026-02-06", "2026-02-20")
    assert provisioning(d) == [("2026-02-05T12:00:00Z", "service.suspend")]


def test_a_removed_date_never_fires_and_notices_no_longer_carry_it() -> None:
    d = issued()
    update(d, suspend_at=False, delete_at=False)
    d.ticks("2026-01-02", "2026-04-10")
    assert provisioning(d) == []
    overdue = d.of("notify.overdue")[0]
    assert "suspend_at" not in overdue and "delete_at" not in overdue


def test_a_stage_that_already_happened_is_not_redone() -> None:
    d = issued()
    d.ticks("2026-02-14", "2026-02-16")
    assert provisioning(d) == [(at("2026-02-15"), "service.suspend")]
    update(d, suspend_at="2026-02-20")
    d.ticks("2026-02-17", "2026-03-01")
    assert provisioning(d) == [(at("2026-02-15"), "service.suspend")]


def test_notices_after_an_update_carry_the_new_deadlines() -> None:
    d = issued(policy(due_soon_days="[3]", suspend_after_days="15"))
    update(d, due_at="2026-02-10", suspend_at="2026-03-01")
    d.ticks("2026-01-02", "2026-02-12")
    soon = d.of("notify.due_soon")
    assert [v["issued_at"] for v in soon] == [at("2026-02-07")]  # 3 days before the new due
    assert (soon[0]["due_at"], soon[0]["suspend_at"]) == (at("2026-02-10"), at("2026-03-01"))
    assert d.of("notify.overdue")[0]["issued_at"] == at("2026-02-10")


def test_a_due_date_moved_later_postpones_what_the_policy_counts_from_it() -> None:
    d = issued()
    update(d, due_at="2026-02-10")
    d.ticks("2026-01-02", "2026-04-20")
    assert d.statuses() == ["unpaid", "overdue"]
    assert d.of("invoice.status")[1]["issued_at"] == at("2026-02-10")
    assert provisioning(d) == [(at("2026-02-25"), "service.suspend"),
                               (at("2026-04-11"), "service.delete")]


def test_a_due_date_moved_earlier_and_into_the_past() -> None:
    d = issued()
    d.tick("2026-01-20")
    update(d, due_at="2026-01-15")  # in the past: the overdue stage starts at the next tick
    assert d.statuses() == ["unpaid"]
    d.tick("2026-01-21")
    assert d.statuses() == ["unpaid", "overdue"]
    assert sent(d, "notify.overdue") == [at("2026-01-21")]
    d.ticks("2026-01-22", "2026-02-05")
    assert provisioning(d) == [(at("2026-01-30"), "service.suspend")]  # 15 days after 01-15


def test_an_explicit_suspension_stays_when_the_due_date_moves() -> None:
    d = issued(overrides={"suspend_at": at("2026-02-20")})
    update(d, due_at="2026-02-05")
    d.ticks("2026-01-02", "2026-03-01")
    assert provisioning(d) == [(at("2026-02-20"), "service.suspend")]


def test_a_suspension_added_by_update_where_the_policy_had_none() -> None:
    d = issued(policy())  # every stage off
    update(d, suspend_at="2026-02-02")
    d.ticks("2026-01-02", "2026-02-05")
    assert provisioning(d) == [(at("2026-02-02"), "service.suspend")]


def test_reminders_turned_on_and_off_by_update() -> None:
    d = issued(policy())
    d.tick("2026-01-05")
    update(d, reminder_every_days=3)
    d.ticks("2026-01-06", "2026-01-12")
    assert sent(d, "notify.reminder") == [at("2026-01-08"), at("2026-01-11")]
    update(d, reminder_every_days=False)
    d.ticks("2026-01-13", "2026-01-30")
    assert len(d.of("notify.reminder")) == 2


def test_a_suspension_on_a_debit_note_is_invalid() -> None:
    d = issued(document="debit_note")
    before = d.invoice().actions[:]
    update(d, suspend_at="2026-02-20")
    assert [x.error for x in d.dead] == [m.INVALID_FIELD]
    assert d.invoice().actions == before


def test_a_date_before_issue_is_invalid_and_changes_nothing() -> None:
    d = issued()
    update(d, due_at="2025-12-01", suspend_at="2026-02-20")
    assert [x.error for x in d.dead] == [m.INVALID_FIELD]
    d.ticks("2026-01-02", "2026-02-16")
    assert provisioning(d) == [(at("2026-02-15"), "service.suspend")]


def test_a_date_more_than_3650_days_after_issue_is_invalid() -> None:
    d = issued()
    update(d, delete_at="2035-12-30T00:00:01Z")  # 3 650 days after 2026-01-01, and a second
    assert [x.error for x in d.dead] == [m.INVALID_FIELD]
    update(d, delete_at="2035-12-30T00:00:00Z")
    assert len(d.dead) == 1


def test_an_update_after_deletion_is_ignored() -> None:
    d = issued()
    d.tick("2026-04-01")
    assert update(d, suspend_at="2026-05-01").outcome == m.IGNORED


def test_a_redelivered_update_is_a_duplicate() -> None:
    d = issued()
    record = {"type": "invoice.updated", "invoice_id": "inv-1", "event_id": "upd-1",
              "overrides": {"suspend_at": at("2026-02-20")}}
    assert d.send(record).outcome == m.APPLIED
    assert d.send(record).outcome == m.DUPLICATE


# -- collection.paused / collection.resumed -------------------------------------------------


def test_nothing_time_driven_fires_while_paused() -> None:
    d = issued(policy(reminder_every_days="5", late_fee='"5.00"', limit_after_days="2",
                      suspend_after_days="15", delete_after_days="20", auto_charge='"on_due"'))
    d.tick("2026-01-02")
    pause(d, reason="dispute")
    since = len(d.log)
    d.ticks("2026-01-03", "2026-04-30")
    assert d.log[since:] == []
    assert d.statuses() == ["unpaid"]  # time stands still for the invoice: not overdue either


def test_resumed_shifts_every_pending_date_by_the_paused_time_to_the_second() -> None:
    d = issued()
    d.tick("2026-02-01T00:00:00Z")  # overdue on 01-31; suspension due 02-15
    pause(d, reason="dispute")
    d.tick("2026-02-11T06:30:15Z")
    resume(d)  # paused 10 days 6:30:15
    notice = d.of("notify.collection_resumed")
    assert [(v["issued_at"], v["reason"]) for v in notice] == [("2026-02-11T06:30:15Z",
                                                                "resumed")]
    assert notice[0]["suspend_at"] == "2026-02-25T06:30:15Z"
    assert notice[0]["delete_at"] == "2026-04-11T06:30:15Z"
    assert "due_at" not in notice[0]  # the past due date stays past
    d.tick("2026-02-25T06:30:14Z")
    assert provisioning(d) == []
    d.tick("2026-02-25T06:30:15Z")
    assert provisioning(d) == [("2026-02-25T06:30:15Z", "service.suspend")]


def test_a_pause_before_due_moves_the_due_date_too() -> None:
    d = issued()
    d.tick("2026-01-10")
    pause(d)
    d.tick("2026-01-20")
    resume(d)
    d.ticks("2026-01-21", "2026-02-12")
    assert d.of("notify.collection_resumed")[0]["due_at"] == at("2026-02-10")
    assert d.of("invoice.status")[1]["issued_at"] == at("2026-02-10")


def test_a_pause_with_until_expires_at_the_first_tick_past_it() -> None:
    d = issued()
    d.tick("2026-02-01")
    pause(d, until="2026-02-10T12:00:00Z")
    d.tick("2026-02-10")
    assert d.of("notify.collection_resumed") == []
    d.tick("2026-02-12")
    notice = d.of("notify.collection_resumed")
    assert [(v["issued_at"], v["reason"]) for v in notice] == [(at("2026-02-12"), "expired")]
    # Paused from 02-01 until 02-10T12:00: 9.5 days, whenever the tick that saw it came.
    assert notice[0]["suspend_at"] == "2026-02-24T12:00:00Z"
    d.ticks("2026-02-13", "2026-02-25")
    assert provisioning(d) == [(at("2026-02-25"), "service.suspend")]


def test_a_pause_spanning_the_suspension_date() -> None:
    d = issued(reseller_id="res-1")
    d.tick("2026-02-10")
    pause(d)
    d.ticks("2026-02-11", "2026-02-20")  # 02-15 passes: no suspension while paused
    assert provisioning(d) == []
    resume(d)
    both = d.of("notify.collection_resumed", audience=None)
    assert sorted(v["audience"] for v in both) == ["customer", "reseller"]
    d.ticks("2026-02-21", "2026-02-26")
    assert provisioning(d) == [(at("2026-02-25"), "service.suspend")]  # 02-15 + 10 days


def test_a_pause_does_not_lift_a_suspension_in_force() -> None:
    d = issued()
    d.ticks("2026-02-15", "2026-02-16")
    assert provisioning(d) == [(at("2026-02-15"), "service.suspend")]
    pause(d)
    d.ticks("2026-02-17", "2026-04-30")
    assert provisioning(d) == [(at("2026-02-15"), "service.suspend")]  # no unsuspend, no delete


def test_payments_still_apply_while_paused_and_full_payment_ends_the_pause() -> None:
    d = issued()
    d.tick("2026-02-01")
    pause(d)
    d.tick("2026-02-03")
    d.pay(amount="40.00")
    assert d.statuses() == ["unpaid", "overdue"]  # overdue since 01-31, before the pause
    assert d.invoice().paused_at is not None  # a partial payment does not end it
    d.tick("2026-02-05")
    d.pay(amount="60.00", payment_id="p-last")
    assert d.statuses()[-1] == "paid"
    assert d.invoice().paused_at is None
    assert d.of("notify.collection_resumed") == []  # nothing to collect: nothing to tell
    # Should it owe again, its dates stand shifted by the 4 days it was paused.
    assert d.invoice().suspend_at == d.invoice().issued_at + (30 + 15 + 4) * 86_400
    d.reverse("p-last", "60.00")
    d.ticks("2026-02-06", "2026-02-20")
    assert provisioning(d) == [(at("2026-02-19"), "service.suspend")]


def test_the_customer_keeps_their_time_after_a_pause_before_overdue() -> None:
    d = issued()
    d.tick("2026-01-30")
    pause(d)
    d.pay(amount="40.00")
    assert d.statuses() == ["unpaid", "partially_paid"]
    d.tick("2026-02-09")
    assert d.statuses() == ["unpaid", "partially_paid"]  # 01-31 passed while paused
    resume(d)
    d.tick("2026-02-10")
    assert d.statuses() == ["unpaid", "partially_paid", "overdue"]  # 01-31 + 10 days


def test_resumed_when_not_paused_is_ignored() -> None:
    d = issued()
    assert resume(d).outcome == m.IGNORED
    assert d.of("notify.collection_resumed") == []


def test_pausing_a_paid_cancelled_or_deleted_invoice_is_ignored() -> None:
    paid = issued()
    paid.pay(amount="100.00")
    assert pause(paid).outcome == m.IGNORED
    cancelled = issued()
    cancelled.cancel()
    assert pause(cancelled).outcome == m.IGNORED
    deleted = issued()
    deleted.ticks("2026-04-01", "2026-04-01")
    assert deleted.invoice().level == 3
    assert pause(deleted).outcome == m.IGNORED
    assert all(d.invoice().paused_at is None for d in (paid, cancelled, deleted))


def test_a_pause_until_a_moment_already_past_is_invalid() -> None:
    d = issued()
    d.tick("2026-02-01")
    pause(d, until="2026-01-20")
    assert [x.error for x in d.dead] == [m.INVALID_FIELD]
    assert d.invoice().paused_at is None


def test_a_second_pause_sets_when_it_ends_and_counts_from_the_first() -> None:
    d = issued()
    d.tick("2026-02-01")
    pause(d, until="2026-02-05")
    d.tick("2026-02-03")
    pause(d)  # open-ended now
    d.tick("2026-02-08")
    assert d.of("notify.collection_resumed") == []
    resume(d)
    assert d.of("notify.collection_resumed")[0]["suspend_at"] == at("2026-02-22")  # +7 days


def test_resumed_notices_are_the_same_command_on_a_replay() -> None:
    ids = []
    for _ in range(2):
        d = issued()
        d.tick("2026-02-01")
        pause(d)
        d.tick("2026-02-03")
        resume(d)
        ids.append([v["command_id"] for v in d.of("notify.collection_resumed")])
    assert ids[0] == ids[1] and len(ids[0]) == 1


def test_the_threshold_keeps_a_suspension_set_by_update() -> None:
    # Contract v1.1: the threshold never drops dates set by invoice.updated.
    d = issued(policy(collection_threshold='"200.00"', suspend_after_days="15"))
    d.tick("2026-02-05")  # overdue within the threshold: the policy's suspension is set aside
    update(d, suspend_at="2026-02-20")
    d.ticks("2026-02-06", "2026-03-01")
    assert provisioning(d) == [(at("2026-02-20"), "service.suspend")]


def test_a_removed_request_cancellation_never_fires() -> None:
    d = issued(origin="system", request_id="req-1", request_status="pending")
    update(d, request_cancel_at=False)
    d.ticks("2026-01-02", "2026-01-20")
    assert d.of("request.cancel") == [] and d.statuses() == ["unpaid"]


def test_a_request_cancellation_moved_later() -> None:
    d = issued(origin="system", request_id="req-1", request_status="pending")
    update(d, request_cancel_at="2026-01-15")
    d.ticks("2026-01-02", "2026-01-20")
    assert [v["issued_at"] for v in d.of("request.cancel")] == [at("2026-01-15")]
