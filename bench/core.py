"""Benchmark of the pure collection core (`make bench`).

Prints, from one run on this machine:
  1. events/s through the engine: raw records (decode + rules) and decoded events (rules only),
     for a billing run of invoices, partial and full payments and daily ticks;
  2. the cost of one tick that finds 10 000 invoices due, among 10 000 and among 1 000 000
     open invoices, and their ratio (goal: at most 2x: a tick costs what is due).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

import orjson

from dunning.config.policy import parse_policy
from dunning.rules import model as m
from dunning.rules.engine import Engine
from dunning.rules.times import DAY, format_time, parse_time
from dunning.runtime import GC_THRESHOLDS, tune_gc
from dunning.streams import topics
from dunning.streams.codec import decode, feed

# The throughput run uses the contract's sample policy plus a late fee and a limitation
# stage, so every kind of one-shot action fires somewhere.
POLICY = """
[defaults]
terms_days = 30
charge_retry_days = [3, 5, 7]
due_soon_days = [3]
late_fee_percent = "1.5"
limit_after_days = 5
suspend_after_days = 15
delete_after_days = 60
request_cancel_after_days = 9
notify_reseller = true

[debit_note]
reminder_every_days = 5
"""
# For the tick cost only one stage fires, so both ticks do the same work per due invoice.
TICK_POLICY = """
[defaults]
terms_days = 30
due_soon_days = [3]
suspend_after_days = 15
"""
START = parse_time("2026-01-01T00:00:00Z")
EVENTS_GOAL = 150_000
TICK_RATIO_GOAL = 2.0


def say(text: str) -> None:
    print(text, flush=True)


def progress(label: str, done: int, total: int) -> None:
    if sys.stdout.isatty():
        print(f"\r  {label}: {done * 100 // total:3d}%", end="" if done < total else "\n",
              flush=True)


def billing_run(invoices: int, days: int, tick_days: int = 1) -> list[tuple[str, bytes, bytes]]:
    """Invoices issued over the first days; most paid on time, some late, in part or never
    (as in a telecom billing run); a quarter sold through a reseller; a tick every
    `tick_days` days."""
    records: list[tuple[int, str, bytes, bytes]] = []
    for i in range(invoices):
        iid = f"inv-{i}"
        issued = START + (i % 5) * DAY
        key = iid.encode()
        amount = 50 + (i % 97)
        customer = i % (invoices // 2 + 1)  # most customers have two invoices
        records.append((issued, topics.INVOICES, key, orjson.dumps({
            "type": "invoice.issued", "event_id": f"i-{i}", "invoice_id": iid,
            "customer_id": f"c-{customer}", "amount": f"{amount}.00",
            "currency": "USD", "issued_at": format_time(issued),
            # A customer's reseller is the customer's, on each of its invoices.
            **({"reseller_id": f"r-{customer % 7}"} if customer % 4 == 0 else {}),
        })))
        fate = (0, 0, 0, 0, 0, 0, 1, 1, 2, 3)[i % 10]  # on time, late in two parts, part, never
        if fate == 0:
            records.append((issued + 10 * DAY, topics.PAYMENTS, key,
                            _payment(i, 0, iid, f"{amount}.00")))
        elif fate in (1, 2):
            records.append((issued + 20 * DAY, topics.PAYMENTS, key,
                            _payment(i, 0, iid, "20.00")))
            if fate == 1:
                records.append((issued + 40 * DAY, topics.PAYMENTS, key,
                                _payment(i, 1, iid, f"{amount - 20}.00")))
    for d in range(0, days + 1, tick_days):
        now = START + d * DAY
        records.append((now, topics.CLOCK, b"", orjson.dumps({
            "type": "clock.tick", "event_id": f"t-{d}", "now": format_time(now)})))
    # Stable sort by time; a day's tick comes before that day's events.
    records.sort(key=lambda r: (r[0], r[1] != topics.CLOCK))
    return [(t, k, v) for _, t, k, v in records]


def _payment(i: int, n: int, iid: str, amount: str) -> bytes:
    return orjson.dumps({"type": "payment.applied", "event_id": f"p-{i}-{n}",
                         "invoice_id": iid, "payment_id": f"p-{i}-{n}", "amount": amount,
                         "currency": "USD"})


def bench_events(invoices: int, days: int) -> tuple[float, float]:
    say(f"1. events/s: {invoices:,} invoices over {days} days of daily ticks")
    records = billing_run(invoices, days)
    policy = parse_policy(POLICY, "bench")
    events = []
    for topic, key, value in records:
        event = decode(topic, key, value)
        assert not isinstance(event, m.DeadLetter), event
        events.append(event)

    def run_raw() -> tuple[float, int]:
        engine, commands = Engine(policy), 0
        gc.collect()
        started = time.perf_counter()
        for n, (topic, key, value) in enumerate(records):
            commands += len(feed(engine, topic, key, value).commands)
            if n % 50_000 == 0:
                progress("raw records", n, len(records))
        elapsed = time.perf_counter() - started
        progress("raw records", len(records), len(records))
        return len(records) / elapsed, commands

    def run_decoded() -> tuple[float, int]:
        engine, commands = Engine(policy), 0
        gc.collect()
        started = time.perf_counter()
        for event in events:
            commands += len(engine.handle(event).commands)
        return len(events) / (time.perf_counter() - started), commands

    raw, commands_raw = run_raw()
    decoded, commands_decoded = run_decoded()
    assert commands_raw == commands_decoded
    per_event = commands_raw / len(records)
    say(f"   {len(records):,} records -> {commands_raw:,} commands ({per_event:.1f} per event)")
    say(f"   decode + rules : {raw:>10,.0f} events/s  {raw * per_event:>10,.0f} commands/s")
    say(f"   rules only     : {decoded:>10,.0f} events/s  {decoded * per_event:>10,.0f} commands/s")
    return raw, decoded


def _open_engine(due: int, later: int, groups: int = 5) -> tuple[Engine, list[int]]:
    """`groups` x `due` invoices whose due-soon falls on one day per group; `later` due long
    after. Each group is due on its own day so one engine serves several timed ticks."""
    engine = Engine(parse_policy(TICK_POLICY, "bench"))
    total = due * groups + later
    for i in range(total):
        group = i if i < due * groups else -1
        issued = START + (group // due) * DAY if group >= 0 else START + 200 * DAY
        engine.handle(m.InvoiceIssued(
            type="invoice.issued", event_id=f"i-{i}", invoice_id=f"inv-{i}",
            customer_id=f"c-{i}", amount=_HUNDRED,
            currency="USD", issued_at=issued,
        ))
        if i % 100_000 == 0:
            progress(f"{total:,} open invoices", i, total)
    progress(f"{total:,} open invoices", total, total)
    # Due-soon is 3 days before due: days 27..31 after START for the five groups.
    return engine, [START + (27 + g) * DAY for g in range(groups)]


def _tick(engine: Engine, now: int) -> tuple[float, int]:
    gc.collect()
    started = time.perf_counter()
    result = engine.handle(m.ClockTick(type="clock.tick", event_id=f"t-{now}", now=now))
    return time.perf_counter() - started, len(result.commands)


def bench_ticks(due: int, large: int) -> float:
    say(f"2. one tick with {due:,} invoices due, among {due:,} vs {large:,} open invoices")
    small_times, large_times = [], []
    engine, days = _open_engine(due, large - 5 * due)
    say("   timing the large engine's ticks")
    for day in days:
        elapsed, commands = _tick(engine, day)
        large_times.append(elapsed)
        assert commands >= due, commands
    del engine
    gc.collect()
    for _ in range(5):
        engine, days = _open_engine(due, 0, groups=1)
        elapsed, commands = _tick(engine, days[0])
        small_times.append(elapsed)
        assert commands >= due, commands
        del engine
    small, big = statistics.median(small_times), statistics.median(large_times)
    ratio = big / small
    say(f"   tick among {due:,} open     : {small * 1000:8.1f} ms (median of 5)")
    say(f"   tick among {large:,} open : {big * 1000:8.1f} ms (median of 5)")
    say(f"   ratio                    : {ratio:8.2f}x  (goal <= {TICK_RATIO_GOAL}x)")
    return ratio


_HUNDRED = m.Decimal("100.00")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--open", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    tune_gc()  # as the worker runs
    say(f"gc thresholds {GC_THRESHOLDS} (as the worker sets them)")
    raw, decoded = bench_events(args.invoices, args.days)
    ratio = bench_ticks(args.due, args.open)
    say("summary")
    ok_events = decoded >= EVENTS_GOAL
    ok_ticks = ratio <= TICK_RATIO_GOAL
    say(f"   rules only {decoded:,.0f} events/s (goal >= {EVENTS_GOAL:,}): "
        f"{'met' if ok_events else 'NOT met'}; with decoding {raw:,.0f} events/s")
    say(f"   tick cost ratio {ratio:.2f}x (goal <= {TICK_RATIO_GOAL}x): "
        f"{'met' if ok_ticks else 'NOT met'}")
    return 0 if ok_events and ok_ticks else 1


if __name__ == "__main__":
    raise SystemExit(main())
