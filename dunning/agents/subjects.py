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
from collections.abc import Callable, Mapping
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

# Waiting signals beyond this many bytes go in rows of their own (chunks), each under it:
# Kafka refuses a record over its max.message.bytes (1 MiB by default), and a billing run
# suspending tens of thousands of invoices in one tick makes that many signals wait.
CHUNK_BYTES = 256 * 1024


@dataclass(slots=True)
class Waiting:
    """One signals partition: how far each invoice partition has come, and what waits.

    Stored as a header row (`w:<n>`: the markers, the signals when few, and which chunk rows
    hold the rest) written last, after its chunks (`w:<n>.<generation>.<i>`). Each write
    makes a new generation and deletes the one before the current, so a write cut short
    leaves the last header and every chunk it names whole: the state stays one row's worth
    of atomic, as when it was a single row."""

    markers: list[int]
    signals: list[list[Any]] = field(default_factory=list)  # [order, signal row]
    generation: int = 0
    chunks: int = 0  # chunk rows of this generation
    older: int = 0  # chunk rows of the generation before, deleted at the next write

    def rows(self, q: int) -> list[Row]:
        """The rows that store this state, the header last; stale chunks deleted first."""
        rows: list[Row] = [(chunk_key(q, self.generation - 1, i), None)
                           for i in range(self.older)]
        inline, chunks = _split(self.signals)
        if chunks or self.chunks:  # a new generation; the current one goes at the next write
            self.generation += 1
            rows += [(chunk_key(q, self.generation, i), _array(c)) for i, c in enumerate(chunks)]
            self.older, self.chunks = self.chunks, len(chunks)
        else:
            self.older = 0
        rows.append((waiting_key(q), orjson.dumps(
            [self.markers, orjson.Fragment(_array(inline)), self.generation, self.chunks,
             self.older])))
        return rows

    @classmethod
    def decode(cls, q: int, data: Mapping[bytes, bytes], partitions: int) -> Waiting:
        raw = data.get(waiting_key(q))
        if raw is None:
            return cls([0] * partitions)
        markers, signals, *where = orjson.loads(raw)  # one row only, before chunks
        generation, chunks, older = where or (0, 0, 0)
        for i in range(chunks):
            signals += orjson.loads(data[chunk_key(q, generation, i)])
        markers += [0] * (partitions - len(markers))  # partitions were added since
        return cls(markers, signals, generation, chunks, older)


def chunk_key(q: int, generation: int, i: int) -> bytes:
    return waiting_key(q) + b".%d.%d" % (generation, i)


def _split(signals: list[list[Any]]) -> tuple[list[bytes], list[list[bytes]]]:
    """The signals, each encoded once: inline (few), or in chunks of under CHUNK_BYTES each."""
    encoded = [orjson.dumps(s) for s in signals]
    if sum(len(e) + 1 for e in encoded) <= CHUNK_BYTES:
        return encoded, []
    chunks: list[list[bytes]] = [[]]
    size = 0
    for e in encoded:
        if size + len(e) + 1 > CHUNK_BYTES and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append(e)
        size += len(e) + 1
    return [], chunks


def _array(encoded: list[bytes]) -> bytes:
    """A JSON array of values already encoded."""
    return b"[" + b",".join(encoded) + b"]"


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
                w = self.waiting[q] = Waiting.decode(q, self.table.data, self.partitions)
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
            rows += w.rows(q)  # its header last: see batches.write_rows
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
