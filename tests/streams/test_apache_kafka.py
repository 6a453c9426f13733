"""Apache Kafka for the tests (`dunning.streams.apache_kafka`): one node and a cluster of three
serve what the worker needs: topics, records, transactions, compaction. Runs under
`make test-kafka` only (`--broker=kafka`)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition

from dunning.streams.apache_kafka import KAFKA_VERSION, KafkaBroker, kafka_jars

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def kafka():
    started = time.monotonic()
    broker = KafkaBroker()
    print(f"\nApache Kafka {KAFKA_VERSION}, one node: started in "
          f"{time.monotonic() - started:.1f} s")
    yield broker
    broker.stop()


async def read_all(bootstrap: str, topic: str, count: int, **kwargs) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, **kwargs)
    await consumer.start()
    try:
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [r.value for rs in batches.values() for r in rs]
        # Nothing more comes than what was asked.
        batches = await consumer.getmany(timeout_ms=500)
        return values + [r.value for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()


def test_the_jars_are_fetched_once():
    folder = kafka_jars()
    assert any(p.name == f"kafka_2.13-{KAFKA_VERSION}.jar" for p in folder.iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert kafka_jars() == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_the_broker_has_the_surface_of_the_embedded_one(kafka):
    assert kafka.url == f"kafka://127.0.0.1:{kafka.port}"
    assert kafka.bootstrap == f"127.0.0.1:{kafka.port}"
    # It logs to a file in its folder, not to the console.
    assert b"Kafka Server started" in kafka.nodes[0].log.read_bytes()


def test_topics_records_and_offsets(kafka):
    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("smoke.plain", 3, 1)])
            assert "smoke.plain" in await admin.list_topics()
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(9):
                await producer.send_and_wait("smoke.plain", b"v%d" % i, key=b"k%d" % i)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
        await consumer.start()
        try:
            parts = [TopicPartition("smoke.plain", p) for p in range(3)]
            ends = await consumer.end_offsets(parts)
        finally:
            await consumer.stop()
        assert sum(ends.values()) == 9  # exact end offsets, one per record
        values = await read_all(kafka.bootstrap, "smoke.plain", 9)
        assert sorted(values) == sorted(b"v%d" % i for i in range(9))

    asyncio.run(go())


def test_transactions_commit_and_abort(kafka):
    async def go():
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap,
                                    transactional_id="smoke-tx", enable_idempotence=True)
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(3):
                    await producer.send("smoke.tx", b"committed-%d" % i)
            await producer.begin_transaction()
            for i in range(3):
                await producer.send("smoke.tx", b"aborted-%d" % i)
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send("smoke.tx", b"committed-3")
        finally:
            await producer.stop()
        committed = await read_all(kafka.bootstrap, "smoke.tx", 4,
                                   isolation_level="read_committed")
        assert committed == [b"committed-%d" % i for i in range(4)]
        everything = await read_all(kafka.bootstrap, "smoke.tx", 7,
                                    isolation_level="read_uncommitted")
        assert sorted(everything) == sorted([b"committed-%d" % i for i in range(4)]
                                            + [b"aborted-%d" % i for i in range(3)])

    asyncio.run(go())


def test_a_compacted_topic(kafka):
    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("smoke.compacted", 1, 1,
                                                topic_configs={"cleanup.policy": "compact"})])
            [described] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, "smoke.compacted")])
        finally:
            await admin.close()
        [(_, _, _, _, entries)] = described.resources
        config = {e[0]: e[1] for e in entries}
        assert config["cleanup.policy"] == "compact"
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("smoke.compacted", b"1", key=b"k")
            await producer.send_and_wait("smoke.compacted", b"2", key=b"k")
        finally:
            await producer.stop()
        assert await read_all(kafka.bootstrap, "smoke.compacted", 2) == [b"1", b"2"]

    asyncio.run(go())


def test_a_cluster_of_three_keeps_serving_while_one_node_is_down():
    started = time.monotonic()
    cluster = KafkaBroker(nodes=3)
    print(f"\nApache Kafka {KAFKA_VERSION}, three nodes: started in "
          f"{time.monotonic() - started:.1f} s")
    try:
        assert cluster.url.count(";") == 2 and cluster.bootstrap.count(",") == 2

        async def send(values: list[bytes]) -> None:
            producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all",
                                        request_timeout_ms=30000)
            await producer.start()
            try:
                for v in values:
                    await producer.send_and_wait("smoke.replicated", v, key=v)
            finally:
                await producer.stop()

        async def create() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic("smoke.replicated", 2, 3)])
                [described] = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.BROKER, "1")])
            finally:
                await admin.close()
            [(_, _, _, _, entries)] = described.resources
            config = {e[0]: e[1] for e in entries}
            assert config["min.insync.replicas"] == "2"
            assert config["default.replication.factor"] == "3"
            assert config["transaction.state.log.replication.factor"] == "3"

        asyncio.run(create())
        asyncio.run(send([b"a", b"b"]))
        cluster.kill(2)  # SIGKILL: a crash
        asyncio.run(send([b"c", b"d"]))  # two in-sync replicas are enough
        cluster.start(2)
        cluster.kill(1)
        asyncio.run(send([b"e", b"f"]))
        cluster.start(1)
        values = asyncio.run(read_all(cluster.bootstrap, "smoke.replicated", 6))
        assert sorted(values) == [b"a", b"b", b"c", b"d", b"e", b"f"]
    finally:
        cluster.stop()
