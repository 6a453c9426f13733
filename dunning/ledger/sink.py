"""The command ledger: every command on the output topics into `command_log`, exactly once.

A consumer group of its own (`<app>-ledger`) reads the three command topics and writes each
batch in one statement (COPY into a temporary table, then INSERT ... ON CONFLICT DO NOTHING):
a redelivered command, or one emitted twice after a crash, is one row. Offsets are committed
only after the batch is in, so while PostgreSQL is away nothing is lost: the batch is retried
with backoff, and the worker's stream processing, on its own consumer, goes on meanwhile.

A record the ledger cannot store (not a command of ours, or data PostgreSQL refuses) never
stops it: it is dead-lettered as `internal_error` with the reason, and only then skipped.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, KafkaError

from dunning.ledger.db import migrate
from dunning.rules import model as m
from dunning.rules.times import parse_time
from dunning.streams import records as wire
from dunning.streams.topics import BILLING, DEADLETTER, NOTIFICATIONS, PROVISIONING
from dunning.tables.partitions import INVOICE
from dunning.tables.state import decode_invoice, invoice_view

log = logging.getLogger("dunning.ledger")
TOPICS = (NOTIFICATIONS, PROVISIONING, BILLING)
COLUMNS = ("command_id", "type", "topic", "subject_kind", "subject_id", "invoice_id",
           "causation_id", "issued_at", "record", "source_partition", "source_offset")
# Errors after which the batch is worth retrying on a fresh connection.
RETRY = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
         asyncpg.CannotConnectNowError, asyncio.TimeoutError)
# Errors that one row's data causes (PostgreSQL's class 22, or a value asyncpg cannot encode):
# the batch is then written row by row, to set aside only the rows at fault. Any other error
# of the server (a missing table, no permission, disk full) is no row's fault: retried.
ROW_FAULT = (asyncpg.DataError, ValueError, TypeError, OverflowError)
# Building a row from a record that is not a command of ours.
NOT_OURS = (ValueError, KeyError, TypeError, AttributeError, ArithmeticError)


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
                 output_prefix: str = "", on_dead_letter: Any = None,
                 client_options: dict[str, Any] | None = None,
                 isolation_level: str = "read_uncommitted") -> None:
        self.bootstrap = bootstrap
        self.client_options = client_options or {}  # TLS and SASL to Kafka
        # read_committed under exactly once: commands of an aborted batch are not recorded
        self.isolation_level = isolation_level
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
        self.dead_lettered = 0  # records set aside since start
        self.healthy = False  # whether the last write reached PostgreSQL
        self.on_dead_letter = on_dead_letter  # called with each dead letter (metrics)
        self._conn: Any = None
        self._producer: Any = None

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self.url, timeout=10)
            await migrate(conn)
            self._conn = conn
        return self._conn

    async def record(self, rows: list[tuple[Any, ...]],
                     invoices: list[tuple[Any, ...]] | None = None,
                     sources: dict[int, Any] | None = None) -> None:
        """Write until it is in: retried with backoff (0.2 s doubling to 10 s). A row whose
        data PostgreSQL refuses is dead-lettered (`sources` maps id() of each row to its
        record) and left out; the rest is written."""
        delay = 0.2
        invoices = invoices or []
        while True:
            try:
                conn = await self._connection()
                try:
                    await self._write(conn, rows, invoices)
                except ROW_FAULT:
                    await self._one_by_one(conn, rows, invoices, sources or {})
                self.healthy = True
                return
            except RETRY as exc:
                self.healthy = False
                log.warning("ledger: PostgreSQL unavailable (%s); retrying in %.1f s", exc,
                            delay)
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
            except asyncpg.PostgresError as exc:
                self.healthy = False
                log.error("ledger: PostgreSQL refused the batch (%s: %s); retrying in %.1f s",
                          type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _write(self, conn: Any, rows: list[tuple[Any, ...]],
                     invoices: list[tuple[Any, ...]]) -> None:
        if rows:
            self.recorded += await write(conn, rows)
        if invoices:
            await write_invoices(conn, invoices)

    async def _one_by_one(self, conn: Any, rows: list[tuple[Any, ...]],
                          invoices: list[tuple[Any, ...]], sources: dict[int, Any]) -> None:
        """Write each row alone; dead-letter those refused for their data."""
        for batch, commands in ((rows, True), (invoices, False)):
            for one in batch:
                try:
                    if commands:
                        self.recorded += await write(conn, [one])
                    else:
                        await write_invoices(conn, [one])
                except ROW_FAULT as exc:
                    tp, r = sources[id(one)]
                    await self.dead_letter(tp, r, f"PostgreSQL refused it: "
                                                  f"{type(exc).__name__}: {exc}")

    async def dead_letter(self, tp: Any, r: Any, why: str) -> None:
        """One record the ledger cannot store, to the dead-letter topic (delivered before the
        ledger moves past it), with the reason."""
        source = m.Source(tp.topic, tp.partition, r.offset, r.key, r.value,
                          tuple(r.headers or ()))
        dl = m.DeadLetter(source, m.INTERNAL_ERROR, f"the ledger cannot store this record: "
                                                    f"{why}"[:500])
        log.error("ledger: dead-lettered %s@%d:%d: %s", tp.topic, tp.partition, r.offset, why)
        key, value, headers = wire.dead_letter(dl)
        delay = 0.2
        while True:
            try:
                await self._producer.send_and_wait(self.prefix + DEADLETTER, value, key=key,
                                                   headers=headers)
                break
            except KafkaError as exc:  # the broker away: the record waits, unskipped
                log.warning("ledger: cannot dead-letter (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.dead_lettered += 1
        if self.on_dead_letter is not None:
            self.on_dead_letter(dl)

    async def run(self) -> None:
        topics = [*self.topics, *([self.invoices_changelog] if self.invoices_changelog else [])]
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=self.bootstrap,
                                    group_id=self.group, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_poll_records=5000,
                                    fetch_max_wait_ms=100, isolation_level=self.isolation_level,
                                    **self.timeouts, **self.client_options)
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                          **self.client_options)
        await self._producer.start()
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                rows = []
                sources: dict[int, Any] = {}  # id(row) -> its record, to dead-letter it
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
                            one = row(topic, r.value, tp.partition, r.offset)
                        except NOT_OURS as exc:  # not a command of ours: no reason to stop
                            await self.dead_letter(tp, r, f"not a command: {exc!r}")
                            continue
                        rows.append(one)
                        sources[id(one)] = (tp, r)
                invoices = []
                for tp, r in states.values():
                    try:
                        one = invoice_row(r.value)
                    except NOT_OURS as exc:
                        await self.dead_letter(tp, r, f"not an invoice state: {exc!r}")
                        continue
                    invoices.append(one)
                    sources[id(one)] = (tp, r)
                if rows or invoices:
                    await self.record(rows, invoices, sources)
                if batch:
                    try:
                        await consumer.commit()
                    except CommitFailedError as exc:
                        # The group rebalanced meanwhile (a worker joined or left): whoever
                        # owns these partitions now reads the batch again and records it
                        # again, which changes nothing. Not a reason to stop the worker.
                        log.info("ledger: offsets not committed, the group rebalanced (%s)",
                                 exc.__cause__ or exc)
        finally:
            await consumer.stop()
            await self._producer.stop()
            if self._conn is not None:
                await self._conn.close()
