"""The tick gate: a tick goes on only after the input records that were there before it.

Kafka orders records within a partition only. A worker that is behind (after downtime, under
a backlog) reads the few records of the clock topic far sooner than the invoices and payments
sent before them; applied then, a tick would find a paid invoice unpaid and send it overdue.

So when the sequencer first meets a tick it notes the end offset of every partition of the
other input topics, and forwards the tick only once all of those records have been forwarded:
by this sequencer (it forwards a batch's other records before its ticks, so on every events
partition they come first), or by the group's other workers (their committed offsets). Until
then the tick, and the clock records after it, wait on their partition and are read again.

Records appended after the tick was read may go before it too: a worker that is behind then
treats as earlier a payment sent a little later than the tick, never the other way round.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from dunning.streams.topics import CLOCK, INPUTS

log = logging.getLogger("dunning.gate")
RECHECK = 0.1  # seconds between looks at the broker for one waiting tick


class TickGate:
    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.forwarded: dict[TopicPartition, int] = {}  # next offset, per input partition
        self._ends: dict[tuple[Any, int], dict[TopicPartition, int]] = {}  # per waiting tick
        self._looked: dict[tuple[Any, int], float] = {}
        self._view: AIOKafkaConsumer | None = None

    def took(self, topic: str, partition: int, offset: int) -> None:
        """This sequencer has forwarded (or dead-lettered) an input record."""
        tp = TopicPartition(topic, partition)
        if offset >= self.forwarded.get(tp, 0):
            self.forwarded[tp] = offset + 1

    async def open(self, tp: Any, offset: int) -> bool:
        """Whether the tick at `offset` of clock partition `tp` may be forwarded now."""
        tick = (tp, offset)
        now = time.monotonic()
        if now - self._looked.get(tick, -RECHECK) < RECHECK:
            return False
        self._looked[tick] = now
        view = await self._connect()
        ends = self._ends.get(tick)
        if ends is None:  # the first look: what was there when the tick was read
            await view.topics()  # the input topics' partitions, as they are now
            inputs = [TopicPartition(t, p) for t in INPUTS if t != CLOCK
                      for p in sorted(view.partitions_for_topic(t) or ())]
            ends = self._ends[tick] = await view.end_offsets(inputs)
        for p, end in ends.items():
            if self.forwarded.get(p, 0) >= end:
                continue
            if (await view.committed(p) or 0) < end:
                log.debug("tick %s:%d waits for %s:%d (%d)", tp.topic, offset, p.topic,
                          p.partition, end)
                return False
        del self._ends[tick], self._looked[tick]
        return True

    async def _connect(self) -> AIOKafkaConsumer:
        """A consumer in the group's name that never joins it: it reads end offsets and the
        group's committed offsets."""
        if self._view is None:
            view = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                    enable_auto_commit=False)
            await view.start()
            self._view = view
        return self._view

    async def close(self) -> None:
        if self._view is not None:
            await self._view.stop()
            self._view = None
