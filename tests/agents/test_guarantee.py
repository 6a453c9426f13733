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
