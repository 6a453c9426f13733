"""`broker.exact_end_offsets` says what the broker's end offsets do: after one batch of three
records, Apache Kafka's end offset is 3; Tansu's stops at the batch's first record (1). The
test feeder works around short ones only where it says so."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from dunning.streams.broker import exact_end_offsets
from tests.agents.kafka import Broker


def test_exact_end_offsets_tells_the_brokers_apart():
    broker = Broker()

    async def go() -> tuple[bool, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            exact = await exact_end_offsets(admin)
            await admin.create_topics([NewTopic("probe.batch", 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1000)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        await consumer.start()
        try:
            sent = [await producer.send("probe.batch", b"v%d" % i, partition=0)
                    for i in range(3)]
            await producer.flush()  # the three in one batch
            assert [(await s).offset for s in sent] == [0, 1, 2]
            tp = TopicPartition("probe.batch", 0)
            return exact, (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()
            await producer.stop()

    try:
        exact, end = asyncio.run(go())
    finally:
        broker.stop()
    assert exact == broker.kafka
    assert end == (3 if broker.kafka else 1)
