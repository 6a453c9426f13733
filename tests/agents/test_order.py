"""Order across the input topics: a worker that comes back to a backlog applies a tick only
after the invoices and payments sent before it, as the pure engine does in send order."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import orjson
import pytest

from dunning.config.policy import parse_policy
from dunning.demo.check import compare
from dunning.rules.engine import Engine
from dunning.streams import topics
from tests.agents.kafka import Broker, Client, Worker
from tests.conftest import fresh_database

POLICY = """
[defaults]
terms_days = 30
late_fee_percent = "2"
suspend_after_days = 1
"""
INVOICES = 6000


def backlog() -> list[tuple[str, bytes | None, bytes]]:
    """Invoices due on day 30, every one paid in full, then a tick on day 31: in send order
    nothing is overdue. Twice as many records on the other topics as one fetch takes."""
    script: list[tuple[str, bytes | None, bytes]] = []
    for i in range(INVOICES):
        script.append((topics.INVOICES, f"inv-{i}".encode(), orjson.dumps({
            "type": "invoice.issued", "event_id": f"i-{i}", "invoice_id": f"inv-{i}",
            "customer_id": f"c-{i}", "amount": "30.00", "currency": "USD",
            "issued_at": "2026-01-01T00:00:00Z"})))
    for i in range(INVOICES):
        script.append((topics.PAYMENTS, f"inv-{i}".encode(), orjson.dumps({
            "type": "payment.applied", "event_id": f"p-{i}", "invoice_id": f"inv-{i}",
            "payment_id": f"p-{i}", "amount": "30.00", "currency": "USD"})))
    script.append((topics.CLOCK, None, orjson.dumps({
        "type": "clock.tick", "event_id": "t-31", "now": "2026-02-01T00:00:00Z"})))
    return script


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tick_waits_for_the_backlog_sent_before_it(tmp_path: Any, postgres: Any,
                                                      workers: int) -> None:
    """With two workers, a tick read by one also waits for the partitions the other forwards
    (their committed offsets)."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    script = backlog()
    engine = Engine(parse_policy(POLICY, "test"))
    expected = [c.value for t, k, v in script for c in engine.feed(t, k, v).commands]
    assert not any(c["type"] == "notify.overdue" for c in expected)
    broker = Broker()
    client = Client(broker, "order")
    database = fresh_database(postgres)
    group = [Worker(broker, "order", policy=str(policy), log_path=str(tmp_path / f"w{n}.log"),
                    database_url=database) for n in range(workers)]
    try:
        # The group joins once (creating the topics), then is down while the backlog and
        # the tick arrive, and comes back to all of it.
        for worker in group:
            worker.start()
        for worker in group:
            worker.wait_healthy()
        for worker in group:
            worker.kill(signal.SIGTERM)
        client.send(script)
        for worker in group:
            worker.start()
        for worker in group:
            worker.wait_healthy()
        client.settle(timeout=120)
        emitted = client.commands()
    finally:
        for worker in group:
            worker.kill()
        client.close()
        broker.stop()
    types = Counter(c["type"] for c in emitted)
    assert types["notify.overdue"] == 0 and types["invoice.late_fee"] == 0, types
    result = compare(expected, emitted)
    assert result.ok, (len(result.missing), len(result.extra), len(result.differing))
