"""The command ledger on a real PostgreSQL: migrations once, each command once, nothing lost
while the server is away."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import asyncpg
import orjson

from dunning.config.policy import parse_policy
from dunning.ledger.db import migrate, migrations
from dunning.ledger.sink import Ledger, row, write
from dunning.rules.engine import Engine
from dunning.streams import topics
from dunning.streams.codec import feed
from dunning.tables.partitions import INVOICE
from dunning.tables.state import encode_invoice
from tests.agents.kafka import Broker, Client
from tests.conftest import query


def command(n: int, ctype: str = "notify.reminder", **fields: object) -> dict[str, object]:
    return {"command_id": f"cmd-{n}", "type": ctype, "issued_at": "2026-01-10T00:00:00Z",
            "causation_id": f"tick-{n}", "invoice_id": f"inv-{n % 7}", **fields}


def test_migrations_apply_in_order_once(database):
    async def go() -> tuple[list[str], list[str]]:
        conn = await asyncpg.connect(database)
        try:
            return await migrate(conn), await migrate(conn)
        finally:
            await conn.close()

    first, second = asyncio.run(go())
    assert first == [name for name, _ in migrations()] and second == []
    assert [r["name"] for r in query(database, "SELECT name FROM schema_migrations")] == first


def test_a_command_written_twice_is_one_row(database):
    rows = [row(topics.NOTIFICATIONS, orjson.dumps(command(n))) for n in range(10)]
    subject = command(99, "service.suspend", subject={"kind": "order", "id": "o-1"},
                      invoice_ids=["inv-1"])
    rows.append(row(topics.PROVISIONING, orjson.dumps(subject)))

    async def go() -> tuple[int, int]:
        conn = await asyncpg.connect(database)
        try:
            await migrate(conn)
            return await write(conn, rows), await write(conn, rows[3:])
        finally:
            await conn.close()

    assert asyncio.run(go()) == (11, 0)
    suspend = query(database, "SELECT * FROM command_log WHERE command_id = 'cmd-99'")[0]
    assert (suspend["type"], suspend["topic"], suspend["subject_kind"], suspend["subject_id"],
            suspend["invoice_id"]) == ("service.suspend", topics.PROVISIONING, "order", "o-1",
                                       "inv-1")
    assert orjson.loads(suspend["record"]) == subject
    assert suspend["issued_at"].isoformat() == "2026-01-10T00:00:00+00:00"


def run_ledger(ledger: Ledger) -> tuple[threading.Thread, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    task: list[asyncio.Task[None]] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(ledger.run()))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task[0])

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    thread.task = task  # type: ignore[attr-defined]
    return thread, loop


def stop_ledger(thread: threading.Thread, loop: asyncio.AbstractEventLoop) -> None:
    loop.call_soon_threadsafe(thread.task[0].cancel)  # type: ignore[attr-defined]
    thread.join(timeout=30)


def wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def count(url: str) -> int:
    return query(url, "SELECT count(*) AS n FROM command_log")[0]["n"]


def test_redelivered_and_repeated_commands_are_recorded_once(database):
    broker = Broker()
    client = Client(broker, "unused")
    try:
        records = [(topics.NOTIFICATIONS, b"k", orjson.dumps(command(n))) for n in range(500)]
        client.send(records + records[:100])  # emitted twice, as after a crash
        ledger = Ledger(broker.bootstrap, "app-ledger", database)
        thread, loop = run_ledger(ledger)
        wait_for(lambda: ledger.recorded == 500)
        stop_ledger(thread, loop)
        # Another group reads everything again: still one row per command.
        again = Ledger(broker.bootstrap, "other-ledger", database)
        thread, loop = run_ledger(again)
        time.sleep(3)
        stop_ledger(thread, loop)
        assert count(database) == 500 and again.recorded == 0
    finally:
        client.close()
        broker.stop()


def test_postgres_away_mid_stream_loses_nothing(database, postgres):
    broker = Broker()
    client = Client(broker, "unused")
    ledger = Ledger(broker.bootstrap, "app-ledger", database)
    thread, loop = run_ledger(ledger)
    try:
        client.send([(topics.BILLING, b"k", orjson.dumps(command(n, "invoice.status")))
                     for n in range(300)])
        wait_for(lambda: ledger.recorded == 300)
        postgres.stop()
        try:
            client.send([(topics.BILLING, b"k", orjson.dumps(command(n, "invoice.status")))
                         for n in range(300, 800)])
            wait_for(lambda: not ledger.healthy)  # it tried, failed, and keeps the batch
            time.sleep(2)
        finally:
            postgres.start()
        wait_for(lambda: ledger.recorded == 800)
        assert count(database) == 800
    finally:
        stop_ledger(thread, loop)
        client.close()
        broker.stop()


def test_workers_starting_together_migrate_once(database):
    async def go() -> list[list[str]]:
        conns = [await asyncpg.connect(database) for _ in range(4)]
        try:
            return list(await asyncio.gather(*(migrate(c) for c in conns)))
        finally:
            for c in conns:
                await c.close()

    results = asyncio.run(go())
    assert sorted(map(len, results)) == [0, 0, 0, len(migrations())]


def test_the_read_model_keeps_the_newest_state_and_skips_what_is_not_ours(database):
    """Several states of one invoice in one fetch: only the newest is written (and decoded);
    a record that is not an invoice state, or not a command, is skipped without stopping."""
    engine = Engine(parse_policy("[defaults]\nterms_days = 30\n", "test"))
    feed(engine, topics.INVOICES, b"inv-1", orjson.dumps({
        "type": "invoice.issued", "event_id": "e-1", "invoice_id": "inv-1",
        "customer_id": "c-1", "amount": "100.00", "currency": "USD",
        "issued_at": "2026-01-01T00:00:00Z"}))
    issued = encode_invoice(engine.invoices["inv-1"])
    feed(engine, topics.PAYMENTS, b"inv-1", orjson.dumps({
        "type": "payment.applied", "event_id": "e-2", "invoice_id": "inv-1",
        "payment_id": "p-1", "amount": "40.00", "currency": "USD"}))
    paid_in_part = encode_invoice(engine.invoices["inv-1"])
    changelog = "app-invoices-changelog"
    broker = Broker()
    client = Client(broker, "unused")
    try:
        client.send([(changelog, INVOICE + b"inv-1", issued),
                     (changelog, INVOICE + b"inv-2", b"[1, \"not a state\"]"),
                     (changelog, INVOICE + b"inv-1", paid_in_part),
                     (topics.BILLING, b"k", b"{\"not\": \"a command\"}"),
                     (topics.BILLING, b"k", orjson.dumps(command(1, "invoice.status")))])
        ledger = Ledger(broker.bootstrap, "app-ledger", database, invoices_changelog=changelog)
        thread, loop = run_ledger(ledger)
        try:
            wait_for(lambda: ledger.recorded == 1)
            wait_for(lambda: query(database, "SELECT count(*) AS n FROM invoices")[0]["n"])
        finally:
            stop_ledger(thread, loop)
        rows = query(database, "SELECT invoice_id, status, amount_paid, amount_due FROM invoices")
        assert [(r["invoice_id"], r["status"], str(r["amount_paid"]), str(r["amount_due"]))
                for r in rows] == [("inv-1", "partially_paid", "40.00", "60.00")]
        # Skipped only once dead-lettered, each with the reason and where it was read.
        dead = {r.value: dict(r.headers) for r in client.dead_letters()}
        assert set(dead) == {b"[1, \"not a state\"]", b"{\"not\": \"a command\"}"}
        for headers in dead.values():
            assert headers["dlq.error"] == b"internal_error"
            assert headers["dlq.reason"].startswith(b"the ledger cannot store this record: not ")
        assert dead[b"{\"not\": \"a command\"}"]["dlq.topic"] == topics.BILLING.encode()
        assert ledger.dead_lettered == 2
    finally:
        client.close()
        broker.stop()


def test_a_command_postgresql_refuses_is_dead_lettered_and_the_rest_recorded(database):
    """A NUL in a command's text (jsonb and text refuse it): only that command is set aside,
    with PostgreSQL's reason and the producer's headers; the batch's others are recorded and
    the ledger goes on."""
    broker = Broker()
    client = Client(broker, "unused")
    bad = orjson.dumps(command(3, invoice_id="inv-\u0000"))
    records: list[Any] = [(topics.NOTIFICATIONS, b"k", orjson.dumps(command(n)))
                          for n in range(6) if n != 3]
    records.insert(3, (topics.NOTIFICATIONS, b"k-bad", bad, [("trace", b"t-3")]))
    client.send(records)
    seen: list[Any] = []
    ledger = Ledger(broker.bootstrap, "app-ledger", database, on_dead_letter=seen.append)
    thread, loop = run_ledger(ledger)
    try:
        wait_for(lambda: ledger.recorded == 5 and ledger.dead_lettered == 1)
        client.send([(topics.NOTIFICATIONS, b"k", orjson.dumps(command(n))) for n in (6, 7)])
        wait_for(lambda: ledger.recorded == 7)
        assert thread.is_alive()
    finally:
        stop_ledger(thread, loop)
        client.close()
    try:
        assert sorted(r["command_id"] for r in query(
            database, "SELECT command_id FROM command_log")) == [
            f"cmd-{n}" for n in (0, 1, 2, 4, 5, 6, 7)]
        (dl,) = Client(broker, "unused").dead_letters()
        headers = dict(dl.headers)
        assert (dl.key, dl.value) == (b"k-bad", bad)  # the record unchanged
        assert headers["trace"] == b"t-3"
        assert headers["dlq.error"] == b"internal_error"
        assert b"PostgreSQL refused it" in headers["dlq.reason"]
        assert headers["dlq.topic"] == topics.NOTIFICATIONS.encode()
        assert [d.error for d in seen] == ["internal_error"]
    finally:
        broker.stop()
