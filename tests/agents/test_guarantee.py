"""`--guarantee exactly_once` on a broker without transactions: the worker refuses to start,
and says why (contract §4). (Its delivery on Apache Kafka: test_crash.py.)"""

from __future__ import annotations

import pytest

from tests.agents.kafka import Broker, Worker


def test_exactly_once_is_refused_on_a_broker_without_transactions(tmp_path):
    broker = Broker()
    try:
        if broker.kafka:
            pytest.skip("Apache Kafka has transactions: the embedded broker (Tansu) has none")
        log = tmp_path / "worker.log"
        worker = Worker(broker, "eos", guarantee="exactly_once", log_path=str(log)).start()
        assert worker.proc is not None
        code = worker.proc.wait(timeout=60)
        said = log.read_text()
        assert code != 0, said
        assert "--guarantee exactly_once needs a broker with transactions" in said, said
        assert "--guarantee at_least_once" in said, said  # what to run there instead
    finally:
        broker.stop()


@pytest.mark.kafka
def test_table_recovery_stops_after_the_last_committed_record():
    """With transactions a changelog ends in a marker (here after an aborted transaction),
    which no reader receives: Faust, restoring until the record below the end offset, would
    wait forever. Recovery is told the offset after the last record there is to read."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.structs import TopicPartition

    from dunning.agents.batches import after_last_record

    broker = Broker()
    tp, empty = TopicPartition("changelog", 0), TopicPartition("aborted-only", 0)

    async def transaction(producer: AIOKafkaProducer, topic: str, n: int, commit: bool) -> None:
        await producer.begin_transaction()
        for i in range(n):
            await producer.send(topic, b"row-%d" % i, key=b"k", partition=0)
        await (producer.commit_transaction() if commit else producer.abort_transaction())

    async def scenario() -> tuple[int, int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(tp.topic, 1, 1), NewTopic(empty.topic, 1, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="t")
        tail = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed")
        await producer.start()
        await tail.start()
        try:
            await transaction(producer, tp.topic, 3, commit=True)  # offsets 0-2, marker 3
            for _ in range(3):
                await transaction(producer, tp.topic, 2, commit=False)  # aborted, 4-12
            await transaction(producer, empty.topic, 2, commit=False)
            ends = await tail.end_offsets([tp, empty])
            return (ends[tp], await after_last_record(tail, tp, ends[tp]),
                    await after_last_record(tail, empty, ends[empty]))
        finally:
            await tail.stop()
            await producer.stop()

    try:
        end, after_last, after_none = asyncio.run(scenario())
    finally:
        broker.stop()
    assert end == 13  # past the markers and the aborted records
    assert after_last == 3
    assert after_none == 0
