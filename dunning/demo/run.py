"""`dunning demo`: a billing cycle end to end on embedded defaults.

Starts the embedded broker and PostgreSQL and a worker, feeds it a simulated customer base day
by day (a tick, then the day's invoices, requests and payments), runs the pure engine on the
same input alongside, and at the end prints the collection KPIs from the worker's ledger and
whether the worker's commands are the engine's. Everything it started is stopped at the end,
also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import asyncpg

from dunning.config.policy import Policy
from dunning.demo import kpis
from dunning.demo.check import Comparison, compare
from dunning.demo.feed import Feeder
from dunning.demo.simulate import simulate
from dunning.ledger.db import database_of, embedded_url
from dunning.rules.engine import Engine
from dunning.streams.broker import EmbeddedBroker, free_port


@dataclass
class Outcome:
    kpis: kpis.Kpis
    check: Comparison
    records: int
    seconds: float


def say(text: str = "") -> None:
    print(text, flush=True)


class WorkerProcess:
    def __init__(self, broker: EmbeddedBroker, app_id: str, url: str, policy: str | None,
                 partitions: int, log_path: str) -> None:
        self.port = free_port()
        self.log = open(log_path, "wb")  # noqa: SIM115 - the worker writes it while it runs
        args = [sys.executable, "-m", "dunning.cli", "worker", "--broker", broker.url,
                "--app-id", app_id, "--web-port", str(self.port), "--web-host", "127.0.0.1",
                "--database-url", url, "--partitions", str(partitions),
                "--rebalance-timeout", "2", "--session-timeout", "6", "--log-level", "warn"]
        if policy:
            args += ["--policy", policy]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health",
                                            timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the worker did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def fresh_database(url: str) -> None:
    """The demo's database, emptied: each run starts from nothing."""
    name = database_of(url)
    admin = await asyncpg.connect(url, database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def ledger_count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM command_log")
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


def progress(day: int, days: int, records: int, started: float) -> None:
    """A bar with the logical day and events/s: redrawn in a terminal, every tenth day in a
    log."""
    width = 30
    done = (day + 1) * width // days
    rate = records / max(1e-9, time.monotonic() - started)
    line = (f"  day {day + 1:3d}/{days}  [{'#' * done}{'.' * (width - done)}]"
            f"  {records:,} events  {rate:,.0f} events/s")
    last = day + 1 == days
    if sys.stdout.isatty():
        print("\r" + line, end="\n" if last else "", flush=True)
    elif last or day % 10 == 9:
        print(line, flush=True)


def run(policy: Policy, policy_path: str | None, customers: int, days: int, seed: int,
        data_dir: str = ".dunning", partitions: int = 4, app_id: str = "demo") -> Outcome:
    os.makedirs(data_dir, exist_ok=True)
    sim = simulate(seed, customers, days)
    say(f"dunning demo: {customers:,} customers over {days} days (seed {seed}), "
        f"{sim.invoices:,} invoices")
    say("  starting the embedded broker, PostgreSQL and a worker ...")
    broker = EmbeddedBroker()
    worker = None
    feeder = None
    try:
        url = embedded_url(data_dir, app_id)
        asyncio.run(fresh_database(url))
        worker = WorkerProcess(broker, app_id, url, policy_path, partitions,
                               os.path.join(data_dir, f"{app_id}-worker.log"))
        worker.wait_healthy()
        feeder = Feeder(broker.bootstrap, app_id)
        engine = Engine(policy)
        expected: list[dict[str, Any]] = []
        records, started = 0, time.monotonic()
        for day, todays in sim.script():
            for topic, key, value in todays:
                expected += [c.value for c in engine.feed(topic, key, value).commands]
            feeder.play(todays, settle=False)
            records += len(todays)
            progress(day, days, records, started)
        feeder.settle()
        seconds = time.monotonic() - started
        want = len({v["command_id"] for v in expected})
        deadline = time.monotonic() + 120
        while asyncio.run(ledger_count(url)) < want and time.monotonic() < deadline:
            time.sleep(0.5)
        check = compare(expected, feeder.commands())
        return Outcome(asyncio.run(kpis.read(url)), check, records, seconds)
    finally:
        if feeder is not None:
            feeder.close()
        if worker is not None:
            worker.stop()
        broker.stop()


def report(outcome: Outcome) -> None:
    say()
    say(f"processed {outcome.records:,} events in {outcome.seconds:.1f} s "
        f"({outcome.records / outcome.seconds:,.0f} events/s)")
    say(kpis.render(outcome.kpis, "collection at the end of the cycle (from the ledger):"))
    c = outcome.check
    if c.ok:
        say(f"engine check: the worker's {c.expected:,} commands match the pure engine's "
            f"exactly ({c.duplicates} duplicates, all identical)")
    else:
        say(f"engine check FAILED: {len(c.missing)} missing, {len(c.extra)} unexpected, "
            f"{len(c.differing)} different (of {c.expected:,})")
