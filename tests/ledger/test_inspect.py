"""`dunning inspect`'s rendering of the read model: what an operator's controls did shows."""

from __future__ import annotations

from dunning.ledger.inspect import render
from dunning.tables.state import decode_invoice, encode_invoice, invoice_view
from tests.driver import Driver
from tests.rules.test_controls import pause
from tests.tables.test_state import VIEW_POLICY


def shown(d: Driver) -> str:
    view = invoice_view(decode_invoice(encode_invoice(d.invoice())))
    return render({"invoice": view, "commands": []})


def test_a_pause_and_the_dates_show() -> None:
    d = Driver(VIEW_POLICY)
    d.issue()
    d.tick("2026-02-01")
    assert "paused" not in shown(d)
    assert "dates: limit 2026-02-05T00:00:00Z   suspend 2026-02-15T00:00:00Z" in shown(d)
    pause(d, reason="promise_to_pay")
    assert "  paused since 2026-02-01T00:00:00Z (promise_to_pay), until resumed" in shown(d)
    pause(d, until="2026-03-01", reason="dispute")
    assert "(dispute), until 2026-03-01T00:00:00Z" in shown(d)
