"""`dunning broker` and `dunning tick` as a user runs them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import orjson

from dunning.streams import topics
from dunning.streams.broker import free_port
from tests.agents.kafka import Broker, Client


def dunning(*args: str) -> list[str]:
    return [sys.executable, "-m", "dunning.cli", *args]


def test_broker_runs_in_the_foreground_on_its_port():
    port = free_port()
    proc = subprocess.Popen(dunning("broker", "--port", str(port)), stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the broker did not listen"
                time.sleep(0.05)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_tick_at_sends_one_tick_with_its_time_as_id():
    broker = Broker()
    client = Client(broker, "ticks")
    try:
        done = subprocess.run(dunning("tick", "--broker", broker.url, "--at", "2026-03-01"),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        [record] = client.read([topics.CLOCK])
        assert orjson.loads(record.value) == {
            "type": "clock.tick", "event_id": "tick-2026-03-01T00:00:00Z",
            "now": "2026-03-01T00:00:00Z"}
    finally:
        client.close()
        broker.stop()


def test_tick_every_runs_logical_time_faster():
    broker = Broker()
    client = Client(broker, "ticks")
    try:
        proc = subprocess.Popen(dunning("tick", "--broker", broker.url, "--at", "2026-03-01",
                                        "--every", "0.2", "--speed", "86400"),
                                stdout=subprocess.DEVNULL)
        time.sleep(2.5)
        proc.terminate()
        proc.wait(timeout=10)
        # (partitions are read one after the other: sort into sending order)
        nows = sorted(orjson.loads(r.value)["now"] for r in client.read([topics.CLOCK]))
        assert len(nows) >= 3 and len(set(nows)) == len(nows)
        assert nows[0] == "2026-03-01T00:00:00Z"
        assert nows[-1] >= "2026-03-02"  # a wall second is a logical day
    finally:
        client.close()
        broker.stop()
