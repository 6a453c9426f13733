"""Crash safety: workers killed or stopped in the middle of a billing run. Whatever happens,
every command the pure engine emits for the input comes out at least once, duplicates carry
the same id and content, and nothing the engine would not emit appears. With `--guarantee
exactly_once` (Apache Kafka only) a `read_committed` reader sees each command exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from dunning.config.settings import AT_LEAST_ONCE, EXACTLY_ONCE
from dunning.demo.check import compare
from tests.agents import scenarios
from tests.agents.kafka import OUTPUT_TOPICS, Broker, Client, Worker
from tests.conftest import query


def check_against_engine(reference: scenarios.Recorder, client: Client) -> int:
    result = compare((c.value for c in reference.log), client.commands())
    assert not result.missing, result.missing[:5]
    assert not result.extra, result.extra[:5]
    assert not result.differing, result.differing[:5]
    return result.duplicates


def check_copies(reference: scenarios.Recorder, client: Client, guarantee: str,
                 kills: int, landed: bool = True) -> int:
    """Every command the engine emits, nothing else; how many duplicates the guarantee
    allows (exactly once: none, read committed). With `landed`, a kill must have landed
    mid-batch: at least once, the replay re-sent commands; exactly once, a reader of
    uncommitted records sees the aborted transactions' copies too."""
    duplicates = check_against_engine(reference, client)
    print(f"{len(reference.log)} commands expected; {duplicates} duplicates after {kills} "
          f"SIGKILLs ({guarantee})")
    if guarantee == AT_LEAST_ONCE:
        assert duplicates > 0 or not landed
        return duplicates
    assert duplicates == 0
    uncommitted = compare((c.value for c in reference.log),
                          client.commands("read_uncommitted"))
    print(f"  {uncommitted.duplicates} copies in aborted transactions")
    assert uncommitted.duplicates > 0 or not landed
    return duplicates


def check_ledger(reference: scenarios.Recorder, url: str) -> None:
    """The ledger holds each command the engine emits exactly once, whatever the crashes."""
    expected = sorted({c.command_id for c in reference.log})
    deadline = time.monotonic() + 60
    while True:
        ids = sorted(r["command_id"] for r in query(url, "SELECT command_id FROM command_log"))
        if len(ids) >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ids == expected


class Setting:
    """A broker, workers of one policy, and a client; all stopped at the end."""

    def __init__(self, folder: Any, database_url: str, broker: Broker | None = None,
                 guarantee: str | None = None, **worker: Any) -> None:
        self.folder = folder
        self.guarantee = guarantee  # the workers' --guarantee
        self.database_url = database_url
        self.policy = folder / "policy.toml"
        self.policy.write_text(scenarios.POLICY)
        self.broker = broker or Broker()
        self.options = worker  # for every Worker, e.g. replication_factor
        self.workers: list[Worker] = []
        self.client: Client | None = None

    def worker(self, app_id: str, name: str) -> Worker:
        w = Worker(self.broker, app_id, policy=str(self.policy),
                   log_path=str(self.folder / f"{name}.log"), database_url=self.database_url,
                   guarantee=self.guarantee, **self.options)
        self.workers.append(w)
        return w.start()

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.proc is not None and w.proc.poll() is None]

    def connect(self, app_id: str) -> Client:
        self.client = Client(self.broker, app_id)
        return self.client

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        if self.client is not None:
            self.client.close()
        self.broker.stop()


# Each crash test runs both ways; exactly once needs transactions (Apache Kafka).
GUARANTEES = pytest.mark.parametrize("guarantee", [
    AT_LEAST_ONCE, pytest.param(EXACTLY_ONCE, marks=pytest.mark.kafka)])


@pytest.fixture
def guarantee() -> str:
    return AT_LEAST_ONCE


@pytest.fixture
def setting(tmp_path: Any, database: str, guarantee: str) -> Any:
    s = Setting(tmp_path, database, guarantee=guarantee)
    try:
        yield s
    finally:
        s.close()


def kill_on_output(setting: Setting, cause: str, action: Any) -> threading.Thread:
    """Run `action` as soon as a command caused by `cause` is on an output topic: the batch
    that made it has flushed its commands and is about to write its state."""

    async def watch() -> None:
        consumer = AIOKafkaConsumer(*OUTPUT_TOPICS, bootstrap_servers=setting.broker.bootstrap,
                                    auto_offset_reset="latest", fetch_max_wait_ms=20)
        await consumer.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=50)
                if any(orjson.loads(r.value)["causation_id"] == cause
                       for recs in batch.values() for r in recs):
                    action()
                    return
        finally:
            # When the action killed a broker, the consumer's fetch from it is cancelled in
            # its back-off as it stops.
            with contextlib.suppress(asyncio.CancelledError):
                await consumer.stop()

    thread = threading.Thread(target=lambda: asyncio.run(watch()))
    thread.start()
    return thread


@GUARANTEES
def test_sigkill_mid_stream_and_restart(setting, guarantee):
    reference = scenarios.random_run(seed=7, invoices=2000, days_=60)
    assert len(reference.script) > 3000
    setting.worker("crash", "first").wait_healthy()
    client = setting.connect("crash")
    watchers: list[threading.Thread] = []

    def kill_and_restart(n: int) -> None:
        setting.alive()[-1].kill(signal.SIGKILL)
        setting.worker("crash", f"after-{n}")

    # Kill the worker the moment a tick's first commands are out: mid-batch, its state not
    # yet written. Days 9 and 31 fire reminders, charges, overdue stages and holds.
    kills = (9, 20, 31)

    def on_phase(n: int) -> None:
        if n in kills:
            day = (date(2026, 1, 1) + timedelta(days=n)).isoformat()
            watchers.append(kill_on_output(setting, f"tick-{day}T00:00:00Z",
                                           lambda: kill_and_restart(n)))
            time.sleep(1)  # the watcher is subscribed before the tick goes out

    client.play(reference.script, timeout=180, on_phase=on_phase)
    for w in watchers:
        w.join()
    assert len(setting.workers) == 1 + len(kills)
    check_copies(reference, client, guarantee, len(kills))
    check_ledger(reference, setting.database_url)


@GUARANTEES
def test_two_workers_one_killed_mid_stream(setting, guarantee):
    reference = scenarios.random_run(seed=11, invoices=1200, days_=45)
    a, b = setting.worker("pair", "a"), setting.worker("pair", "b")
    a.wait_healthy()
    b.wait_healthy()
    client = setting.connect("pair")
    watchers: list[threading.Thread] = []

    def on_phase(n: int) -> None:
        if n == 15:  # b dies mid-batch; a takes over its partitions from the tables
            watchers.append(kill_on_output(setting, "tick-2026-01-16T00:00:00Z",
                                           lambda: b.kill(signal.SIGKILL)))
            time.sleep(1)

    client.play(reference.script, timeout=180, on_phase=on_phase)
    for w in watchers:
        w.join()
    assert setting.alive() == [a]
    # One kill may land just after its batch committed: no copy is asked for.
    check_copies(reference, client, guarantee, 1, landed=False)
    check_ledger(reference, setting.database_url)
