"""The sequencer's records on the events log keep the input record's timestamp, in the
milliseconds Kafka keeps timestamps in.

Stamped in seconds, they were records of January 1970 to the broker: Apache Kafka's time
retention (7 days by default, checked 30 s after it starts and then every 5 minutes) deleted
every one of them at its next check, whether the invoice agent had read it or not. A worker
restarting behind (test_restart_tick.py) then found its committed offset below the log's start
and was reset to its end, past ticks and events it never applied. So this test builds the
batches with aiokafka's own batch builder, which takes what it is given as milliseconds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from faust.types import TP

from dunning.agents.metrics import Metrics
from dunning.agents.sequencer import Sequencer
from dunning.streams import records as wire
from dunning.streams.topics import CLOCK, INVOICES

SENT_AT = 1_767_225_600_123  # ms: 2026-01-01T00:00:00.123Z, when the producer sent it


@dataclass
class Rec:
    value: bytes
    offset: int
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = SENT_AT


class Producer:
    """Faust's producer, as far as the Outbox uses it, with aiokafka's real batch builder."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int, BatchBuilder]] = []

    def _ensure_producer(self) -> Producer:
        return self

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(1 << 20, 0, is_transactional=False)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        self.batches.append((topic, partition, batch))
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    async def flush(self) -> None:
        pass

    def records(self) -> list[tuple[str, int, Any]]:
        """What the broker would store: each batch's bytes, parsed as a consumer does."""
        out = []
        for topic, partition, builder in self.batches:
            stored = MemoryRecords(bytes(builder._build()))
            while (batch := stored.next_batch()) is not None:
                out += [(topic, partition, r) for r in batch]
        return out


def test_forwarded_records_keep_the_input_timestamp_in_milliseconds() -> None:
    producer = Producer()
    sequencer = Sequencer(producer, "app", 4, Metrics())
    issued = orjson.dumps({"type": "invoice.issued", "event_id": "e-1", "invoice_id": "inv-1",
                           "customer_id": "c-1", "amount": "30.00", "currency": "USD",
                           "issued_at": "2026-01-01T00:00:00Z"})
    tick = orjson.dumps({"type": "clock.tick", "event_id": "t-1",
                         "now": "2026-01-02T00:00:00Z"})

    async def forward() -> None:
        finish = await sequencer.handle({TP(INVOICES, 0): [Rec(issued, 7, b"inv-1")],
                                         TP(CLOCK, 0): [Rec(tick, 3)]})
        await finish()

    asyncio.run(forward())
    stored = producer.records()
    assert {(t, p) for t, p, _ in stored} == {(wire.events_topic("app"), p) for p in range(4)}
    assert len(stored) == 5  # the invoice on its partition, the tick on all four
    assert [r.timestamp for _, _, r in stored] == [SENT_AT] * 5
