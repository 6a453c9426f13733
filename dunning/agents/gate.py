"""The tick gate: a tick goes on after the input records sent before it, and before the rest.

Kafka orders records within a partition only. A worker that is behind (after downtime, under
a backlog) reads the few records of the clock topic far sooner than the invoices and payments
sent around them; applied then, a tick would find a paid invoice unpaid and send it overdue,
or a late payment would slip in ahead of the overdue tick that preceded it.

A tick that carries the other inputs' end offsets from when it was sent (header
`dunning.after`, which `dunning tick` sets) is forwarded once every record below them is
forwarded: by this sequencer (it forwards a batch's other records before its ticks, so on every
events partition they come first), or by the group's other workers (their committed offsets).
And every sequencer looks ahead on the clock topic: records at or past the offsets carried by
the first tick not yet forwarded on each clock partition stay back until it is. Together the
worker applies ticks and the other inputs in the order they were sent, however far behind.

A tick without the header waits for what was there when it was first read, so records sent
after it can go before it: with several such ticks in one backlog, every record of the backlog
goes before every tick of it (time stands still until the worker has caught up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from dunning.streams.records import after_of
from dunning.streams.topics import CLOCK, INPUTS

log = logging.getLogger("dunning.gate")
OTHERS = tuple(t for t in INPUTS if t != CLOCK)
RECHECK = 0.1  # seconds between looks at the broker for one waiting tick
LOOK_TIMEOUT = 5.0  # seconds one look may take before the tick waits for the next
WARN_AFTER = 30.0  # a tick held this long is logged, and again every as long


class TickGate:
    def __init__(self, bootstrap: str, group: str,
                 client_options: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.client_options = client_options or {}  # TLS and SASL, as the worker's own
        self.forwarded: dict[TopicPartition, int] = {}  # next offset, per input partition
        self._ends: dict[tuple[Any, int], dict[TopicPartition, int]] = {}  # per waiting tick
        self._looked: dict[tuple[Any, int], float] = {}
        self._since: dict[tuple[Any, int], float] = {}  # when each waiting tick was first read
        self._warn_at: dict[tuple[Any, int], float] = {}
        self._view: AIOKafkaConsumer | None = None
        self._peek: AIOKafkaConsumer | None = None  # reads ahead on the clock topic
        self._seen: dict[tuple[Any, int], dict[Any, int]] = {}  # what ticks carry
        self._committed: dict[TopicPartition, tuple[float, int]] = {}  # clock, when read

    async def bounds(self) -> dict[TopicPartition, int] | None:
        """How far each other input's records may go now: below the end offsets carried by the
        first tick not yet forwarded on each clock partition (records sent after a tick wait
        for it, wherever they are read). None when the broker does not answer: hold all."""
        try:
            return await asyncio.wait_for(self._bounds(), LOOK_TIMEOUT)
        except (TimeoutError, KafkaError) as exc:
            log.warning("tick gate: cannot look ahead on %s (%r); holding the input", CLOCK,
                        exc)
            return None

    async def _bounds(self) -> dict[TopicPartition, int]:
        view = await self._connect()
        clock = [TopicPartition(CLOCK, p) for p in sorted(view.partitions_for_topic(CLOCK) or ())]
        if not clock:
            return {}
        inputs = _inputs(view)
        bounds: dict[TopicPartition, int] = {}
        for tp, end in (await view.end_offsets(clock)).items():
            start = self.forwarded.get(tp, 0)
            if start < end:
                start = max(start, await self._clock_committed(view, tp))
            for old in [k for k in self._seen if k[0] == tp and k[1] < start]:
                del self._seen[old]  # forwarded ticks
            if start >= end:
                continue  # no tick waiting there
            carried = await self._carried(tp, start, end)
            if not carried:
                continue  # no waiting tick there says what went before it
            for key in inputs:  # a partition it does not name had nothing sent yet
                upto = carried.get((key.topic, key.partition), 0)
                bounds[key] = min(bounds.get(key, upto), upto)
        return bounds

    async def _clock_committed(self, view: AIOKafkaConsumer, tp: TopicPartition) -> int:
        """The group's committed offset on a clock partition, at most RECHECK old: an older
        one only counts a forwarded tick as waiting a little longer (every batch asks, and a
        worker that does not own the partition would ask the broker each time)."""
        now = time.monotonic()
        at, offset = self._committed.get(tp, (-RECHECK, 0))
        if now - at >= RECHECK:
            offset = await view.committed(tp) or 0
            self._committed[tp] = (now, offset)
        return offset

    async def _carried(self, tp: TopicPartition, start: int, end: int) -> dict[Any, int]:
        """The end offsets carried by the first tick at or after `start` that carries any."""
        peek = await self._peeker()
        peek.assign([tp])
        peek.seek(tp, start)
        while start < end:
            records = (await peek.getmany(tp, timeout_ms=200)).get(tp, [])
            if not records:
                return {}
            for r in records:
                carried = self._seen.get((tp, r.offset))
                if carried is None:
                    carried = self._seen[(tp, r.offset)] = after_of(r.headers) or {}
                if carried:
                    return carried
            start = records[-1].offset + 1
        return {}

    async def _peeker(self) -> AIOKafkaConsumer:
        if self._peek is None:
            self._peek = await _started(AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50,
                **self.client_options))
        return self._peek

    def took(self, topic: str, partition: int, offset: int) -> None:
        """This sequencer has forwarded (or dead-lettered) an input record."""
        tp = TopicPartition(topic, partition)
        if offset >= self.forwarded.get(tp, 0):
            self.forwarded[tp] = offset + 1

    def forget(self, revoked: set[Any]) -> None:
        """Waiting ticks of revoked clock partitions: their new owner looks again."""
        for tick in [t for t in self._ends if t[0] in revoked]:
            self._drop(tick)

    async def open(self, tp: Any, offset: int, headers: Any = ()) -> bool:
        """Whether the tick at `offset` of clock partition `tp` may be forwarded now. A broker
        that does not answer keeps the tick waiting (and says so), never stops the worker."""
        tick = (tp, offset)
        now = time.monotonic()
        if now - self._looked.get(tick, -RECHECK) < RECHECK:
            return False
        self._looked[tick] = now
        since = self._since.setdefault(tick, now)
        try:
            waiting = await asyncio.wait_for(self._waiting_for(tick, headers), LOOK_TIMEOUT)
        except (TimeoutError, KafkaError) as exc:
            waiting = f"the broker did not answer ({exc!r})"
        if waiting is None:
            self._drop(tick)
            return True
        if now >= self._warn_at.setdefault(tick, since + WARN_AFTER):
            self._warn_at[tick] = now + WARN_AFTER
            log.warning("tick %s:%d held for %.0f s, waiting for %s", tp.topic, offset,
                        now - since, waiting)
        return False

    async def _waiting_for(self, tick: tuple[Any, int], headers: Any) -> str | None:
        """What the tick still waits for, or None."""
        view = await self._connect()
        ends = self._ends.get(tick)
        if ends is None:  # what was there when the tick was sent, as it says
            sent = after_of(headers)
            if sent is not None:
                ends = self._ends[tick] = {TopicPartition(t, p): end
                                           for (t, p), end in sent.items() if t in OTHERS}
        if ends is None:  # else what was there when the tick was read
            inputs = _inputs(view)
            if {p.topic for p in inputs} != set(OTHERS):
                await view._client.force_metadata_update()  # a topic not known yet
                return "the input topics' partitions"
            ends = self._ends[tick] = await view.end_offsets(inputs)
        for p, end in ends.items():
            if self.forwarded.get(p, 0) >= end:
                continue
            if (await view.committed(p) or 0) < end:
                return f"{p.topic}:{p.partition} up to offset {end}"
        return None

    def _drop(self, tick: tuple[Any, int]) -> None:
        for book in (self._ends, self._looked, self._since, self._warn_at):
            book.pop(tick, None)

    async def _connect(self) -> AIOKafkaConsumer:
        """A consumer in the group's name that never joins it: it reads end offsets and the
        group's committed offsets."""
        if self._view is None:
            view = await _started(AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False,
                **self.client_options))
            # Subscribed to nothing, it asked for no topic at start: Apache Kafka told it of
            # none (Tansu of all), and without the clock's partitions there is no look-ahead.
            await view._client.force_metadata_update()
            self._view = view
        return self._view

    async def close(self) -> None:
        for consumer in (self._view, self._peek):
            if consumer is not None:
                await consumer.stop()
        self._view = self._peek = None


def _inputs(view: AIOKafkaConsumer) -> list[TopicPartition]:
    """The partitions of the input topics other than the clock, as the view knows them."""
    return [TopicPartition(t, p) for t in OTHERS
            for p in sorted(view.partitions_for_topic(t) or ())]


async def _started(consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer
