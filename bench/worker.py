"""Benchmark of the streaming worker against a plain aiokafka loop (`make bench`).

One embedded broker, one input (a billing run: invoices, partial and full payments, daily
ticks), measured in one run:
  (a) a plain aiokafka consume -> decode -> produce loop over the four input topics;
  (b) `dunning worker`: validation, re-keying onto its internal log, the rules, subject holds,
      state changelogs, commands out.
Prints events/s for both and their ratio (goal: the worker at >= 0.5x the plain loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from multiprocessing import Process
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.core import POLICY, billing_run
from dunning.streams import topics
from dunning.streams.broker import EmbeddedBroker, free_port

RATIO_GOAL = 0.5
PLAIN_OUT = "bench.plain"


def say(text: str) -> None:
    print(text, flush=True)


async def create_topics(bootstrap: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, partitions, 1)
                               for t in (*topics.INPUTS, *topics.OUTPUTS, PLAIN_OUT)])
    await admin.close()


def feed(bootstrap: str, invoices: int, days: int) -> None:
    """The billing system: sends the run in time order, as fast as it can, from a process of
    its own while the consumer under test runs (preloaded topics would be read in whatever
    order fetches interleave them: every tick first, payments before their invoices)."""
    asyncio.run(load(bootstrap, billing_run(invoices, days)))


async def load(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=1 << 20)
    await producer.start()
    for topic, key, value in records:
        await producer.send(topic, value, key=key or None)
    await producer.flush()
    await producer.stop()


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


def events_counted(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("dunning_events_total{"))


def worker_run(broker: EmbeddedBroker, total: int, partitions: int, policy: str,
               start_feed: Any, workers: int = 1) -> float:
    """Start `workers` workers in one group, then the feed; events/s from the first event to
    the last, as their /metrics count them (each input record is counted once, ticks too)."""
    ports = [free_port() for _ in range(workers)]
    folder = os.path.dirname(policy)
    logs = [open(os.path.join(folder, f"bench-worker-{n}.log"), "wb")  # noqa: SIM115
            for n in range(workers)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "dunning.cli", "worker", "--broker", broker.url,
         "--app-id", "bench", "--web-port", str(port), "--partitions", str(partitions),
         "--policy", policy, "--rebalance-timeout", "2", "--session-timeout", "6",
         "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT) for port, log in zip(ports, logs, strict=True)]

    def check() -> None:
        for n, proc in enumerate(procs):
            if proc.poll() is not None:
                raise RuntimeError(f"worker {n} exited; its log: {logs[n].name}")

    billing = None
    try:
        while not all(_healthy(port) for port in ports):
            check()
            time.sleep(0.1)
        time.sleep(1)  # let the group settle after the last join
        billing = start_feed()
        started = None
        last_report = time.monotonic()
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            counted = sum(max(0.0, events_counted(port)) for port in ports)
            if started is None and counted > 0:
                started = time.perf_counter()
            if counted >= total:
                assert started is not None
                return total / (time.perf_counter() - started)
            if time.monotonic() - last_report > 5:
                say(f"   worker: {counted:,.0f}/{total:,} events")
                last_report = time.monotonic()
            check()
            time.sleep(0.02)
        raise TimeoutError("the worker did not finish")
    finally:
        if billing is not None:
            billing.join()
        for proc in procs:
            proc.terminate()
        for proc, log in zip(procs, logs, strict=True):
            proc.wait(timeout=30)
            log.close()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start_feed(broker: EmbeddedBroker, args: argparse.Namespace) -> Process:
    billing = Process(target=feed, args=(broker.bootstrap, args.invoices, args.days))
    billing.start()
    return billing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    records = billing_run(args.invoices, args.days)
    say(f"3. the worker vs a plain aiokafka loop: {len(records):,} records "
        f"({args.invoices:,} invoices, {args.days} daily ticks), {args.partitions} partitions")
    policy = os.path.join(os.path.dirname(__file__), "..", ".dunning", "bench-policy.toml")
    os.makedirs(os.path.dirname(policy), exist_ok=True)
    with open(policy, "w") as f:
        f.write(POLICY)

    def fresh_broker() -> EmbeddedBroker:
        """Each measurement on a broker of its own, so each reads only its own feed."""
        broker = EmbeddedBroker()
        asyncio.run(create_topics(broker.bootstrap, args.partitions))
        return broker

    broker = fresh_broker()
    try:
        say("   (a) plain loop: consume, decode, produce (input fed live)")
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
                "group (the same input fed live)")
            results[workers] = worker_run(broker, len(records), args.partitions, policy,
                                          lambda b=broker: start_feed(b, args), workers)
            say(f"       {results[workers]:>10,.0f} events/s "
                f"({results[workers] / plain:.2f}x the plain loop)")
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
