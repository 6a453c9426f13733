"""Test harness for the worker: a real broker (Tansu, or Apache Kafka under `--broker=kafka`),
worker processes, and a client that feeds an input script in the order the pure engine saw it
(`dunning.demo.feed`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

from dunning.demo.feed import OUTPUT_TOPICS, Feeder, Record, is_tick  # noqa: F401
from dunning.streams import broker as brokers
from dunning.streams.broker import free_port


class Broker:
    """A broker of the test's own, the one the run asked for (`--broker`, conftest.py): Tansu in
    memory, which starts in milliseconds, or one Apache Kafka node, in a few seconds; with
    `nodes=3`, a cluster of three Apache Kafka nodes (tests marked `kafka`)."""

    def __init__(self, nodes: int = 1) -> None:
        if nodes > 1:
            from dunning.streams.apache_kafka import KafkaBroker

            self.impl: brokers.Broker = KafkaBroker(nodes=nodes)
        else:
            self.impl = brokers.embedded_broker()
        self.url = self.impl.url
        self.bootstrap = self.impl.bootstrap

    @property
    def kafka(self) -> bool:
        return not isinstance(self.impl, brokers.EmbeddedBroker)

    def stop(self) -> None:
        self.impl.stop()


@dataclass
class Worker:
    """One `dunning worker` process."""

    broker: Broker
    app_id: str
    policy: str | None = None
    partitions: int = 4
    replication_factor: int = 1
    # Days; the test timelines jump weeks at once, so the guard is off unless a test wants it.
    max_tick_jump: float = 0
    log_path: str = ""
    database_url: str | None = None
    cwd: str | None = None  # where `.dunning/` (the embedded PostgreSQL) goes
    web_token: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # more DUNNING_* settings (secrets)
    log_level: str | None = None
    guarantee: str | None = None  # --guarantee; the worker's default without
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        args = [sys.executable, "-m", "dunning.cli", "worker", "--broker", self.broker.url,
                "--app-id", self.app_id, "--web-port", str(self.web_port),
                "--web-host", "127.0.0.1",
                "--partitions", str(self.partitions),
                "--replication-factor", str(self.replication_factor), "--rebalance-timeout", "2",
                "--session-timeout", "6", "--max-tick-jump", f"{self.max_tick_jump:g}",
                "--log-level",
                self.log_level or os.environ.get("DUNNING_TEST_WORKER_LOG", "warn")]
        if self.policy:
            args += ["--policy", self.policy]
        if self.database_url:
            args += ["--database-url", self.database_url]
        if self.guarantee:
            args += ["--guarantee", self.guarantee]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        if self.web_token:
            env["DUNNING_WEB_TOKEN"] = self.web_token  # as the README advises for secrets
        log = open(self.log_path or os.devnull, "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                     env=env)
        return self

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}",
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, "the worker exited"
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the worker did not become healthy")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Client(Feeder):
    """A feeder for one test's broker. On Apache Kafka it reads `read_committed`, as the
    contract's consumers of exactly-once output do (the same as reading it all where workers
    write without transactions); Tansu has no transactions."""

    def __init__(self, broker: Broker, app_id: str,
                 client_options: dict[str, object] | None = None) -> None:
        super().__init__(broker.bootstrap, app_id, client_options=client_options,
                         isolation_level="read_committed" if broker.kafka
                         else "read_uncommitted")
