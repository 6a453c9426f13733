"""The worker's memory across a long run on a fixed set of invoices (`make bench`).

One embedded broker and one `dunning worker` (memory store). Invoices are issued, then round
after round of a small partial payment to each and a tick go to the same invoices, far from
their due dates: state grows only by what each payment adds (its id, kept for reversals), so
the worker's resident memory should hardly grow either.
Prints the RSS after issuing (bytes per open invoice) and after each round, and the growth
per event from the end of the warm-up (two rounds) to the end against what the state itself
gains per event (the reference engine and its table rows, measured in the same run; goal: at
most 1.25x), with the commands of the whole run checked equal to the pure engine's.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from datetime import date, timedelta

import orjson

from bench.core import say
from bench.worker import healthy
from dunning.config.policy import parse_policy
from dunning.demo.feed import Feeder
from dunning.rules.engine import Engine
from dunning.streams import codec, topics
from dunning.streams.broker import embedded_broker, free_port
from dunning.tables.partitions import apply_rows, engine_rows

# The worker's memory may grow per event by what its state gains, and a quarter more.
GROWTH_GOAL = 1.25
WARM_UP = 2  # rounds: the allocator's arenas and Faust's buffers settle
APP_ID = "bench-memory"
# Steady state: invoices far from due, so the rounds change nothing but what a payment adds
# (its id and event id, kept for reversals and duplicates: about 100 B each).
POLICY = """
[defaults]
terms_days = 365
"""



def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def issued(i: int) -> tuple[str, bytes, bytes]:
    iid = f"inv-{i}"
    return (topics.INVOICES, iid.encode(), orjson.dumps({
        "type": "invoice.issued", "event_id": f"i-{i}", "invoice_id": iid,
        "customer_id": f"c-{i % 5000}", "amount": "1000.00",
        "currency": "USD", "issued_at": "2026-01-01T00:00:00Z"}))


def paid(i: int, round_: int) -> tuple[str, bytes, bytes]:
    iid = f"inv-{i}"
    return (topics.PAYMENTS, iid.encode(), orjson.dumps({
        "type": "payment.applied", "event_id": f"p-{i}-{round_}", "invoice_id": iid,
        "payment_id": f"p-{i}-{round_}", "amount": "0.01", "currency": "USD"}))


def tick(day: date) -> tuple[str, None, bytes]:
    return (topics.CLOCK, None, orjson.dumps({
        "type": "clock.tick", "event_id": f"t-{day}", "now": f"{day}T00:00:00Z"}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="dunning-bench-memory-")
    policy = os.path.join(folder, "policy.toml")
    with open(policy, "w") as f:
        f.write(POLICY)
    engine = Engine(parse_policy(POLICY, "bench"))
    engine.touched = set()
    store: dict[bytes, bytes] = {}  # the table's rows, as the worker keeps them
    expected: Counter[str] = Counter()
    state: list[int] = []  # bytes the engine and its rows hold after each round

    def reference(records: list[tuple[str, bytes | None, bytes]]) -> None:
        for topic, key, value in records:
            for c in codec.feed(engine, topic, key, value).commands:
                expected[c.value["type"]] += 1
        apply_rows(store, engine_rows(engine, 0, set()))
        gc.collect()
        state.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()  # for the whole run: what the reference holds at each round's end

    say(f"memory: {args.invoices:,} invoices, then {args.rounds} rounds of a payment to each "
        f"and a tick (the first {WARM_UP} warm up)")
    broker = embedded_broker()
    port = free_port()
    log = open(os.path.join(folder, "worker.log"), "wb")  # noqa: SIM115 - the worker's
    worker = subprocess.Popen(
        [sys.executable, "-m", "dunning.cli", "worker", "--broker", broker.url,
         "--app-id", APP_ID, "--web-port", str(port), "--policy", policy,
         "--log-level", "warn", "--max-tick-jump", "0"], stdout=log, stderr=subprocess.STDOUT)
    client = Feeder(broker.bootstrap, APP_ID)
    try:
        deadline = time.monotonic() + 120
        while not healthy(port):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; its log: {log.name}")
            time.sleep(0.2)
        day = date(2026, 1, 1)
        started = rss(worker.pid)
        batch: list[tuple[str, bytes | None, bytes]] = [tick(day)]
        batch += [issued(i) for i in range(args.invoices)]
        reference(batch)
        client.play(batch, timeout=600)
        after_issue = rss(worker.pid)
        say(f"   started: {started / 2**20:,.0f} MiB; after issuing: "
            f"{after_issue / 2**20:,.0f} MiB, "
            f"{(after_issue - started) / args.invoices:,.0f} B per open invoice")
        figures = []
        for round_ in range(args.rounds):
            day += timedelta(days=7)
            batch = [paid(i, round_) for i in range(args.invoices)] + [tick(day)]
            reference(batch)
            client.play(batch, timeout=600)
            figures.append(rss(worker.pid))
            say(f"   round {round_ + 1} ({day}): {figures[-1] / 2**20:,.0f} MiB")
        emitted = Counter(c["type"] for c in client.commands())
    finally:
        worker.kill()
        worker.wait()
        client.close()
        broker.stop()
    if emitted != expected:
        say(f"   the worker's commands are not the engine's: {emitted} vs {expected}")
        return 1
    base = figures[WARM_UP - 1]
    events = args.invoices * (args.rounds - WARM_UP)
    worker_per_event = (figures[-1] - base) / events
    # What the state itself gains meanwhile (each payment's id, kept for reversals, and its
    # event id, for duplicates), measured on the reference engine and its rows in this run.
    state_per_event = (state[-1] - state[WARM_UP]) / events
    ratio = worker_per_event / state_per_event
    ok = ratio <= GROWTH_GOAL
    say(f"   {sum(expected.values()):,} commands, the engine's; after warm-up, {events:,} "
        f"events: {base / 2**20:,.0f} -> {figures[-1] / 2**20:,.0f} MiB, "
        f"{figures[-1] / base - 1:+.1%}: {worker_per_event:+,.0f} B per event, where the "
        f"state itself gains {state_per_event:+,.0f} B: {ratio:.2f}x (goal at most "
        f"{GROWTH_GOAL:.2f}x) {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
