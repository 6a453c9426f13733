"""The Outbox: records of a partition reach the broker in the order sent, also while a flush
(a batch finishing) runs alongside the next batch's sends; failed deliveries fail the flush."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dunning.agents.batches import Outbox


class Builder:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[bytes | None] = []

    def append(self, *, timestamp: Any, key: Any, value: bytes | None, headers: Any) -> Any:
        if len(self.records) >= self.capacity:
            return None  # full, as aiokafka's builder says it
        self.records.append(value)
        return True


class Kafka:
    """aiokafka's producer, as far as the Outbox uses it; shipping yields to other tasks."""

    def __init__(self, capacity: int = 3, fail: bool = False) -> None:
        self.capacity = capacity
        self.fail = fail
        self.log: dict[tuple[str, int], list[bytes | None]] = {}

    def _ensure_producer(self) -> Kafka:
        return self

    def create_batch(self) -> Builder:
        return Builder(self.capacity)

    async def send_batch(self, batch: Builder, topic: str, *, partition: int) -> Any:
        await asyncio.sleep(0)  # metadata and accumulator waits: other tasks run here
        self.log.setdefault((topic, partition), []).extend(batch.records)
        delivered = asyncio.get_running_loop().create_future()
        if self.fail:
            delivered.set_exception(RuntimeError("broker said no"))
        else:
            delivered.set_result(None)
        return delivered

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    async def flush(self) -> None:
        await asyncio.sleep(0)


def test_records_keep_their_order_while_a_flush_runs_alongside_sends():
    kafka = Kafka()
    out = Outbox(kafka)

    async def scenario() -> None:
        for n in range(10):
            await out.send("t", b"k", b"%d" % n, 0)
        flushing = asyncio.ensure_future(out.flush())  # batch one finishing...
        for n in range(10, 40):  # ...while batch two is worked on, on more partitions
            await out.send("t", b"k", b"%d" % n, n % 3)
            await asyncio.sleep(0)
        await flushing
        await out.flush()

    asyncio.run(scenario())
    assert kafka.log[("t", 0)] == [b"%d" % n for n in range(40) if n < 10 or n % 3 == 0]
    for p in (1, 2):
        assert kafka.log[("t", p)] == [b"%d" % n for n in range(10, 40) if n % 3 == p]


def test_records_without_a_partition_go_where_their_key_hashes():
    from dunning.streams.records import partition_for

    kafka = Kafka(capacity=100)
    out = Outbox(kafka)

    async def scenario() -> None:
        for n in range(20):
            await out.send("t", b"key-%d" % n, b"%d" % n)
        await out.flush()

    asyncio.run(scenario())
    for (_, partition), values in kafka.log.items():
        for v in values:
            assert partition == partition_for(b"key-" + v, 3)


def test_a_failed_delivery_fails_the_flush():
    out = Outbox(Kafka(fail=True))

    async def scenario() -> None:
        await out.send("t", b"k", b"v", 0)
        await out.flush()

    with pytest.raises(RuntimeError, match="broker said no"):
        asyncio.run(scenario())
