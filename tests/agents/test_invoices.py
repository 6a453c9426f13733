"""The invoice agent, batch by batch, in process: a record whose processing raises is
dead-lettered as `internal_error` with the producer's headers, its invoice's state (in the
agent and in the table it writes) stays as before that record, and the rest of the batch goes
on (contract v1.1 §2)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from faust.types import TP

from dunning.agents.invoices import InvoiceAgent
from dunning.agents.metrics import Metrics
from dunning.config.policy import parse_policy
from dunning.rules import invoice as rules
from dunning.rules import model as m
from dunning.streams import records as wire
from dunning.tables.partitions import INVOICE
from dunning.tables.state import encode_invoice
from tests.agents.test_subjects import Producer as SubjectsProducer
from tests.agents.test_subjects import Table

EVENTS = "test-events"
POLICY = parse_policy("[defaults]\nterms_days = 30\nsuspend_after_days = 15\n", "test")


@dataclass
class Rec:
    value: bytes
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int = 1_767_225_600_000


class Builder:
    def __init__(self) -> None:
        self.records: list[tuple[Any, bytes | None, Any]] = []

    def append(self, *, timestamp: Any, key: Any, value: bytes | None, headers: Any) -> bool:
        self.records.append((key, value, headers))
        return True


class Producer(SubjectsProducer):
    """The subject tests' producer, keeping each record's headers (as the 4th field)."""

    def create_batch(self) -> Builder:  # type: ignore[override]
        return Builder()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self.sent += [(topic, k, v, h) for k, v, h in batch.records]
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered


class Changelog:
    def get_topic_name(self) -> str:
        return "test-invoices-changelog"


def forwarded(value: dict[str, Any], offset: int, topic: str = "billing.payments",
              headers: Any = ()) -> Rec:
    """A record as the sequencer forwards it: the input record's origin in our headers."""
    raw = orjson.dumps(value)
    return Rec(raw, offset, value.get("invoice_id", "").encode() or None,
               tuple(wire.forward_headers(topic, 0, 100 + offset, b"in-key", headers)))


def run(agent: InvoiceAgent, *records: Rec) -> None:
    async def batch() -> None:
        finish = await agent.handle({TP(EVENTS, 0): list(records)})
        await finish()

    asyncio.run(batch())


def sent(producer: Producer, topic: str) -> list[Any]:
    return [(k, v) for t, k, v, _ in producer.sent if t == topic]


def test_a_failing_record_is_dead_lettered_and_the_batch_goes_on(monkeypatch):
    producer, table = Producer(), Table({}, Changelog())
    metrics = Metrics()
    agent = InvoiceAgent(producer, table, POLICY, "test", 1, metrics, lambda: True)
    issue = {"type": "invoice.issued", "event_id": "e-1", "invoice_id": "inv-1",
             "customer_id": "c-1", "amount": "100.00", "currency": "USD",
             "issued_at": "2026-01-01T00:00:00Z"}
    run(agent, forwarded(issue, 0, "billing.invoices"),
        forwarded({**issue, "event_id": "e-2", "invoice_id": "inv-2"}, 1, "billing.invoices"))
    before = table.data[INVOICE + b"inv-1"]
    real = rules._HANDLERS[m.PaymentApplied]

    def payment(inv: Any, event: Any, now: int, out: Any) -> str:
        outcome = real(inv, event, now, out)  # changes the invoice, emits a status ...
        if event.payment_id == "p-bad":
            raise ZeroDivisionError("injected")  # ... then fails
        return outcome

    monkeypatch.setitem(rules._HANDLERS, m.PaymentApplied, payment)
    pay = {"type": "payment.applied", "invoice_id": "inv-1", "currency": "USD"}
    trace = (("trace-id", b"t-9"),)
    producer.sent.clear()
    run(agent,
        forwarded({**pay, "event_id": "e-bad", "payment_id": "p-bad", "amount": "100.00"}, 2,
                  headers=trace),
        forwarded({**pay, "event_id": "e-3", "payment_id": "p-3", "amount": "100.00",
                   "invoice_id": "inv-2"}, 3))

    (dead,) = sent(producer, "collection.deadletter")
    ((_, _, _, dl_headers),) = [s for s in producer.sent if s[0] == "collection.deadletter"]
    assert dead[0] == b"in-key"  # the input record's own key and value
    assert orjson.loads(dead[1])["payment_id"] == "p-bad"
    headers = dict(dl_headers)
    assert headers["dlq.error"] == b"internal_error"
    assert b"ZeroDivisionError: injected" in headers["dlq.reason"]
    assert (headers["dlq.topic"], headers["dlq.offset"]) == (b"billing.payments", b"102")
    assert headers["trace-id"] == b"t-9" and "dunning.topic" not in headers
    # inv-1 is as before the failing record, in memory and in the table; its partial status
    # command never left.
    assert encode_invoice(agent.engines[0].invoices["inv-1"]) == before
    assert table.data[INVOICE + b"inv-1"] == before
    statuses = [orjson.loads(v) for _, v in sent(producer, "collection.billing")]
    assert [(s["invoice_id"], s["status"]) for s in statuses] == [("inv-2", "paid")]
    assert metrics.dead_letters.labels("internal_error")._value.get() == 1


@pytest.mark.parametrize("partition", [0, 1])
def test_a_refused_tick_is_dead_lettered_and_counted_once_for_all_partitions(partition):
    producer, table = Producer(), Table({}, Changelog())
    metrics = Metrics()
    agent = InvoiceAgent(producer, table, POLICY, "test", 2, metrics, lambda: True,
                         max_tick_jump=7 * 86_400)

    def tick(when: str, offset: int) -> Rec:
        return forwarded({"type": "clock.tick", "event_id": f"t-{when}", "now": when}, offset,
                         "billing.clock")

    async def batch(*records: Rec) -> None:
        finish = await agent.handle({TP(EVENTS, partition): list(records)})
        await finish()

    asyncio.run(batch(tick("2026-01-01T00:00:00Z", 0), tick("9000-01-01T00:00:00Z", 1)))
    dead = sent(producer, "collection.deadletter")
    if partition == 0:
        assert len(dead) == 1 and metrics.clock_rejected._value.get() == 1
    else:  # partition 0's owner says it: every partition refuses the same tick
        assert dead == [] and metrics.clock_rejected._value.get() == 0
    assert agent.engines[partition].clock == 1_767_225_600
