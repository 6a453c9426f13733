"""The what-if report of `dunning demo --compare`: KPIs side by side, and an HTML page with
charts of outstanding debt, actions per day and enforcement per day for each policy (inline
SVG, no dependencies), and enforcement by weekday, where a business calendar shows."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import asyncpg

from dunning.demo.kpis import ENFORCEMENT, Kpis

Series = dict[str, float]  # day (YYYY-MM-DD) -> value
COLOURS = ("#1f77b4", "#d62728")


async def actions_per_day(url: str) -> Series:
    """Collection actions (every command but status updates) by the logical day they fell."""
    conn = await asyncpg.connect(url)
    try:
        actions = await conn.fetch(
            "SELECT to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) AS n"
            " FROM command_log WHERE type <> 'invoice.status' GROUP BY 1 ORDER BY 1")
    finally:
        await conn.close()
    return {r["day"]: float(r["n"]) for r in actions}


async def enforcement_per_day(url: str) -> Series:
    """Limitations, suspensions and deletions by the logical day (UTC) they fell: under a
    calendar the closed days stay at zero and the next business day takes what they held."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) AS n"
            " FROM command_log WHERE type = ANY($1::text[]) GROUP BY 1 ORDER BY 1",
            list(ENFORCEMENT))
    finally:
        await conn.close()
    return {r["day"]: float(r["n"]) for r in rows}


def side_by_side(names: list[str], results: list[Kpis]) -> str:
    rows = [
        ("invoices paid", lambda k: f"{k.invoices.get('paid', 0):,}"),
        ("invoices overdue", lambda k: f"{k.invoices.get('overdue', 0):,}"),
        ("invoices cancelled", lambda k: f"{k.invoices.get('cancelled', 0):,}"),
        ("collection rate", lambda k: _rate(k.collection_rate)),
        ("  of what is due", lambda k: _rate(k.collection_rate_due)),
        ("debt outstanding", lambda k: f"{k.outstanding:,.2f}"),
        ("  overdue", lambda k: f"{k.overdue:,.2f}"),
        ("DSO (days)", lambda k: _one(k.dso_days)),
        ("days to pay (paid invoices)", lambda k: _one(k.days_to_pay)),
        ("subjects suspended", lambda k: f"{k.suspended:,}"),
        ("subjects deleted", lambda k: f"{k.deleted:,}"),
        ("reminders and notices", lambda k: f"{sum(n for t, n in k.commands.items() if t.startswith('notify.')):,}"),  # noqa: E501
        ("provisioning commands", lambda k: f"{sum(n for t, n in k.commands.items() if t.startswith('service.')):,}"),  # noqa: E501
        ("late fees", lambda k: f"{k.commands.get('invoice.late_fee', 0):,}"),
        ("promises to pay", lambda k: f"{k.promises.get('made', 0):,}"),
        ("  kept", lambda k: f"{k.promises.get('kept', 0):,}"),
        ("  broken", lambda k: f"{k.promises.get('broken', 0):,}"),
        ("enforcement on closed days", lambda k: "no calendar"
         if k.enforcement_on_closed_days is None else f"{k.enforcement_on_closed_days:,}"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    cols = [max(len(n), 16) for n in names]
    lines = [" " * width + "  ".join(n.rjust(c) for n, c in zip(names, cols, strict=True))]
    for label, cell in rows:
        lines.append(label.ljust(width) + "  ".join(
            cell(k).rjust(c) for k, c in zip(results, cols, strict=True)))
    return "\n".join("  " + line for line in lines)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _one(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _chart(title: str, series: list[tuple[str, Series]], unit: str) -> str:
    days = sorted({d for _, s in series for d in s})
    if not days:
        return f"<h2>{html.escape(title)}</h2><p>nothing to show</p>"
    top = max((v for _, s in series for v in s.values()), default=1.0) or 1.0
    w, h, pad = 760, 260, 50
    x = {d: pad + i * (w - 2 * pad) / max(1, len(days) - 1) for i, d in enumerate(days)}

    def y(v: float) -> float:
        return h - pad + 10 - (v / top) * (h - 2 * pad)

    parts = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{pad}" y1="{h - pad + 10}" x2="{w - pad}" y2="{h - pad + 10}" '
             'stroke="#999"/>',
             f'<text x="{pad}" y="{h - 15}" font-size="11">{days[0]}</text>',
             f'<text x="{w - pad - 60}" y="{h - 15}" font-size="11">{days[-1]}</text>',
             f'<text x="5" y="{pad}" font-size="11">{top:,.0f} {html.escape(unit)}</text>']
    for n, (name, s) in enumerate(series):
        points = " ".join(f"{x[d]:.1f},{y(s.get(d, 0.0)):.1f}" for d in days)
        colour = COLOURS[n % len(COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{points}"/>')
        parts.append(f'<text x="{w - 200}" y="{20 + 16 * n}" fill="{colour}" '
                     f'font-size="13">{html.escape(name)}</text>')
    parts.append("</svg>")
    return f"<h2>{html.escape(title)}</h2>" + "".join(parts)


def _weekdays(names: list[str], results: list[Kpis]) -> str:
    """Enforcement by local weekday, a row per policy: a calendar's closed days show."""
    days = list(results[0].enforcement_by_weekday) if results else []
    head = "".join(f"<th>{d}</th>" for d in days)
    rows = "".join(
        f"<tr><td>{html.escape(n)} ({html.escape(k.enforcement_zone)})</td>"
        + "".join(f"<td>{k.enforcement_by_weekday.get(d, 0):,}</td>" for d in days) + "</tr>"
        for n, k in zip(names, results, strict=True))
    return ("<h2>Enforcement (limit, suspend, delete) by local weekday</h2>"
            f"<table border='1' cellpadding='4'><tr><th>policy</th>{head}</tr>{rows}</table>")


def html_report(names: list[str], results: list[Kpis], debts: list[Series],
                actions: list[Series], table: str,
                enforcement: list[Series] | None = None) -> str:
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'><title>dunning: policy what-if"
        "</title><style>body{font-family:sans-serif;margin:2em}pre{background:#f6f6f6;"
        "padding:1em}</style></head><body>",
        f"<h1>dunning: {' vs '.join(html.escape(n) for n in names)}</h1>",
        f"<p>Same simulated input through each policy (made {made}). The customers pay as"
        " they would under any policy (the simulation does not react to reminders), so the"
        " policies differ in the actions they take more than in the money collected. Debt is"
        " from the pure engine run alongside each worker, whose commands match it.</p>",
        f"<pre>{html.escape(table)}</pre>",
        _chart("Outstanding debt at the end of each day", list(zip(names, debts, strict=True)),
               "USD"),
        _chart("Collection actions per day (notices, provisioning, charges, fees)",
               list(zip(names, actions, strict=True)), "actions"),
        *([_chart("Enforcement per day (limitations, suspensions, deletions; a business"
                  " calendar holds them on closed days)",
                  list(zip(names, enforcement, strict=True)), "actions"),
           _weekdays(names, results)] if enforcement is not None else []),
        "</body></html>",
    ])
