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


# -- exactly once ----------------------------------------------------------------------------


class TransactionalKafka(Kafka):
    """A transactional producer: what it ships counts once its transaction commits."""

    def __init__(self, transactional_id: str, log: list[Any]) -> None:
        super().__init__(capacity=100)
        self.transactional_id = transactional_id
        self.commits = log  # (transactional id, records by topic partition, offsets), shared
        self.offsets: dict[Any, int] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def begin_transaction(self) -> None:
        self.log, self.offsets = {}, {}

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group: str) -> None:
        self.offsets.update(offsets)

    async def commit_transaction(self) -> None:
        await asyncio.sleep(0)
        self.commits.append((self.transactional_id, self.log, self.offsets))


class Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def test_with_transactions_each_input_partition_commits_its_output_with_its_offset():
    from faust.types import TP

    from dunning.agents.batches import Transactions

    commits: list[Any] = []
    transactions = Transactions("app", "app", lambda tid: TransactionalKafka(tid, commits))
    a, b, clock = TP("in", 0), TP("in", 1), TP("clock", 0)
    out = Outbox(Kafka(), transactions=transactions)

    async def scenario() -> None:
        await transactions.assign({a, b, clock})
        out.begin()
        out.source = a
        await out.send("t", b"k", b"abandoned", 0)  # a batch abandoned midway
        out.begin()  # the next batch: what that one sent is dropped
        for source, value in ((clock, b"tick"), (a, b"a1"), (b, b"b1"), (a, b"a2")):
            out.source = source
            await out.send("t", b"k", value, 0)
        batch = {a: [Record(7), Record(8)], b: [Record(3)], clock: [Record(0)]}
        finish = out.finish(batch, wave=lambda tp: int(tp.topic == "clock"))
        out.begin()
        out.source = b
        await out.send("t", b"k", b"next batch", 0)  # sent while the first one finishes
        await finish()

    asyncio.run(scenario())
    by_id = {tid: (log, offsets) for tid, log, offsets in commits}
    assert by_id["app-eos-in-0"] == ({("t", 0): [b"a1", b"a2"]}, {a: 9})
    assert by_id["app-eos-in-1"] == ({("t", 0): [b"b1"]}, {b: 4})
    assert by_id["app-eos-clock-0"] == ({("t", 0): [b"tick"]}, {clock: 1})
    assert commits[-1][0] == "app-eos-clock-0"  # ticks commit after what was read with them
