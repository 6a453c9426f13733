"""Random collection scenarios for the property tests, a runner over the test driver, and an
independent ledger of what each invoice owes, kept from the inputs alone.

A scenario is a policy plus a list of raw input records, each with the logical time it
arrives. Running it ticks to each record's time before sending it (optionally also every
`every` seconds in between), then ticks once more at `END`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from dunning.rules import model as m
from dunning.rules.times import DAY, format_time, parse_time
from tests.driver import Driver

START = parse_time("2026-01-01T00:00:00Z")
HOUR = 3600
END = START + 220 * DAY  # past every date a scenario can set
ORPHAN_AFTER = 7 * DAY
PLACES = {"USD": 2, "JPY": 0, "BHD": 3}

Record = dict[str, Any]


# -- money ------------------------------------------------------------------------------------


def money(minor: int, currency: str, trim: bool = False) -> str:
    """`minor` units of `currency` as a decimal string; `trim` drops trailing zeros (still
    valid: fewer places than the currency has). Money is never negative (contract §1)."""
    assert minor >= 0, minor
    text = str(Decimal(minor).scaleb(-PLACES[currency]))
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def quantize(text: str, currency: str) -> Decimal:
    return Decimal(text).quantize(Decimal(1).scaleb(-PLACES[currency]))


# -- scenarios --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    policy: str
    records: tuple[tuple[int, Record], ...]  # (arrival time, record), by arrival time

    def __repr__(self) -> str:  # readable falsifying examples
        lines = [f"Scenario(policy={self.policy!r}, records=["]
        for at, rec in self.records:
            lines.append(f"  ({_day(at)}, {json.dumps(rec, sort_keys=False)}),")
        return "\n".join([*lines, "])"])

    def subject_of(self) -> dict[str, str]:
        """invoice_id -> subject key ("order:ID" or "customer:ID"), from its issue record."""
        out: dict[str, str] = {}
        for _, rec in self.records:
            if rec["type"] == "invoice.issued" and rec["invoice_id"] not in out:
                order = rec.get("order_id")
                out[rec["invoice_id"]] = (
                    f"order:{order}" if order is not None else f"customer:{rec['customer_id']}"
                )
        return out


def _day(at: int) -> str:
    days, rest = divmod(at - START, DAY)
    return f"day {days}" + (f"+{rest // HOUR}h" if rest else "")


def _day_or_off(lo: int, hi: int) -> st.SearchStrategy[Any]:
    """Mostly a number of days, sometimes `false` (stage off)."""
    return st.one_of(st.integers(lo, hi), st.integers(lo, hi), st.integers(lo, hi),
                     st.just(False))


def _toml(value: Any) -> str:
    if value is False or value is True:
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value).replace("'", '"')


@st.composite
def policies(draw: st.DrawFn) -> str:
    """A policy with most stages on: due-soon, reminders, a fixed or percent late fee, limit,
    suspend, delete, request cancellation, auto-charge and a threshold; amounts sometimes by
    currency (contract §3)."""
    fee = draw(st.sampled_from(["fixed", "by_currency", "percent", "percent", "none"]))
    fixed = {"fixed": "5.00", "by_currency": {"USD": "5.00", "JPY": "500"}}
    defaults = {
        "terms_days": draw(st.integers(0, 30)),
        "auto_charge": draw(st.sampled_from(["off", "on_issue", "on_due", "on_due"])),
        "charge_retry_days": draw(st.lists(st.integers(1, 6), max_size=3)),
        "due_soon_days": draw(st.lists(st.integers(1, 10), max_size=3, unique=True)),
        "reminder_every_days": draw(_day_or_off(1, 12)),
        "collection_threshold": draw(st.sampled_from(
            ["0.00", "0.00", "1.00", "10", "150", {"USD": "20.00", "BHD": "5.000"}])),
        "late_fee": fixed.get(fee, False),
        "late_fee_percent": draw(st.sampled_from(["1.5", "2", "10"])) if fee == "percent"
        else False,
        "late_fee_after_days": draw(st.integers(0, 5)),
        "limit_after_days": draw(_day_or_off(0, 10)),
        "suspend_after_days": draw(_day_or_off(0, 20)),
        "delete_after_days": draw(_day_or_off(5, 60)),
        "request_cancel_after_days": draw(_day_or_off(0, 15)),
        "notify_reseller": draw(st.booleans()),
    }
    lines = ["[defaults]", *(f"{k} = {_toml(v)}" for k, v in defaults.items())]
    lines += ["[debit_note]", f"reminder_every_days = {_toml(draw(_day_or_off(1, 7)))}"]
    # A product with the other kind of fee and no deletion, and one never suspended or
    # deleted (LogicBoxes' domain registrations: a system invoice's own dates are ignored).
    lines += ["[product.flat]", 'late_fee = "2.50"', "late_fee_percent = false",
              "delete_after_days = false"]
    lines += ["[product.domain_registration]", "suspend_after_days = false",
              "delete_after_days = false"]
    return "\n".join(lines) + "\n"


@st.composite
def invoices(draw: st.DrawFn, i: int) -> tuple[int, Record]:
    """An invoice.issued record and its arrival time."""
    cust = draw(st.sampled_from(["c0", "c1"]))
    currency = draw(st.sampled_from(["USD", "USD", "USD", "JPY", "BHD"]))
    amount = draw(st.sampled_from([0, 1, 50, 999, 10_000, 12_345, 49_999])
                  | st.integers(0, 50_000))
    arrive = START + draw(st.integers(0, 60)) * DAY + draw(st.sampled_from([0, 0, 5 * HOUR]))
    # Usually issued when it arrives; sometimes it arrives late, even past its due date, or
    # is dated a little ahead.
    issued = arrive - draw(st.sampled_from([0, 0, 0, 0, DAY, 3 * DAY, 40 * DAY, -DAY]))
    issued = max(issued, START - 10 * DAY)
    rec: Record = {
        "type": "invoice.issued", "event_id": f"iss-{i}", "invoice_id": f"inv-{i}",
        "customer_id": cust, "amount": money(amount, currency, trim=draw(st.booleans())),
        "currency": currency, "issued_at": format_time(issued),
    }
    order = draw(st.sampled_from([None, "a", "a", "b"]))
    if order is not None:
        rec["order_id"] = f"{cust}-{order}"
    if draw(st.integers(0, 4)) == 0:
        rec["document"] = "debit_note"
    if draw(st.booleans()):
        rec["reseller_id"] = "res-1"
    product = draw(st.sampled_from([None, None, None, None, "flat", "domain_registration"]))
    if product is not None:
        rec["product"] = product
    request = draw(st.sampled_from(["none", "none", "system", "system", "manual"]))
    if request != "none":
        rec.update(origin="system" if request == "system" else "manual",
                   request_id=f"req-{i}", request_status="pending")
    if draw(st.integers(0, 4)) == 0:
        rec["due_at"] = format_time(issued + draw(st.integers(0, 20)) * DAY)
    if draw(st.integers(0, 4)) == 0:
        overrides: dict[str, Any] = {}
        for name in ("suspend_at", "delete_at", "request_cancel_at"):
            choice = draw(st.sampled_from(["absent", "absent", "off", "date"]))
            if choice == "off":
                overrides[name] = False
            elif choice == "date":  # often before due (the LogicBoxes example)
                overrides[name] = format_time(issued + draw(st.integers(0, 50)) * DAY)
        if draw(st.booleans()):
            overrides["reminder_every_days"] = draw(st.integers(1, 10) | st.just(False))
        rec["overrides"] = overrides
    return arrive, rec


EVENT_KINDS = ["pay_full", "pay_full", "pay_full", "pay_part", "pay_part", "pay_part",
               "pay_over", "reverse", "reverse", "adjust_up", "adjust_down", "cancel", "fail",
               "fail", "fail", "complete", "duplicate"]

WHOM = ["arrived"] * 7 + ["early"]  # for an invoice that has arrived, or one still to come
REVERSALS = ["all", "all", "part", "part", "too_much"]


@dataclass
class _Plan:
    """What the generator believes of an invoice, to draw plausible events for it."""

    currency: str
    amount: int  # minor units
    pending: bool = False
    paid: int = 0
    failures: int = 0


@st.composite
def scenarios(draw: st.DrawFn, max_invoices: int = 4, max_events: int = 26) -> Scenario:
    policy = draw(policies())
    n = draw(st.integers(1, max_invoices))
    issued = [draw(invoices(i)) for i in range(n)]
    plans = {
        rec["invoice_id"]: _Plan(rec["currency"],
                                 int(Decimal(rec["amount"]).scaleb(PLACES[rec["currency"]])),
                                 rec.get("request_status") == "pending")
        for _, rec in issued
    }
    plans[f"inv-{n}"] = _Plan("USD", 10_000)  # never issued: its events are orphans
    # Slots first (time, kind, whom), then contents in time order, so that each event is for
    # an invoice that has arrived (now and then for one still to come: held, maybe orphaned)
    # with amounts that follow what the generator believes is due at that moment.
    size = draw(st.integers(0, max_events))
    slots = draw(st.lists(
        st.tuples(st.integers(0, 125), st.sampled_from([0, 0, 0, 7 * HOUR]),
                  st.sampled_from(EVENT_KINDS), st.sampled_from(WHOM), st.integers(0, 15)),
        min_size=size, max_size=size))
    timeline: list[tuple[int, int, Record | None, str, str, int]] = [
        (at, 0, rec, "issue", "", 0) for at, rec in issued
    ]
    timeline += [(START + d * DAY + h, 1, None, kind, whom, pick)
                 for d, h, kind, whom, pick in slots]
    timeline.sort(key=lambda s: (s[0], s[1]))
    arrived: list[str] = []
    payments: list[tuple[str, str, int]] = []  # (invoice, payment_id, minor units standing)
    records: list[tuple[int, Record]] = []
    for k, (at, _, rec, kind, whom, pick) in enumerate(timeline):
        if rec is not None:
            records.append((at, rec))
            arrived.append(rec["invoice_id"])
            continue
        if kind == "duplicate":  # the same record again, same event_id: a redelivery
            if records:
                records.append((at, dict(records[pick % len(records)][1])))
            continue
        if kind == "reverse":
            if not payments:
                continue
            j = pick % len(payments)
            iid, pid, standing = payments[j]
            plan = plans[iid]
            amount = {"all": standing, "part": max(1, standing // 2),
                      "too_much": standing + 1}[draw(st.sampled_from(REVERSALS))]
            if amount <= standing:
                payments[j] = (iid, pid, standing - amount)
                plan.paid -= amount
            records.append((at, {"event_id": f"ev-{k}", "invoice_id": iid,
                                 "type": "payment.reversed", "payment_id": pid,
                                 "amount": money(max(amount, 1), plan.currency)}))
            continue
        if whom == "early":  # before its invoice (or for one never issued)
            waiting = [iid for iid in plans if iid not in arrived]
            iid = waiting[pick % len(waiting)]
        elif not arrived:
            continue
        else:
            choices = arrived
            if kind == "complete":
                choices = [i for i in arrived if plans[i].pending] or arrived
            iid = choices[pick % len(choices)]
        plan = plans[iid]
        cur = plan.currency
        due = plan.amount - plan.paid
        event: Record = {"event_id": f"ev-{k}", "invoice_id": iid}
        if kind.startswith("pay"):
            if kind == "pay_full" or due <= 1:
                amount = max(due, 1)
            elif kind == "pay_part":
                amount = draw(st.integers(1, due - 1))
            else:
                amount = max(due, 0) + draw(st.integers(1, 500))
            pid = f"pay-{k}"
            payments.append((iid, pid, amount))
            plan.paid += amount
            event.update(type="payment.applied", payment_id=pid, currency=cur,
                         amount=money(amount, cur, trim=draw(st.booleans())))
        elif kind.startswith("adjust"):
            if kind == "adjust_up":
                plan.amount += draw(st.sampled_from([1, 100, 2_500, 20_000]))
            else:
                plan.amount = draw(st.integers(0, plan.amount))
            event.update(type="invoice.adjusted", amount=money(plan.amount, cur))
        elif kind == "cancel":
            event.update(type="invoice.cancelled")
        elif kind == "fail":
            # Mostly the attempt dunning waits on, if it charged; now and then a stray one.
            plan.failures += 1
            attempt = draw(st.sampled_from([plan.failures] * 3 + [1, 2, 3]))
            event.update(type="charge.failed", attempt=attempt,
                         hard=draw(st.sampled_from([False, False, False, True])))
        else:
            plan.pending = False
            event.update(type="request.completed", without_payment=draw(st.booleans()))
        records.append((at, event))
    return Scenario(policy, tuple(records))


# -- an independent ledger ---------------------------------------------------------------------


@dataclass
class Book:
    currency: str
    amount: Decimal
    issued_by: str
    paid: Decimal = Decimal(0)
    payments: dict[str, Decimal] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    cancelled: bool = False

    @property
    def due(self) -> Decimal:
        return self.amount - self.paid


class Ledger:
    """What each invoice totals and has been paid, from the inputs and the rules of input
    handling (docs/rules.md "Input"): duplicates by event_id and payment_id, reversals of at
    most what stands, nothing after cancellation, events held until their invoice and dropped
    as orphans 7 days of logical time after they arrived."""

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.held: dict[str, list[tuple[int, Record]]] = {}
        self.clock = 0
        self.expired: list[str] = []  # event_ids dropped as orphans, in order
        # (amount, paid) states each invoice passed through during the current step.
        self.trail: dict[str, list[tuple[Decimal, Decimal]]] = {}

    def begin_step(self) -> None:
        self.trail = {iid: [(b.amount, b.paid)] for iid, b in self.books.items()}

    def _mark(self, iid: str) -> None:
        b = self.books[iid]
        self.trail.setdefault(iid, []).append((b.amount, b.paid))

    def tick(self, now: int) -> None:
        if now < self.clock:
            return
        self.clock = now
        # In the engine's order: invoices by when their first held event expires, then by id.
        for iid in sorted(self.held, key=lambda i: (min(at for at, _ in self.held[i]), i)):
            keep = [(at, rec) for at, rec in self.held[iid] if at + ORPHAN_AFTER > now]
            self.expired += [rec["event_id"] for at, rec in self.held[iid]
                             if at + ORPHAN_AFTER <= now]
            if keep:
                self.held[iid] = keep
            else:
                del self.held[iid]

    def event(self, rec: Record) -> None:
        iid = rec["invoice_id"]
        book = self.books.get(iid)
        if rec["type"] == "invoice.issued":
            if book is not None:
                return  # a redelivery or a second issue: dead-lettered or a duplicate
            cur = rec["currency"]
            self.books[iid] = Book(cur, quantize(rec["amount"], cur), rec["event_id"],
                                   quantize("0", cur))
            self._mark(iid)
            for _, held in self.held.pop(iid, []):
                self._apply(self.books[iid], held)
        elif book is None:
            waiting = self.held.setdefault(iid, [])
            if all(r["event_id"] != rec["event_id"] for _, r in waiting):
                waiting.append((self.clock, rec))
        else:
            self._apply(book, rec)

    def _apply(self, book: Book, rec: Record) -> None:
        eid, kind = rec["event_id"], rec["type"]
        if eid == book.issued_by or eid in book.seen or book.cancelled:
            return
        if kind == "payment.applied":
            if rec["currency"] != book.currency or rec["payment_id"] in book.payments:
                return
            amount = quantize(rec["amount"], book.currency)
            book.payments[rec["payment_id"]] = amount
            book.paid += amount
        elif kind == "payment.reversed":
            standing = book.payments.get(rec["payment_id"])
            amount = Decimal(rec["amount"])
            if standing is None or amount > standing:
                return
            book.payments[rec["payment_id"]] = standing - amount
            book.paid -= amount
        elif kind == "invoice.adjusted":
            book.amount = quantize(rec["amount"], book.currency)
        elif kind == "invoice.cancelled":
            book.cancelled = True
        else:
            return  # charge failures and request completions move no money
        book.seen.add(eid)
        self._mark(rec["invoice_id"])

    def observe(self, commands: list[m.Command]) -> None:
        """Cancellations the engine decides itself (request cancellation)."""
        for c in commands:
            v = c.value
            if v["type"] == "invoice.status" and v["status"] == "cancelled":
                self.books[v["invoice_id"]].cancelled = True


# -- running ----------------------------------------------------------------------------------


@dataclass
class Step:
    """One tick or record and what it did, with the ledger around it."""

    now: int
    record: Record | None  # None for a tick
    outcome: str
    commands: list[m.Command]
    dead: list[m.DeadLetter]
    settled_before: set[str]  # invoices cancelled before this step
    paid_after: set[str]  # invoices owing nothing (and not cancelled) after this step
    trail: dict[str, list[tuple[Decimal, Decimal]]]


@dataclass
class Run:
    driver: Driver
    ledger: Ledger
    steps: list[Step]

    @property
    def log(self) -> list[m.Command]:
        return self.driver.log


def run(sc: Scenario, every: int | None = None,
        check: Callable[[Driver, Step], None] | None = None) -> Run:
    """Tick to each record's time before sending it; with `every` (seconds), tick that often
    in between too; finally tick at END. `check` looks at the engine after every step."""
    d = Driver(sc.policy)
    ledger = Ledger()
    steps: list[Step] = []

    def step(now: int, record: Record | None) -> None:
        cancelled = {iid for iid, b in ledger.books.items() if b.cancelled}
        ledger.begin_step()
        if record is None:
            ledger.tick(now)
            result = d.tick(format_time(now))
        else:
            ledger.event(record)
            result = d.send(record)
        ledger.observe(result.commands)
        paid = {iid for iid, b in ledger.books.items() if b.due <= 0 and not b.cancelled}
        steps.append(Step(now, record, result.outcome, result.commands, result.dead_letters,
                          cancelled, paid, ledger.trail))
        if check is not None:
            check(d, steps[-1])

    clock = START
    step(clock, None)
    for at, record in sc.records:
        while every and clock + every < at:
            clock += every
            step(clock, None)
        if at > clock:
            clock = at
            step(clock, None)
        step(clock, record)
    while every and clock + every < END:
        clock += every
        step(clock, None)
    step(END, None)
    return Run(d, ledger, steps)
