"""How one partition's state sits in a changelog-backed table, and is rebuilt from it.

The invoices table holds, per events partition: each invoice (`i:<id>`), the events waiting
for an invoice that has not arrived (`h:<id>`), and the partition's logical clock (`c:<n>`).
The subjects table holds each subject (`s:<kind>:<id>`) and, per signals partition, the
signals waiting for every invoice partition to reach their tick (`w:<n>`, with chunk rows
`w:<n>.<generation>.<i>` when many wait). Values are the
compact encodings of `tables.state`. A worker that is assigned a partition rebuilds its engine
and schedule from these rows; nothing else is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from dunning.config.policy import Policy
from dunning.rules.engine import Engine
from dunning.streams.records import partition_for
from dunning.tables.state import decode_held, decode_invoice, encode_held, encode_invoice

INVOICE, HELD, CLOCK, SUBJECT, WAITING = b"i:", b"h:", b"c:", b"s:", b"w:"

Row = tuple[bytes, bytes | None]  # key, value (None deletes)


def clock_key(partition: int) -> bytes:
    return CLOCK + b"%d" % partition


def waiting_key(partition: int) -> bytes:
    return WAITING + b"%d" % partition


def _rows_of(data: Mapping[bytes, bytes], prefix: bytes, partition: int,
             partitions: int) -> Iterator[tuple[str, bytes]]:
    for key, value in data.items():
        if key.startswith(prefix):
            ident = key[len(prefix):]
            if partition_for(ident, partitions) == partition:
                yield ident.decode(), value


def rebuild_engine(policy: Policy, data: Mapping[bytes, bytes], partition: int,
                   partitions: int, max_tick_jump: int = 0) -> Engine:
    """The engine of one events partition, as its rows in the table left it."""
    engine = Engine(policy, max_tick_jump=max_tick_jump)
    engine.touched = set()
    raw = data.get(clock_key(partition))
    if raw is not None:
        engine.clock, unclocked = orjson.loads(raw)
        engine._unclocked = set(unclocked)
    for iid, value in _rows_of(data, INVOICE, partition, partitions):
        inv = engine.invoices[iid] = decode_invoice(value)
        engine.schedule.set(iid, inv.next_at())
    for iid, value in _rows_of(data, HELD, partition, partitions):
        engine.held[iid] = decode_held(value)
        if iid not in engine._unclocked:
            engine._schedule_expiry(iid)
    return engine


def engine_rows(engine: Engine, partition: int, held_rows: set[str]) -> list[Row]:
    """The rows to write for what the engine touched since the last call (then forgotten),
    and the partition's clock row (one per batch: cheaper than tracking its changes).
    `held_rows` are the invoice ids with a held row written: kept up to date here, so that a
    row whose events have since applied (or expired) is deleted."""
    rows: list[Row] = []
    touched: Iterable[str] = engine.touched or ()
    for iid in touched:
        key = iid.encode()
        inv = engine.invoices.get(iid)
        if inv is not None:
            rows.append((INVOICE + key, encode_invoice(inv)))
        held = engine.held.get(iid)
        if held:
            rows.append((HELD + key, encode_held(held)))
            held_rows.add(iid)
        elif iid in held_rows:
            rows.append((HELD + key, None))
            held_rows.discard(iid)
    rows.append((clock_key(partition), orjson.dumps([engine.clock, sorted(engine._unclocked)])))
    engine.touched = set()
    return rows


def apply_rows(data: Any, rows: list[Row]) -> None:
    """Rows into the table's local store (the changelog gets them separately), each as an
    exact copy: orjson returns what it encodes in a buffer of some kilobytes, most of it
    unused, and kept as it came every stored row cost about 8 KB (tests/tables)."""
    for key, value in rows:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = exact(value)


def exact(value: bytes) -> bytes:
    """`value` in an object of its own size (slicing a bytes object returns itself)."""
    return bytes(memoryview(value))
