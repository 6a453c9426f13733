"""The worker and its ledger end to end: the embedded PostgreSQL by default, and PostgreSQL
going away mid-stream without losing or doubling a command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import orjson

from dunning.streams import topics
from tests.agents import scenarios
from tests.agents.kafka import Broker, Client, Worker
from tests.conftest import query


def test_without_a_database_url_the_worker_keeps_its_ledger_in_embedded_postgres(tmp_path):
    broker = Broker()
    worker = Worker(broker, "embedded", log_path=str(tmp_path / "worker.log"),
                    cwd=str(tmp_path)).start()
    client = Client(broker, "embedded")
    try:
        worker.wait_healthy(timeout=120)
        client.send([(topics.INVOICES, b"inv-e", orjson.dumps({
            "type": "invoice.issued", "event_id": "e-1", "invoice_id": "inv-e",
            "customer_id": "c-1", "amount": "10.00", "currency": "USD",
            "issued_at": "2026-01-01T00:00:00Z"}))])
        client.settle()
        assert (tmp_path / ".dunning" / "postgres" / "PG_VERSION").exists()
        deadline = time.monotonic() + 60
        while True:  # the ledger catches up on its own consumer
            shown = subprocess.run(
                [sys.executable, "-m", "dunning.cli", "inspect", "inv-e", "--app-id",
                 "embedded", "--json"], cwd=tmp_path, capture_output=True, text=True,
                timeout=60)
            if shown.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert shown.returncode == 0, shown.stderr
        found = orjson.loads(shown.stdout)
        assert found["invoice"]["status"] == "unpaid"
        assert [c["type"] for c in found["commands"]] == ["invoice.status"]
    finally:
        worker.kill(signal.SIGTERM)  # a clean stop also stops the embedded server
        client.close()
        broker.stop()


def test_postgres_away_mid_stream_the_worker_goes_on_and_the_ledger_catches_up(
        tmp_path: Any, postgres: Any, database: str) -> None:
    reference = scenarios.every_rule()
    policy = tmp_path / "policy.toml"
    policy.write_text(scenarios.POLICY)
    broker = Broker()
    worker = Worker(broker, "away", policy=str(policy), database_url=database,
                    log_path=str(tmp_path / "worker.log")).start()
    client = Client(broker, "away")
    stopped = False
    try:
        worker.wait_healthy()

        def on_phase(n: int) -> None:
            nonlocal stopped
            if n == 10:
                postgres.stop()
                stopped = True
            if n == 30:
                postgres.start()
                stopped = False

        # The stream goes on while the ledger cannot write: the script plays to its end.
        client.play(reference.script, on_phase=on_phase)
        expected = sorted({c.command_id for c in reference.log})
        deadline = time.monotonic() + 90
        while True:
            ids = sorted(r[0] for r in query(database, "SELECT command_id FROM command_log"))
            if len(ids) >= len(expected) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert ids == expected  # every command, once
        assert "PostgreSQL unavailable" in (tmp_path / "worker.log").read_text()
    finally:
        if stopped:
            postgres.start()
        worker.kill()
        client.close()
        broker.stop()
