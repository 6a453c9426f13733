"""A property of pauses over random scenarios (tests/rules/strategies.py): a pause keeps the
customer's time. One invoice's records are played twice: as they are, and with a pause of D
seconds after one of them, everything that follows arriving D seconds later. What the invoice
is sent after the pause is then what it was sent without one, D seconds later, deadlines too.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dunning.rules.invoice import DELETED
from dunning.rules.times import DAY, format_time, parse_time
from tests.driver import Driver
from tests.rules.strategies import END, HOUR, START, Scenario, scenarios

DEADLINES = ("due_at", "suspend_at", "delete_at", "request_cancel_at")


def play(sc: Scenario, records: list[tuple[int, dict[str, Any]]], end: int,
         pause: tuple[int, int] | None = None) -> tuple[Driver, int]:
    """Tick to each record's time, then send it; `pause` = (after record k, for D seconds).
    Returns the driver and the log's length when the pause began (0 without one)."""
    d = Driver(sc.policy)
    d.tick(format_time(START))
    mark = 0
    clock = START
    for k, (at, record) in enumerate(records):
        if at > clock:
            clock = at
            d.tick(format_time(clock))
        d.send(record)
        if pause is not None and k == pause[0]:
            mark = len(d.log)
            inv = d.engine.invoices.get("inv-0")
            if inv is None or inv.due <= 0 or inv.cancelled or inv.level == DELETED \
                    or inv.issued_at > clock:
                # Nothing to pause, or the invoice's time is not yet the clock's (events
                # apply at its issued_at): the example says nothing.
                return d, -1
            d.send({"type": "collection.paused", "invoice_id": "inv-0", "reason": "dispute",
                    "event_id": "pause-1"})
            clock += pause[1]
            d.tick(format_time(clock))
            d.send({"type": "collection.resumed", "invoice_id": "inv-0",
                    "event_id": "resume-1"})
    d.tick(format_time(max(clock, end)))
    return d, mark


def seen(commands: list[Any], shift: int) -> list[tuple[Any, ...]]:
    """The commands as the customer and services see them, times taken back by `shift`."""
    out = []
    for c in commands:
        v = dict(c.value)
        if v["type"] == "notify.collection_resumed":
            continue
        for name in ("command_id", "causation_id"):
            v.pop(name)
        for name in ("issued_at", *DEADLINES):
            if name in v:
                v[name] = parse_time(v[name]) - shift
        out.append((c.topic, sorted(v.items())))
    return out


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(max_invoices=1), st.integers(0, 30),
       st.sampled_from([DAY, 3 * DAY + 7 * HOUR + 13, 20 * DAY]))
def test_a_pause_moves_what_follows_by_its_length(sc: Scenario, pick: int, length: int) -> None:
    records = [(at, r) for at, r in sc.records if r.get("invoice_id") == "inv-0"]
    issue = next((k for k, (_, r) in enumerate(records) if r["type"] == "invoice.issued"), None)
    if issue is None:
        return
    k = issue + pick % (len(records) - issue)
    plain, _ = play(sc, records, END)
    later = [(at + length if j > k else at, r) for j, (at, r) in enumerate(records)]
    paused, mark = play(sc, later, END + length, pause=(k, length))
    if mark < 0:
        return
    assert paused.log[:mark] == plain.log[:mark]
    assert seen(paused.log[mark:], length) == seen(plain.log[mark:], 0)
    assert len(paused.of("notify.collection_resumed")) == 1
