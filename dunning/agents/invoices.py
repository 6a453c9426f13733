"""The invoice agent: one engine per events partition, fed batches of that partition's log.

For each batch: validate each record (dead-lettering what fails), step the engine, send the
commands, dead letters and subject signals; flush; then write the touched invoices to the table
(changelog first flushed means state never runs ahead of output); the consumer then commits.
A crash anywhere replays the batch from the last state written, which emits the same commands
with the same ids again: consumers see duplicates at most.

After each tick the agent tells every subject partition how far this partition has come (a
marker), so subjects can apply a tick's signals from all partitions in the engine's order.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from dunning.agents.batches import Abandon, Batch, Finish, Outbox, Transactions, finish_with_state
from dunning.agents.metrics import Metrics
from dunning.config.policy import Policy
from dunning.rules import model as m
from dunning.rules.engine import Engine, internal_error
from dunning.rules.invoice import Out
from dunning.streams import records as wire
from dunning.streams.codec import decode
from dunning.streams.topics import CLOCK
from dunning.tables.partitions import engine_rows, rebuild_engine
from dunning.tables.state import encode_signal

log = logging.getLogger("dunning.worker")


class InvoiceAgent:
    def __init__(self, producer: Any, table: Any, policy: Policy, app_id: str,
                 partitions: int, metrics: Metrics, ready: Callable[[], bool],
                 output_prefix: str = "", max_tick_jump: int = 0,
                 transactions: Transactions | None = None) -> None:
        self.out = Outbox(producer, output_prefix, transactions)
        self.table = table
        self.policy = policy
        self.signals_topic = wire.signals_topic(app_id)
        self.partitions = partitions
        self.max_tick_jump = max_tick_jump  # seconds, 0 = off (contract §4)
        self.metrics = metrics
        self.ready = ready  # whether the tables are whole (no rebalance under way)
        self.engines: dict[int, Engine] = {}
        self.last_tick: float | None = None  # monotonic time a tick last moved a clock
        self.held_rows: dict[int, set[str]] = {}  # per partition: ids with a held row

    # -- assignment ------------------------------------------------------------------------

    def engine(self, partition: int) -> Engine:
        engine = self.engines.get(partition)
        if engine is None:
            if not self.ready():
                raise Abandon
            engine = self.engines[partition] = rebuild_engine(
                self.policy, self.table.data, partition, self.partitions, self.max_tick_jump)
            self.held_rows[partition] = set(engine.held)
        return engine

    def forget(self, partitions: set[int]) -> None:
        """Drop engines of revoked partitions: a later assignment rebuilds from the table,
        which holds whatever the partition's new owner wrote meanwhile."""
        for p in partitions:
            self.engines.pop(p, None)
            self.held_rows.pop(p, None)

    def find(self, invoice_id: str) -> Any:
        for engine in self.engines.values():
            inv = engine.invoices.get(invoice_id)
            if inv is not None:
                return inv, engine.clock
        return None

    # -- the batch -------------------------------------------------------------------------

    async def handle(self, batch: Batch) -> Finish:
        send = self.out.send
        events: Counter[tuple[str, str, str]] = Counter()
        commands: Counter[str] = Counter()
        written: list[tuple[int, list[Any]]] = []
        self.out.begin()
        for tp, records in batch.items():
            p = tp.partition
            engine = self.engine(p)
            self.out.source = tp
            for r in records:
                src = wire.forwarded_source(r.headers, r.value)
                try:
                    event = decode(src.topic, src.key, src.value, src.partition, src.offset,
                                   src.headers)
                except Exception as exc:  # no record can stop the worker (contract §2)
                    event = internal_error(src, exc, "the record ")
                if isinstance(event, m.DeadLetter):
                    await self._dead_letter(event)
                    events[(src.topic, wire.type_label(src.value), m.DEAD_LETTERED)] += 1
                    continue
                outcome, out = engine.step(event)  # the engine undoes and dead-letters failures
                for command in out.commands:
                    await send(command.topic, command.key.encode(),
                               orjson.dumps(command.value))
                    commands[command.value["type"]] += 1
                for dl in out.dead_letters:
                    if dl.error == m.CLOCK_JUMP:
                        if p != 0:
                            continue  # every partition refuses the tick: say so once
                        self.metrics.clock_rejected.inc()
                        log.warning("clock guard: %s", dl.reason)
                    await self._dead_letter(dl)
                if out.signals:
                    await self._signals(engine, out, p, r.offset, event)
                if isinstance(event, m.ClockTick):
                    if outcome == m.APPLIED:
                        self.last_tick = time.monotonic()
                    await self._markers(engine.clock, p)
                    if p != 0:
                        continue  # a tick is on every partition; count it once
                events[(src.topic if src.topic else CLOCK, event.type, outcome)] += 1
            written.append((p, engine_rows(engine, p, self.held_rows[p])))
        self.metrics.count(events, commands)
        finish = finish_with_state(self.out, self.table, written, batch)
        times = [r.timestamp for records in batch.values() for r in records]

        async def finish_and_measure() -> None:
            await finish()
            self.metrics.processed(times)

        return finish_and_measure

    async def _dead_letter(self, dl: m.DeadLetter) -> None:
        if dl.error == m.INTERNAL_ERROR:
            log.error("dead-lettered %s@%d:%d as internal_error: %s", dl.source.topic,
                      dl.source.partition, dl.source.offset, dl.reason)
        await self.out.dead_letter(dl, self.metrics)

    async def _signals(self, engine: Engine, out: Out, partition: int, offset: int,
                       event: m.Event) -> None:
        """Each signal to its subject's partition, with the key that orders it there: a tick's
        signals by (action time, invoice) as the engine fires them, then the events after it."""
        clock, n = engine.clock, self.partitions
        for i, sig in enumerate(out.signals):
            if isinstance(event, m.ClockTick):
                order = [clock, 0, out.signal_at[i], sig.invoice_id, sig.version]
            else:
                order = [clock, 1, partition, offset, sig.version]
            key = sig.subject_key.encode()
            value = wire.signal_value(order, encode_signal(sig))
            await self.out.send(self.signals_topic, key, value, wire.partition_for(key, n))

    async def _markers(self, clock: int, partition: int) -> None:
        value = wire.marker_value(clock, partition)
        for q in range(self.partitions):
            await self.out.send(self.signals_topic, None, value, q)
