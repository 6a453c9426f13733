"""The rows a worker keeps in its table's local store cost what they hold: orjson hands back
each encoded row in a buffer of 4 KiB, and kept as they came, a million rows took 4 GiB."""

from __future__ import annotations

import tracemalloc

import orjson

from dunning.config.policy import parse_policy
from dunning.rules.engine import Engine
from dunning.streams import topics
from dunning.streams.codec import feed
from dunning.tables.partitions import apply_rows, engine_rows

INVOICES = 2000


def issued(i: int) -> bytes:
    return orjson.dumps({"type": "invoice.issued", "event_id": f"i-{i}",
                         "invoice_id": f"inv-{i}", "customer_id": f"c-{i}",
                         "amount": "30.00", "currency": "USD",
                         "issued_at": "2026-01-01T00:00:00Z"})


def test_stored_rows_hold_no_more_than_their_bytes() -> None:
    engine = Engine(parse_policy("[defaults]\nterms_days = 30\n", "test"))
    engine.touched = set()  # as the worker tracks what a batch touched
    for i in range(INVOICES):
        feed(engine, topics.INVOICES, f"inv-{i}".encode(), issued(i))
    store: dict[bytes, bytes] = {}
    tracemalloc.start()
    try:
        rows = engine_rows(engine, 0, set())
        assert len(rows) == INVOICES + 1
        payload = sum(len(v) for _, v in rows if v is not None)
        apply_rows(store, rows)
        del rows
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The bytes themselves, a bytes object's header (33 B) and the dict's share; not 4 KiB.
    assert kept / INVOICES < payload / INVOICES + 200, (kept / INVOICES, payload / INVOICES)
