"""What a collections manager reads at the end of a cycle, from the worker's ledger.

Definitions: money is of the invoices not cancelled; the collection rate is collected over
billed, and also over what was billed on invoices due by the end; DSO is debt outstanding over
billed times the period's days; days to pay is the average, over the invoices paid in full,
of the days from issue to the day they were paid. A promise to pay is kept when its invoice
is paid in full with no pause run out, broken when its pause ran out (`notify.collection_resumed`,
reason `expired`); the rest are still open. Enforcement (limitation, suspension, deletion) is
counted by the local weekday it landed on, in the policy's calendar's zone (UTC without one),
and, under a calendar, how much of it fell on a day the calendar closes (none, if it holds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from dunning.rules.calendar import WEEKDAYS, Calendar
from dunning.rules.times import DAY, parse_time

ENFORCEMENT = ("service.limit", "service.suspend", "service.delete")


@dataclass
class Kpis:
    """Money is of the invoices not cancelled: billed - collected = outstanding, unless some
    invoice was overpaid."""

    invoices: dict[str, int]  # by final status
    commands: dict[str, int]  # by type
    billed: Decimal
    collected: Decimal
    outstanding: Decimal  # still due on invoices not paid or cancelled
    overdue: Decimal  # the part of it on invoices past their due date
    billed_due: Decimal  # billed on invoices due by the end of the period
    collected_due: Decimal  # collected on those
    days_to_pay: float | None  # average days from issue to paid in full, of paid invoices
    period_days: int  # the days the figures cover (for DSO)
    suspended: int  # subjects whose last word was a suspension
    deleted: int
    promises: dict[str, int] = field(default_factory=dict)  # made, kept, broken
    enforcement_by_weekday: dict[str, int] = field(default_factory=dict)  # local weekday
    enforcement_zone: str = "UTC"
    enforcement_on_closed_days: int | None = None  # None: the policy has no calendar

    @property
    def collection_rate(self) -> float | None:
        return float(self.collected / self.billed) if self.billed else None

    @property
    def collection_rate_due(self) -> float | None:
        """Of the invoices already due: what the policy could have collected."""
        return float(self.collected_due / self.billed_due) if self.billed_due else None

    @property
    def dso_days(self) -> float | None:
        """Days sales outstanding: debt outstanding over billing, times the period's days."""
        return float(self.outstanding / self.billed) * self.period_days if self.billed else None


async def read(url: str, period_days: int, end: int, promised: list[str] | None = None,
               calendar: Calendar | None = None) -> Kpis:
    """The figures of a period of `period_days` days ending at logical time `end`;
    `promised`: the invoices whose customer promised to pay, `calendar`: the policy's."""
    conn = await asyncpg.connect(url)
    try:
        statuses = {r["status"]: r["n"] for r in await conn.fetch(
            "SELECT status, count(*) AS n FROM invoices GROUP BY status ORDER BY status")}
        commands = {r["type"]: r["n"] for r in await conn.fetch(
            "SELECT type, count(*) AS n FROM command_log GROUP BY type ORDER BY type")}
        money = await conn.fetchrow(
            "SELECT coalesce(sum(amount), 0) AS billed, coalesce(sum(amount_paid), 0) AS paid,"
            " coalesce(sum(amount_due) FILTER (WHERE status <> 'paid'), 0) AS due,"
            " coalesce(sum(amount_due) FILTER (WHERE status = 'overdue'), 0) AS overdue,"
            " coalesce(sum(amount) FILTER (WHERE due_at <= $1), 0) AS billed_due,"
            " coalesce(sum(amount_paid) FILTER (WHERE due_at <= $1), 0) AS paid_due"
            " FROM invoices WHERE status <> 'cancelled'", datetime.fromtimestamp(end, UTC))
        paid = await conn.fetch(
            "SELECT i.state->>'issued_at' AS issued, min(c.record->>'issued_at') AS paid_at"
            " FROM invoices i JOIN command_log c ON c.invoice_id = i.invoice_id"
            " AND c.type = 'invoice.status' AND c.record->>'status' = 'paid'"
            " WHERE i.status = 'paid' GROUP BY i.invoice_id, i.state->>'issued_at'")
        last = await conn.fetch(
            "SELECT DISTINCT ON (subject_kind, subject_id) type FROM command_log"
            " WHERE subject_kind IS NOT NULL AND type LIKE 'service.%'"
            # The newest by logical time; on one instant, the later on the topic.
            " ORDER BY subject_kind, subject_id, issued_at DESC, source_offset DESC")
        promises = await conn.fetchrow(
            "WITH broken AS (SELECT DISTINCT invoice_id FROM command_log"
            " WHERE type = 'notify.collection_resumed' AND record->>'reason' = 'expired')"
            " SELECT (SELECT count(*) FROM broken) AS broken,"
            " (SELECT count(*) FROM invoices WHERE invoice_id = ANY($1::text[])"
            " AND status = 'paid' AND invoice_id NOT IN (SELECT invoice_id FROM broken))"
            " AS kept", list(promised or ()))
        enforced = await conn.fetch(
            "SELECT DISTINCT command_id, record->>'issued_at' AS at FROM command_log"
            " WHERE type = ANY($1::text[])", list(ENFORCEMENT))
    finally:
        await conn.close()
    days = [(parse_time(r["paid_at"]) - parse_time(r["issued"])) / DAY for r in paid]
    finals = [r["type"] for r in last]
    local = calendar or Calendar()
    landed = [local.local(parse_time(r["at"])).date() for r in enforced]
    by_weekday = {d: 0 for d in WEEKDAYS}
    for day in landed:
        by_weekday[WEEKDAYS[day.weekday()]] += 1
    return Kpis(
        invoices=statuses, commands=commands, billed=money["billed"],
        collected=money["paid"], outstanding=money["due"], overdue=money["overdue"],
        billed_due=money["billed_due"], collected_due=money["paid_due"],
        days_to_pay=sum(days) / len(days) if days else None, period_days=period_days,
        suspended=finals.count("service.suspend"), deleted=finals.count("service.delete"),
        promises={"made": len(promised or ()), "kept": promises["kept"],
                  "broken": promises["broken"]},
        enforcement_by_weekday=by_weekday, enforcement_zone=local.time_zone,
        enforcement_on_closed_days=None if calendar is None else sum(
            not calendar.enforces_on(day) for day in landed),
    )


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _days(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} days"


def render(k: Kpis, title: str = "") -> str:
    lines = [title] if title else []
    total = sum(k.invoices.values())
    lines.append(f"  invoices: {total:,}   " + "   ".join(
        f"{status} {n:,}" for status, n in sorted(k.invoices.items())))
    lines.append(f"  billed {k.billed:,.2f}   collected {k.collected:,.2f}"
                 "   (cancelled invoices aside)")
    lines.append(f"  collection rate {_rate(k.collection_rate)}, of what is due "
                 f"{_rate(k.collection_rate_due)}")
    lines.append(f"  debt outstanding {k.outstanding:,.2f}, of it overdue {k.overdue:,.2f}")
    lines.append(f"  DSO {_days(k.dso_days)}   days to pay {_days(k.days_to_pay)}"
                 " (paid invoices, issue to paid)")
    lines.append(f"  subjects suspended at the end {k.suspended:,}   deleted {k.deleted:,}")
    p = k.promises
    lines.append(f"  promises to pay {p.get('made', 0):,}: kept {p.get('kept', 0):,}"
                 f"   broken {p.get('broken', 0):,} (the pause ran out)")
    lines.append(f"  enforcement (limit, suspend, delete) by weekday, {k.enforcement_zone}: "
                 + " ".join(f"{d} {n:,}" for d, n in k.enforcement_by_weekday.items()))
    if k.enforcement_on_closed_days is not None:
        lines.append(f"  calendar: enforcement on days it closes (weekends, holidays) "
                     f"{k.enforcement_on_closed_days:,}")
    lines.append("  commands: " + ", ".join(f"{t} {n:,}" for t, n in sorted(k.commands.items())))
    return "\n".join(lines)


def as_dict(k: Kpis) -> dict[str, Any]:
    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    return {"invoices": k.invoices, "commands": k.commands, "billed": str(k.billed),
            "collected": str(k.collected),
            "collection_rate": rounded(k.collection_rate, 4),
            "collection_rate_of_due": rounded(k.collection_rate_due, 4),
            "outstanding": str(k.outstanding), "overdue": str(k.overdue),
            "dso_days": rounded(k.dso_days, 1), "days_to_pay": rounded(k.days_to_pay, 1),
            "suspended_subjects": k.suspended, "deleted_subjects": k.deleted,
            "promises": k.promises, "enforcement_by_weekday": k.enforcement_by_weekday,
            "enforcement_zone": k.enforcement_zone,
            "enforcement_on_closed_days": k.enforcement_on_closed_days}
