"""What a collections manager reads at the end of a cycle, from the worker's ledger."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from dunning.rules.times import DAY, parse_time


@dataclass
class Kpis:
    invoices: dict[str, int]  # by final status
    commands: dict[str, int]  # by type
    billed: Decimal
    collected: Decimal
    outstanding: Decimal  # still due on invoices not paid or cancelled
    dso_days: float | None  # average days from issue to paid in full
    suspended: int  # subjects whose last word was a suspension
    deleted: int

    @property
    def collection_rate(self) -> float:
        return float(self.collected / self.billed) if self.billed else 0.0


async def read(url: str) -> Kpis:
    conn = await asyncpg.connect(url)
    try:
        statuses = {r["status"]: r["n"] for r in await conn.fetch(
            "SELECT status, count(*) AS n FROM invoices GROUP BY status ORDER BY status")}
        commands = {r["type"]: r["n"] for r in await conn.fetch(
            "SELECT type, count(*) AS n FROM command_log GROUP BY type ORDER BY type")}
        money = await conn.fetchrow(
            "SELECT coalesce(sum(amount), 0) AS billed, coalesce(sum(amount_paid), 0) AS paid,"
            " coalesce(sum(amount_due) FILTER (WHERE status NOT IN ('paid', 'cancelled')), 0)"
            " AS due FROM invoices")
        paid = await conn.fetch(
            "SELECT i.state->>'issued_at' AS issued, min(c.record->>'issued_at') AS paid_at"
            " FROM invoices i JOIN command_log c ON c.invoice_id = i.invoice_id"
            " AND c.type = 'invoice.status' AND c.record->>'status' = 'paid'"
            " WHERE i.status = 'paid' GROUP BY i.invoice_id, i.state->>'issued_at'")
        last = await conn.fetch(
            "SELECT DISTINCT ON (subject_kind, subject_id) type FROM command_log"
            " WHERE subject_kind IS NOT NULL AND type LIKE 'service.%'"
            " ORDER BY subject_kind, subject_id, issued_at DESC, recorded_at DESC")
    finally:
        await conn.close()
    days = [(parse_time(r["paid_at"]) - parse_time(r["issued"])) / DAY for r in paid]
    finals = [r["type"] for r in last]
    return Kpis(
        invoices=statuses, commands=commands, billed=money["billed"],
        collected=money["paid"], outstanding=money["due"],
        dso_days=sum(days) / len(days) if days else None,
        suspended=finals.count("service.suspend"), deleted=finals.count("service.delete"),
    )


def render(k: Kpis, title: str = "") -> str:
    lines = [title] if title else []
    total = sum(k.invoices.values())
    lines.append(f"  invoices: {total:,}   " + "   ".join(
        f"{status} {n:,}" for status, n in sorted(k.invoices.items())))
    lines.append(f"  billed {k.billed:,.2f}   collected {k.collected:,.2f}"
                 f"   collection rate {k.collection_rate:.1%}")
    dso = "n/a" if k.dso_days is None else f"{k.dso_days:.1f} days"
    lines.append(f"  debt outstanding {k.outstanding:,.2f}   days to pay (DSO) {dso}")
    lines.append(f"  subjects suspended at the end {k.suspended:,}   deleted {k.deleted:,}")
    lines.append("  commands: " + ", ".join(f"{t} {n:,}" for t, n in sorted(k.commands.items())))
    return "\n".join(lines)


def as_dict(k: Kpis) -> dict[str, Any]:
    return {"invoices": k.invoices, "commands": k.commands, "billed": str(k.billed),
            "collected": str(k.collected), "collection_rate": round(k.collection_rate, 4),
            "outstanding": str(k.outstanding), "dso_days": k.dso_days,
            "suspended_subjects": k.suspended, "deleted_subjects": k.deleted}
