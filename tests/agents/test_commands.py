"""`dunning broker` and `dunning tick` as a user runs them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import orjson

from dunning.rules import model as m
from dunning.streams import topics
from dunning.streams.broker import free_port
from dunning.streams.codec import decode
from dunning.streams.records import H_AFTER, after_header, after_of
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


def test_tick_confirm_jump_sends_the_header_the_clock_guard_lets_through():
    broker = Broker()
    client = Client(broker, "ticks")
    try:
        for flags in ((), ("--confirm-jump",)):
            done = subprocess.run(dunning("tick", "--broker", broker.url, "--at", "2026-03-01",
                                          *flags), capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
        # (partitions are read one after the other: sort into sending order)
        plain, confirmed = sorted(client.read([topics.CLOCK]), key=lambda r: r.timestamp)
        assert ("dunning.confirm", b"jump") not in plain.headers
        assert ("dunning.confirm", b"jump") in confirmed.headers
        tick = decode(topics.CLOCK, None, confirmed.value, 0, 1, confirmed.headers)
        assert isinstance(tick, m.ClockTick) and tick.confirmed
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


def test_a_tick_carries_the_other_inputs_end_offsets():
    """So the worker's gate applies it after exactly what was sent before it."""
    broker = Broker()
    client = Client(broker, "ticks")
    try:
        for n in range(3):  # one send each: Tansu's end offsets are exact for such batches
            client.send([(topics.PAYMENTS, b"inv-1", orjson.dumps({"n": n}))])
        done = subprocess.run(dunning("tick", "--broker", broker.url, "--at", "2026-03-01"),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        [record] = client.read([topics.CLOCK])
        ends = after_of(record.headers)
        assert ends is not None
        sent = {(tp.topic, tp.partition): end for tp, end in client.sent.items()}
        assert {k: v for k, v in ends.items() if v} == sent
        assert {t for t, _ in ends} == {topics.PAYMENTS}  # the only input topic there yet
    finally:
        client.close()
        broker.stop()


def test_the_after_header_round_trips_and_rejects_what_is_not_it():
    ends = {(topics.PAYMENTS, 0): 12, (topics.INVOICES, 3): 0}
    assert after_of([after_header(ends)]) == ends
    assert after_of([("other", b"x")]) is None
    for bad in (b"not json", b"[1]", b'{"billing.payments": {"x": 1}}',
                b'{"billing.payments": {"0": -1}}', b'{"billing.payments": {"0": "1"}}'):
        assert after_of([(H_AFTER, bad)]) is None, bad
