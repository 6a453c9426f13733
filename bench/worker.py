"""Benchmark of the streaming worker against a plain aiokafka loop (`make bench`).

One embedded broker, one input (a billing run: invoices, partial and full payments, daily
ticks), measured in one run:
  (a) a plain aiokafka consume -> decode -> produce loop over the four input topics;
  (b) `dunning worker`: validation, re-keying onto its internal log, the rules, subject holds,
      state changelogs, commands out, and the command ledger in PostgreSQL.
Prints events/s for both and their ratio (goal: the worker at >= 0.5x the plain loop), and
checks that the worker did the engine's work: its commands by type must be the pure engine's
for the same input, and the ledger must hold each of them once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from multiprocessing import Process
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.core import POLICY, billing_run
from dunning.config.policy import parse_policy
from dunning.config.settings import AT_LEAST_ONCE
from dunning.demo.feed import Feeder, is_tick
from dunning.ledger.db import embedded_url, prepare
from dunning.rules.engine import Engine
from dunning.streams import codec, topics
from dunning.streams.broker import Broker, embedded_broker, free_port

RATIO_GOAL = 0.5
PLAIN_OUT = "bench.plain"
APP_ID = "bench"


def say(text: str) -> None:
    print(text, flush=True)


async def create_topics(bootstrap: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, partitions, 1)
                               for t in (*topics.INPUTS, *topics.OUTPUTS, PLAIN_OUT)])
    await admin.close()


def feed(bootstrap: str, group: str, invoices: int, days: int, tick_days: int) -> None:
    """The billing system: sends the run in time order, as fast as the consumer takes it, from
    a process of its own. Kafka orders records within a partition only: a tick sent freely
    would overtake the days of invoices and payments before it (and the next day's records
    it), and the worker would do other, lesser work than the engine. So around each tick the
    feed waits until `group` has taken (committed) everything sent: on the worker that is its
    sequencer's commit, while its invoice agent works on through the backlog."""
    feeder = Feeder(bootstrap, group)
    started, waited = time.perf_counter(), 0.0

    def barrier() -> None:
        nonlocal waited
        since = time.perf_counter()
        feeder.barrier(topics.INPUTS, 300)
        waited += time.perf_counter() - since

    try:
        run: list[tuple[str, bytes | None, bytes]] = []
        for topic, key, value in billing_run(invoices, days, tick_days):
            if is_tick((topic, key, value)):
                if run:
                    feeder.send(run)
                    run = []
                    barrier()
                feeder.send([(topic, None, value)])
                barrier()
            else:
                run.append((topic, key or None, value))
        feeder.send(run)
    finally:
        feeder.close()
    say(f"   feed: all sent in {time.perf_counter() - started:.1f} s, {waited:.1f} s of it "
        "waiting for the group at ticks")


def feed_freely(bootstrap: str, invoices: int, days: int, tick_days: int) -> None:
    """The same run in time order with no waiting: for the plain loop, which minds no order
    (the ordered feed would hold it to the feed's pace)."""
    asyncio.run(load(bootstrap, billing_run(invoices, days, tick_days)))


async def load(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=1 << 20)
    await producer.start()
    for topic, key, value in records:
        await producer.send(topic, value, key=key or None)
    await producer.flush()
    await producer.stop()


def expected_commands(invoices: int, days: int, tick_days: int) -> dict[str, str]:
    """The pure engine's commands for the run, in the order the feed keeps: id -> type."""
    engine, commands = Engine(parse_policy(POLICY, "bench")), {}
    for topic, key, value in billing_run(invoices, days, tick_days):
        for command in codec.feed(engine, topic, key, value).commands:
            commands[command.value["command_id"]] = command.value["type"]
    return commands


async def plain_loop(bootstrap: str, total: int) -> float:
    """Consume the input topics in a group, decode each record, produce one record for it."""
    consumer = AIOKafkaConsumer(*topics.INPUTS, bootstrap_servers=bootstrap, group_id="plain",
                                auto_offset_reset="earliest", max_poll_records=5000,
                                fetch_max_wait_ms=100, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=1 << 20)
    await producer.start()
    await consumer.start()
    done, started = 0, None
    try:
        while done < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if started is None and batch:
                started = time.perf_counter()
            for records in batch.values():
                for r in records:
                    doc = orjson.loads(r.value)
                    await producer.send(PLAIN_OUT, orjson.dumps(doc), key=r.key)
                done += len(records)
            await producer.flush()
            await consumer.commit()
        assert started is not None
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


def counted(port: int) -> tuple[float, Counter[str]]:
    """A worker's events taken and commands emitted by type, from its /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0, Counter()
    events, commands = 0.0, Counter[str]()
    for line in text.splitlines():
        if line.startswith("dunning_events_total{"):
            events += float(line.rsplit(" ", 1)[1])
        elif line.startswith("dunning_commands_total{"):
            kind = line.split('type="', 1)[1].split('"', 1)[0]
            commands[kind] += int(float(line.rsplit(" ", 1)[1]))
    return events, commands


class Mismatch(Exception):
    """The worker's output is not the engine's: its figure would measure other work."""


async def ledger_count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM command_log"))
    finally:
        await conn.close()


async def ledger_ids(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        return {r["command_id"]: r["type"]
                for r in await conn.fetch("SELECT command_id, type FROM command_log")}
    finally:
        await conn.close()


async def empty_ledger(url: str) -> None:
    await prepare(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE command_log, invoices")
    finally:
        await conn.close()


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_run(broker: Broker, total: int, expected: dict[str, str], partitions: int,
               policy: str, database_url: str, start_feed: Any,
               workers: int = 1, guarantee: str = AT_LEAST_ONCE) -> tuple[float, float, float]:
    """Start `workers` workers in one group, then the feed. Returns events/s from the first
    event taken to the last command out (as their /metrics count them: each input record
    once, ticks too; commands with any duplicates a rebalance replays), and the seconds from
    there until the ledger held every command, and how busy the workers' processes were
    meanwhile (CPU seconds per second, per worker: near 1 means the worker, not the feed,
    set the pace). Raises Mismatch unless the ledger holds exactly
    the engine's command ids."""
    asyncio.run(empty_ledger(database_url))
    want = Counter(expected.values())
    ports = [free_port() for _ in range(workers)]
    folder = os.path.dirname(policy)
    logs = [open(os.path.join(folder, f"bench-worker-{n}.log"), "wb")  # noqa: SIM115
            for n in range(workers)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "dunning.cli", "worker", "--broker", broker.url,
         "--app-id", APP_ID, "--web-port", str(port), "--partitions", str(partitions),
         "--policy", policy, "--database-url", database_url, "--rebalance-timeout", "2",
         "--session-timeout", "6", "--log-level", "warn", "--max-tick-jump", "0",
         "--guarantee", guarantee],
        stdout=log, stderr=subprocess.STDOUT) for port, log in zip(ports, logs, strict=True)]

    def check() -> None:
        for n, proc in enumerate(procs):
            if proc.poll() is not None:
                raise RuntimeError(f"worker {n} exited; its log: {logs[n].name}")

    billing = None
    try:
        while not all(healthy(port) for port in ports):
            check()
            time.sleep(0.1)
        time.sleep(1)  # let the group settle after the last join
        billing = start_feed()
        started = None
        last_report = last_change = time.monotonic()
        deadline = time.monotonic() + 900
        seen: tuple[float, Counter[str]] = (0.0, Counter())
        while True:
            now = time.monotonic()
            events, commands = 0.0, Counter[str]()
            for port in ports:
                e, c = counted(port)
                events += e
                commands += c
            if started is None and events > 0:
                started = time.perf_counter()
                cpu_started = sum(cpu_seconds(p.pid) for p in procs)
            if events >= total and commands >= want:
                break
            if (events, commands) != seen:
                seen, last_change = (events, commands), now
            elif events >= total and now - last_change > 30:
                short = {k: (commands[k], n) for k, n in want.items() if commands[k] < n}
                raise Mismatch(f"the worker stopped short of the engine's commands "
                               f"(emitted, expected): {short}")
            if now > deadline:
                raise TimeoutError("the worker did not finish")
            if now - last_report > 5:
                say(f"   worker: {events:,.0f}/{total:,} events, "
                    f"{commands.total():,}/{want.total():,} commands")
                last_report = now
            check()
            time.sleep(0.2)  # a scrape costs the worker a pass over its invoices
        finished = time.perf_counter()
        assert started is not None
        busy = ((sum(cpu_seconds(p.pid) for p in procs) - cpu_started)
                / (finished - started) / workers)
        while asyncio.run(ledger_count(database_url)) < len(expected):
            if time.monotonic() > deadline:
                raise TimeoutError("the ledger did not catch up")
            check()
            time.sleep(0.1)
        caught_up = time.perf_counter() - finished
        recorded = asyncio.run(ledger_ids(database_url))
        if recorded != expected:
            missing = len(expected.keys() - recorded.keys())
            extra = len(recorded.keys() - expected.keys())
            raise Mismatch(f"the ledger is not the engine's commands: {missing:,} missing, "
                           f"{extra:,} not the engine's")
        return total / (finished - started), caught_up, busy
    finally:
        if billing is not None:
            billing.join()
        for proc in procs:
            proc.terminate()
        for proc, log in zip(procs, logs, strict=True):
            proc.wait(timeout=30)
            log.close()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start_feed(broker: Broker, args: argparse.Namespace,
               group: str | None = None) -> Process:
    """The feed in a process of its own: ordered for `group`, or free."""
    billing = (Process(target=feed, args=(broker.bootstrap, group, args.invoices, args.days,
                                              args.tick_days))
               if group else
               Process(target=feed_freely, args=(broker.bootstrap, args.invoices, args.days,
                                                 args.tick_days)))
    billing.start()
    return billing


def run_arguments(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The billing run a worker benchmark feeds, from its command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--tick-days", type=int, default=5,
                        help="days between ticks (each tick costs the ordered feed a wait)")
    parser.add_argument("--partitions", type=int, default=4)
    return parser.parse_args(argv)


def bench_files() -> tuple[str, str]:
    """The ledger's database URL (the embedded server under .dunning/) and the policy file."""
    folder = os.path.join(os.path.dirname(__file__), "..", ".dunning")
    os.makedirs(folder, exist_ok=True)
    policy = os.path.join(folder, "bench-policy.toml")
    with open(policy, "w") as f:
        f.write(POLICY)
    return embedded_url(folder, APP_ID), policy


def main(argv: list[str] | None = None) -> int:
    args = run_arguments(argv, __doc__.splitlines()[0])
    records = billing_run(args.invoices, args.days, args.tick_days)
    say(f"3. the worker vs a plain aiokafka loop: {len(records):,} records "
        f"({args.invoices:,} invoices, {args.days} days, a tick every {args.tick_days}), "
        f"{args.partitions} partitions")
    expected = expected_commands(args.invoices, args.days, args.tick_days)
    database_url, policy = bench_files()

    def fresh_broker() -> Broker:
        """Each measurement on a broker of its own, so each reads only its own feed."""
        broker = embedded_broker()
        asyncio.run(create_topics(broker.bootstrap, args.partitions))
        return broker

    broker = fresh_broker()
    try:
        say("   (a) plain loop: consume, decode, produce (input fed live, freely)")
        billing = start_feed(broker, args)
        plain = asyncio.run(plain_loop(broker.bootstrap, len(records)))
        billing.join()
        say(f"       {plain:>10,.0f} events/s")
    finally:
        broker.stop()
    results = {}
    for workers in (1, 2):
        broker = fresh_broker()
        try:
            say(f"   (b) dunning worker, {workers} process{'es' if workers > 1 else ''} in one "
                "group (the same input fed live, each tick once the group has the days before)")
            rate, ledger_after, busy = worker_run(
                broker, len(records), expected, args.partitions, policy, database_url,
                lambda b=broker: start_feed(b, args, APP_ID), workers)
            results[workers] = rate
            say(f"       {rate:>10,.0f} events/s ({rate / plain:.2f}x the plain loop), each "
                f"worker busy {busy:.0%} of the time; {len(expected):,} commands, the "
                f"engine's; the ledger had them all {ledger_after:.1f} s later")
        finally:
            broker.stop()
    worker = results[1]
    ratio = worker / plain
    ok = ratio >= RATIO_GOAL
    say(f"   ratio one worker / plain: {ratio:.2f}x (goal >= {RATIO_GOAL}x): "
        f"{'met' if ok else 'NOT met'}; two workers on this machine's two cores: "
        f"{results[2] / plain:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
