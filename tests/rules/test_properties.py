"""Properties of the engine over random scenarios (tests/rules/strategies.py): a random policy
with most stages on; invoices sharing orders and customers, in three currencies, some debit
notes, some with pending requests or overrides, some arriving late; partial, full and excess
payments, reversals, adjustments, cancellations, charge failures, request completions,
redeliveries with the same event_id and events before their invoice, at random times.

Derandomized and database-less, so every run (and CI) checks the same examples. Counterexamples
these properties once found are kept as explicit examples.
"""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict
from decimal import Decimal
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from dunning.rules import model as m
from dunning.rules.invoice import DELETED, SUSPENDED
from dunning.rules.times import DAY, format_time, parse_time
from dunning.streams.topics import NOTIFICATIONS, PROVISIONING
from tests.driver import Driver
from tests.rules.strategies import END, HOUR, PLACES, START, Run, Scenario, Step, run, scenarios


def _settings(examples: int, shrink: bool = True) -> settings:
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=phases,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def subject_key(v: dict[str, Any]) -> str:
    return f"{v['subject']['kind']}:{v['subject']['id']}"


def issued(iid: str = "inv-0", amount: str = "10.00", **fields: Any) -> dict[str, Any]:
    return {"type": "invoice.issued", "event_id": f"iss-{iid}", "invoice_id": iid,
            "customer_id": "c0", "amount": amount, "currency": "USD",
            "issued_at": format_time(START), **fields}


# -- 1. determinism --------------------------------------------------------------------------


@_settings(150)
@given(scenarios())
def test_same_input_gives_the_same_commands_and_ids(sc: Scenario) -> None:
    def wire(r: Run) -> list[Any]:
        return [(c.topic, c.key, c.value) for c in r.log] + [
            (x.error, x.source.topic, x.source.offset) for s in r.steps for x in s.dead
        ]

    assert wire(run(sc)) == wire(run(sc))


# -- 2. nothing pursues a settled invoice -----------------------------------------------------

# What collection sends for an invoice with something due, and never for one that owes
# nothing: contract §2 rules 3, 4, 6-10 ("if something is still due", "until fully paid",
# "unless fully paid"); docs/rules.md: while fully paid nothing time-driven fires.
PURSUIT = frozenset({
    "notify.due_soon", "notify.reminder", "notify.overdue", "invoice.late_fee",
    "notify.late_fee", "service.limit", "notify.limited", "service.suspend",
    "notify.suspended", "service.delete", "notify.deleted",
})


@_settings(300)
@given(scenarios())
def test_a_fully_paid_invoice_is_not_pursued_until_it_owes_again(sc: Scenario) -> None:
    # "Fully paid" is the independent ledger's view after each step (so a reversal or an
    # upward adjustment makes the invoice owe again).
    for s in run(sc).steps:
        for c in s.commands:
            iid = c.value.get("invoice_id")
            assert not (iid in s.paid_after and c.type in PURSUIT), (
                f"{c.type} for {iid}, which owes nothing", s.record, c.value)


@_settings(150)
@given(scenarios())
def test_a_cancelled_invoice_gets_nothing_more(sc: Scenario) -> None:
    # Rule 14: invoice.cancelled stops everything; rule 15: its events are ignored.
    for s in run(sc).steps:
        for c in s.commands:
            assert c.value.get("invoice_id") not in s.settled_before, (s.record, c.value)


# -- 3. deletion is final ---------------------------------------------------------------------

SUBJECT_NOTICES = ("notify.limited", "notify.suspended", "notify.unsuspended", "notify.deleted")


@_settings(300)
@given(scenarios())
def test_nothing_follows_a_deletion_for_that_subject(sc: Scenario) -> None:
    subject_of = sc.subject_of()
    deleted: set[str] = set()
    grace: str | None = None  # the subject whose deletion's own notices may still follow
    for c in run(sc).log:
        v = c.value
        if c.topic == PROVISIONING:
            key = subject_key(v)
            assert key == subject_of[v["invoice_id"]], v
            assert key not in deleted, ("provisioning after deletion", v)
            if v["type"] == "service.delete":
                deleted.add(key)
                grace = key
                continue
        elif v["type"] in SUBJECT_NOTICES:
            key = subject_of[v["invoice_id"]]
            if v["type"] == "notify.deleted" and key == grace:
                continue
            assert key not in deleted, ("subject notice after deletion", v)
        grace = None


# v1.1 "Deletion ends pursuit, not bookkeeping": after an invoice's own deletion, nothing but
# invoice.status is sent for it, whatever arrives (payments, charge failures, completions).


@_settings(300)
@given(scenarios())
def test_nothing_but_status_follows_an_invoices_own_deletion(sc: Scenario) -> None:
    deleted: set[str] = set()

    def check(d: Driver, s: Step) -> None:
        for c in s.commands:
            if c.value.get("invoice_id") in deleted:
                assert c.type == "invoice.status", (s.record, c.value)
        deleted.update(iid for iid, inv in d.engine.invoices.items() if inv.level == DELETED)

    run(sc, check=check)


# -- 4. tick spacing --------------------------------------------------------------------------

# What may differ between two tick spacings: when a command went out, which tick caused it,
# and so which of the invoice's deadlines were still to come, and which invoices had joined a
# hold by the end of its tick (a hold names every holder once the tick is done, v1.1).
WHEN = frozenset({"issued_at", "causation_id", "due_at", "suspend_at", "delete_at",
                  "request_cancel_at", "invoice_ids"})
# Those whose number depends on the ticks: at most one reminder per tick, and a due-soon
# notice only while a tick comes before due (v1.1).
PER_TICK = frozenset({"notify.reminder", "notify.due_soon"})


@_settings(150)
@given(scenarios(), st.sampled_from([5 * HOUR, DAY, 3 * DAY + 7 * HOUR]))
def test_small_ticks_or_ticks_at_the_records_give_the_same_one_shot_commands(
    sc: Scenario, every: int
) -> None:
    def one_shots(r: Run, types: frozenset[str] | None = None) -> dict[str, dict[str, Any]]:
        return {c.command_id: {k: v for k, v in c.value.items() if k not in WHEN}
                for c in r.log
                if (c.type not in PER_TICK if types is None else c.type in types)}

    def final(r: Run) -> dict[str, str]:
        return {iid: inv.status for iid, inv in r.driver.engine.invoices.items()}

    coarse_run, fine_run = run(sc), run(sc, every=every)
    coarse, fine = one_shots(coarse_run), one_shots(fine_run)
    assert {k: coarse[k] for k in coarse.keys() - fine.keys()} == {}
    assert {k: fine[k] for k in fine.keys() - coarse.keys()} == {}
    assert coarse == fine
    assert final(coarse_run) == final(fine_run)
    # The fine run ticks wherever the coarse one does, so it sends every due-soon notice the
    # coarse one sends (and more: those whose moment the coarse run only passed after due).
    soon = frozenset({"notify.due_soon"})
    assert one_shots(coarse_run, soon).items() <= one_shots(fine_run, soon).items()


# -- statuses follow logical time (v1.1) ---------------------------------------------------------


@_settings(300)
@given(scenarios(), st.sampled_from([None, None, 11 * HOUR, 4 * DAY]))
def test_statuses_follow_logical_time_and_change_only_on_a_change(
    sc: Scenario, every: int | None
) -> None:
    r = run(sc, every=every)
    by_invoice: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in r.log:
        if c.type == "invoice.status":
            by_invoice[c.value["invoice_id"]].append(c.value)
    for iid, statuses in by_invoice.items():
        due_at = r.driver.engine.invoices[iid].due_at
        names = [v["status"] for v in statuses]
        assert all(a != b for a, b in pairwise(names)), (iid, names)
        for v in statuses:
            # The moment a status describes is the time it is sent: before due_at an invoice
            # owing is unpaid or partially paid, from due_at on it is overdue.
            at = parse_time(v["issued_at"])
            if v["status"] in ("unpaid", "partially_paid"):
                assert at < due_at, (iid, names, v)
            elif v["status"] == "overdue":
                assert at >= due_at, (iid, names, v)
        after_overdue = names[names.index("overdue"):] if "overdue" in names else []
        assert not {"unpaid", "partially_paid"} & set(after_overdue), (iid, names)


# -- notices tell only what will happen (v1.1) ---------------------------------------------------

DEADLINES = ("due_at", "suspend_at", "delete_at", "request_cancel_at")


def _happened(inv: Any, name: str) -> bool:
    """Whether what the deadline announces has happened to the invoice."""
    if name == "due_at":
        return inv.status == "overdue"
    if name == "suspend_at":
        return inv.level >= SUSPENDED
    if name == "delete_at":
        return inv.level == DELETED
    return inv.status == "cancelled"


def deadlines_fire(d: Driver, s: Step) -> None:
    """Every deadline a notice of this step carries is still ahead, and, with no more input
    than ticks, what it announces has not happened a second before it and has at it."""
    announced: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for c in s.commands:
        if c.topic != NOTIFICATIONS:
            continue
        for name in DEADLINES:
            if name in c.value:
                at = parse_time(c.value[name])
                assert at >= parse_time(c.value["issued_at"]), ("deadline in the past", c.value)
                announced[at].append((c.value["invoice_id"], name))
    if not announced:
        return
    engine = copy.deepcopy(d.engine, {id(d.engine.policy): d.engine.policy})

    def tick(now: int) -> None:
        if now > engine.clock:
            engine.handle(m.ClockTick(type="clock.tick", event_id=f"check-{now}", now=now))

    for at in sorted(announced):
        if at > engine.clock:
            tick(at - 1)
            for iid, name in announced[at]:
                assert not _happened(engine.invoices[iid], name), (
                    "came early", s.record, iid, name, format_time(at))
        tick(at)
        for iid, name in announced[at]:
            assert _happened(engine.invoices[iid], name), (
                "announced but did not happen", s.record, iid, name, format_time(at))


@_settings(300)
@given(scenarios(), st.sampled_from([None, None, 13 * HOUR, 2 * DAY]))
def test_notices_announce_only_deadlines_ahead_that_fire(sc: Scenario, every: int | None) -> None:
    run(sc, every=every, check=deadlines_fire)


# -- 5. exact amounts -------------------------------------------------------------------------

MONEY_FIELDS = ("amount", "amount_due", "amount_paid", "amount_credit", "late_fee")


def money_pattern(currency: str) -> re.Pattern[str]:
    """Money on output: never negative (contract §1), with exactly the currency's places."""
    places = PLACES[currency]
    return re.compile(r"\d+" + (rf"\.\d{{{places}}}" if places else ""))


def engine_matches_ledger(d: Driver, s: Step) -> None:
    """After every step: the engine's amounts are the ledger's, exact to the currency's
    places, and paid + due == amount."""
    assert d.engine.invoices.keys() == s.trail.keys()
    for iid, inv in d.engine.invoices.items():
        assert (inv.amount, inv.paid) == s.trail[iid][-1], (iid, s.record)
        assert inv.paid + inv.due == inv.amount
        exponent = -PLACES[inv.currency]
        assert inv.amount.as_tuple().exponent == inv.paid.as_tuple().exponent == exponent


@_settings(300)
@given(scenarios())
def test_amounts_are_exact(sc: Scenario) -> None:
    r = run(sc, check=engine_matches_ledger)
    for s in r.steps:
        for c in s.commands:
            v = c.value
            for name in MONEY_FIELDS:
                if name in v:
                    assert money_pattern(v["currency"]).fullmatch(v[name]), (name, v)
            # What a command says is due or paid is what stood during its step (an issue
            # step applies held events after the issue's own status, so several states).
            states = s.trail.get(v.get("invoice_id", ""), [])
            if v["type"] == "invoice.status":
                # amount_paid + amount_due - amount_credit is the invoice's amount (v1.1).
                paid, credit = Decimal(v["amount_paid"]), Decimal(v.get("amount_credit", "0"))
                state = (paid + Decimal(v["amount_due"]) - credit, paid)
                assert state in states, (v, states)
                assert (credit > 0) == (paid > state[0]), v  # a credit exactly when overpaid
            elif "amount_due" in v:
                assert Decimal(v["amount_due"]) in {max(a - p, 0) for a, p in states}, (
                    v, states)
    # Orphans are dead-lettered exactly when the ledger drops them.
    orphans = [json.loads(x.source.value)["event_id"]
               for s in r.steps for x in s.dead if x.error == "orphan"]
    assert orphans == r.ledger.expired


# -- 6. command ids ---------------------------------------------------------------------------


@_settings(200)
@given(scenarios(), st.sampled_from([None, 12 * HOUR]))
def test_no_two_different_commands_share_a_command_id(sc: Scenario, every: int | None) -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    for c in run(sc, every=every).log:
        v = c.value
        what = (v["type"], v.get("invoice_id"), v.get("audience"))
        assert seen.setdefault(c.command_id, what) == what, (c.command_id, what, v)


# -- 7. subject consistency -------------------------------------------------------------------


@_settings(300)
@given(scenarios())
def test_each_subject_moves_through_its_levels_consistently(sc: Scenario) -> None:
    levels = {"service.limit": 1, "service.suspend": 2, "service.delete": 3}
    level: dict[str, int] = defaultdict(int)  # 0 = free
    for c in run(sc).log:
        v = c.value
        if c.topic != PROVISIONING or v["type"] == "request.cancel":
            continue
        key = subject_key(v)
        assert level[key] < 3, ("after deletion", v)
        if v["type"] == "service.unsuspend":
            assert level[key] in (1, 2), ("unsuspend of a subject not held", v)
            assert v["invoice_ids"] == [], v  # restored when the last holder lets go
            level[key] = 0
        else:
            # One command per rise in level: never two suspends (or limits) in one hold.
            assert levels[v["type"]] > level[key], ("no rise in level", level[key], v)
            assert v["invoice_id"] in v["invoice_ids"], v
            level[key] = levels[v["type"]]


@_settings(150)
@given(scenarios())
def test_no_subject_stays_held_once_every_invoice_on_it_is_settled(sc: Scenario) -> None:
    r = run(sc)
    subject_of = sc.subject_of()
    held: dict[str, bool] = {}
    for c in r.log:
        if c.topic == PROVISIONING and c.type != "request.cancel":
            held[subject_key(c.value)] = c.type in ("service.limit", "service.suspend")
    for key, is_held in held.items():
        if is_held:
            owing = [iid for iid, b in r.ledger.books.items()
                     if subject_of[iid] == key and not b.cancelled and b.due > 0]
            assert owing, f"{key} is still held with every invoice on it settled"


# -- 8. replay --------------------------------------------------------------------------------


def replay(r: Run, sc: Scenario) -> list[dict[str, Any]]:
    """Send every record again after the run, same event_ids; the commands that causes."""
    d = r.driver
    # A record dead-lettered as an orphan was never applied: sent again once its invoice
    # exists it is new to the engine (that is how an operator re-drives dead letters).
    applied = {e for b in r.ledger.books.values() for e in (b.seen | {b.issued_by})}
    leave_out = set(r.ledger.expired) - applied
    before = len(d.log)
    for _, record in sc.records:
        if record["event_id"] not in leave_out:
            d.send(record)
    d.tick(format_time(END))  # the same time again: nothing new can fall due
    return [c.value for c in d.log[before:]]


# Found by this property: a charge failure that arrives before dunning has asked for that
# attempt is ignored; redelivered once the attempt is out, it must still count as a duplicate.
EARLY_FAILURE_REDELIVERED = Scenario(
    '[defaults]\nterms_days = 0\nauto_charge = "on_due"\n',
    ((START, issued()),
     (START, {"type": "charge.failed", "event_id": "ev-1", "invoice_id": "inv-0",
              "attempt": 1, "hard": True})),
)


@_settings(150)
@example(EARLY_FAILURE_REDELIVERED)
@given(scenarios())
def test_replaying_every_record_adds_no_command(sc: Scenario) -> None:
    assert replay(run(sc), sc) == []


# -- charges ----------------------------------------------------------------------------------

# Found by this property: the full payment arrives before its invoice (held); with
# auto_charge = "on_issue" the held payment must apply before the issue charge, or the
# customer who has paid is charged again.
CHARGED_THOUGH_PAID = Scenario(
    '[defaults]\nauto_charge = "on_issue"\n',
    ((START, {"type": "payment.applied", "event_id": "ev-0", "invoice_id": "inv-0",
              "payment_id": "pay-0", "amount": "10.00", "currency": "USD"}),
     (START, issued())),
)


@_settings(150)
@example(CHARGED_THOUGH_PAID)
@given(scenarios())
def test_a_charge_asks_for_what_is_due_once_the_step_is_done(sc: Scenario) -> None:
    for s in run(sc).steps:
        for c in s.commands:
            if c.type == "charge.request":
                amount, paid = s.trail[c.value["invoice_id"]][-1]
                assert Decimal(c.value["amount"]) == amount - paid > 0, (s.record, c.value)
