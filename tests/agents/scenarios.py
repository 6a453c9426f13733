"""Input scripts for the worker tests, recorded while the pure engine runs them.

`Recorder` is the pure-engine driver that also keeps every raw record it was fed; the worker
then gets the same records, and must emit exactly what the engine emitted.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import orjson

from dunning.rules import model as m
from tests.driver import Driver

Record = tuple[str, bytes | None, bytes]

POLICY = """
[defaults]
terms_days = 30
due_soon_days = [3]
suspend_after_days = 15
delete_after_days = 60
request_cancel_after_days = 9
notify_reseller = true

[debit_note]
reminder_every_days = 5

[class.card]
auto_charge = "on_issue"
charge_retry_days = [3, 5]

[class.ondue]
auto_charge = "on_due"

[class.remind]
reminder_every_days = 7

[class.small]
collection_threshold = "5.00"

[class.fee]
late_fee = "5.00"

[class.feepct]
late_fee_percent = "1.5"

[class.limit]
limit_after_days = 5

[class.business.out_of_turn]
terms_days = 6
"""


class Recorder(Driver):
    def __init__(self, policy: str = POLICY) -> None:
        super().__init__(policy)
        self.script: list[Record] = []

    def feed(self, topic: str, key: bytes | None, value: bytes | None, offset: int,
             headers: Any = ()) -> Any:
        self.script.append((topic, key, value, list(headers)) if headers else  # type: ignore[arg-type]
                           (topic, key, value))
        return super().feed(topic, key, value, offset, headers)

    def raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.send(value, topic=topic, key=key)


def days(first: str, last: str) -> list[str]:
    day, end, out = date.fromisoformat(first), date.fromisoformat(last), []
    while day <= end:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def every_rule() -> Recorder:
    """One timeline with an invoice (or two) per rule of contract §2, daily ticks with a jump
    of three weeks in the middle (one-shots fire in order, subjects see them in order)."""
    d = Recorder()
    calendar = days("2026-01-01", "2026-02-10") + days("2026-03-05", "2026-03-15")
    plan: dict[str, list[Any]] = {}

    def on(day: str, action: Any) -> None:
        plan.setdefault(day, []).append(action)

    # Due dates, due-soon, overdue, suspension and (in the jump) nothing paid.
    on("2026-01-01", lambda: d.issue("due", customer_id="c-due", reseller_id="r-1"))
    on("2026-01-01", lambda: d.issue("paid", customer_id="c-paid"))
    on("2026-01-20", lambda: d.pay("paid", "100.00", payment_id="p-paid"))
    # Suspension despite a partial payment; restored when paid in full.
    on("2026-01-02", lambda: d.issue("partial", customer_id="c-partial"))
    on("2026-01-25", lambda: d.pay("partial", "40.00", payment_id="p-part-1"))
    on("2026-03-07", lambda: d.pay("partial", "60.00", payment_id="p-part-2"))
    # Explicit due date; deletion, after which nothing follows for the subject.
    on("2026-01-03", lambda: d.issue("net", customer_id="c-net", due_at="2026-01-05",
                                     overrides={"delete_at": "2026-03-10"}))
    on("2026-03-12", lambda: d.pay("net", "100.00", payment_id="p-net"))
    # Charges on issue with a soft then a hard failure; on due.
    on("2026-01-01", lambda: d.issue("card", customer_id="c-card", customer_class="card"))
    on("2026-01-02", lambda: d.charge_failed(1, invoice_id="card"))
    on("2026-01-06", lambda: d.charge_failed(2, hard=True, invoice_id="card"))
    on("2026-01-01", lambda: d.issue("ondue", customer_id="c-ondue", customer_class="ondue"))
    # Reminder days; a debit note's reminders.
    on("2026-01-01", lambda: d.issue("remind", customer_id="c-remind", customer_class="remind"))
    on("2026-01-04", lambda: d.issue("debit", customer_id="c-debit", document="debit_note",
                                     amount="20.00"))
    # Pending requests: silence then cancellation; completion starts collection.
    on("2026-01-05", lambda: d.issue("pending", customer_id="c-pending", origin="system",
                                     request_id="req-1", request_status="pending"))
    on("2026-01-05", lambda: d.issue("completed", customer_id="c-completed", origin="system",
                                     request_id="req-2", request_status="pending",
                                     customer_class="remind"))
    on("2026-01-08", lambda: d.complete_request("completed"))
    # Collection threshold; late fees fixed and percent; limitation before suspension.
    on("2026-01-01", lambda: d.issue("small", customer_id="c-small", customer_class="small"))
    on("2026-01-20", lambda: d.pay("small", "96.00", payment_id="p-small"))
    on("2026-01-01", lambda: d.issue("fee", customer_id="c-fee", customer_class="fee"))
    on("2026-01-01", lambda: d.issue("feepct", customer_id="c-feepct",
                                     customer_class="feepct", amount="80.00"))
    on("2026-01-01", lambda: d.issue("limit", customer_id="c-limit", customer_class="limit"))
    # One order held by two invoices: one suspend; no restore until the last is paid. Their
    # limit and suspensions all fall in the jump, in time order across the two invoices.
    on("2026-01-10", lambda: d.issue("jump-c", customer_id="c-jump", order_id="o-jump",
                                     customer_class="limit"))
    on("2026-01-05", lambda: d.issue("jump-f", customer_id="c-jump", order_id="o-jump"))
    on("2026-03-06", lambda: d.pay("jump-f", "100.00", payment_id="p-jump-f"))
    on("2026-03-08", lambda: d.pay("jump-c", "100.00", payment_id="p-jump-c"))
    # Reversal re-opens a paid invoice; adjustment; cancellation releases the subject.
    on("2026-01-01", lambda: d.issue("reversal", customer_id="c-reversal"))
    on("2026-01-15", lambda: d.pay("reversal", "100.00", payment_id="p-rev"))
    on("2026-01-20", lambda: d.reverse("p-rev", "100.00", invoice_id="reversal"))
    on("2026-01-01", lambda: d.issue("adjust", customer_id="c-adjust"))
    on("2026-01-10", lambda: d.adjust("60.00", invoice_id="adjust"))
    on("2026-01-12", lambda: d.pay("adjust", "60.00", payment_id="p-adjust"))
    on("2026-01-01", lambda: d.issue("cancel", customer_id="c-cancel"))
    on("2026-03-06", lambda: d.cancel("cancel"))
    # Out-of-turn invoice of a business customer: net 6.
    on("2026-01-02", lambda: d.issue("oot", customer_id="c-oot", customer_class="business",
                                     kind="out_of_turn"))
    # Duplicates; a payment before its invoice; an orphan; records keyed otherwise.
    on("2026-01-01", lambda: d.issue("dup", customer_id="c-dup"))
    on("2026-01-09", lambda: [d.send(_payment("dup", "30.00", "p-dup", "ev-dup"))
                              for _ in range(2)])
    on("2026-01-03", lambda: d.pay("early", "30.00", payment_id="p-early"))
    on("2026-01-04", lambda: d.issue("early", customer_id="c-early"))
    on("2026-01-05", lambda: d.pay("orphan", "10.00", payment_id="p-orphan"))
    on("2026-01-02", lambda: d.send(_issued("rekey-1", "c-rekey"), key=b"customer-c-rekey"))
    on("2026-01-02", lambda: d.raw("billing.invoices", orjson.dumps(_issued("rekey-2",
                                                                            "c-rekey2"))))
    # Every kind of bad record (§1) is dead-lettered.
    on("2026-01-03", lambda: bad_records(d))
    # Operator controls (v1.1): a promise to pay that expires, a dispute resumed by hand, a
    # pause ended by full payment, dates moved by invoice.updated (one removed).
    on("2026-01-01", lambda: d.issue("promise", customer_id="c-promise"))
    on("2026-01-25", lambda: d.send(_paused("promise", "promise_to_pay", "2026-02-05")))
    on("2026-01-01", lambda: d.issue("dispute", customer_id="c-dispute", order_id="o-dispute"))
    on("2026-01-28", lambda: d.send(_paused("dispute", "dispute")))
    on("2026-02-03", lambda: d.send({"type": "collection.resumed", "invoice_id": "dispute"}))
    on("2026-01-02", lambda: d.issue("kept", customer_id="c-kept"))
    on("2026-01-20", lambda: d.send(_paused("kept", "promise_to_pay")))
    on("2026-01-30", lambda: d.pay("kept", "100.00", payment_id="p-kept"))
    on("2026-01-01", lambda: d.issue("moved", customer_id="c-moved", order_id="o-moved"))
    on("2026-01-15", lambda: d.send({"type": "invoice.updated", "invoice_id": "moved",
                                     "overrides": {"suspend_at": "2026-02-08T00:00:00Z",
                                                   "delete_at": False}}))

    for day in calendar:
        d.tick(day)
        for action in plan.pop(day, ()):
            action()
    assert not plan, f"days outside the calendar: {sorted(plan)}"
    return d


def _issued(iid: str, customer: str) -> dict[str, Any]:
    return {"type": "invoice.issued", "event_id": f"ev-{iid}", "invoice_id": iid,
            "customer_id": customer, "amount": "100.00", "currency": "USD",
            "issued_at": "2026-01-02T00:00:00Z"}


def _paused(iid: str, reason: str, until: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "collection.paused", "invoice_id": iid, "reason": reason}
    if until is not None:
        record["until"] = f"{until}T00:00:00Z"
    return record


def _payment(iid: str, amount: str, pid: str, eid: str) -> dict[str, Any]:
    return {"type": "payment.applied", "event_id": eid, "invoice_id": iid,
            "payment_id": pid, "amount": amount, "currency": "USD"}


BAD_CODES = {m.MALFORMED_JSON, m.MISSING_FIELD, m.INVALID_FIELD, m.UNKNOWN_TYPE,
             m.CURRENCY_MISMATCH, m.TOO_LARGE}


def bad_records(d: Recorder) -> None:
    d.raw("billing.payments", b"{not json", key=b"bad-1")
    d.raw("billing.payments", orjson.dumps({"type": "payment.applied", "event_id": "bad-2",
                                            "invoice_id": "due", "currency": "USD",
                                            "payment_id": "x"}), key=b"due")
    d.raw("billing.payments", orjson.dumps({"type": "payment.applied", "event_id": "bad-3",
                                            "invoice_id": "due", "amount": 10.5,
                                            "currency": "USD", "payment_id": "y"}), key=b"due")
    d.raw("billing.invoices", orjson.dumps({"type": "invoice.exploded", "event_id": "bad-4",
                                            "invoice_id": "due"}), key=b"due")
    d.raw("billing.payments", orjson.dumps({"type": "payment.applied", "event_id": "bad-5",
                                            "invoice_id": "due", "amount": "10.00",
                                            "currency": "EUR", "payment_id": "z"}), key=b"due")
    d.raw("billing.payments", b'{"pad": "' + b"x" * 70_000 + b'"}', key=b"bad-6")
    d.raw("billing.clock", orjson.dumps({"type": "clock.tick", "event_id": "bad-7",
                                         "now": "yesterday"}))
    d.raw("billing.payments", orjson.dumps({"type": "payment.applied", "event_id": "bad-8",
                                            "amount": "1.00", "currency": "USD",
                                            "payment_id": "w"}))


def random_run(seed: int, invoices: int, days_: int) -> Recorder:
    """A billing run for crash tests: invoices over the first days, shared subjects, payments
    on time, late, partial or never, some reversed, and daily ticks."""
    rng = random.Random(seed)
    d = Recorder()
    start = date(2026, 1, 1)
    plan: dict[int, list[tuple[int, Any]]] = {}
    classes = [None, "card", "remind", "fee", "limit", "small"]
    for i in range(invoices):
        iid, issued = f"r-{i}", rng.randrange(0, 10)
        subject = {"customer_id": f"c-{i % (invoices // 3 + 1)}"}
        if rng.random() < 0.3:
            subject["order_id"] = f"o-{i % (invoices // 4 + 1)}"
        cls = rng.choice(classes)
        fields = {"customer_class": cls} if cls else {}
        amount = rng.randrange(10, 200)
        day = (start + timedelta(days=issued)).isoformat()
        plan.setdefault(issued, []).append((0,
            lambda iid=iid, day=day, amount=amount, subject=subject, fields=fields:
            d.issue(iid, issued_at=day, amount=f"{amount}.00", **subject, **fields)))
        fate = rng.random()
        if fate < 0.5:
            paid = issued + rng.randrange(0, 70)
            plan.setdefault(paid, []).append((1,
                lambda iid=iid, amount=amount: d.pay(iid, f"{amount}.00", payment_id=f"p-{iid}")))
            if rng.random() < 0.1:
                plan.setdefault(paid + rng.randrange(1, 10), []).append((1,
                    lambda iid=iid, amount=amount: d.reverse(f"p-{iid}", f"{amount}.00",
                                                             invoice_id=iid)))
        elif fate < 0.75:
            plan.setdefault(issued + rng.randrange(5, 40), []).append((1,
                lambda iid=iid: d.pay(iid, "7.00", payment_id=f"q-{iid}")))
    for n in range(days_):
        d.tick((start + timedelta(days=n)).isoformat())
        # A day's invoices first, then its payments: the harness sends each topic's run at
        # once, and fewer runs mean fewer waits.
        for action in sorted(plan.pop(n, ()), key=lambda a: a[0]):
            action[1]()
    return d
