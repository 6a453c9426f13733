"""`dunning broker`, `dunning tick` and the operator controls as a user runs them."""

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


def _control(broker: Broker, client: Client, *args: str) -> tuple[bytes, dict[str, object]]:
    """Run one operator control against `broker`: the key and value it put on
    billing.invoices, the one record there."""
    done = subprocess.run(dunning(*args, "--broker", broker.url), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [record] = client.read([topics.INVOICES])
    event = decode(topics.INVOICES, record.key, record.value)
    assert not isinstance(event, m.DeadLetter), event
    assert f"(event_id {event.event_id})" in done.stdout
    return record.key, orjson.loads(record.value)


def test_pause_publishes_collection_paused_keyed_by_the_invoice():
    broker = Broker()
    client = Client(broker, "pause")
    try:
        key, value = _control(broker, client, "pause", "INV-7", "--until", "2026-03-01",
                              "--reason", "promise_to_pay")
        assert key == b"INV-7"
        assert value.pop("event_id")
        assert value == {"type": "collection.paused", "invoice_id": "INV-7",
                         "reason": "promise_to_pay", "until": "2026-03-01T00:00:00Z"}
    finally:
        client.close()
        broker.stop()


def test_resume_publishes_collection_resumed_with_the_event_id_given():
    broker = Broker()
    client = Client(broker, "resume")
    try:
        key, value = _control(broker, client, "resume", "INV-7", "--event-id", "resume-1")
        assert (key, value) == (b"INV-7", {"type": "collection.resumed",
                                           "event_id": "resume-1", "invoice_id": "INV-7"})
    finally:
        client.close()
        broker.stop()


def test_update_publishes_invoice_updated_with_the_dates_moved_and_removed():
    broker = Broker()
    client = Client(broker, "update")
    try:
        key, value = _control(broker, client, "update", "INV-7", "--due-at", "2026-03-01",
                              "--suspend-at", "2026-03-20T08:00:00Z", "--delete-at", "none")
        assert key == b"INV-7"
        assert value["type"] == "invoice.updated" and value["invoice_id"] == "INV-7"
        assert value["due_at"] == "2026-03-01T00:00:00Z"
        assert value["overrides"] == {"suspend_at": "2026-03-20T08:00:00Z", "delete_at": False}
    finally:
        client.close()
        broker.stop()
