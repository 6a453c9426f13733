"""The command ledger: every command on the output topics into `command_log`, exactly once.

A consumer group of its own (`<app>-ledger`) reads the three command topics and writes each
batch in one statement (COPY into a temporary table, then INSERT ... ON CONFLICT DO NOTHING):
a redelivered command, or one emitted twice after a crash, is one row. Offsets are committed
only after the batch is in, so while PostgreSQL is away nothing is lost: the batch is retried
with backoff, and the worker's stream processing, on its own consumer, goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

from dunning.ledger.db import migrate
from dunning.rules.times import parse_time
from dunning.streams.topics import BILLING, NOTIFICATIONS, PROVISIONING
from dunning.tables.partitions import INVOICE
from dunning.tables.state import decode_invoice, invoice_view

log = logging.getLogger("dunning.ledger")
TOPICS = (NOTIFICATIONS, PROVISIONING, BILLING)
COLUMNS = ("command_id", "type", "topic", "subject_kind", "subject_id", "invoice_id",
           "causation_id", "issued_at", "record", "source_partition", "source_offset")
# Errors after which the batch is worth retrying on a fresh connection.
RETRY = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
         asyncpg.CannotConnectNowError, asyncio.TimeoutError)


INVOICE_COLUMNS = ("invoice_id", "customer_id", "order_id", "status", "currency", "amount",
                   "amount_paid", "amount_due", "due_at", "next_action", "next_action_at",
                   "state")


def invoice_row(value: bytes) -> tuple[Any, ...]:
    """A read-model row from an invoice's state as the worker's table holds it."""
    view = invoice_view(decode_invoice(value))
    nxt = view["next_action"] or {}
    return (view["invoice_id"], view["customer_id"], view["order_id"], view["status"],
            view["currency"], Decimal(view["amount"]), Decimal(view["amount_paid"]),
            Decimal(view["amount_due"]), _when(view["due_at"]), nxt.get("action"),
            _when(nxt.get("at")), orjson.dumps(view).decode())


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromtimestamp(parse_time(text), UTC)


async def write_invoices(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """Upsert the read model: the newest state of each invoice wins."""
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in INVOICE_COLUMNS[1:])
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_invoices"
            " (LIKE invoices INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        await conn.copy_records_to_table("incoming_invoices", records=rows,
                                         columns=INVOICE_COLUMNS)
        await conn.execute(
            f"INSERT INTO invoices ({', '.join(INVOICE_COLUMNS)})"
            f" SELECT {', '.join(INVOICE_COLUMNS)} FROM incoming_invoices"
            f" ON CONFLICT (invoice_id) DO UPDATE SET {updates}, updated_at = now()")


def row(topic: str, value: bytes, partition: int | None = None,
        offset: int | None = None) -> tuple[Any, ...]:
    doc = orjson.loads(value)
    subject = doc.get("subject") or {}
    return (doc["command_id"], doc["type"], topic, subject.get("kind"), subject.get("id"),
            doc.get("invoice_id"), doc["causation_id"],
            datetime.fromtimestamp(parse_time(doc["issued_at"]), UTC), value.decode(),
            partition, offset)


async def write(conn: Any, rows: list[tuple[Any, ...]]) -> int:
    """Insert the rows not yet in the ledger; returns how many were new."""
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming"
            " (LIKE command_log INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        await conn.copy_records_to_table("incoming", records=rows, columns=COLUMNS)
        status = await conn.execute(
            f"INSERT INTO command_log ({', '.join(COLUMNS)})"
            f" SELECT {', '.join(COLUMNS)} FROM incoming ON CONFLICT (command_id) DO NOTHING")
    return int(status.rsplit(" ", 1)[1])


class Ledger:
    def __init__(self, bootstrap: str, group: str, url: str, rebalance_timeout: float = 10.0,
                 session_timeout: float = 30.0, invoices_changelog: str | None = None,
                 output_prefix: str = "") -> None:
        self.bootstrap = bootstrap
        self.invoices_changelog = invoices_changelog  # feeds the invoices read model
        self.prefix = output_prefix
        self.topics = [output_prefix + t for t in TOPICS]
        # Tansu holds a join for about the rebalance timeout: aiokafka's default (5 minutes)
        # would keep the ledger waiting that long.
        self.timeouts = {"rebalance_timeout_ms": int(rebalance_timeout * 1000),
                         "session_timeout_ms": int(session_timeout * 1000),
                         "heartbeat_interval_ms": int(max(0.5, session_timeout / 10) * 1000)}
        self.group = group
        self.url = url
        self.recorded = 0  # new rows written since start
        self.healthy = False  # whether the last write reached PostgreSQL
        self._conn: Any = None

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self.url, timeout=10)
            await migrate(conn)
            self._conn = conn
        return self._conn

    async def record(self, rows: list[tuple[Any, ...]],
                     invoices: list[tuple[Any, ...]] | None = None) -> None:
        """Write until it is in: retried with backoff (0.2 s doubling to 10 s)."""
        delay = 0.2
        while True:
            try:
                conn = await self._connection()
                if rows:
                    self.recorded += await write(conn, rows)
                if invoices:
                    await write_invoices(conn, invoices)
                self.healthy = True
                return
            except RETRY as exc:
                self.healthy = False
                log.warning("ledger: PostgreSQL unavailable (%s); retrying in %.1f s", exc,
                            delay)
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def run(self) -> None:
        topics = [*self.topics, *([self.invoices_changelog] if self.invoices_changelog else [])]
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=self.bootstrap,
                                    group_id=self.group, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_poll_records=5000,
                                    fetch_max_wait_ms=100, **self.timeouts)
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                rows = []
                # The newest state of each invoice, decoded once the batch has superseded
                # the older ones (an invoice is often written several times in a batch).
                states: dict[bytes, Any] = {}
                for tp, records in batch.items():
                    if tp.topic == self.invoices_changelog:
                        for r in records:
                            if r.key is not None and r.key.startswith(INVOICE) and r.value:
                                states[r.key] = (tp, r)
                        continue
                    topic = tp.topic.removeprefix(self.prefix)
                    for r in records:
                        try:
                            rows.append(row(topic, r.value, tp.partition, r.offset))
                        except (ValueError, KeyError, TypeError, AttributeError) as exc:
                            _skipped(tp, r, exc)  # not a command of ours: no reason to stop
                invoices = []
                for tp, r in states.values():
                    try:
                        invoices.append(invoice_row(r.value))
                    except (ValueError, KeyError, TypeError, AttributeError) as exc:
                        _skipped(tp, r, exc)
                if rows or invoices:
                    await self.record(rows, invoices)
                    await consumer.commit()
        finally:
            await consumer.stop()
            if self._conn is not None:
                await self._conn.close()


def _skipped(tp: Any, r: Any, exc: Exception) -> None:
    log.warning("ledger: skipped %s@%d:%d: %r", tp.topic, tp.partition, r.offset, exc)
