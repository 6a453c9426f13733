"""The tick gate: a tick goes on only after the input records that were there before it.

Kafka orders records within a partition only. A worker that is behind (after downtime, under
a backlog) reads the few records of the clock topic far sooner than the invoices and payments
sent before them; applied then, a tick would find a paid invoice unpaid and send it overdue.

So when the sequencer first meets a tick it notes the end offset of every partition of the
other input topics, and forwards the tick only once all of those records have been forwarded:
by this sequencer (it forwards a batch's other records before its ticks, so on every events
partition they come first), or by the group's other workers (their committed offsets). Until
then the tick, and the clock records after it, wait on their partition and are read again.

Records appended after the tick was read go before it too: with several ticks in one backlog,
every record of the backlog goes before every tick of it (time stands still until the worker
has caught up). Exact would need the end offsets from when the tick was sent: carried by the
tick, or found by its timestamp (Kafka answers that; Tansu does not).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from dunning.streams.topics import CLOCK, INPUTS

log = logging.getLogger("dunning.gate")
RECHECK = 0.1  # seconds between looks at the broker for one waiting tick
LOOK_TIMEOUT = 5.0  # seconds one look may take before the tick waits for the next
WARN_AFTER = 30.0  # a tick held this long is logged, and again every as long


class TickGate:
    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.forwarded: dict[TopicPartition, int] = {}  # next offset, per input partition
        self._ends: dict[tuple[Any, int], dict[TopicPartition, int]] = {}  # per waiting tick
        self._looked: dict[tuple[Any, int], float] = {}
        self._since: dict[tuple[Any, int], float] = {}  # when each waiting tick was first read
        self._warn_at: dict[tuple[Any, int], float] = {}
        self._view: AIOKafkaConsumer | None = None

    def took(self, topic: str, partition: int, offset: int) -> None:
        """This sequencer has forwarded (or dead-lettered) an input record."""
        tp = TopicPartition(topic, partition)
        if offset >= self.forwarded.get(tp, 0):
            self.forwarded[tp] = offset + 1

    def forget(self, revoked: set[Any]) -> None:
        """Waiting ticks of revoked clock partitions: their new owner looks again."""
        for tick in [t for t in self._ends if t[0] in revoked]:
            self._drop(tick)

    async def open(self, tp: Any, offset: int) -> bool:
        """Whether the tick at `offset` of clock partition `tp` may be forwarded now. A broker
        that does not answer keeps the tick waiting (and says so), never stops the worker."""
        tick = (tp, offset)
        now = time.monotonic()
        if now - self._looked.get(tick, -RECHECK) < RECHECK:
            return False
        self._looked[tick] = now
        since = self._since.setdefault(tick, now)
        try:
            waiting = await asyncio.wait_for(self._waiting_for(tick), LOOK_TIMEOUT)
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

    async def _waiting_for(self, tick: tuple[Any, int]) -> str | None:
        """What the tick still waits for, or None."""
        view = await self._connect()
        ends = self._ends.get(tick)
        if ends is None:  # the first look: what was there when the tick was read
            inputs = [TopicPartition(t, p) for t in INPUTS if t != CLOCK
                      for p in sorted(view.partitions_for_topic(t) or ())]
            if {p.topic for p in inputs} != {t for t in INPUTS if t != CLOCK}:
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
            view = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                    enable_auto_commit=False)
            try:
                await view.start()
            except BaseException:
                await view.stop()
                raise
            self._view = view
        return self._view

    async def close(self) -> None:
        if self._view is not None:
            await self._view.stop()
            self._view = None
