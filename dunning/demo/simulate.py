"""A simulated operator's customer base: what its billing system sends over a billing cycle.

Seeded and reproducible. Each customer has a class (residential or business), a billing day,
maybe an order (a service) and a reseller, and a way of paying: on time, late, in part, never,
or by a card payment that is later reversed. Over the days: monthly regular invoices, now and
then an out-of-turn invoice or a debit note, system invoices whose request waits for payment,
and the payments; a tick at the start of every day. Some customers who pay late or never
promise to pay once their invoice is overdue (`collection.paused`, promise_to_pay, until a few
days later): a late payer keeps it (pays in full before `until`), one who never pays breaks it
(the pause runs out and collection resumes).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from dunning.rules.times import DAY, format_time, parse_time
from dunning.streams import topics

Record = tuple[str, bytes | None, bytes]
START = parse_time("2026-01-01T00:00:00Z")
HABITS = (("on_time", 0.55), ("late", 0.2), ("partial", 0.1), ("never", 0.08),
          ("reversed", 0.07))


@dataclass
class Customer:
    cid: str
    cls: str
    billing_day: int
    habit: str
    order_id: str | None
    reseller_id: str | None


@dataclass
class Simulation:
    seed: int
    customers: int
    days: int
    plan: dict[int, list[Record]] = field(default_factory=dict)
    invoices: int = 0
    promised: list[str] = field(default_factory=list)  # invoices with a promise to pay

    def script(self) -> Iterator[tuple[int, list[Record]]]:
        """(day, the day's records: its tick first, then invoices, payments, requests: a
        system invoice's request completes once the payment it waits for is in)."""
        for day in range(self.days):
            now = format_time(START + day * DAY)
            tick = (topics.CLOCK, None, orjson.dumps(
                {"type": "clock.tick", "event_id": f"tick-{now}", "now": now}))
            order = {topics.INVOICES: 0, topics.PAYMENTS: 1, topics.REQUESTS: 2}
            yield day, [tick, *sorted(self.plan.get(day, ()), key=lambda r: order[r[0]])]


def simulate(seed: int = 7, customers: int = 10_000, days: int = 90) -> Simulation:
    rng = random.Random(seed)
    sim = Simulation(seed, customers, days)
    people = []
    for n in range(customers):
        habit = rng.choices([h for h, _ in HABITS], [w for _, w in HABITS])[0]
        people.append(Customer(
            cid=f"C{n:06d}", cls="business" if rng.random() < 0.3 else "residential",
            billing_day=rng.randrange(28), habit=habit,
            order_id=f"O{n:06d}" if rng.random() < 0.4 else None,
            reseller_id=f"R{n % 20:02d}" if rng.random() < 0.2 else None))
    counter = iter(range(1, 10**9))
    # Promises draw from their own stream, so the rest of the input is as it was without them.
    promises = random.Random(f"promises-{seed}")

    def add(day: int, record: Record) -> None:
        if day < days:
            sim.plan.setdefault(day, []).append(record)

    def invoice(c: Customer, day: int, amount: int, **fields: object) -> str:
        iid = f"I{next(counter):08d}"
        sim.invoices += 1
        doc = {"type": "invoice.issued", "event_id": f"e-{iid}", "invoice_id": iid,
               "customer_id": c.cid, "customer_class": c.cls, "amount": f"{amount}.00",
               "currency": "USD", "issued_at": format_time(START + day * DAY), **fields}
        if c.order_id and "order_id" not in fields:
            doc["order_id"] = c.order_id
        if c.reseller_id:
            doc["reseller_id"] = c.reseller_id
        add(day, (topics.INVOICES, iid.encode(), orjson.dumps(doc)))
        return iid

    def pay(iid: str, day: int, amount: int, pid: str) -> None:
        add(day, (topics.PAYMENTS, iid.encode(), orjson.dumps({
            "type": "payment.applied", "event_id": f"e-{pid}", "invoice_id": iid,
            "payment_id": pid, "amount": f"{amount}.00", "currency": "USD"})))

    def promise(iid: str, day: int, until: int) -> None:
        if day < days:
            sim.promised.append(iid)
        add(day, (topics.INVOICES, iid.encode(), orjson.dumps({
            "type": "collection.paused", "event_id": f"e-ptp-{iid}", "invoice_id": iid,
            "reason": "promise_to_pay", "until": format_time(START + until * DAY)})))

    def settle(c: Customer, iid: str, day: int, amount: int, due_in: int) -> None:
        """The customer's habit decides when and how much they pay."""
        if c.habit == "on_time":
            pay(iid, day + rng.randrange(1, max(2, due_in)), amount, f"p-{iid}")
        elif c.habit == "late":
            paid = day + due_in + rng.randrange(3, 25)
            pay(iid, paid, amount, f"p-{iid}")
            if promises.random() < 0.4:  # kept: promised while overdue, paid before `until`
                made = promises.randrange(day + due_in + 1, paid)
                promise(iid, made, paid + promises.randrange(1, 4))
        elif c.habit == "never" and promises.random() < 0.4:  # broken: the pause runs out
            made = day + due_in + promises.randrange(1, 4)
            promise(iid, made, made + promises.randrange(3, 8))
        elif c.habit == "partial":
            part = max(1, amount // 3)
            pay(iid, day + rng.randrange(5, 40), part, f"p-{iid}")
            if rng.random() < 0.5:
                pay(iid, day + rng.randrange(40, 70), amount - part, f"q-{iid}")
        elif c.habit == "reversed":
            paid = day + rng.randrange(1, max(2, due_in))
            pay(iid, paid, amount, f"p-{iid}")
            add(paid + rng.randrange(3, 20), (topics.PAYMENTS, iid.encode(), orjson.dumps({
                "type": "payment.reversed", "event_id": f"e-r-{iid}", "invoice_id": iid,
                "payment_id": f"p-{iid}", "amount": f"{amount}.00"})))
        # "never": nothing comes

    for c in people:
        for day in range(c.billing_day, days, 30):  # the monthly regular invoice
            amount = rng.randrange(15, 120)
            settle(c, invoice(c, day, amount), day, amount, 30)
        if rng.random() < 0.08:  # an engineer's visit: an out-of-turn invoice
            day = rng.randrange(days)
            amount = rng.randrange(40, 200)
            settle(c, invoice(c, day, amount, kind="out_of_turn"), day, amount,
                   6 if c.cls == "business" else 30)
        if rng.random() < 0.05:  # a correction: a debit note
            day = rng.randrange(days)
            amount = rng.randrange(5, 30)
            settle(c, invoice(c, day, amount, document="debit_note"), day, amount, 30)
        if rng.random() < 0.05:  # a new service that waits for its invoice to be paid
            day = rng.randrange(days)
            amount = rng.randrange(20, 80)
            iid = invoice(c, day, amount, origin="system", request_id=f"Q{c.cid}",
                          request_status="pending")
            if c.habit in ("on_time", "late"):
                paid = day + rng.randrange(1, 8)
                pay(iid, paid, amount, f"p-{iid}")
                add(paid, (topics.REQUESTS, iid.encode(), orjson.dumps({
                    "type": "request.completed", "event_id": f"e-c-{iid}",
                    "invoice_id": iid})))
    return sim
