"""No record can stop the worker (contract v1.1 §2, §4 "Clock safety"), through a real broker.

Valid billing traffic mixed with the records that used to kill the worker (and kill it again on
every restart, as it read them again): each is dead-lettered with the contract's code, its
value and headers kept, and the worker carries on, across a restart, with exactly the pure
engine's commands for the valid invoices alongside.
"""

from __future__ import annotations

import re
import signal
from collections import Counter
from datetime import date, timedelta
from typing import Any

import orjson
import pytest

from dunning.rules.times import DAY
from tests.agents import scenarios
from tests.agents.kafka import Broker, Client, Worker
from tests.agents.test_crash import check_against_engine
from tests.conftest import fresh_database

GUARD_DAYS = 7
TRACE = [("trace-id", b"t-hostile"), ("bin", b"\x00\xff")]


def issued(iid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "invoice.issued", "event_id": f"e-{iid}", "invoice_id": iid,
            "customer_id": f"c-{iid}", "amount": "100.00", "currency": "USD",
            "issued_at": "2026-01-01T00:00:00Z", "order_id": f"o-{iid}", **fields}


# (topic, key, value, headers, the dead letter's code): each used to kill the worker, or is
# another input the contract rejects at the edge.
HOSTILE: list[tuple[str, bytes | None, bytes | None, list[Any], str]] = [
    ("billing.invoices", b"h-1", orjson.dumps({**issued("h-1"), "type": ["invoice.issued"]}),
     TRACE, "unknown_type"),
    ("billing.payments", b"h-2", orjson.dumps({"type": {"t": "payment.applied"},
                                               "invoice_id": "h-2", "event_id": "e"}),
     [], "unknown_type"),
    ("billing.invoices", b"h-id-nul", orjson.dumps(issued("H-id-nul\u0000X")), TRACE,
     "invalid_field"),
    ("billing.invoices", b"h-3", orjson.dumps(issued("h-3", customer_id="c\u00853")), [],
     "invalid_field"),
    ("billing.invoices", b"h-4", orjson.dumps(issued(
        "h-4", issued_at="9999-12-31T23:59:59-01:00")), [], "invalid_field"),
    ("billing.invoices", b"h-5", orjson.dumps(issued(
        "h-5", overrides={"delete_at": "9998-12-31T00:00:00Z"})), [], "invalid_field"),
    ("billing.invoices", b"h-6", orjson.dumps(issued(
        "h-6", overrides={"reminder_every_days": 1_000_000_000_000_000})), [], "invalid_field"),
    ("billing.invoices", b"h-7", orjson.dumps(issued("h-7", amount="١٠٠.٠٠")), [],
     "invalid_field"),
    ("billing.payments", b"h-8", orjson.dumps({
        "type": "payment.applied", "event_id": "e-h-8", "invoice_id": "ok-1",
        "payment_id": "p-fw", "amount": "１０.００", "currency": "USD"}), TRACE, "invalid_field"),
    ("billing.invoices", b"h-9", orjson.dumps(issued("h-9", due_at="2025-12-01T00:00:00Z")), [],
     "invalid_field"),
    ("billing.payments", b"ok-2", None, TRACE, "malformed_json"),  # a tombstone
    ("billing.payments", b"ok-2", orjson.dumps({  # a dead letter the rules raise
        "type": "payment.applied", "event_id": "e-eur", "invoice_id": "ok-2",
        "payment_id": "p-eur", "amount": "5.00", "currency": "EUR"}), TRACE,
     "currency_mismatch"),
]
# Ticks the clock guard refuses: a year-9000 typo, and one near the end of time.
JUMPS = ["9000-01-01T00:00:00Z", "9998-12-31T00:00:00Z"]


def script() -> scenarios.Recorder:
    """Daily ticks over ten weeks for a few dozen valid invoices (paid, partly paid, never
    paid), the hostile records among them, the refused jumps, and a confirmed one."""
    rec = scenarios.Recorder()
    rec.engine.max_tick_jump = GUARD_DAYS * DAY
    day = date(2026, 1, 1)

    def tick(headers: Any = ()) -> None:
        when = f"{day.isoformat()}T00:00:00Z"
        rec.send({"type": "clock.tick", "event_id": f"tick-{when}", "now": when},
                 headers=headers)

    tick()
    for n in range(24):
        rec.send(issued(f"ok-{n}", customer_class="remind" if n % 3 == 0 else None))
    hostile = iter(HOSTILE)
    for step in range(70):
        day += timedelta(days=1)
        if step % 5 == 0:
            for topic, key, value, headers, _ in [x for x in (next(hostile, None),
                                                             next(hostile, None)) if x]:
                rec.send(value, topic=topic, key=key, headers=headers)
        if step == 10:
            for n in range(0, 24, 2):
                rec.send({"type": "payment.applied", "invoice_id": f"ok-{n}",
                          "payment_id": f"p-{n}", "amount": "100.00" if n % 4 else "40.00",
                          "currency": "USD"})
        if step in (20, 40):
            for when in JUMPS:
                rec.send({"type": "clock.tick", "event_id": f"tick-{when}-{step}",
                          "now": when})
        if step == 50:
            day += timedelta(days=GUARD_DAYS + 3)
            tick([("dunning.confirm", b"jump")])  # an operator who means it
            continue
        tick()
    return rec


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Any:
    folder = tmp_path_factory.mktemp("hostile")
    policy = folder / "policy.toml"
    policy.write_text(scenarios.POLICY)
    reference = script()
    half = len(reference.script) // 2
    broker = Broker()
    database = fresh_database(postgres)
    log = folder / "worker.log"

    def worker() -> Worker:
        return Worker(broker, "hostile", policy=str(policy), log_path=str(log),
                      database_url=database, max_tick_jump=GUARD_DAYS)

    first = worker().start()
    client = Client(broker, "hostile")
    try:
        first.wait_healthy()
        client.play(reference.script[:half])
        assert first.proc is not None and first.proc.poll() is None, "the worker died"
        first.kill(signal.SIGKILL)  # a restart reads again whatever was not committed
        second = worker().start()
        second.wait_healthy()
        client.play(reference.script[half:])
        assert second.proc is not None and second.proc.poll() is None, "the worker died"
        yield reference, client, second, log, half
    finally:
        for w in (first, locals().get("second")):
            if w is not None:
                w.kill()
        client.close()
        broker.stop()


def test_the_worker_carries_on_with_exactly_the_engines_commands(hostile_run):
    reference, client, worker, log, _ = hostile_run
    check_against_engine(reference, client)
    assert worker.get("/health")[0] == 200
    assert "Traceback" not in log.read_text()


def test_each_hostile_record_is_dead_lettered_with_its_code_value_and_headers(hostile_run):
    reference, client, _, _, _ = hostile_run
    got = Counter()
    for r in client.dead_letters():
        headers = dict(r.headers)
        theirs = [(k, v) for k, v in r.headers if not k.startswith("dlq.")]
        got[(headers["dlq.error"].decode(), headers["dlq.topic"].decode(), r.key, r.value,
             tuple(theirs))] += 1
        assert headers["dlq.reason"]
    want = Counter((code, topic, key, value, tuple(headers))
                   for topic, key, value, headers, code in HOSTILE)
    jumps = [v for t, _, v, *_ in reference.script if t == "billing.clock"
             and any(j.encode() in v for j in JUMPS)]
    want.update(("clock_jump", "billing.clock", None, v, ()) for v in jumps)
    assert got == want
    # The reference engine agrees on every dead letter.
    assert Counter((d.error, d.source.value) for d in reference.dead) == Counter(
        (code, value) for code, _, _, value, _ in want.elements())


def test_refused_ticks_are_counted_and_served_for_the_alert(hostile_run):
    reference, _, worker, log, half = hostile_run
    text = worker.get("/metrics")[1].decode()
    # Counted since the restart: the refused jumps in the second half of the script.
    refused = sum(1 for t, _, v, *_ in reference.script[half:] if t == "billing.clock"
                  and any(j.encode() in v for j in JUMPS))
    assert refused >= 1
    assert re.search(rf"^dunning_clock_rejected_total {refused}\.0$", text, re.MULTILINE)
    assert re.search(rf'^dunning_dead_letters_total{{code="clock_jump"}} {refused}\.0$', text,
                     re.MULTILINE)
    assert re.search(r'^dunning_dead_letters_total\{code="internal_error"\} 0\.0$', text,
                     re.MULTILINE)
    assert "clock guard: the tick would move logical time" in log.read_text()
