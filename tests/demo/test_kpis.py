"""The demo's KPIs from a hand-made ledger: their definitions, to the cent and the day."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal

import asyncpg
import orjson
import pytest

from dunning.demo import kpis
from dunning.ledger.db import migrate
from dunning.ledger.sink import row, write
from dunning.rules.calendar import Calendar
from dunning.rules.times import DAY, parse_time
from dunning.streams import topics
from tests.conftest import fresh_database

START = parse_time("2026-01-01T00:00:00Z")


def at(day: int) -> datetime:
    return datetime.fromtimestamp(START + day * DAY, UTC)


# invoice, status, amount, paid, issued day, due day, paid day (for its invoice.status)
INVOICES = [
    ("i-1", "paid", "100.00", "100.00", 0, 30, 10),
    ("i-2", "paid", "50.00", "50.00", 0, 30, 40),
    ("i-3", "overdue", "200.00", "20.00", 0, 30, None),
    ("i-4", "unpaid", "80.00", "0.00", 50, 80, None),
    ("i-5", "cancelled", "999.00", "9.00", 0, 30, None),
]


def ledger(url: str, reverse: bool = False) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            for iid, status, amount, paid, issued, due, _ in INVOICES:
                await conn.execute(
                    "INSERT INTO invoices (invoice_id, customer_id, status, currency, amount,"
                    " amount_paid, amount_due, due_at, state) VALUES ($1, 'c', $2, 'USD', $3,"
                    " $4, $5, $6, $7)", iid, status, Decimal(amount), Decimal(paid),
                    Decimal(amount) - Decimal(paid), at(due),
                    orjson.dumps({"issued_at": at(issued).isoformat()
                                  .replace("+00:00", "Z")}).decode())
            commands = [
                (topics.BILLING, 0, {"command_id": f"s-{iid}", "type": "invoice.status",
                                     "status": "paid", "invoice_id": iid,
                                     "issued_at": at(day).isoformat().replace("+00:00", "Z"),
                                     "causation_id": "x"})
                for iid, _, _, _, _, _, day in INVOICES if day is not None]
            # One subject suspended by a tick and restored by a payment on the same day,
            # written in one batch (one recorded_at): the later on the topic is the last word.
            subject = {"kind": "customer", "id": "c"}
            for n, kind in enumerate(("service.suspend", "service.unsuspend")):
                commands.append((topics.PROVISIONING, n, {
                    "command_id": f"p-{n}", "type": kind, "subject": subject,
                    "invoice_ids": ["i-3"], "issued_at": "2026-02-10T00:00:00Z",
                    "causation_id": "x"}))
            other = {"kind": "customer", "id": "d"}
            commands.append((topics.PROVISIONING, 7, {
                "command_id": "p-9", "type": "service.suspend", "subject": other,
                "invoice_ids": ["i-9"], "issued_at": "2026-02-10T00:00:00Z",
                "causation_id": "x"}))
            rows = [row(t, orjson.dumps(v), 0, offset) for t, offset, v in commands]
            await write(conn, rows[::-1] if reverse else rows)  # one batch, either order
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.mark.parametrize("reverse", [False, True])
def test_kpis_follow_their_definitions(postgres, reverse):
    url = fresh_database(postgres)
    ledger(url, reverse)
    k = asyncio.run(kpis.read(url, 90, START + 89 * DAY))
    assert k.invoices == {"paid": 2, "overdue": 1, "unpaid": 1, "cancelled": 1}
    # Money leaves the cancelled invoice out: billed - collected = outstanding.
    assert (k.billed, k.collected, k.outstanding) == (Decimal("430.00"), Decimal("170.00"),
                                                     Decimal("260.00"))
    assert k.overdue == Decimal("180.00")
    assert k.collection_rate == float(Decimal("170") / Decimal("430"))
    # By day 89 every invoice is due (i-4 on day 80): the two rates agree.
    assert k.collection_rate_due == float(Decimal("170") / Decimal("430"))
    assert k.dso_days == float(Decimal("260") / Decimal("430")) * 90
    assert k.days_to_pay == (10 + 40) / 2
    assert (k.suspended, k.deleted) == (1, 0)  # customer d; customer c was restored


def test_the_rate_of_what_is_due_leaves_out_invoices_not_due_yet(postgres):
    url = fresh_database(postgres)
    ledger(url)
    k = asyncio.run(kpis.read(url, 60, START + 59 * DAY))  # i-4 is due on day 80
    assert k.collection_rate_due == float(Decimal("170") / Decimal("350"))
    assert "of what is due" in kpis.render(k)


def test_promises_and_enforcement_by_weekday(postgres):
    url = fresh_database(postgres)
    ledger(url)

    async def expire(iid: str) -> None:  # i-3's promise ran out: a customer and reseller copy
        conn = await asyncpg.connect(url)
        try:
            await write(conn, [row(topics.NOTIFICATIONS, orjson.dumps({
                "command_id": f"r-{audience}", "type": "notify.collection_resumed",
                "reason": "expired", "audience": audience, "invoice_id": iid,
                "issued_at": "2026-02-05T00:00:00Z", "causation_id": "x"}), 0, 20 + n)
                for n, audience in enumerate(("customer", "reseller"))])
        finally:
            await conn.close()

    asyncio.run(expire("i-3"))
    # i-1 paid: kept; i-3 ran out: broken; i-4 still open.
    holiday = Calendar(time_zone="Asia/Tokyo", enforce_on=frozenset(range(5)),
                       holidays=frozenset({date(2026, 2, 10)}))
    k = asyncio.run(kpis.read(url, 90, START + 89 * DAY, ["i-1", "i-3", "i-4"], holiday))
    assert k.promises == {"made": 3, "kept": 1, "broken": 1}
    # Two suspensions at 00:00 UTC on Tuesday 10 February (09:00 in Tokyo), a holiday there.
    assert k.enforcement_by_weekday["tue"] == 2 and sum(k.enforcement_by_weekday.values()) == 2
    assert k.enforcement_zone == "Asia/Tokyo" and k.enforcement_on_closed_days == 2
    text = kpis.render(k)
    assert "promises to pay 3: kept 1   broken 1" in text
    assert "enforcement on days it closes (weekends, holidays) 2" in text
    plain = asyncio.run(kpis.read(url, 90, START + 89 * DAY))  # no calendar: UTC, not judged
    assert plain.enforcement_on_closed_days is None and plain.enforcement_zone == "UTC"
    assert "days it closes" not in kpis.render(plain)
