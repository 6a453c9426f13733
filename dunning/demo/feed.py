"""Feeding a worker an input script in the order the pure engine saw it, and reading back.

The worker reads four input topics whose interleaving no one controls (Kafka orders records
within a partition only). So a run of records of one topic is sent, then the feeder waits until
the worker's group has committed them on the input topics (they are on its internal log), and
only then sends the next run or tick. The demo and the tests use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from dunning.streams import records as wire
from dunning.streams import topics
from dunning.streams.broker import exact_end_offsets

OUTPUT_TOPICS = (topics.NOTIFICATIONS, topics.PROVISIONING, topics.BILLING)

Record = tuple[str, bytes | None, bytes]  # topic, key, value


def is_tick(record: Record) -> bool:
    return record[0] == topics.CLOCK


class Feeder:
    """Producer and readers for one consumer group's input, on an event loop of its own."""

    def __init__(self, bootstrap: str, app_id: str, also: Iterable[str] = (),
                 client_options: dict[str, Any] | None = None,
                 isolation_level: str = "read_uncommitted") -> None:
        """`also`: more groups reading the same input (shadow workers); barriers wait for
        every one of them. `client_options`: TLS and SASL (`BrokerSecurity.client_options`).
        `isolation_level`: how outputs and internal topics are read (read_committed where
        workers write in transactions)."""
        self.bootstrap = bootstrap
        self.options = client_options or {}
        self.isolation_level = isolation_level
        self.app_id = app_id
        self.groups = [app_id, *also]
        self._views: dict[str, AIOKafkaConsumer] = {}
        self.loop = asyncio.new_event_loop()
        self.sent: dict[TopicPartition, int] = {}  # next offset after what this client sent

        async def start() -> tuple[AIOKafkaProducer, AIOKafkaAdminClient]:
            # acks from every in-sync replica: a broker lost in a test loses no input.
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all",
                                        **self.options)
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **self.options)
            await producer.start()
            await admin.start()
            return producer, admin

        self.producer, self.admin = self.run(start())
        # Whether end offsets are exact (Apache Kafka) or may stop short (Tansu): _unread.
        self.exact_end_offsets = self.run(exact_end_offsets(self.admin))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        for view in self._views.values():
            self.run(view.stop())
        self.run(self.producer.stop())
        self.run(self.admin.close())
        self.loop.close()

    # -- sending -----------------------------------------------------------------------------

    def send(self, records: Iterable[Record]) -> None:
        async def go() -> None:
            # A record may carry headers as a fourth element.
            futures = [await self.producer.send(t, v, key=k, headers=list(h[0]) if h else None)
                       for t, k, v, *h in records]
            await self.producer.flush()
            for f in futures:
                meta = await f
                tp = TopicPartition(meta.topic, meta.partition)
                self.sent[tp] = max(self.sent.get(tp, 0), meta.offset + 1)

        self.run(go())

    def play(self, script: list[Record], timeout: float = 120, on_phase: Any = None,
             settle: bool = True) -> None:
        """Send `script` in its order as far as Kafka keeps order: records of one topic go
        together, and before a record of another topic (or a tick) is sent, the group must
        have taken everything before it. `on_phase(n)` runs before the n-th tick is sent (a
        test kills workers there)."""
        run: list[Record] = []
        ticks = 0
        for record in script:
            if run and (is_tick(record) or record[0] != run[0][0]):
                self.send(run)
                self.barrier(topics.INPUTS, timeout)
                run = []
            if is_tick(record):
                if on_phase is not None:
                    on_phase(ticks)
                ticks += 1
                self.send([record])
                self.barrier(topics.INPUTS, timeout)
            else:
                run.append(record)
        if run:
            self.send(run)
            self.barrier(topics.INPUTS, timeout)
        if settle:
            self.settle(timeout)

    def settle(self, timeout: float = 120) -> None:
        """Wait until the groups have processed everything on their input and internal
        topics."""
        self.barrier(topics.INPUTS, timeout)
        deadline = time.monotonic() + timeout
        for group in self.groups:
            internal = [wire.events_topic(group), wire.signals_topic(group)]
            while self.run(self._unread(group, internal)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"group {group} has not processed its internal topics")

    def barrier(self, names: Iterable[str], timeout: float) -> None:
        """Wait until the group has committed every record this client sent to `names`.

        Offsets come from the sends, not from the broker's end offsets: Tansu reports an end
        offset that stops at the first record of a partition's last batch."""
        deadline = time.monotonic() + timeout
        wanted = {tp: end for tp, end in self.sent.items() if tp.topic in set(names)}
        while True:
            lag = self.run(self._lag(wanted))
            if lag == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"groups {self.groups} still {lag} records behind")
            time.sleep(0.05)

    async def _group_view(self, group: str) -> AIOKafkaConsumer:
        view = self._views.get(group)
        if view is None:  # in the group's name, never joining it: reads its offsets
            view = self._views[group] = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False,
                fetch_max_wait_ms=200, isolation_level=self.isolation_level, **self.options)
            await view.start()
        return view

    async def _lag(self, wanted: dict[TopicPartition, int]) -> int:
        lag = 0
        for group in self.groups:
            view = await self._group_view(group)
            for tp, end in wanted.items():
                # (the admin client's offset fetch does not parse Tansu's answer)
                lag += max(0, end - (await view.committed(tp) or 0))
        return lag

    async def _unread(self, group: str, names: list[str]) -> bool:
        """Whether any partition of `names` has records past the group's committed offset:
        one below the end offset (exact on Apache Kafka; on Tansu it can stop short of a
        partition's last batch, never past it), or found by fetching there: on Tansu, and
        wherever it is read committed, since the end can be a transaction's marker, never read.
        (Trusting Kafka's end offsets skipped that fetch when read committed: the test client's
        settle came back before the second stage had run.)"""
        view = await self._group_view(group)
        tps = await topics.partitions(view, names)
        committed = {tp: await view.committed(tp) or 0 for tp in tps}
        ends = await view.end_offsets(tps) if tps else {}
        behind = [tp for tp in tps if committed[tp] < ends[tp]]
        if self.exact_end_offsets:
            if not behind:
                return False
            if self.isolation_level == "read_uncommitted":
                return True
            tps = behind  # read committed, what is past the offset may be only a marker
        view.assign(tps)
        for tp in tps:
            view.seek(tp, committed[tp])
        batch = await view.getmany(timeout_ms=300)
        return any(batch.values())

    # -- reading -------------------------------------------------------------------------

    def read(self, names: Iterable[str], isolation_level: str | None = None) -> list[Any]:
        """Every record on `names` so far (ConsumerRecords, in partition order), read as the
        client reads (`isolation_level`, else the client's)."""

        async def go() -> list[Any]:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                        enable_auto_commit=False,
                                        isolation_level=isolation_level or self.isolation_level,
                                        **self.options)
            await consumer.start()
            try:
                tps = await topics.partitions(consumer, names)
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                ends = await consumer.end_offsets(tps)
                out: list[Any] = []
                left = {tp for tp in tps if ends[tp] > 0}
                while left:
                    batch = await consumer.getmany(*left, timeout_ms=1000)
                    for recs in batch.values():
                        out += recs
                    for tp in list(left):  # past the end, transaction markers included
                        if await consumer.position(tp) >= ends[tp]:
                            left.discard(tp)
                return out
            finally:
                await consumer.stop()

        return self.run(go())

    def commands(self, isolation_level: str | None = None) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.read(OUTPUT_TOPICS, isolation_level)]

    def dead_letters(self) -> list[Any]:
        return self.read([topics.DEADLETTER])
