"""Order across the input topics: a worker that comes back to a backlog applies a tick only
after the invoices and payments sent before it, as the pure engine does in send order."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import orjson
import pytest
from aiokafka.structs import TopicPartition

from dunning.config.policy import parse_policy
from dunning.demo.check import compare
from dunning.rules.engine import Engine
from dunning.streams import topics
from dunning.streams.codec import feed
from dunning.streams.records import after_header
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


class Group:
    """`workers` worker processes of one group, started and stopped together."""

    def __init__(self, broker: Broker, policy: str, folder: Any, database: str,
                 workers: int) -> None:
        self.workers = [Worker(broker, "order", policy=policy,
                               log_path=str(folder / f"w{n}.log"), database_url=database)
                        for n in range(workers)]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            worker.wait_healthy()

    def stop(self, sig: int = signal.SIGKILL) -> None:
        for worker in self.workers:
            worker.kill(sig)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tick_waits_for_the_backlog_sent_before_it(tmp_path: Any, postgres: Any,
                                                      workers: int) -> None:
    """With two workers, a tick read by one also waits for the partitions the other forwards
    (their committed offsets)."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    script = backlog()
    engine = Engine(parse_policy(POLICY, "test"))
    expected = [c.value for t, k, v in script for c in feed(engine, t, k, v).commands]
    assert not any(c["type"] == "notify.overdue" for c in expected)
    broker = Broker()
    client = Client(broker, "order")
    group = Group(broker, str(policy), tmp_path, fresh_database(postgres), workers)
    try:
        # The group joins once (creating the topics), then is down while the backlog and
        # the tick arrive, and comes back to all of it.
        group.start()
        group.stop(signal.SIGTERM)
        client.send(script)
        group.start()
        client.settle(timeout=120)
        emitted = client.commands()
    finally:
        group.stop()
        client.close()
        broker.stop()
    types = Counter(c["type"] for c in emitted)
    assert types["notify.overdue"] == 0 and types["invoice.late_fee"] == 0, types
    result = compare(expected, emitted)
    assert result.ok, (len(result.missing), len(result.extra), len(result.differing))


def send_tick(client: Client, now: str) -> None:
    """A tick that carries the inputs' end offsets, as `dunning tick` sends it (taken here
    from the client's own sends: exact, where Tansu's end offsets stop at a batch's start)."""
    ends = {(tp.topic, tp.partition): end for tp, end in client.sent.items()
            if tp.topic != topics.CLOCK}
    value = orjson.dumps({"type": "clock.tick", "event_id": f"t-{now}", "now": now})

    async def go() -> None:
        meta = await (await client.producer.send(topics.CLOCK, value,
                                                 headers=[after_header(ends)]))
        tp = TopicPartition(meta.topic, meta.partition)
        client.sent[tp] = max(client.sent.get(tp, 0), meta.offset + 1)

    client.run(go())


@pytest.mark.parametrize("workers", [1, 2])
def test_ticks_that_carry_their_end_offsets_keep_their_place_in_a_backlog(
        tmp_path: Any, postgres: Any, workers: int) -> None:
    """Down while a tick past due, the late payments and another tick arrive: each tick goes
    after exactly what was sent before it and before what came after, so the overdue stage
    happens, as in send order."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    invoices = backlog()[:INVOICES]
    payments = backlog()[INVOICES:2 * INVOICES]
    engine = Engine(parse_policy(POLICY, "test"))
    expected = [c.value for t, k, v in invoices for c in feed(engine, t, k, v).commands]
    for now, records in (("2026-02-01T00:00:00Z", payments), ("2026-02-02T00:00:00Z", [])):
        tick = orjson.dumps({"type": "clock.tick", "event_id": f"t-{now}", "now": now})
        expected += [c.value for c in feed(engine, topics.CLOCK, None, tick).commands]
        expected += [c.value for t, k, v in records for c in feed(engine, t, k, v).commands]
    assert sum(c["type"] == "notify.overdue" for c in expected) == INVOICES
    broker = Broker()
    client = Client(broker, "order")
    group = Group(broker, str(policy), tmp_path, fresh_database(postgres), workers)
    try:
        group.start()
        client.send(invoices)
        client.settle(timeout=120)
        group.stop(signal.SIGTERM)
        send_tick(client, "2026-02-01T00:00:00Z")
        client.send(payments)
        send_tick(client, "2026-02-02T00:00:00Z")
        group.start()
        client.settle(timeout=120)
        emitted = client.commands()
    finally:
        group.stop()
        client.close()
        broker.stop()
    result = compare(expected, emitted)
    assert result.ok, (len(result.missing), len(result.extra), len(result.differing))
