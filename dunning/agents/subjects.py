"""The subject agent: holds on orders and customers (contract rule 11), keyed by subject.

Invoices of one subject may sit on different partitions and workers, and after a jump in time
one engine would have fired their actions in time order (a limit before another invoice's
suspension). So signals wait here until every invoice partition has passed the tick they
belong to (its marker), then apply sorted by the key the invoice agent gave them: the same
order one engine would have used. Waiting signals are state like any other: they are written
to the table with the markers, so a restart neither loses nor repeats them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import orjson

from dunning.agents.batches import Abandon, Batch, Finish, Outbox, Transactions, finish_with_state
from dunning.agents.metrics import Metrics
from dunning.rules import model as m
from dunning.rules.engine import internal_error
from dunning.rules.invoice import Signal
from dunning.rules.subject import Subject, apply_signals
from dunning.tables.partitions import SUBJECT, Row, waiting_key
from dunning.tables.state import decode_signal, decode_subject, encode_signal, encode_subject


@dataclass(slots=True)
class Waiting:
    """One signals partition: how far each invoice partition has come, and what waits."""

    markers: list[int]
    signals: list[list[Any]] = field(default_factory=list)  # [order, signal row]

    def encode(self) -> bytes:
        return orjson.dumps([self.markers, self.signals])

    @classmethod
    def decode(cls, data: bytes | None, partitions: int) -> Waiting:
        if data is None:
            return cls([0] * partitions)
        markers, signals = orjson.loads(data)
        markers += [0] * (partitions - len(markers))  # partitions were added since
        return cls(markers, signals)


class SubjectAgent:
    def __init__(self, producer: Any, table: Any, partitions: int, metrics: Metrics,
                 ready: Callable[[], bool] = lambda: True, output_prefix: str = "",
                 transactions: Transactions | None = None) -> None:
        self.out = Outbox(producer, output_prefix, transactions)
        self.table = table
        self.partitions = partitions
        self.metrics = metrics
        self.ready = ready  # whether the tables are whole (no rebalance under way)
        self.waiting: dict[int, Waiting] = {}
        self.subjects: dict[int, dict[str, Subject]] = {}

    def forget(self, partitions: set[int]) -> None:
        for q in partitions:
            self.waiting.pop(q, None)
            self.subjects.pop(q, None)

    def _subject(self, q: int, key: str, kind: str, sid: str) -> Subject:
        cache = self.subjects.setdefault(q, {})
        subj = cache.get(key)
        if subj is None:
            if not self.ready():
                raise Abandon
            raw = self.table.data.get(SUBJECT + key.encode())
            subj = decode_subject(raw) if raw is not None else Subject(kind, sid)
            cache[key] = subj
        return subj

    async def handle(self, batch: Batch) -> Finish:
        send = self.out.send
        commands: Counter[str] = Counter()
        written: list[tuple[int, list[Row]]] = []
        self.out.begin()
        for tp, records in batch.items():
            q = tp.partition
            self.out.source = tp
            w = self.waiting.get(q)
            if w is None:
                if not self.ready():
                    raise Abandon
                w = self.waiting[q] = Waiting.decode(self.table.data.get(waiting_key(q)),
                                                     self.partitions)
            pending = {_ident(s[1]) for s in w.signals}
            for r in records:
                doc = orjson.loads(r.value)
                if doc[0] == "m":  # ["m", clock, invoice partition]
                    _, clock, p = doc
                    if p < len(w.markers) and clock > w.markers[p]:
                        w.markers[p] = clock
                else:  # ["s", order, signal row]; a redelivered one is already waiting
                    ident = _ident(doc[2])
                    if ident not in pending:
                        pending.add(ident)
                        w.signals.append(doc[1:])
            rows: list[Row] = []
            watermark = min(w.markers)
            ready = sorted((s for s in w.signals if s[0][0] <= watermark), key=lambda s: s[0])
            if ready:
                w.signals = [s for s in w.signals if s[0][0] > watermark]
                out, dead, dirty = self._apply(q, tp.topic, ready)
                for command in out:
                    await send(command.topic, command.key.encode(), orjson.dumps(command.value))
                    commands[command.value["type"]] += 1
                for dl in dead:
                    await self.out.dead_letter(dl, self.metrics)
                rows += [(SUBJECT + key.encode(), encode_subject(s)) for key, s in dirty.items()]
            rows.append((waiting_key(q), w.encode()))  # last: see batches.write_rows
            written.append((q, rows))
        self.metrics.count(Counter(), commands)

        return finish_with_state(self.out, self.table, written, batch)


    def _apply(self, q: int, topic: str, ready: list[list[Any]],
               ) -> tuple[list[m.Command], list[m.DeadLetter], dict[str, Subject]]:
        """Apply the signals that may go, one engine step (a tick, or one event) at a time, as
        the engine does: a hold then names every invoice holding its subject once the step is
        done. A signal that fails leaves its subject as it was and is dead-lettered."""
        commands: list[m.Command] = []
        dead: list[m.DeadLetter] = []
        dirty: dict[str, Subject] = {}

        def subject_of(sig: Signal) -> Subject:
            subj = self._subject(q, sig.subject_key, sig.subject_kind, sig.subject_id)
            dirty[subj.key] = subj
            return subj

        def failed(sig: Signal, exc: Exception) -> None:
            dead.append(internal_error(m.Source(topic, q, -1, None, encode_signal(sig)), exc,
                                       "a subject signal "))

        for _, group in groupby(ready, key=lambda s: _step(s[0])):
            signals = []
            for _, row in group:
                raw = orjson.dumps(row)
                try:
                    signals.append(decode_signal(raw))
                except Exception as exc:
                    dead.append(internal_error(m.Source(topic, q, -1, None, raw), exc,
                                               "a subject signal "))
            commands += apply_signals(subject_of, signals, failed)
        return commands, dead, dirty


def _step(order: list[Any]) -> tuple[Any, ...]:
    """The engine step a signal's order key belongs to: [clock, 0, ...] a tick's,
    [clock, 1, partition, offset, ...] one event's."""
    return tuple(order[:2]) if order[1] == 0 else tuple(order[:4])


def _ident(row: list[Any]) -> tuple[str, int]:
    """(invoice id, version) of an encoded signal: what makes it unique."""
    return row[3], row[4]
