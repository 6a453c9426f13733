"""Apache Kafka for tests, benchmarks and the demo: the real broker, in KRaft mode, from its jars.

`KafkaBroker()` starts one node (broker and controller in one process) on free loopback ports
with its data in a temporary folder, and has the surface of `EmbeddedBroker` (`.url`,
`.bootstrap`, `.stop()`); `KafkaBroker(nodes=3)` starts three such nodes forming one cluster
(three voters, replication 3, min ISR 2), where one node at a time can be killed and started
again (`kill(i)`, `start(i)`; `quorum_leader()` names the controllers' leader).

The jars come from Maven Central through Maven, once, into `.cache/kafka/<version>/` of the
source tree (`deploy/kafka/pom.xml` names them); later calls find them there. Needs `java` 17+
(`JAVA_HOME` or the PATH) and, for that first fetch, `mvn`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dunning.streams.broker import free_port

KAFKA_VERSION = "4.4.0"

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "deploy" / "kafka" / "pom.xml"
CACHE = ROOT / ".cache" / "kafka"
_COMPLETE = ".complete"  # written last: a folder without it was cut short and is fetched again

_STARTED = b"Kafka Server started"

# The broker logs to server.log in its node's folder, nothing to the console.
_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
"""

# Startup over throughput: a test broker lives for seconds to minutes on a shared machine.
_JVM = ["-Xms256m", "-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true"]


# What a node is and how it talks: docker-compose.yml's Kafka services have the same (a test
# checks), on their own hosts and ports.
LISTENERS = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
}


def durability(nodes: int) -> dict[str, str]:
    """Replication of a cluster of `nodes`: three replicas of every topic, the internal ones
    (group offsets, transaction state) included, and writes acknowledged once two have them,
    so one node can be lost; a single node has one of each. docker-compose.yml's three nodes
    have these (a test checks)."""
    replicas = min(nodes, 3)
    isr = "2" if replicas == 3 else "1"
    return {
        "default.replication.factor": str(replicas),
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": isr,
    }


# Where the test brokers differ from production, and why: a test broker lives for seconds to
# minutes on a shared machine.
FOR_TESTS = {
    "num.partitions": "1",  # the worker creates its topics with --partitions anyway
    # Fewer internal partitions than production's 50: they are created on first use.
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.num.partitions": "4",
    # A group's first member is not kept waiting 3 s for others.
    "group.initial.rebalance.delay.ms": "0",
    # A killed node's partitions move to another leader within seconds, not 9 s.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    # The cleaner looks for compacted logs to clean every second, not every 15 s.
    "log.cleaner.backoff.ms": "1000",
}


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def kafka_jars(version: str = KAFKA_VERSION) -> Path:
    """The folder holding Kafka `version`'s jars, fetched first if they are not there yet."""
    folder = CACHE / version
    if (folder / _COMPLETE).exists():
        return folder
    if not POM.exists():
        raise RuntimeError(f"{POM} is missing: Apache Kafka for tests needs the source tree")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same version
        if (folder / _COMPLETE).exists():
            return folder
        partial = CACHE / f"{version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        try:
            fetched = subprocess.run(
                ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                 f"-Dkafka.version={version}", f"-DoutputDirectory={partial}"],
                capture_output=True, text=True)
        except FileNotFoundError:
            raise RuntimeError("fetching Apache Kafka needs Maven (mvn) on the PATH") from None
        if fetched.returncode != 0:
            raise RuntimeError(f"fetching Apache Kafka {version} with Maven failed:\n"
                               f"{fetched.stdout[-4000:]}{fetched.stderr[-4000:]}")
        (partial / _COMPLETE).write_text(version + "\n")
        partial.rename(folder)
    return folder


def cluster_id() -> str:
    """A random cluster id the way Kafka writes one (`kafka-storage random-uuid`)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass
class KafkaNode:
    """One Kafka process, broker and controller, with its own folder."""

    node_id: int
    folder: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.folder / "server.properties"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def write_config(self, settings: dict[str, str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "log4j2.properties").write_text(_LOG4J2.format(path=self.log))
        self.config.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    def launch(self, classpath: str) -> int:
        """Start the process; returns where in its log this run's lines begin."""
        assert not self.running, f"node {self.node_id} is already running"
        offset = self.log.stat().st_size if self.log.exists() else 0
        console = open(self.folder / "console.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [java(), *_JVM, f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
             "-cp", classpath, "kafka.Kafka", str(self.config)],
            stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        console.close()
        return offset

    def started(self, offset: int) -> bool:
        try:
            with open(self.log, "rb") as f:
                f.seek(offset)
                return _STARTED in f.read()
        except FileNotFoundError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> bool:
        """Whether the process ended within `timeout` seconds."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def tail(self, lines: int = 40) -> str:
        out = []
        for name in ("console.log", "server.log"):
            with contextlib.suppress(FileNotFoundError):
                text = (self.folder / name).read_text(errors="replace").splitlines()
                out.append(f"--- node {self.node_id} {name}:\n" + "\n".join(text[-lines:]))
        return "\n".join(out)


def node_settings(node: KafkaNode, nodes: list[KafkaNode]) -> dict[str, str]:
    """`server.properties` of `node` in a cluster of `nodes`, all on the loopback interface."""
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    return {
        **LISTENERS,
        **durability(len(nodes)),
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},"
                     f"CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "log.dirs": str(node.folder / "data"),
        **FOR_TESTS,
    }


class KafkaBroker:
    """Apache Kafka on free loopback ports: one node, or `nodes=3` for a cluster of three.

    Every node is broker and controller; the controllers are the quorum's voters. Stopped by
    `stop()` (SIGTERM, then SIGKILL after `grace` seconds), which also removes the data unless
    `folder` was given.
    """

    # More arguments of `kafka-storage format` (a subclass's SCRAM users, `--add-scram`).
    format_options: tuple[str, ...] = ()

    def __init__(self, nodes: int = 1, *, version: str = KAFKA_VERSION,
                 folder: str | os.PathLike[str] | None = None,
                 settings: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.version = version
        self.timeout = timeout
        self.classpath = str(kafka_jars(version) / "*")
        self.own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="kafka-"))
        self.nodes = [KafkaNode(i + 1, self.folder / f"node-{i + 1}") for i in range(nodes)]
        self.bootstrap = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        self.port = self.nodes[0].port
        # The worker's --broker takes `kafka://host:port;host:port`.
        self.url = "kafka://" + ";".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        self.cluster_id = cluster_id()
        try:
            for node in self.nodes:
                node.write_config(self._settings(node, settings or {}))
            self._format()
            offsets = {n.node_id: n.launch(self.classpath) for n in self.nodes}
            self._wait_started(self.nodes, offsets)
        except BaseException:
            self.stop(grace=0)
            raise

    def _settings(self, node: KafkaNode, extra: dict[str, str]) -> dict[str, str]:
        """`node`'s `server.properties`; a subclass adds listeners here (SASL_SSL)."""
        return {**node_settings(node, self.nodes), **extra}

    def _format(self) -> None:
        procs = [subprocess.Popen(
            [java(), *_JVM, f"-Dlog4j2.configurationFile={n.folder / 'log4j2.properties'}",
             "-cp", self.classpath, "kafka.tools.StorageTool", "format",
             "-t", self.cluster_id, "-c", str(n.config), *self.format_options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for n in self.nodes]
        for node, proc in zip(self.nodes, procs, strict=True):
            out, _ = proc.communicate(timeout=self.timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"formatting node {node.node_id}'s storage failed:\n"
                                   f"{out.decode(errors='replace')}")

    def _wait_started(self, nodes: list[KafkaNode], offsets: dict[int, int]) -> None:
        deadline = time.monotonic() + self.timeout
        waiting = list(nodes)
        while waiting:
            for node in list(waiting):
                if node.started(offsets[node.node_id]):
                    waiting.remove(node)
                elif not node.running:
                    raise RuntimeError(f"Kafka node {node.node_id} exited at startup\n"
                                       + node.tail())
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"Kafka did not start in {self.timeout} s\n"
                                   + "\n".join(n.tail() for n in waiting))
            if waiting:
                time.sleep(0.05)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Kill one node (SIGKILL by default: a crash) and wait until it is gone."""
        node = self.node(node_id)
        node.kill(sig)
        node.wait(self.timeout)

    def start(self, node_id: int) -> None:
        """Start a stopped node again on its ports, with its data; returns once it serves."""
        node = self.node(node_id)
        offset = node.launch(self.classpath)
        self._wait_started([node], {node_id: offset})

    def quorum_leader(self) -> int:
        """The node id of the controller quorum's leader, as the running voters last recorded
        it (`quorum-state` in their metadata log's folder): the highest epoch's leader."""
        best = (-1, -1)
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(FileNotFoundError, ValueError):
                state = json.loads((node.folder / "data" / "__cluster_metadata-0" /
                                    "quorum-state").read_text())
                if state.get("leaderId", -1) >= 0:
                    best = max(best, (state["leaderEpoch"], state["leaderId"]))
        if best[1] < 0:
            raise RuntimeError("no node knows a quorum leader")
        return best[1]

    def restart(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        self.kill(node_id, sig)
        self.start(node_id)

    def stop(self, grace: float = 10) -> None:
        for node in self.nodes:
            node.kill(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        deadline = time.monotonic() + grace
        for node in self.nodes:
            if not node.wait(max(0.0, deadline - time.monotonic())):
                node.kill(signal.SIGKILL)
                node.wait(30)
        if self.own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
