"""A billing system's own Kafka client end to end: confluent-kafka (librdkafka) produces the
input, with librdkafka's default partitioner (CRC32 of the key, random without one: not the
Java client's murmur2 that aiokafka follows) and keys a billing system would choose (the
customer's id, or none), and a confluent-kafka consumer group reads the commands. The worker
re-keys every record by invoice, so its commands are exactly the engine's. On Tansu and on
Apache Kafka."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka.structs import TopicPartition
from confluent_kafka import Consumer, Producer

from dunning.demo.check import compare
from tests.agents import scenarios
from tests.agents.kafka import OUTPUT_TOPICS, Broker, Client, Worker


def customer_key(value: bytes | None) -> bytes | None:
    """The key a billing system might give: the customer's id where the record names one (an
    invoice), no key otherwise (payments, ticks, anything unreadable)."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    customer = doc.get("customer_id") if isinstance(doc, dict) else None
    return customer.encode() if isinstance(customer, str) else None


class BillingClient(Client):
    """The harness's feeder (its barriers wait for the worker's group), its records sent by
    librdkafka instead of aiokafka."""

    def __init__(self, broker: Broker, app_id: str) -> None:
        super().__init__(broker, app_id)
        self.rd = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                            "linger.ms": 2, "log.connection.close": False})
        self.keys: dict[str | None, int] = {"customer": 0, None: 0}

    def close(self) -> None:
        self.rd.flush(5)
        del self.rd  # librdkafka's client goes now, not when collected after the broker
        super().close()

    def send(self, records: Any) -> None:
        delivered: list[Any] = []

        def report(err: Any, msg: Any) -> None:
            delivered.append((err, msg))

        for topic, _, value, *headers in records:
            key = customer_key(value)
            self.keys["customer" if key else None] += 1
            self.rd.produce(topic, value, key=key, headers=headers[0] if headers else None,
                            on_delivery=report)
        assert self.rd.flush(30) == 0, "librdkafka did not deliver everything"
        for err, msg in delivered:
            assert err is None, err
            tp = TopicPartition(msg.topic(), msg.partition())
            self.sent[tp] = max(self.sent.get(tp, 0), msg.offset() + 1)


def read_commands(bootstrap: str, group: str, expected: int) -> list[dict[str, Any]]:
    """The commands, read by a consumer group of librdkafka's that commits what it read: until
    `expected` distinct ones are in and then two seconds pass with nothing more."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         # Tansu holds a join for a while, less with short timeouts: 24 s with
                         # librdkafka's defaults, 4 s with these.
                         "max.poll.interval.ms": 10000, "session.timeout.ms": 6000})
    consumer.subscribe(list(OUTPUT_TOPICS))
    out: list[dict[str, Any]] = []
    read: dict[tuple[str, int], int] = {}  # the offset after the last record read
    try:
        deadline = time.monotonic() + 60
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if (len({c["command_id"] for c in out}) >= expected
                    and time.monotonic() - quiet_since > 2):
                break
            msgs = consumer.consume(num_messages=1000, timeout=0.5)
            if msgs:
                quiet_since = time.monotonic()
            for msg in msgs:
                assert msg.error() is None, msg.error()
                out.append(orjson.loads(msg.value()))
                read[(msg.topic(), msg.partition())] = msg.offset() + 1
        consumer.commit(asynchronous=False)
        assigned = consumer.assignment()
        assert {p.topic for p in assigned} == set(OUTPUT_TOPICS)
        # The group's offsets are where the reading stopped. (Not the high watermarks: on
        # Tansu those stop at the first record of a partition's last batch.)
        committed = consumer.committed(assigned, timeout=10)
        assert {(p.topic, p.partition): p.offset for p in committed if p.offset >= 0} == read
    finally:
        consumer.close()
    return out


def test_billing_systems_own_clients(tmp_path):
    reference = scenarios.every_rule()
    (tmp_path / "policy.toml").write_text(scenarios.POLICY)
    broker = Broker()
    worker = Worker(broker, "rd", policy=str(tmp_path / "policy.toml"),
                    log_path=str(tmp_path / "worker.log"))
    client = None
    try:
        worker.start().wait_healthy()
        client = BillingClient(broker, "rd")
        client.play(reference.script, timeout=120)
        assert client.keys["customer"] > 0 and client.keys[None] > 0
        commands = read_commands(broker.bootstrap, "billing-readers",
                                 len({c.command_id for c in reference.log}))
        result = compare((c.value for c in reference.log), commands)
        assert not result.missing, result.missing[:5]
        assert not result.extra, result.extra[:5]
        assert not result.differing, result.differing[:5]
        print(f"\n{len(reference.script)} records in by librdkafka ({client.keys}); "
              f"{len(commands)} commands read by its consumer group")
    finally:
        worker.kill()
        if client is not None:
            client.close()
        broker.stop()
