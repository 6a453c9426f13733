"""docker-compose.yml's Kafka is the cluster the tests run (`KafkaBroker(nodes=3)`): the same
version, roles, listeners, quorum and replication, node by node; it differs only where the
test brokers say why (`FOR_TESTS`), and on hosts, ports and folders."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from dunning.streams.apache_kafka import (
    FOR_TESTS,
    KAFKA_VERSION,
    KafkaNode,
    durability,
    node_settings,
)

ROOT = Path(__file__).resolve().parents[2]
# Set per machine: compared by their form below.
PLACES = ("listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs")


def server_property(variable: str) -> str:
    """The apache/kafka image's mapping of a KAFKA_* variable to a server.properties key:
    `_` is `.`, `__` is `_`, `___` is `-`."""
    name = variable.removeprefix("KAFKA_").lower()
    return name.replace("___", "\0").replace("__", "\1").replace("_", ".") \
        .replace("\0", "-").replace("\1", "_")


def listener_ports(listeners: str) -> dict[str, str]:
    """`NAME://host:port,...` as {NAME: port}."""
    return {entry.split("://")[0]: entry.rsplit(":", 1)[1] for entry in listeners.split(",")}


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def kafka_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items()
            if str(s.get("image", "")).startswith("apache/kafka")}


def test_the_variable_mapping():
    assert server_property("KAFKA_MIN_INSYNC_REPLICAS") == "min.insync.replicas"
    assert server_property("KAFKA_A_B___C__D") == "a.b-c_d"


def test_compose_runs_the_tested_cluster():
    services = kafka_services()
    assert sorted(services) == ["kafka-1", "kafka-2", "kafka-3"]
    tested = [KafkaNode(i, Path("node") / str(i)) for i in (1, 2, 3)]
    ids = set()
    for node in tested:
        service = services[f"kafka-{node.node_id}"]
        assert service["image"] == f"apache/kafka:{KAFKA_VERSION}"
        env = {k: str(v) for k, v in service["environment"].items()}
        ids.add(env.pop("CLUSTER_ID"))
        given = {server_property(k): v for k, v in env.items()}
        want = node_settings(node, tested)
        # Production keeps Kafka's defaults where the test brokers are tuned to start fast.
        assert not set(given) & set(FOR_TESTS) - {"num.partitions"}
        assert {k: given[k] for k in set(given) - set(PLACES) - set(FOR_TESTS)} == \
            {k: want[k] for k in set(want) - set(PLACES) - set(FOR_TESTS)}
        # Listeners of the same names; the node advertises its own host; the voters are the
        # three nodes, each at its CONTROLLER listener.
        ports = listener_ports(given["listeners"])
        assert set(ports) == set(listener_ports(want["listeners"])) == {"PLAINTEXT", "CONTROLLER"}
        assert given["advertised.listeners"] == \
            f"PLAINTEXT://kafka-{node.node_id}:{ports['PLAINTEXT']}"
        assert given["controller.quorum.voters"] == ",".join(
            f"{n}@kafka-{n}:{ports['CONTROLLER']}" for n in (1, 2, 3))
        assert given["log.dirs"] == service["volumes"][0].split(":", 1)[1]
    # One cluster, its id in Kafka's form (16 bytes, base64 without padding).
    [cluster] = ids
    assert base64.urlsafe_b64encode(base64.urlsafe_b64decode(cluster + "==")).decode() \
        .rstrip("=") == cluster


def test_the_workers_replicate_what_they_create_as_the_brokers_do():
    services = compose()["services"]
    replicas = durability(3)["default.replication.factor"]
    workers = [s for name, s in services.items() if name.startswith("worker-")]
    assert len(workers) == 2
    for worker in workers:
        env = worker["environment"]
        assert env["DUNNING_REPLICATION_FACTOR"] == replicas == "3"
        assert env["DUNNING_BROKER"] == "kafka://" + ";".join(
            f"{name}:9092" for name in sorted(kafka_services()))
        assert set(worker["depends_on"]) >= set(kafka_services())
    # Changelogs are compacted per topic by the workers; no broker-wide cleanup policy or
    # disabled cleaner undoes that.
    for service in kafka_services().values():
        given = {server_property(k) for k in service["environment"]}
        assert not given & {"log.cleanup.policy", "log.cleaner.enable"}
