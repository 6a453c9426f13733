"""`dunning inspect INVOICE_ID`: an invoice's state and every command it caused, in time
order, read from the ledger; a table for a person, or JSON for a script."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


async def lookup(url: str, invoice_id: str) -> dict[str, Any] | None:
    """The invoice's state (None if the read model lacks it) and its commands, oldest first;
    None when the ledger knows nothing of the invoice."""
    conn = await asyncpg.connect(url)
    try:
        state = await conn.fetchval("SELECT state::text FROM invoices WHERE invoice_id = $1",
                                    invoice_id)
        records = await conn.fetch(
            "SELECT record::text AS record, topic FROM command_log WHERE invoice_id = $1"
            " ORDER BY issued_at, recorded_at, command_id", invoice_id)
    except asyncpg.UndefinedTableError:
        return None  # a database the worker never migrated
    finally:
        await conn.close()
    if state is None and not records:
        return None
    return {
        "invoice": None if state is None else orjson.loads(state),
        "commands": [{"topic": r["topic"], **orjson.loads(r["record"])} for r in records],
    }


def _detail(c: dict[str, Any]) -> str:
    if c["type"] == "invoice.status":
        return f"{c['status']}: due {c['amount_due']} {c['currency']}, paid {c['amount_paid']}"
    if "subject" in c:
        held = ", ".join(c.get("invoice_ids") or []) or "none"
        return f"{c['subject']['kind']} {c['subject']['id']} (held by {held})"
    if c["type"] == "charge.request":
        return f"attempt {c['attempt']}: {c['amount']} {c['currency']}"
    if "amount" in c:
        return f"{c['amount']} {c.get('currency', '')}".strip()
    if "audience" in c:
        return f"to {c['audience']}: {c['amount_due']} {c['currency']} due"
    return ""


def render(found: dict[str, Any]) -> str:
    inv = found["invoice"]
    lines = []
    if inv is not None:
        nxt = inv.get("next_action")
        lines += [
            f"invoice {inv['invoice_id']}  customer {inv['customer_id']}"
            + (f"  order {inv['order_id']}" if inv.get("order_id") else ""),
            f"  status {inv['status']}   amount {inv['amount']} {inv['currency']}"
            f"   paid {inv['amount_paid']}   due {inv['amount_due']}",
            f"  issued {inv['issued_at']}   due date {inv['due_at']}   service {inv['service']}",
            "  next: " + (f"{nxt['action']} at {nxt['at']}" if nxt else "nothing scheduled"),
        ]
        dates = [f"{name} {inv[f'{name}_at']}" for name in ("limit", "suspend", "delete")
                 if inv.get(f"{name}_at")]
        if dates:  # as the policy set them, or an operator's invoice.updated moved them
            lines.append("  dates: " + "   ".join(dates))
        pause = inv.get("pause")
        if pause:
            lines.append(f"  paused since {pause['since']} ({pause['reason']}), "
                         + (f"until {pause['until']}" if pause["until"] else "until resumed"))
        lines.append("")
    rows = [(c["issued_at"], c["type"], _detail(c), c["causation_id"], c["command_id"][:12])
            for c in found["commands"]]
    header = ("logical time", "command", "detail", "caused by", "command id")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    lines.append(f"{len(rows)} command{'s' if len(rows) != 1 else ''}")
    return "\n".join(lines)
