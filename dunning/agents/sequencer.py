"""The edge agent: the four input topics onto one internal log per partition.

Each input record is re-keyed by its invoice id (producers may key otherwise, or not at all)
and each tick is copied to every partition, so that a partition's processor reads its invoices'
events and the ticks in one order, the same on every replay. Records that cannot be routed
(not JSON, no usable invoice id, a bad tick) are dead-lettered here; the full validation of the
rest happens once, in the invoice processor, which also dead-letters what fails it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from dunning.agents.batches import Batch, Finish, Outbox, Transactions
from dunning.agents.gate import TickGate
from dunning.agents.metrics import Metrics
from dunning.rules import model as m
from dunning.rules.engine import internal_error
from dunning.streams import records as wire
from dunning.streams.codec import MAX_ID_CHARS, MAX_RECORD_BYTES, decode
from dunning.streams.topics import CLOCK


class Sequencer:
    def __init__(self, producer: Any, app_id: str, partitions: int, metrics: Metrics,
                 output_prefix: str = "", gate: TickGate | None = None,
                 transactions: Transactions | None = None) -> None:
        self.out = Outbox(producer, output_prefix, transactions)
        self.gate = gate  # holds each tick until the input records before it are forwarded
        self.topic = wire.events_topic(app_id)
        self.partitions = partitions
        self.metrics = metrics

    async def handle(self, batch: Batch) -> Finish:
        dead: Counter[tuple[str, str, str]] = Counter()
        gate = self.gate
        self.out.begin()
        # Records sent after a tick still waiting (by the end offsets it carries) stay back;
        # the rest of the other inputs go before this batch's ticks, so that on every events
        # partition a tick comes after what was read with it.
        bounds = await gate.bounds() if gate is not None else {}
        for tp, records in batch.items():
            if tp.topic == CLOCK:
                continue
            if bounds is None:
                batch[tp] = []  # the broker did not answer: read again later
                continue
            upto = bounds.get(tp)
            for i, r in enumerate(records):
                if upto is not None and r.offset >= upto:
                    batch[tp] = records[:i]  # after a tick that waits: read again later
                    break
                await self._forward(tp, r, dead)
        for tp, records in batch.items():
            if tp.topic != CLOCK:
                continue
            for i, r in enumerate(records):
                if gate is not None and _is_tick(r.value) and (
                        bounds is None or not await gate.open(tp, r.offset, r.headers)):
                    batch[tp] = records[:i]  # the rest is read again later
                    break
                await self._forward(tp, r, dead)
        if dead:
            self.metrics.count(dead, Counter())
        # In transactions, ticks commit after the rest: on every events partition a tick
        # stays behind what was read with it.
        return self.out.finish(batch, wave=lambda tp: int(tp.topic == CLOCK))

    async def _forward(self, tp: Any, r: Any, dead: Counter[tuple[str, str, str]]) -> None:
        """One input record onto the events log by its invoice id, a tick onto every
        partition, or to the dead letters."""
        self.out.source = tp
        if self.gate is not None:
            self.gate.took(tp.topic, tp.partition, r.offset)
        try:
            routed = self._route(tp, r)
        except Exception as exc:  # no record can stop the worker (contract §2)
            routed = internal_error(self._source(tp, r), exc, "the record ")
        if isinstance(routed, m.DeadLetter):
            await self.out.dead_letter(routed, self.metrics)
            dead[(tp.topic, wire.type_label(r.value), m.DEAD_LETTERED)] += 1
            return
        headers = wire.forward_headers(tp.topic, tp.partition, r.offset, r.key, r.headers)
        for key, partition in routed:
            # The input's own timestamp, in ms: in seconds Kafka's time retention deleted
            # the events log's records before the invoice agent had read them.
            await self.out.send(self.topic, key, r.value, partition, headers, r.timestamp)

    @staticmethod
    def _source(tp: Any, r: Any) -> m.Source:
        return m.Source(tp.topic, tp.partition, r.offset, r.key, r.value, tuple(r.headers or ()))

    def _route(self, tp: Any, r: Any) -> list[tuple[bytes | None, int]] | m.DeadLetter:
        """Where a record goes on the events log (key, partition), or why it cannot."""
        n, source_topic = self.partitions, tp.topic
        iid = _invoice_id(source_topic, r.value)
        if iid is not None:
            key = iid.encode()
            return [(key, wire.partition_for(key, n))]
        event = decode(source_topic, r.key, r.value, tp.partition, r.offset, r.headers)
        if isinstance(event, m.ClockTick):
            return [(None, p) for p in range(n)]  # one tick moves time on every partition
        if isinstance(event, m.DeadLetter):
            return event
        # Cannot happen: routing checks less than decoding.
        return m.DeadLetter(self._source(tp, r), m.INVALID_FIELD,
                            "the record has no usable invoice_id")


def _invoice_id(topic: str, value: bytes | None) -> str | None:
    """The invoice id to route by, when the record has a usable one; None sends the record to
    full validation here (ticks, and everything that will be dead-lettered)."""
    if topic == CLOCK or value is None or len(value) > MAX_RECORD_BYTES:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("type") == "clock.tick":
        return None
    iid = doc.get("invoice_id")
    if isinstance(iid, str) and iid and len(iid) <= MAX_ID_CHARS:
        return iid
    return None


def _is_tick(value: bytes | None) -> bool:
    """Whether a clock record is a tick to gate (anything else there is dead-lettered)."""
    try:
        doc = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("type") == "clock.tick"
