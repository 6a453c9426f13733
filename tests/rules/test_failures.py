"""Contract v1.1 §2 "No record can stop the worker" and §4 "Clock safety", at the engine.

A record whose processing raises is dead-lettered as `internal_error`, the invoice (or
subject) stays as it was before that record, and everything else goes on. A tick that would
move logical time too far at once is refused as `clock_jump` unless confirmed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from dunning.rules import engine as engine_module
from dunning.rules import invoice as rules
from dunning.rules import model as m
from dunning.rules import subject as subject_rules
from dunning.rules.engine import INVOICE_STATE
from dunning.rules.subject import SUBJECT_STATE
from dunning.rules.times import DAY
from dunning.streams.codec import feed
from dunning.tables.state import encode_invoice, encode_subject
from tests.agents import scenarios
from tests.driver import Driver, at

POLICY = """
[defaults]
terms_days = 30
auto_charge = "on_due"
charge_retry_days = [3]
due_soon_days = [3]
reminder_every_days = 7
late_fee = "5.00"
limit_after_days = 5
suspend_after_days = 15
delete_after_days = 60
request_cancel_after_days = 9
"""


def broken(monkeypatch: pytest.MonkeyPatch, name: str, fails: Any) -> None:
    """Replace the rule `name` in rules.invoice by one that first does its work, then raises
    where `fails(args)` says: a failure half-way, after the state was changed."""
    real = getattr(rules, name)

    def rule(*args: Any) -> Any:
        result = real(*args)
        if fails(args):
            raise RuntimeError("injected failure")
        return result

    monkeypatch.setattr(rules, name, rule)
    if name == "_on_payment":
        monkeypatch.setitem(rules._HANDLERS, m.PaymentApplied, rule)


def test_a_failing_event_is_dead_lettered_and_its_invoice_stays_as_it_was(monkeypatch):
    d = Driver(POLICY)
    d.issue("inv-1", order_id="o-1")
    d.issue("inv-2", order_id="o-2")
    d.pay("inv-1", "10.00", payment_id="p-ok")
    before = encode_invoice(d.invoice("inv-1"))
    scheduled = d.engine.schedule.at("inv-1")
    broken(monkeypatch, "_on_payment", lambda args: args[1].payment_id == "p-bad")

    r = d.pay("inv-1", "30.00", payment_id="p-bad")

    assert r.outcome == "dead_lettered" and r.commands == []
    (dead,) = r.dead_letters
    assert dead.error == "internal_error"
    assert "RuntimeError: injected failure" in dead.reason and "test_failures.py" in dead.reason
    assert orjson.loads(dead.source.value)["payment_id"] == "p-bad"  # the record, unchanged
    # The failing payment changed the invoice (paid, payments, seen ids) before it raised:
    # all of it is undone.
    assert encode_invoice(d.invoice("inv-1")) == before
    assert d.engine.schedule.at("inv-1") == scheduled
    # The rest goes on: another payment of the same invoice, and the other invoice.
    assert d.pay("inv-1", "90.00", payment_id="p-next").outcome == "applied"
    assert d.invoice("inv-1").paid == Decimal("100.00")
    assert d.pay("inv-2", "100.00").outcome == "applied"
    assert d.statuses("inv-1") == ["unpaid", "partially_paid", "paid"]


def test_a_record_that_failed_applies_when_sent_again_after_the_fix(monkeypatch):
    d = Driver(POLICY)
    d.issue("inv-1")
    with monkeypatch.context() as patch:
        broken(patch, "_on_payment", lambda args: True)
        raw = {"type": "payment.applied", "event_id": "e-pay", "invoice_id": "inv-1",
               "payment_id": "p-1", "amount": "100.00", "currency": "USD"}
        assert d.send(raw).outcome == "dead_lettered"
    # Not remembered as seen: the same event, replayed from the dead-letter topic, applies.
    assert d.send(raw).outcome == "applied"
    assert d.statuses() == ["unpaid", "paid"]


def test_a_failing_issue_leaves_no_invoice_and_keeps_what_waited_for_it(monkeypatch):
    d = Driver(POLICY)
    d.tick("2026-01-01")
    assert d.pay("inv-1", "40.00", payment_id="p-early").outcome == "held"
    broken(monkeypatch, "_start_collection", lambda args: args[0].invoice_id == "inv-1")
    r = d.issue("inv-1")
    assert r.outcome == "dead_lettered" and r.dead_letters[0].error == "internal_error"
    assert r.commands == []
    assert "inv-1" not in d.engine.invoices
    assert [h.event.event_id for h in d.engine.held["inv-1"]] == [
        d.engine.held["inv-1"][0].event.event_id]
    monkeypatch.undo()
    r = d.issue("inv-1", event_id="e-issue-again")
    assert r.outcome == "applied"
    assert d.invoice("inv-1").paid == Decimal("40.00")  # the held payment applied at issue


def test_a_tick_failing_for_one_invoice_fires_for_the_others(monkeypatch):
    d = Driver(POLICY)
    for n in range(1, 4):
        d.issue(f"inv-{n}", order_id=f"o-{n}")
    before = encode_invoice(d.invoice("inv-2"))
    broken(monkeypatch, "_fire", lambda args: args[0].invoice_id == "inv-2")

    r = d.tick("2026-02-01")  # past due: overdue stage for all three

    (dead,) = r.dead_letters
    assert dead.error == "internal_error" and "invoice inv-2" in dead.reason
    assert orjson.loads(dead.source.value)["type"] == "clock.tick"
    fired = {c.value["invoice_id"] for c in r.commands if c.value.get("invoice_id")}
    assert fired == {"inv-1", "inv-3"}
    assert encode_invoice(d.invoice("inv-2")) == before  # as before the tick
    # The failing invoice is tried again at the next tick: once fixed, it catches up.
    monkeypatch.undo()
    r = d.tick("2026-02-02")
    assert r.dead_letters == []
    assert "notify.overdue" in [c.value["type"] for c in r.commands
                                if c.value.get("invoice_id") == "inv-2"]
    assert d.statuses("inv-2") == d.statuses("inv-1")


def test_two_invoices_failing_in_one_jump_take_back_only_their_own_commands(monkeypatch):
    """A jump fires each invoice's actions in time order across invoices; the second
    failure must still find (and take back) its own commands, not the ones after the first
    failure's were taken out."""
    d = Driver(POLICY)
    d.tick("2026-01-01")
    for iid in ("inv-a", "inv-b", "inv-c"):
        d.issue(iid, order_id=f"o-{iid}")
    broken(monkeypatch, "_fire",
           lambda args: args[1] == "suspend" and args[0].invoice_id in ("inv-a", "inv-b"))
    r = d.tick("2026-03-01")  # overdue (31 Jan) for all three, then suspend (15 Feb)
    assert sorted(x.reason.split("invoice ")[1].split(" ")[0] for x in r.dead_letters) == [
        "inv-a", "inv-b"]
    by_invoice = {c.value.get("invoice_id") for c in r.commands}
    assert by_invoice == {"inv-c"}, by_invoice
    assert {"notify.overdue", "service.suspend"} <= {c.value["type"] for c in r.commands}


def test_a_tick_failing_outside_the_rules_loses_no_due_invoice(monkeypatch):
    d = Driver(POLICY)
    d.tick("2026-01-01")
    d.pay("inv-orphan", "5.00")  # held: expires 7 days on, on the same tick as the others
    for n in range(1, 4):
        d.issue(f"inv-{n}", issued_at="2025-12-01")

    def broken_expiry(*args: Any) -> None:
        raise RuntimeError("injected expiry failure")

    monkeypatch.setattr(engine_module.Engine, "_expire", broken_expiry)
    r = d.tick("2026-01-08")
    assert [x.error for x in r.dead_letters] == ["internal_error"]
    assert "the tick" in r.dead_letters[0].reason
    monkeypatch.undo()
    # Every due invoice and the orphan are still scheduled: the next tick does their work.
    r = d.tick("2026-01-09")
    assert [x.error for x in r.dead_letters] == ["orphan"]
    for n in range(1, 4):
        assert "notify.overdue" in [c.value["type"] for c in d.log
                                    if c.value.get("invoice_id") == f"inv-{n}"]


def test_a_failing_subject_signal_leaves_the_subject_as_it_was(monkeypatch):
    d = Driver(POLICY)
    d.issue("inv-1", order_id="o-1")
    d.issue("inv-2", order_id="o-1")
    d.ticks("2026-01-02", "2026-02-05")  # both limited: o-1 held at LIMITED
    subject = d.engine.subjects["order:o-1"]
    before = encode_subject(subject)
    real = subject_rules.apply_signal

    def failing(subj: Any, sig: Any) -> Any:
        real(subj, sig)  # changes the subject, then fails
        raise RuntimeError("injected subject failure")

    monkeypatch.setattr(subject_rules, "apply_signal", failing)
    r = d.pay("inv-1", "100.00")
    assert [x.error for x in r.dead_letters] == ["internal_error"]
    assert "the signal to order:o-1" in r.dead_letters[0].reason
    assert encode_subject(subject) == before


def test_dates_that_run_past_the_year_9998_are_refused_at_issue():
    d = Driver(POLICY.replace("delete_after_days = 60", "delete_after_days = 3650"))
    r = d.issue("inv-late", issued_at="9998-06-01")
    assert r.outcome == "dead_lettered" and r.commands == []
    assert [x.error for x in r.dead_letters] == ["invalid_field"]
    assert "9998" in r.dead_letters[0].reason
    assert "inv-late" not in d.engine.invoices
    assert d.issue("inv-ok", issued_at="9980-06-01").outcome == "applied"


def test_the_slots_left_out_of_the_undo_copy_never_change_after_issue():
    """They are set at issue; were a rule to change one, a failing record could leave that
    change behind."""
    ref = scenarios.every_rule()
    d = Driver(scenarios.POLICY)
    fixed = INVOICE_STATE.fixed
    assert fixed

    def values() -> dict[str, tuple[Any, ...]]:
        return {iid: tuple(getattr(inv, s) for s in fixed)
                for iid, inv in d.engine.invoices.items()}

    for topic, key, value, *headers in ref.script:
        before = values()
        d.send(value, topic=topic, key=key, headers=headers[0] if headers else ())
        after = values()
        assert {iid: v for iid, v in after.items() if iid in before} == before
    assert len(d.engine.invoices) == len(ref.engine.invoices)


def test_every_slot_the_rules_change_in_place_is_copied():
    """The undo copies containers the rules mutate; every other slot must hold a value that
    is replaced, never changed, or a failure could leave part of a record applied."""
    immutable = (type(None), bool, int, str, Decimal)

    def frozen(value: Any) -> bool:
        if isinstance(value, tuple):
            return all(frozen(v) for v in value)
        return isinstance(value, immutable)

    ref = scenarios.every_rule()
    for copier, objects, in_place in (
            (INVOICE_STATE, ref.engine.invoices.values(),
             {"actions", "payments", "seen", "parked"}),
            (SUBJECT_STATE, ref.engine.subjects.values(), {"holders", "versions"})):
        assert objects
        for obj in objects:
            for name in copier.slots:
                if name not in in_place:
                    assert frozen(getattr(obj, name)), (type(obj).__name__, name)


# -- the clock guard (contract §4) ------------------------------------------------------------


def guarded(days: int = 7) -> Driver:
    d = Driver(POLICY)
    d.engine.max_tick_jump = days * DAY
    return d


def tick(d: Driver, when: str, confirmed: bool = False) -> Any:
    value = orjson.dumps({"type": "clock.tick", "event_id": f"tick-{when}", "now": at(when)})
    headers = [("dunning.confirm", b"jump")] if confirmed else []
    result = feed(d.engine, "billing.clock", None, value, 0, 0, headers)
    d.log += result.commands
    return result


def test_the_first_tick_is_accepted_however_far_it_moves_time():
    d = guarded()
    assert tick(d, "2026-01-01").outcome == "applied"
    assert d.engine.clock == d.engine.clock and d.engine.clock > 0


def test_a_jump_past_the_limit_is_refused_and_fires_nothing():
    d = guarded()
    tick(d, "2026-01-01")
    for n in range(30):
        d.issue(f"inv-{n}", order_id=f"o-{n}", issued_at="2026-01-01")
    mark = len(d.log)
    clock = d.engine.clock
    r = tick(d, "9000-01-01")  # the typo the guard is for
    assert r.outcome == "dead_lettered" and r.commands == []
    (dead,) = r.dead_letters
    assert dead.error == "clock_jump"
    assert "2026-01-01T00:00:00Z" in dead.reason and "9000-01-01T00:00:00Z" in dead.reason
    assert "dunning.confirm: jump" in dead.reason
    assert dead.source.topic == "billing.clock"
    assert d.engine.clock == clock and len(d.log) == mark
    # Ordinary ticks go on as before: nothing was stamped year 9000.
    assert tick(d, "2026-01-05").outcome == "applied"
    assert "service.delete" not in d.types()
    assert d.issue("inv-new", issued_at="2026-01-05").commands[0].value["status"] == "unpaid"


def test_a_jump_of_the_limit_exactly_is_accepted_and_one_beyond_is_not():
    d = guarded()
    tick(d, "2026-01-01")
    assert tick(d, "2026-01-08").outcome == "applied"  # 7 days
    assert tick(d, "2026-01-15T00:00:01Z").outcome == "dead_lettered"  # 7 days and a second
    assert tick(d, "2026-01-14").outcome == "applied"


def test_a_confirmed_jump_is_applied():
    d = guarded()
    tick(d, "2026-01-01")
    d.issue("inv-1", order_id="o-1", issued_at="2026-01-01")
    r = tick(d, "2026-04-01", confirmed=True)
    assert r.outcome == "applied" and r.dead_letters == []
    assert "service.suspend" in d.types(r.commands)


def test_an_older_tick_is_ignored_not_refused():
    d = guarded()
    tick(d, "2026-01-10")
    assert tick(d, "2025-01-01").outcome == "ignored"


def test_without_a_limit_the_guard_is_off():
    d = guarded(0)
    tick(d, "2026-01-01")
    assert tick(d, "2030-01-01").outcome == "applied"


# -- dead letters keep the producer's headers ---------------------------------------------------


def test_dead_letters_raised_by_the_rules_keep_the_records_headers():
    d = Driver(POLICY)
    d.issue("inv-1")
    headers = [("trace-id", b"t-1"), ("source", b"billing-eu")]
    value = orjson.dumps({"type": "payment.applied", "event_id": "e-eur", "invoice_id": "inv-1",
                          "payment_id": "p-1", "amount": "1.00", "currency": "EUR"})
    r = feed(d.engine, "billing.payments", b"inv-1", value, 3, 30, headers)
    (dead,) = r.dead_letters
    assert dead.error == "currency_mismatch"
    assert dead.source.headers == tuple(headers)
    assert (dead.source.partition, dead.source.offset, dead.source.value) == (3, 30, value)
