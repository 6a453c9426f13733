"""A Faust consumer that hands each fetched batch to the agent that owns its topic, whole.

Faust delivers every message through its conductor, a queue and a stream, with a task or two per
message: about 5 000 messages/s here, against 90 000 for a plain aiokafka loop (see `make
bench`). Our agents work in batches anyway (one tick is thousands of invoices), so for their
topics this consumer skips that path: a fetched batch goes to the agent's handler in one call,
and when the handler returns (its output sent) the batch's offsets are committed, after the
producer is flushed. Everything else stays Faust's: the consumer group and assignment, table
recovery (changelog records still take the usual path), standbys, the web server.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from dunning.streams.records import dead_letter as dead_letter_record
from dunning.streams.records import partition_for
from dunning.streams.topics import DEADLETTER, OUTPUTS
from dunning.tables.partitions import apply_rows

Batch = dict[TP, list[Any]]  # aiokafka ConsumerRecords of one fetch, by partition
# A handler works through a batch and sends its output; what it returns finishes the batch
# (flush, then state), after which the consumer commits. Finishing overlaps the next batch.
# A handler that must leave a partition's records for later puts the ones it took (a prefix)
# in batch[tp]: the consumer commits those, and reads the rest again.
Finish = Callable[[], Awaitable[None]]
BatchHandler = Callable[[Batch], Awaitable[Finish]]
IN_FLIGHT = 2  # batches finishing while the next is worked on


class Abandon(Exception):
    """Raised by a handler that finds a rebalance under way: the batch is dropped unfinished
    and uncommitted; the partitions' owner reads it again from the committed offsets."""


class Outbox:
    """Sends through Faust's producer, a record batch per topic partition at a time, and keeps
    each batch's delivery: a batch whose output did not all reach the broker fails (and is
    redone after a restart) instead of being committed.

    aiokafka's per-message `send` costs about 15 µs (partitioner, accumulator, a future per
    message); appending to a batch builder costs a tenth of that, and the worker sends several
    records per event. Records without a partition go where Kafka's default partitioner puts
    their key, as with `send`."""

    def __init__(self, producer: Any, output_prefix: str = "") -> None:
        self.producer = producer
        # A shadow worker (another policy on the same input) writes the contract's output
        # topics under a prefix of its own, never to the real ones.
        self._rename = {t: output_prefix + t for t in OUTPUTS} if output_prefix else {}
        self._open: dict[tuple[str, int], Any] = {}  # the batch being filled, per partition
        self._full: list[tuple[str, int, Any]] = []  # filled batches, oldest first
        self._partitions: dict[str, int] = {}
        self._pending: list[Any] = []
        # One flush ships at a time, full batches before open ones: within a partition, the
        # records sent while a batch finishes never overtake that batch's.
        self._shipping = asyncio.Lock()

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None = None, headers: Any = None,
                   timestamp: int | None = None) -> None:
        """`timestamp` (milliseconds, whatever aiokafka's `BatchBuilder.append` says) defaults
        to now; forwarded records keep their original. Given seconds, Kafka takes the records
        for 1970's and its time retention deletes them at its next check, read or not."""
        topic = self._rename.get(topic, topic)
        if partition is None:
            count = self._partitions.get(topic) or await self._count(topic)
            partition = partition_for(key if key is not None else value or b"", count)
        builder = self._open.get((topic, partition))
        if builder is None:
            builder = self._open[(topic, partition)] = self._kafka().create_batch()
        if builder.append(timestamp=timestamp, key=key, value=value,
                          headers=headers or []) is None:
            self._full.append((topic, partition, builder))
            builder = self._open[(topic, partition)] = self._kafka().create_batch()
            if builder.append(timestamp=timestamp, key=key, value=value,
                              headers=headers or []) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes fits no batch")

    async def dead_letter(self, dl: Any, metrics: Any) -> None:
        """A rejected record to the dead-letter topic, unchanged, with its dlq.* headers;
        counted by code in `metrics`."""
        key, value, headers = dead_letter_record(dl)
        await self.send(DEADLETTER, key, value, None, headers)
        metrics.dead_letters.labels(dl.error).inc()

    async def flush(self) -> None:
        """Ship what was sent, wait until all is delivered, raise what failed."""
        async with self._shipping:
            full, self._full = self._full, []
            full += [(topic, partition, b) for (topic, partition), b in self._open.items()]
            self._open = {}
            for topic, partition, builder in full:
                await self._ship(topic, partition, builder)
        await self.producer.flush()
        pending, self._pending = self._pending, []
        for delivery in pending:
            if delivery.done():
                delivery.result()  # raises the delivery's error
            else:
                await delivery

    async def _ship(self, topic: str, partition: int, builder: Any) -> None:
        self._pending.append(
            await self._kafka().send_batch(builder, topic, partition=partition))

    def _kafka(self) -> Any:
        return self.producer._ensure_producer()  # the aiokafka producer under Faust's

    async def _count(self, topic: str) -> int:
        count = self._partitions[topic] = len(await self._kafka().partitions_for(topic))
        return count


def finish_with_state(out: Outbox, table: Any, written: list[tuple[int, list[Any]]]) -> Finish:
    """How a stateful agent finishes a batch: its output flushed first (once a row says an
    invoice or subject moved on, what it emitted is out), then its rows to the table's
    changelog, then to the local store, which so holds only what the changelog holds."""
    changelog = table.changelog_topic.get_topic_name()

    async def finish() -> None:
        await out.flush()
        await write_rows(out, changelog, written)
        for _, rows in written:
            apply_rows(table.data, rows)

    return finish


async def write_rows(out: Outbox, changelog: str, written: list[tuple[int, list[Any]]]) -> None:
    """Write a batch's table rows to the changelog; each partition's last row goes alone,
    after the others are out. (The local store has them already: the next batch, worked on
    meanwhile, reads it.)

    Tansu reports a partition's end offset as the first offset of its last record batch plus
    one, so a reader that stops at the end offset (Faust's table recovery does) misses the
    rest of that batch. Ending every write with a one-record batch keeps the end offset true;
    on Kafka it costs one more flush per batch. It is kept on Kafka too: writing all the rows
    in one flush there made tests/agents/test_crash.py's SIGKILL test fail every time (after
    the restart at a tick, that tick's overdue stages came a tick late), a bug not yet found.
    """
    for p, rows in written:
        for key, value in rows[:-1]:
            await out.send(changelog, key, value, p)
    await out.flush()
    for p, rows in written:
        if rows:
            await out.send(changelog, rows[-1][0], rows[-1][1], p)
    await out.flush()


class ConsumerThread(driver.AIOKafkaConsumerThread):
    # The aiokafka assignment the last fetch's records belong to (see BatchConsumer._put_back).
    fetched_from: Any = None

    async def _fetch_records(self, consumer: Any, active_partitions: Any,
                             timeout: float | None = None,
                             max_records: int | None = None) -> Any:
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                               max_records=max_records)
        subscription = consumer._subscription.subscription
        self.fetched_from = subscription.assignment if subscription is not None else None
        return records

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust fixes the fetch long-poll at 1.5 s. Brokers that hold a fetch for all of it
        # when little is waiting (Tansu does) then add that to every hop of a quiet pipeline;
        # the app's setting (`fetch_max_wait`, seconds) bounds it.
        wait = getattr(self.app, "fetch_max_wait", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = int(wait * 1000)
        return consumer


class BatchConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> Any:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    _finishing: deque[asyncio.Future[None]] | None = None

    async def finish_all(self) -> None:
        """Wait for the batches still finishing: called when partitions are revoked, so that
        their state and offsets are written while this worker still owns them."""
        while self._finishing:
            await self._finishing.popleft()

    async def _finish(self, previous: asyncio.Future[None] | None, finish: Finish,
                      offsets: dict[TP, int], generation: int) -> None:
        """Finish a batch after the one before it, then commit its offsets: commits stay in
        order, and a batch's offsets are committed only once its output and state are out."""
        if previous is not None:
            await previous
        if self.app.consumer_generation_id != generation:
            return  # fetched before a rebalance: its partitions' owner reads it again
        await finish()
        # Flushes the producer first; drops partitions revoked meanwhile.
        await self._commit_offsets(offsets)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        # Faust passes its live set of active partitions, which a pause empties in place
        # while the fetch waits in the consumer's thread; aiokafka reads an empty set as
        # "every partition" and hands over (and moves past) records of paused ones. Fetch
        # for the partitions active when the fetch began.
        if active_partitions is not None:
            active_partitions = set(active_partitions)
        return await super()._getmany(active_partitions, timeout)

    async def _put_back(self, left: dict[TP, tuple[int, int]], assignment: Any) -> None:
        """Fetch again records taken from the fetcher but not worked on: for each partition,
        (offset of the first of them, offset after the last).

        Taking records moves aiokafka's position past them, and nothing else brings it back
        within one assignment: Faust's seek to the committed offsets after a table restore
        skips partitions without a committed offset above 0. Records dropped there were lost
        until a newer record arrived behind them (a tick taken while its clock partition was
        paused at the end of a restore, on a partition never committed: the next tick came
        after it, and it was skipped). So every record taken is worked on or put back.

        The seek runs in the consumer's thread (aiokafka is not thread-safe), only within the
        assignment the records came from (a new one reads from the committed offsets), and
        only where the position is not behind them (a seek back since then rereads them)."""
        if not left or assignment is None:
            return
        consumer = self._thread._ensure_consumer()

        async def seek() -> None:
            if not assignment.active:
                return
            for tp, (offset, after) in left.items():
                state = assignment.state_value(tp)
                if state is not None and state.has_valid_position and state.position >= after:
                    consumer.seek(tp, offset)

        await self._thread.call_thread(seek)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - Faust's loop
        handlers: dict[str, BatchHandler] = self.app.batch_handlers  # type: ignore[attr-defined]
        callback = self.callback
        consumer_stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        finishing = self._finishing = deque()
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    continue
                fetched_from = self._thread.fetched_from
                generation = self.app.consumer_generation_id
                assigned = self.assignment()
                batches: dict[BatchHandler, Batch] = {}
                left: dict[TP, tuple[int, int]] = {}  # taken, not worked on: fetched again
                for tp, recs in records.items():
                    if not recs:
                        continue
                    if tp not in assigned or (
                        active is not None and tp not in active
                        and tp not in self._buffered_partitions
                    ):
                        left[tp] = (recs[0].offset, recs[-1].offset + 1)  # paused since
                        continue
                    handler = handlers.get(tp.topic)
                    if handler is None:  # changelogs and the like: Faust's own path
                        for record in recs:
                            await self.wait_first(
                                callback(self._to_message(tp, record)),
                                self.suspend_flow.wait(),
                            )
                    elif not self.app.tables_ready:  # type: ignore[attr-defined]
                        # Tables are still being restored after a rebalance, so state is not
                        # whole yet (Faust fetches stream partitions meanwhile). Fetch these
                        # records again once it is.
                        left[tp] = (recs[0].offset, recs[-1].offset + 1)
                    else:
                        batches.setdefault(handler, {})[tp] = recs
                await self._put_back(left, fetched_from)
                for handler, batch in batches.items():
                    given = dict(batch)
                    try:
                        finish = await handler(batch)
                    except Abandon:  # a rebalance under way: within this assignment (if it
                        # lasts), nothing taken is skipped
                        await self._put_back({tp: (recs[0].offset, recs[-1].offset + 1)
                                              for tp, recs in given.items() if recs},
                                             fetched_from)
                        continue
                    offsets = {tp: recs[-1].offset + 1 for tp, recs in batch.items() if recs}
                    # A handler leaves records for later (a tick that waits for the other
                    # inputs): they come back with a later fetch, and it decides again.
                    await self._put_back({
                        tp: (recs[len(batch.get(tp) or ())].offset, recs[-1].offset + 1)
                        for tp, recs in given.items() if len(batch.get(tp) or ()) < len(recs)},
                        fetched_from)
                    while finishing and (finishing[0].done() or len(finishing) >= IN_FLIGHT):
                        await finishing.popleft()  # raises what failed: the worker stops
                    previous = finishing[-1] if finishing else None
                    finishing.append(asyncio.ensure_future(
                        self._finish(previous, finish, offsets, generation)))
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise


class BatchTransport(driver.Transport):
    Consumer = BatchConsumer
