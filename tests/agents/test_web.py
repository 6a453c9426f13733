"""Who may read an invoice (contract v1.1 §4 "Security"): `GET /invoices/{id}` is personal
data. With `--web-token` it needs `Authorization: Bearer TOKEN`; without one it answers only
loopback clients. `/health` and `/metrics` stay open to everyone (Prometheus, probes)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from dunning.streams import topics
from tests.agents.kafka import Broker, Client, Worker

TOKEN = "s3cret-token-for-the-test"


def issue(client: Client, ids: list[str]) -> None:
    client.send([(topics.INVOICES, i.encode(), orjson.dumps({
        "type": "invoice.issued", "event_id": f"ev-{i}", "invoice_id": i,
        "customer_id": "c-1", "amount": "10.00", "currency": "USD",
        "issued_at": "2026-01-01T00:00:00Z"})) for i in ids])
    client.settle()


class Host:
    """Another host on this machine: a network namespace of the test's own, joined to this
    one by a veth pair (addresses of a /30 that exists only between the two)."""

    def __init__(self, name: str, here: str, there: str) -> None:
        self.name, self.here, self.there = name, here, there
        self.link = f"dn{os.getpid() % 10000}h"
        steps = [
            ["ip", "netns", "add", name],
            ["ip", "link", "add", self.link, "type", "veth", "peer", "name", "dnpeer",
             "netns", name],
            ["ip", "addr", "add", f"{here}/30", "dev", self.link],
            ["ip", "link", "set", self.link, "up"],
            ["ip", "-n", name, "addr", "add", f"{there}/30", "dev", "dnpeer"],
            ["ip", "-n", name, "link", "set", "dnpeer", "up"],
            ["ip", "-n", name, "link", "set", "lo", "up"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            assert done.returncode == 0, f"{' '.join(step)}: {done.stderr}"

    def get(self, port: int, path: str, headers: dict[str, str] | None = None) -> int:
        """The status of a GET from the other host to this one."""
        script = (
            "import sys, urllib.request, urllib.error\n"
            "req = urllib.request.Request(sys.argv[1], headers=dict(a.split(': ', 1) "
            "for a in sys.argv[2:]))\n"
            "try:\n"
            "    print(urllib.request.urlopen(req, timeout=5).status)\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n")
        args = [f"{k}: {v}" for k, v in (headers or {}).items()]
        done = subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", script,
                               f"http://{self.here}:{port}{path}", *args],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def other_host() -> Iterator[Host]:
    host = Host(f"dunning-web-{os.getpid()}", "10.213.7.1", "10.213.7.2")
    try:
        yield host
    finally:
        host.remove()


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker()
    try:
        yield b
    finally:
        b.stop()


def start(broker: Broker, tmp_path: Any, name: str, database: str, **kw: Any) -> Worker:
    worker = Worker(broker, "web", partitions=4, log_path=str(tmp_path / f"{name}.log"),
                    database_url=database, **kw).start()
    return worker


def test_without_a_token_only_loopback_clients_read_invoices(broker, tmp_path, database,
                                                             other_host):
    worker = start(broker, tmp_path, "a", database)
    client = Client(broker, "web")
    try:
        worker.wait_healthy()
        issue(client, ["inv-1"])
        assert worker.get("/invoices/inv-1")[0] == 200  # from 127.0.0.1
        assert other_host.get(worker.web_port, "/invoices/inv-1") == 403
        assert other_host.get(worker.web_port, "/invoices/no-such") == 403  # nothing told
        assert other_host.get(worker.web_port, "/health") == 200
        assert other_host.get(worker.web_port, "/metrics") == 200
    finally:
        worker.kill()
        client.close()


def test_with_a_token_every_client_needs_it_and_workers_pass_it_on(broker, tmp_path, database,
                                                                   other_host):
    a = start(broker, tmp_path, "a", database, web_token=TOKEN)
    b = start(broker, tmp_path, "b", database, web_token=TOKEN)
    client = Client(broker, "web")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        a.wait_healthy()
        b.wait_healthy()
        ids = [f"web-{n}" for n in range(8)]  # over both workers' partitions
        issue(client, ids)
        for worker in (a, b):
            status, body = worker.get("/invoices/web-1")
            assert status == 401 and TOKEN.encode() not in body
            assert worker.get("/invoices/web-1", {"Authorization": "Bearer wrong"})[0] == 401
            assert worker.get("/invoices/web-1", {"Authorization": TOKEN})[0] == 401
            for i in ids:  # a worker that does not own the invoice asks the one that does
                status, body = worker.get(f"/invoices/{i}", bearer)
                assert status == 200, (i, body)
                assert orjson.loads(body)["invoice_id"] == i
            assert worker.get("/invoices/no-such-invoice", bearer)[0] == 404
            assert other_host.get(worker.web_port, "/invoices/web-1", bearer) == 200
            assert other_host.get(worker.web_port, "/invoices/web-1") == 401
            assert worker.get("/health")[0] == 200 and worker.get("/metrics")[0] == 200
        for log in ("a.log", "b.log"):
            assert TOKEN not in (tmp_path / log).read_text()
    finally:
        a.kill()
        b.kill()
        client.close()


def test_the_token_is_not_shown_by_help():
    shown = subprocess.run([sys.executable, "-m", "dunning.cli", "worker", "--help"],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "DUNNING_WEB_TOKEN": TOKEN})
    assert shown.returncode == 0 and "--web-token" in shown.stdout
    assert TOKEN not in shown.stdout + shown.stderr
