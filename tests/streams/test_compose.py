"""docker-compose.yml's Kafka is the cluster the tests run (`KafkaBroker(nodes=3)`): the same
version, roles, listeners, quorum and replication, node by node; it differs only where the
test brokers say why (`FOR_TESTS`), and on hosts, ports and folders."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from dunning.config.security import BrokerSecurity
from dunning.streams.apache_kafka import (
    FOR_TESTS,
    KAFKA_VERSION,
    KafkaNode,
    durability,
    node_settings,
)
from tests.streams.secure_kafka import MECHANISM, with_sasl_ssl

ROOT = Path(__file__).resolve().parents[2]
# Set per machine: compared by their form below.
PLACES = ("listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs",
          "listener.name.sasl_ssl.ssl.keystore.location")


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
    """The nodes (the one-shot `kafka-users` runs the image's tools, no node)."""
    return {name: s for name, s in compose()["services"].items()
            if str(s.get("image", "")).startswith("apache/kafka")
            and "KAFKA_NODE_ID" in s.get("environment", {})}


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
        # The tests' secured broker's client listener (tests/streams/secure_kafka.py).
        want = with_sasl_ssl(node_settings(node, tested), "127.0.0.1:0", "keystore.pem")
        # Production keeps Kafka's defaults where the test brokers are tuned to start fast.
        assert not set(given) & set(FOR_TESTS) - {"num.partitions"}
        assert {k: given[k] for k in set(given) - set(PLACES) - set(FOR_TESTS)} == \
            {k: want[k] for k in set(want) - set(PLACES) - set(FOR_TESTS)}
        # Listeners of the same names; the node advertises its own host; the voters are the
        # three nodes, each at its CONTROLLER listener.
        ports = listener_ports(given["listeners"])
        assert set(ports) == set(listener_ports(want["listeners"])) == \
            {"PLAINTEXT", "CONTROLLER", "SASL_SSL"}
        assert given["advertised.listeners"] == \
            f"PLAINTEXT://kafka-{node.node_id}:{ports['PLAINTEXT']}," \
            f"SASL_SSL://kafka-{node.node_id}:{ports['SASL_SSL']}"
        # Its own key and certificate, from the volume the `certs` service fills.
        keystore = given["listener.name.sasl_ssl.ssl.keystore.location"]
        mount = next(v for v in service["volumes"] if v.startswith("tls:")).split(":")[1]
        assert keystore == f"{mount}/kafka-{node.node_id}.pem"
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
        # Clients on the SASL_SSL listener, with the settings BrokerSecurity reads.
        assert env["DUNNING_BROKER"] == "kafka://" + ";".join(
            f"{name}:9094" for name in sorted(kafka_services()))
        security = {k: v for k, v in env.items() if k.startswith("DUNNING_BROKER_")}
        assert set(security) == set(BrokerSecurity(
            ssl_ca="ca", sasl_mechanism=MECHANISM, username="u", password="p").environment())
        assert env["DUNNING_BROKER_SASL_MECHANISM"] == MECHANISM
        assert env["DUNNING_BROKER_PASSWORD"].startswith("${DUNNING_BROKER_PASSWORD:?")
        mount = worker["volumes"][0].split(":")[1]
        assert env["DUNNING_BROKER_SSL_CA"] == f"{mount}/ca.pem"
        assert "sslmode=verify-full" in env["DUNNING_DATABASE_URL"]
        # After the cluster, once its SCRAM user exists.
        assert worker["depends_on"]["kafka-users"] == {
            "condition": "service_completed_successfully"}
        assert set(services["kafka-users"]["depends_on"]) == set(kafka_services())
    # Changelogs are compacted per topic by the workers; no broker-wide cleanup policy or
    # disabled cleaner undoes that.
    for service in kafka_services().values():
        given = {server_property(k) for k in service["environment"]}
        assert not given & {"log.cleanup.policy", "log.cleaner.enable"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_certs_service_makes_what_kafka_and_postgres_read(tmp_path):
    """deploy/tls/make-certs.sh: each node's PEM keystore holds a PKCS#8 key and a certificate
    for its host name that the CA given to the workers verifies; PostgreSQL's likewise."""
    script = ROOT / "deploy" / "tls" / "make-certs.sh"
    subprocess.run(["sh", str(script), str(tmp_path)], check=True, capture_output=True)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    for name in ("kafka-1", "kafka-2", "kafka-3", "postgres"):
        blob = (tmp_path / (f"{name}.pem" if name != "postgres" else "postgres.crt")).read_bytes()
        assert b"-----BEGIN PRIVATE KEY-----" in (tmp_path / f"{name}.key").read_bytes()
        cert = x509.load_pem_x509_certificate(blob[blob.index(b"-----BEGIN CERTIFICATE"):])
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                               padding.PKCS1v15(), cert.signature_hash_algorithm)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert name in sans.get_values_for_type(x509.DNSName)
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        context.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
        if name != "postgres":  # Kafka's PEM keystore: the key (PKCS#8) first, then the chain
            assert blob.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert not (tmp_path / "ca.key").exists()  # nothing more can be signed with it
    # A second run keeps what is there.
    before = (tmp_path / "ca.pem").read_bytes()
    subprocess.run(["sh", str(script), str(tmp_path)], check=True, capture_output=True)
    assert (tmp_path / "ca.pem").read_bytes() == before
