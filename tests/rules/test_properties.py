"""Properties of the engine over random scenarios: invoices sharing orders, debit notes, pending
requests, partial payments, reversals, adjustments, cancellations, charge failures, duplicates
and events before their invoice, at random times, with random tick spacing."""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dunning.rules.times import DAY, format_time, parse_time
from tests.driver import Driver

POLICY = """
[defaults]
terms_days = 30
auto_charge = "on_due"
charge_retry_days = [3, 5]
due_soon_days = [7, 3]
reminder_every_days = 9
collection_threshold = "1.00"
late_fee_percent = "1.5"
late_fee_after_days = 2
limit_after_days = 4
suspend_after_days = 10
delete_after_days = 40
request_cancel_after_days = 12
notify_reseller = true

[product.flat]
late_fee = "5.00"
"""
START = parse_time("2026-01-01T00:00:00Z")
END_DAY = 130
HOUR = 3600
MONEY = re.compile(r"\d+\.\d\d")
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

Record = tuple[int, dict[str, Any]]


@st.composite
def scenarios(draw: st.DrawFn) -> list[Record]:
    n = draw(st.integers(1, 4))
    records: list[Record] = []
    for i in range(n):
        at = START + draw(st.integers(0, 10)) * DAY + draw(st.sampled_from([0, 5 * HOUR]))
        pending = draw(st.booleans()) and draw(st.booleans())
        issued: dict[str, Any] = {
            "type": "invoice.issued", "event_id": f"iss-{i}", "invoice_id": f"inv-{i}",
            "customer_id": f"cust-{i % 2}", "currency": "USD", "issued_at": format_time(at),
            "amount": f"{draw(st.integers(0, 30_000)) / 100:.2f}",
            "document": draw(st.sampled_from(["invoice"] * 4 + ["debit_note"])),
            "product": draw(st.sampled_from([None, "flat"])),
        }
        if (order := draw(st.sampled_from(["ord-A", "ord-B", None]))) is not None:
            issued["order_id"] = order
        if draw(st.booleans()):
            issued["reseller_id"] = "res-1"
        if pending:
            issued.update(origin="system", request_status="pending", request_id=f"req-{i}")
        records.append((at, issued))
    payments: list[tuple[str, str]] = []
    for k in range(draw(st.integers(0, 18))):
        at = START + draw(st.integers(0, 110)) * DAY + draw(st.sampled_from([0, 7 * HOUR]))
        inv = f"inv-{draw(st.integers(0, n))}"  # inv-n is never issued: an orphan
        kind = draw(st.sampled_from(["pay", "pay", "pay", "reverse", "adjust", "cancel",
                                     "fail", "complete", "duplicate"]))
        event: dict[str, Any] = {"event_id": f"ev-{k}", "invoice_id": inv}
        if kind == "pay":
            pid = f"pay-{k}"
            payments.append((inv, pid))
            event.update(type="payment.applied", payment_id=pid, currency="USD",
                         amount=f"{draw(st.integers(1, 20_000)) / 100:.2f}")
        elif kind == "reverse" and payments:
            inv, pid = draw(st.sampled_from(payments))
            event.update(type="payment.reversed", invoice_id=inv, payment_id=pid,
                         amount=f"{draw(st.integers(1, 5_000)) / 100:.2f}")
        elif kind == "adjust":
            event.update(type="invoice.adjusted",
                         amount=f"{draw(st.integers(0, 30_000)) / 100:.2f}")
        elif kind == "cancel":
            event.update(type="invoice.cancelled")
        elif kind == "fail":
            event.update(type="charge.failed", attempt=draw(st.integers(1, 3)),
                         hard=draw(st.booleans()))
        elif kind == "complete":
            event.update(type="request.completed", without_payment=draw(st.booleans()))
        elif kind == "duplicate" and records:
            at_dup, original = draw(st.sampled_from(records))
            event = dict(original)
            at = max(at, at_dup)
        else:
            continue
        records.append((at, event))
    records.sort(key=lambda r: r[0])
    return records


def run(records: list[Record], tick_hours: int | None = None) -> Driver:
    """Tick to each record's time before sending it; with `tick_hours`, tick that often too."""
    d = Driver(POLICY)
    clock = START
    d.tick(format_time(clock))
    for at, record in records:
        if tick_hours:
            while clock + tick_hours * HOUR < at:
                clock += tick_hours * HOUR
                d.tick(format_time(clock))
        if at > clock:
            clock = at
            d.tick(format_time(clock))
        d.send(record)
    end = START + END_DAY * DAY
    while tick_hours and clock + tick_hours * HOUR < end:
        clock += tick_hours * HOUR
        d.tick(format_time(clock))
    d.tick(format_time(end))
    return d


def wire(d: Driver) -> list[tuple[str, str, dict[str, Any]]]:
    return [(c.topic, c.key, c.value) for c in d.log]


@PROPERTY
@given(scenarios())
def test_same_input_same_commands_and_ids(records):
    assert wire(run(records)) == wire(run(records))


@PROPERTY
@given(scenarios())
def test_a_fully_paid_invoice_gets_no_enforcement_until_it_owes_again(records):
    d = run(records)
    paid: set[str] = set()
    for c in d.log:
        v, iid = c.value, c.value.get("invoice_id")
        if v["type"] == "invoice.status":
            (paid.add if v["status"] == "paid" else paid.discard)(iid)
        elif iid in paid:
            assert v["type"] not in ("notify.overdue", "invoice.late_fee", "notify.late_fee",
                                     "service.limit", "service.suspend", "service.delete",
                                     "notify.limited", "notify.suspended", "notify.deleted"), v


@PROPERTY
@given(scenarios())
def test_nothing_follows_a_deletion_for_that_subject(records):
    d = run(records)
    deleted: set[str] = set()
    subject_notices = ("notify.limited", "notify.suspended", "notify.unsuspended",
                       "notify.deleted")
    order_of: dict[str, str] = {}  # invoice -> subject key, from provisioning commands
    for c in d.log:
        v = c.value
        if c.topic == "collection.provisioning":
            key = f"{v['subject']['kind']}:{v['subject']['id']}"
            assert key not in deleted, v
            order_of[v["invoice_id"]] = key
            if v["type"] == "service.delete":
                deleted.add(key)
        elif v["type"] in subject_notices and v["type"] != "notify.deleted":
            assert order_of.get(v["invoice_id"]) not in deleted, v


@PROPERTY
@given(scenarios())
def test_small_ticks_or_one_jump_give_the_same_one_shot_commands(records):
    def one_shots(d: Driver) -> set[str]:
        return {c.command_id for c in d.log if c.type != "notify.reminder"}

    assert one_shots(run(records, tick_hours=6)) == one_shots(run(records))


@PROPERTY
@given(scenarios())
def test_amounts_are_exact(records):
    d = Driver(POLICY)
    d.tick(format_time(START))
    for at, record in records:
        d.tick(format_time(max(at, START)))
        result = d.send(record)
        for inv in d.engine.invoices.values():
            assert inv.paid + inv.due == inv.amount
        for c in result.commands:
            v = c.value
            for field in ("amount", "amount_due", "amount_paid", "late_fee"):
                if field in v:
                    assert MONEY.fullmatch(v[field]) or MONEY.fullmatch(v[field][1:]), v
            if v["type"] == "invoice.status":
                total = d.engine.invoices[v["invoice_id"]].amount
                assert Decimal(v["amount_due"]) + Decimal(v["amount_paid"]) == total


@PROPERTY
@given(scenarios())
def test_every_command_id_is_unique_within_a_run(records):
    seen: dict[str, dict[str, Any]] = {}
    for c in run(records, tick_hours=12).log:
        assert c.command_id not in seen, (c.value, seen.get(c.command_id))
        seen[c.command_id] = c.value


@PROPERTY
@given(scenarios())
def test_each_subject_moves_through_levels_consistently(records):
    levels = {"service.limit": 1, "service.suspend": 2, "service.delete": 3}
    state: dict[str, int] = defaultdict(int)
    for c in run(records).log:
        v = c.value
        if c.topic != "collection.provisioning" or v["type"] == "request.cancel":
            continue
        key = f"{v['subject']['kind']}:{v['subject']['id']}"
        assert state[key] < 3, v  # nothing after deletion
        if v["type"] == "service.unsuspend":
            assert state[key] in (1, 2), v
            assert v["invoice_ids"] == []
            state[key] = 0
        else:
            assert levels[v["type"]] > state[key], v  # one command per rise in level
            assert v["invoice_id"] in v["invoice_ids"]
            state[key] = levels[v["type"]]


@PROPERTY
@given(scenarios())
def test_replaying_every_record_adds_nothing(records):
    d = run(records)
    before = len(d.log)
    for _, record in records:
        d.send(record)
    d.tick(format_time(START + END_DAY * DAY))
    assert len(d.log) == before


@PROPERTY
@given(scenarios())
def test_no_subject_stays_held_once_all_its_invoices_are_settled(records):
    d = run(records)
    for key, subject in d.engine.subjects.items():
        if subject.level in (1, 2):  # limited or suspended
            owing = [inv for inv in d.engine.invoices.values()
                     if f"{inv.subject[0]}:{inv.subject[1]}" == key
                     and not inv.cancelled and inv.due > 0]
            assert owing, f"{key} is still held with every invoice settled"
