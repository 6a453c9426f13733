"""The worker on a secured stack (contract §4 "Security"): Apache Kafka's SASL_SSL listener
(SCRAM-SHA-512, a test CA) and PostgreSQL over TLS (`sslmode=verify-full`).

The every-rule run gives exactly the engine's commands with every client of the worker on
SASL_SSL; a wrong password, an untrusted certificate and a plaintext client each stop the worker
at once with a message naming the setting; and no secret (broker password, web token, database
password) shows in anything the worker wrote at debug level, in `--help`, in its metrics or on
the dead-letter topic."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dunning.streams.reach import BrokerError, check_broker
from tests.agents import scenarios
from tests.agents.kafka import Client, Worker
from tests.conftest import query
from tests.ledger.tls_postgres import FrontTls, socket_of
from tests.streams.secure_kafka import PASSWORD, SecureKafka

pytestmark = [pytest.mark.kafka, pytest.mark.broker]

WEB_TOKEN = "web-Token-9c41-secret"
DB_PASSWORD = "db-Passw0rd-e58d"


class Secured:
    """The broker's SASL_SSL listener, as the harness's workers and clients take a broker."""

    def __init__(self, kafka: SecureKafka) -> None:
        self.url = kafka.secure_url
        self.bootstrap = kafka.secure_bootstrap
        self.kafka = True


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("secure")
    kafka = SecureKafka(folder / "kafka")
    front = FrontTls(socket_of(postgres.url("postgres")), kafka.certs)
    try:
        yield kafka, front, folder
    finally:
        front.stop()
        kafka.stop()


@pytest.fixture(scope="module")
def run(stack: Any) -> Iterator[Any]:
    kafka, front, folder = stack
    policy = folder / "policy.toml"
    policy.write_text(scenarios.POLICY)
    reference = scenarios.every_rule()
    security = kafka.security()
    url = front.url("secure_ledger").replace("postgres@", f"postgres:{DB_PASSWORD}@")
    log = folder / "worker.log"
    worker = Worker(Secured(kafka), "secure", policy=str(policy), log_path=str(log),  # type: ignore[arg-type]
                    database_url=url, web_token=WEB_TOKEN, env=security.environment(),
                    log_level="debug")
    client = Client(Secured(kafka), "secure", security.client_options())  # type: ignore[arg-type]
    try:
        worker.start().wait_healthy(120)
        client.play(reference.script)
        yield reference, client, worker, log
    finally:
        worker.kill()
        client.close()


def test_every_rule_over_sasl_ssl_and_tls_postgres(run):
    reference, client, worker, _ = run
    expected = {c.command_id: c.value for c in reference.log}
    emitted = {c["command_id"]: c for c in client.commands()}
    assert len(expected) > 150
    assert emitted == expected

    def recorded() -> set[str]:  # read over TLS, as the worker wrote them
        return {r["command_id"] for r in query(worker.database_url,
                                               "SELECT command_id FROM command_log")}

    deadline = time.monotonic() + 60
    while recorded() != set(expected) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert recorded() == set(expected)


def test_no_secret_in_logs_help_metrics_or_dead_letters(run):
    _, client, worker, log = run
    assert worker.get("/invoices/partial", {"Authorization": f"Bearer {WEB_TOKEN}"})[0] == 200
    written = [log.read_bytes()]
    assert b"[DEBUG]" in written[0]  # the worker ran at debug level
    written.append(worker.get("/metrics")[1])
    written.append(worker.get("/health")[1])
    written.append(worker.get("/invoices/partial")[1])  # refused without the token
    written += [r.value or b"" for r in client.dead_letters()]
    written += [repr(r.headers).encode() for r in client.dead_letters()]
    for command in ("worker", "tick", "demo"):
        written.append(subprocess.run(
            [sys.executable, "-m", "dunning.cli", command, "--help"], capture_output=True,
            env={**worker.env, "DUNNING_WEB_TOKEN": WEB_TOKEN, "PATH": "/usr/bin:/bin"},
        ).stdout)
    assert client.dead_letters()  # the timeline has bad records: their dead letters are read
    for secret in (PASSWORD, WEB_TOKEN, DB_PASSWORD):
        for blob in written:
            assert secret.encode() not in blob


def _worker_fails(kafka: SecureKafka, folder: Path, name: str, security: Any,
                  url: str | None = None) -> tuple[int, str, float]:
    args = [sys.executable, "-m", "dunning.cli", "worker", "--broker", url or kafka.secure_url,
            "--app-id", name, "--web-port", "0", "--log-level", "debug"]
    started = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=folder,
                          env={**_base_env(), **security.environment()})
    return done.returncode, done.stderr + done.stdout, time.monotonic() - started


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("DUNNING_")}


def test_a_wrong_password_stops_the_worker_naming_the_setting(stack):
    kafka, _, folder = stack
    code, out, took = _worker_fails(kafka, folder, "wrongpw",
                                    kafka.security(password="not-the-Password-1"))
    assert code != 0
    assert "--broker-password" in out and "refused the SCRAM-SHA-512 login" in out
    assert "not-the-Password-1" not in out and PASSWORD not in out
    assert took < 60  # not retried for ever


def test_an_untrusted_certificate_stops_the_worker_naming_the_setting(stack):
    kafka, _, folder = stack
    other = kafka.certs.other_ca_file
    code, out, _ = _worker_fails(kafka, folder, "untrusted", kafka.security(ssl_ca=other))
    assert code != 0
    assert f"--broker-ssl-ca {other} does not trust" in out


def test_a_plaintext_client_stops_the_worker_naming_the_setting(stack):
    kafka, _, folder = stack
    code, out, _ = _worker_fails(kafka, folder, "plain", kafka.security(
        ssl_ca=None, sasl_mechanism=None, username=None, password=None))
    assert code != 0
    assert "speaks TLS" in out and "--broker-ssl-ca" in out


def test_tls_without_sasl_is_told_the_listener_needs_sasl(stack):
    kafka, _, _ = stack
    import asyncio

    with pytest.raises(BrokerError, match="needs SASL"):
        asyncio.run(check_broker(kafka.secure_bootstrap, kafka.security(
            sasl_mechanism=None, username=None, password=None)))


def test_tick_on_the_secured_broker(stack):
    kafka, _, folder = stack
    done = subprocess.run(
        [sys.executable, "-m", "dunning.cli", "tick", "--broker", kafka.secure_url,
         "--at", "2026-03-01"], capture_output=True, text=True, timeout=120, cwd=folder,
        env={**_base_env(), **kafka.security().environment()})
    assert done.returncode == 0, done.stderr
    assert "tick 2026-03-01T00:00:00Z" in done.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "dunning.cli", "tick", "--broker", kafka.secure_url,
         "--at", "2026-03-01"], capture_output=True, text=True, timeout=120, cwd=folder,
        env={**_base_env(), **kafka.security(password="nope-nope").environment()})
    assert wrong.returncode != 0 and "--broker-password" in wrong.stderr


def test_demo_on_the_secured_broker(tmp_path):
    # A broker of its own: the demo checks everything on the command topics against its engine.
    kafka = SecureKafka(tmp_path / "kafka")
    folder = tmp_path
    try:
        _demo(kafka, folder)
    finally:
        kafka.stop()


def _demo(kafka: SecureKafka, folder: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dunning.cli", "demo", "--broker", kafka.secure_url,
         "--customers", "60", "--days", "20"], capture_output=True, text=True, timeout=600,
        cwd=folder, env={**_base_env(), **kafka.security().environment()})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "match the pure engine's exactly" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
