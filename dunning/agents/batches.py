"""A Faust consumer that hands each fetched batch to the agent that owns its topic, whole.

Faust delivers every message through its conductor, a queue and a stream, with a task or two per
message: about 5 000 messages/s here, against 90 000 for a plain aiokafka loop (see `make
bench`). Our agents work in batches anyway (one tick is thousands of invoices), so for their
topics this consumer skips that path: a fetched batch goes to the agent's handler in one call,
and when the handler returns (its output sent) the batch's offsets are committed, after the
producer is flushed. Everything else stays Faust's: the consumer group and assignment, table
recovery (changelog records still take the usual path), standbys, the web server.

With `--guarantee exactly_once` (contract §4) a batch is finished differently: its output and
table rows are held back per input partition, and each input partition's share goes out in one
transaction of that partition's own producer (`Transactions`), with the partition's new offset
(`send_offsets_to_transaction`). Consumers reading `read_committed`, this one included (the
internal topics, the changelogs at recovery), see a batch's effects once or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
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
    their key, as with `send`.

    With `transactions` (exactly once), what is sent is held per input partition (`source`,
    which the handler sets as it works through each one) until `finish` hands the batch's
    share to the finish it returns, which commits each input partition's in a transaction of
    its own."""

    def __init__(self, producer: Any, output_prefix: str = "",
                 transactions: Transactions | None = None) -> None:
        self.producer = producer
        self.transactions = transactions
        self.source: TP | None = None  # the input partition worked on (exactly once)
        # A shadow worker (another policy on the same input) writes the contract's output
        # topics under a prefix of its own, never to the real ones.
        self._rename = {t: output_prefix + t for t in OUTPUTS} if output_prefix else {}
        # The batch being filled per (source, topic, partition); source is None but with
        # transactions.
        self._open: dict[tuple[TP | None, str, int], Any] = {}
        self._full: list[tuple[TP | None, str, int, Any]] = []  # filled batches, oldest first
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
        self.append(topic, partition, key, value, headers, timestamp)

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
               headers: Any = None, timestamp: int | None = None) -> None:
        """`send` to a known partition of a topic named as it is."""
        source = self.source if self.transactions is not None else None
        builder = self._open.get((source, topic, partition))
        if builder is None:
            builder = self._open[(source, topic, partition)] = self._new_batch(source)
        if builder.append(timestamp=timestamp, key=key, value=value,
                          headers=headers or []) is None:
            self._full.append((source, topic, partition, builder))
            builder = self._open[(source, topic, partition)] = self._new_batch(source)
            if builder.append(timestamp=timestamp, key=key, value=value,
                              headers=headers or []) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes fits no batch")

    async def dead_letter(self, dl: Any, metrics: Any) -> None:
        """A rejected record to the dead-letter topic, unchanged, with its dlq.* headers;
        counted by code in `metrics`."""
        key, value, headers = dead_letter_record(dl)
        await self.send(DEADLETTER, key, value, None, headers)
        metrics.dead_letters.labels(dl.error).inc()

    def _take(self) -> list[tuple[TP | None, str, int, Any]]:
        """What was sent since the last take, full batches first."""
        full, self._full = self._full, []
        full += [(source, topic, partition, b)
                 for (source, topic, partition), b in self._open.items()]
        self._open = {}
        return full

    async def flush(self) -> None:
        """Ship what was sent, wait until all is delivered, raise what failed."""
        async with self._shipping:
            for _, topic, partition, builder in self._take():
                self._pending.append(
                    await self._kafka().send_batch(builder, topic, partition=partition))
        await self.producer.flush()
        pending, self._pending = self._pending, []
        for delivery in pending:
            if delivery.done():
                delivery.result()  # raises the delivery's error
            else:
                await delivery

    def begin(self) -> None:
        """A handler starts on a batch: with transactions, what a batch abandoned midway had
        sent is dropped (it is read again, and sent again then)."""
        if self.transactions is not None:
            self._take()

    def finish(self, batch: Batch, wave: Callable[[TP], int] = lambda tp: 0) -> Finish:
        """How a handler's batch is finished: at least once, by a flush; with transactions,
        each input partition's output and new offset in one transaction, in `wave` order
        (a wave's transactions at once, after the lower waves have committed)."""
        if self.transactions is None:
            return self.flush
        sent: dict[TP | None, list[tuple[str, int, Any]]] = {}
        for source, topic, partition, builder in self._take():
            sent.setdefault(source, []).append((topic, partition, builder))
        if None in sent:
            raise RuntimeError("output sent with no input partition named as its source")
        offsets = {tp: recs[-1].offset + 1 for tp, recs in batch.items() if recs}
        sources = sorted(set(offsets) | set(sent), key=wave)
        transactions = self.transactions

        async def commit() -> None:
            for w in sorted({wave(tp) for tp in sources}):
                await asyncio.gather(*(
                    transactions.commit(tp, sent.get(tp, []), offsets.get(tp))
                    for tp in sources if wave(tp) == w))

        return commit

    def _new_batch(self, source: TP | None) -> Any:
        if source is not None and self.transactions is not None:
            return self.transactions.new_batch(source)  # marked transactional
        return self._kafka().create_batch()

    def _kafka(self) -> Any:
        return self.producer._ensure_producer()  # the aiokafka producer under Faust's

    async def _count(self, topic: str) -> int:
        count = self._partitions[topic] = len(await self._kafka().partitions_for(topic))
        return count


class Transactions:
    """Exactly once (contract §4): a transactional producer per input partition this worker
    owns, its transactional.id named after the partition, so that whoever owns a partition
    commits there under the same id.

    A worker given a partition starts its producer before reading anything of it (the app
    calls `assign` first thing in a rebalance): InitProducerId makes the broker end the
    previous owner's open transaction (aborted, or completed if its commit had begun) and
    fence that producer, so a worker that lost the partition (killed, or alive but dropped
    from the group) can no longer commit output or offsets there. aiokafka sends the group id
    alone with the offsets (no KIP-447 group metadata), so fencing rests on these stable ids,
    as in Kafka Streams' first exactly-once mode."""

    def __init__(self, app_id: str, group: str, new_producer: Callable[[str], Any]) -> None:
        self.app_id = app_id
        self.group = group
        self._new = new_producer  # transactional id -> an aiokafka producer, not started
        self.producers: dict[TP, Any] = {}

    def transactional_id(self, tp: TP) -> str:
        return f"{self.app_id}-eos-{tp.topic}-{tp.partition}"

    async def assign(self, tps: set[TP]) -> None:
        """New producers for these input partitions, each fencing the partition's previous
        owner; the ones before stop. (Kept across a rebalance, a producer would fail at its
        next commit if another worker had owned its partition in a generation this one
        missed.)"""
        old, self.producers = self.producers, {}
        await asyncio.gather(*(producer.stop() for producer in old.values()))
        self.producers = dict(await asyncio.gather(*(self._start(tp) for tp in tps)))

    async def _start(self, tp: TP) -> tuple[TP, Any]:
        producer = self._new(self.transactional_id(tp))
        await producer.start()
        try:
            await producer.begin_transaction()  # waits for InitProducerId: the fence
        except BaseException:
            await producer.stop()
            raise
        return tp, producer

    def new_batch(self, tp: TP) -> Any:
        producer = self.producers.get(tp)
        if producer is None:  # assigned, but its producer not started yet: a rebalance
            raise Abandon
        return producer.create_batch()

    async def commit(self, tp: TP, sent: list[tuple[str, int, Any]], offset: int | None) -> None:
        """One input partition's share of a batch, and its new offset, in one transaction.
        A producer fenced meanwhile raises (ProducerFenced): the worker stops, committing
        nothing more there."""
        producer = self.producers[tp]
        deliveries = [await producer.send_batch(builder, topic, partition=partition)
                      for topic, partition, builder in sent]
        if offset is not None:
            await producer.send_offsets_to_transaction({tp: offset}, self.group)
        await producer.commit_transaction()  # sends what is pending first
        for delivery in deliveries:
            delivery.result()  # delivered, or the commit above raised
        await producer.begin_transaction()  # the next batch's, local until it sends

    async def close(self) -> None:
        for producer in self.producers.values():
            await producer.stop()
        self.producers = {}


async def supports_transactions(bootstrap: str, transactional_id: str,
                                new_producer: Callable[[str], Any],
                                timeout: float = 20.0) -> str | None:
    """Why the broker cannot run transactions, or None when it can: a producer under
    `transactional_id` is started and asked for its producer id (Tansu lists the requests
    but answers InitProducerId with an error)."""
    producer = new_producer(transactional_id)
    try:
        await asyncio.wait_for(producer.start(), timeout)
        sender = producer._sender.sender_task  # ends with the error a broker answers
        began = asyncio.ensure_future(producer.begin_transaction())
        done, _ = await asyncio.wait([began, sender], timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if began in done and began.exception() is None:
            return None
        began.cancel()
        if sender in done:
            return f"it answers InitProducerId with {sender.exception()!r}"
        if began in done:
            return f"it answers InitProducerId with {began.exception()!r}"
        return f"it gives no producer id for a transaction within {timeout:.0f} s"
    except (KafkaError, OSError, TimeoutError) as exc:
        return f"it gives a transactional producer no id ({exc!r})"
    finally:
        with contextlib.suppress(Exception):  # the sender's error, reported above
            await producer.stop()


def finish_with_state(out: Outbox, table: Any, written: list[tuple[int, list[Any]]],
                      batch: Batch) -> Finish:
    """How a stateful agent finishes a batch: its output flushed first (once a row says an
    invoice or subject moved on, what it emitted is out), then its rows to the table's
    changelog, then to the local store, which so holds only what the changelog holds. With
    transactions, each partition's rows go in the transaction of the input partition of that
    number (the table is partitioned as its agent's input), with its output and offset."""
    changelog = table.changelog_topic.get_topic_name()
    if out.transactions is not None:
        sources = {tp.partition: tp for tp in batch}
        for p, rows in written:
            out.source = sources[p]
            for key, value in rows:
                out.append(changelog, p, key, value)
        commit = out.finish(batch)

        async def finish_in_transactions() -> None:
            await commit()
            for _, rows in written:
                apply_rows(table.data, rows)

        return finish_in_transactions

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
    on Kafka it costs one more flush per batch. It is kept on Kafka too, for one code path;
    a SIGKILL test failure once blamed on writing all rows in one flush there was not caused
    by it (it stayed with the split, and has not come back since).
    """
    for p, rows in written:
        for key, value in rows[:-1]:
            await out.send(changelog, key, value, p)
    await out.flush()
    for p, rows in written:
        if rows:
            await out.send(changelog, rows[-1][0], rows[-1][1], p)
    await out.flush()


async def after_last_record(tail: AIOKafkaConsumer, tp: Any, end: int) -> int:
    """The offset after the last record a `read_committed` consumer (`tail`) gets from `tp`
    below `end`, 0 if none: read back from the end, further each time nothing is there (an
    aborted transaction, markers)."""
    span = 2  # a transaction's last row, then its commit marker
    tail.assign([tp])
    while end > 0:
        start = max(0, end - span)
        tail.seek(tp, start)
        last = None
        while await tail.position(tp) < end:
            records = (await tail.getmany(tp, timeout_ms=500)).get(tp, [])
            below = [r.offset for r in records if r.offset < end]  # not what came since
            if below:
                last = below[-1]
        if last is not None:
            return last + 1
        if start == 0:
            return 0  # nothing committed there
        span *= 8
    return 0


class ConsumerThread(driver.AIOKafkaConsumerThread):
    # The aiokafka assignment the last fetch's records belong to (see BatchConsumer._put_back).
    fetched_from: Any = None
    _tail: AIOKafkaConsumer | None = None  # reads changelog tails (exactly once)

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
        if getattr(self.app, "transactions", None) is not None:
            # Records of aborted transactions (a batch cut short) are not there to read: not
            # on the internal topics, not on the changelogs a table is restored from.
            consumer._isolation_level = "read_committed"
        return consumer

    async def _highwaters(self, partitions: Any) -> Any:
        """Where table recovery stops: past the last record a `read_committed` reader gets.

        Faust restores a changelog partition until it has read the record just below the
        end offset. With transactions the end is a commit marker (or an aborted transaction)
        that no reader receives, and recovery would wait forever: the end given here is the
        offset after the last record there is to read."""
        ends = await super()._highwaters(partitions)
        if getattr(self.app, "transactions", None) is None:
            return ends
        return {tp: await self._after_last_record(tp, end) for tp, end in ends.items()}

    async def _after_last_record(self, tp: Any, end: int) -> int:
        if self._tail is None:
            self._tail = AIOKafkaConsumer(
                bootstrap_servers=self._ensure_consumer()._client._bootstrap_servers,
                enable_auto_commit=False, isolation_level="read_committed",
                fetch_max_wait_ms=50,  # TLS and SASL as Faust's own consumer
                **driver.credentials_to_aiokafka_auth(self.app.conf.broker_credentials))
            await self._tail.start()
        return await after_last_record(self._tail, tp, end)

    async def on_thread_stop(self) -> None:
        if self._tail is not None:
            await self._tail.stop()
            self._tail = None
        await super().on_thread_stop()


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
        if getattr(self.app, "transactions", None) is not None:
            self._committed(offsets)  # the finish committed them, in its transactions
            return
        # Flushes the producer first; drops partitions revoked meanwhile.
        await self._commit_offsets(offsets)

    def _committed(self, offsets: dict[TP, int]) -> None:
        """Faust's books after offsets committed in transactions (as `_commit_offsets` keeps
        them: lag, table checkpoints)."""
        self._committed_offset.update(offsets)
        self.app.tables.on_commit(offsets)
        self.app.monitor.on_tp_commit(offsets)

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
