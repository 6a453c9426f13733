"""`dunning demo`: a billing cycle end to end on embedded defaults.

Starts the embedded broker and PostgreSQL and a worker, feeds it a simulated customer base day
by day (a tick, then the day's invoices, payments and requests), runs the pure engine on the
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
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from dunning.config.policy import Policy
from dunning.config.security import BrokerSecurity
from dunning.demo import kpis
from dunning.demo.check import Comparison, compare
from dunning.demo.feed import OUTPUT_TOPICS, Feeder
from dunning.demo.simulate import START, simulate
from dunning.ledger.db import database_of, embedded_url
from dunning.rules.engine import Engine
from dunning.rules.times import DAY, format_time
from dunning.streams.broker import Broker, ExternalBroker, embedded_broker, free_port
from dunning.streams.codec import feed


@dataclass
class Outcome:
    kpis: kpis.Kpis
    check: Comparison
    records: int
    seconds: float


def say(text: str = "") -> None:
    print(text, flush=True)


class WorkerProcess:
    def __init__(self, broker: Broker, app_id: str, url: str, policy: str | None,
                 partitions: int, prefix: str, log_path: str,
                 security: BrokerSecurity | None = None) -> None:
        self.port = free_port()
        self.log = open(log_path, "wb")  # noqa: SIM115 - the worker writes it while it runs
        args = [sys.executable, "-m", "dunning.cli", "worker", "--broker", broker.url,
                "--app-id", app_id, "--web-port", str(self.port), "--web-host", "127.0.0.1",
                "--database-url", url, "--partitions", str(partitions),
                "--rebalance-timeout", "2", "--session-timeout", "6", "--log-level", "warn",
                # The simulation moves time a day per tick, but may start anywhere: no guard.
                "--max-tick-jump", "0",
                "--output-prefix", prefix]
        if policy:
            args += ["--policy", policy]
        env = {**os.environ, **(security or BrokerSecurity()).environment()}
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

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


async def read_model(url: str) -> dict[str, tuple[str, Decimal]]:
    conn = await asyncpg.connect(url)
    try:
        return {r["invoice_id"]: (r["status"], r["amount_due"]) for r in await conn.fetch(
            "SELECT invoice_id, status, amount_due FROM invoices")}
    except asyncpg.UndefinedTableError:
        return {}
    finally:
        await conn.close()


def caught_up(url: str, commands: int, invoices: dict[str, tuple[str, Decimal]],
              timeout: float = 120) -> None:
    """Wait until the ledger holds every command and its invoices table the engine's final
    state of every invoice: the KPIs are read from both."""
    deadline = time.monotonic() + timeout
    while True:
        have = asyncio.run(ledger_count(url))
        if have >= commands and asyncio.run(read_model(url)) == invoices:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the ledger did not catch up in {timeout:.0f} s: {have:,} of "
                               f"{commands:,} commands, or invoices not in their final state")
        time.sleep(0.5)


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


@dataclass
class Lane:
    """One policy's worker on the shared input: its group, output prefix, database, engine."""

    name: str
    policy: Policy
    policy_path: str | None
    app_id: str
    prefix: str = ""
    url: str = ""
    worker: WorkerProcess | None = None
    engine: Engine | None = None
    expected: list[dict[str, Any]] = field(default_factory=list)
    debt: dict[str, float] = field(default_factory=dict)  # day -> outstanding at its end

    def note_day(self, day: int) -> None:
        """The debt outstanding at the end of `day`, from the engine (the chart's source:
        the engine check shows the worker's commands are the engine's)."""
        assert self.engine is not None
        self.debt[format_time(START + day * DAY)[:10]] = float(sum(
            (inv.due for inv in self.engine.invoices.values()
             if inv.status != "cancelled" and inv.due > 0), Decimal(0)))


def run(lanes: list[Lane], customers: int, days: int, seed: int,
        data_dir: str = ".dunning", partitions: int = 4, broker_url: str | None = None,
        security: BrokerSecurity | None = None) -> list[Outcome]:
    """`broker_url`: a broker of the user's (with `security`) instead of the embedded one."""
    os.makedirs(data_dir, exist_ok=True)
    security = security or BrokerSecurity()
    sim = simulate(seed, customers, days)
    say(f"dunning demo: {customers:,} customers over {days} days (seed {seed}), "
        f"{sim.invoices:,} invoices")
    which = f"the broker at {broker_url}" if broker_url else "the embedded broker"
    say(f"  starting {which}, PostgreSQL and {len(lanes)} worker"
        f"{'s' if len(lanes) > 1 else ''} ...")
    broker: Broker = ExternalBroker(broker_url) if broker_url else embedded_broker()
    feeder = None
    try:
        for lane in lanes:
            lane.url = embedded_url(data_dir, lane.app_id)
            asyncio.run(fresh_database(lane.url))
            lane.worker = WorkerProcess(broker, lane.app_id, lane.url, lane.policy_path,
                                        partitions, lane.prefix,
                                        os.path.join(data_dir, f"{lane.app_id}-worker.log"),
                                        security)
            lane.engine = Engine(lane.policy)
        for lane in lanes:
            assert lane.worker is not None
            lane.worker.wait_healthy()
        feeder = Feeder(broker.bootstrap, lanes[0].app_id, [lane.app_id for lane in lanes[1:]],
                        security.client_options())
        records, started = 0, time.monotonic()
        for day, todays in sim.script():
            for lane in lanes:
                engine = lane.engine
                assert engine is not None
                for topic, key, value in todays:
                    lane.expected += [c.value for c in feed(engine, topic, key, value).commands]
                lane.note_day(day)
            feeder.play(todays, settle=False)
            records += len(todays)
            progress(day, days, records, started)
        feeder.settle()
        seconds = time.monotonic() - started
        outcomes = []
        for lane in lanes:
            assert lane.engine is not None
            want = len({v["command_id"] for v in lane.expected})
            final = {iid: (inv.status, max(inv.due, 0))
                     for iid, inv in lane.engine.invoices.items()}
            caught_up(lane.url, want, final)
            emitted = [orjson.loads(r.value)
                       for r in feeder.read([lane.prefix + t for t in OUTPUT_TOPICS])]
            end = START + (days - 1) * DAY  # the last day's tick
            # The policy's own [calendar] (a class's may differ; the examples set none).
            calendar = lane.policy.terms().calendar
            figures = kpis.read(lane.url, days, end, sim.promised, calendar)
            outcomes.append(Outcome(asyncio.run(figures),
                                    compare(lane.expected, emitted), records, seconds))
        return outcomes
    finally:
        if feeder is not None:
            feeder.close()
        for lane in lanes:
            if lane.worker is not None:
                lane.worker.stop()
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


def report_compare(lanes: list[Lane], outcomes: list[Outcome], data_dir: str) -> str:
    """Print the KPIs side by side, write the HTML report; returns its path."""
    from dunning.demo import report as rep

    names = [lane.name for lane in lanes]
    say()
    say(f"processed {outcomes[0].records:,} events through {len(lanes)} policies in "
        f"{outcomes[0].seconds:.1f} s")
    table = rep.side_by_side(names, [o.kpis for o in outcomes])
    say(table)
    for lane, o in zip(lanes, outcomes, strict=True):
        c = o.check
        verdict = "match the pure engine's exactly" if c.ok else (
            f"FAILED: {len(c.missing)} missing, {len(c.extra)} unexpected, "
            f"{len(c.differing)} different")
        say(f"engine check, {lane.name}: {c.expected:,} commands {verdict}")
    actions = [asyncio.run(rep.actions_per_day(lane.url)) for lane in lanes]
    enforcement = [asyncio.run(rep.enforcement_per_day(lane.url)) for lane in lanes]
    path = os.path.join(data_dir, "demo-compare.html")
    with open(path, "w") as f:
        f.write(rep.html_report(names, [o.kpis for o in outcomes],
                                [lane.debt for lane in lanes], actions, table, enforcement))
    say(f"report with charts: {path}")
    return path
