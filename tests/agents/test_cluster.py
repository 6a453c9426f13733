"""The worker on a cluster of three Apache Kafka nodes (KRaft; its topics with three replicas,
`min.insync.replicas` 2, its producer waiting for every in-sync replica): a node killed with
SIGKILL in the middle of a billing run, and started again later, costs nothing. The worker
keeps going, never restarted, and its commands are exactly the engine's: every one present,
duplicates identical, nothing extra; the ledger holds each once. One run kills the node that
coordinates the worker's consumer group, another the controller quorum's leader."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from dunning.agents.app import TABLES, changelog_topic
from dunning.streams import records as wire
from dunning.streams.topics import INPUTS, OUTPUTS
from tests.agents import scenarios
from tests.agents.kafka import Broker
from tests.agents.test_crash import Setting, check_against_engine, check_ledger, kill_on_output

pytestmark = pytest.mark.kafka

KILL_AT, START_AT = 12, 30  # ticks: the node dies as day 13 is processed, is back for day 31


@pytest.fixture
def setting(tmp_path: Any, database: str) -> Any:
    s = Setting(tmp_path, database, Broker(nodes=3), replication_factor=3)
    try:
        yield s
    finally:
        s.close()


async def coordinator(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.find_coordinator(group)
    finally:
        await admin.close()


def run_losing_a_node(setting: Setting, app_id: str, seed: int,
                      victim: Callable[[], int]) -> tuple[int, int]:
    """A billing run of a few thousand events and daily ticks on one worker; the node
    `victim()` names is SIGKILLed the moment a tick's first commands are out, and started again
    18 ticks later. Returns the node killed and the quorum's leader while it was down."""
    cluster = setting.broker.impl
    reference = scenarios.random_run(seed=seed, invoices=2000, days_=45)
    assert len(reference.script) > 3000
    worker = setting.worker(app_id, "worker")
    worker.wait_healthy()
    client = setting.connect(app_id)
    killed: list[int] = []
    leader_meanwhile: list[int] = []
    watchers = []

    def on_phase(n: int) -> None:
        if n == KILL_AT:
            node = victim()
            day = (date(2026, 1, 1) + timedelta(days=n)).isoformat()

            def kill() -> None:
                cluster.kill(node)
                killed.append(node)

            watchers.append(kill_on_output(setting, f"tick-{day}T00:00:00Z", kill))
            time.sleep(1)  # the watcher is subscribed before the tick goes out
        elif n == START_AT:
            watchers[0].join()
            assert killed, "the node was not killed"
            leader_meanwhile.append(cluster.quorum_leader())
            cluster.start(killed[0])

    client.play(reference.script, timeout=180, on_phase=on_phase)
    assert all(node.running for node in cluster.nodes)
    assert setting.alive() == [worker], "the worker did not keep going"
    duplicates = check_against_engine(reference, client)
    check_ledger(reference, setting.database_url)
    print(f"\n{len(reference.script)} records in, {len(reference.log)} commands expected; "
          f"{duplicates} duplicates after SIGKILL of node {killed[0]}")
    return killed[0], leader_meanwhile[0]


def test_the_group_coordinator_killed_mid_stream(setting):
    bootstrap = setting.broker.bootstrap
    run_losing_a_node(setting, "cluster", 3,
                      lambda: asyncio.run(coordinator(bootstrap, "cluster")))

    async def described() -> tuple[Any, dict[str, str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = [*INPUTS, *OUTPUTS, wire.events_topic("cluster"),
                     wire.signals_topic("cluster"),
                     *(changelog_topic("cluster", t) for t in TABLES)]
            topics = await admin.describe_topics(names)
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, changelog_topic("cluster", t))
                 for t in TABLES])
        finally:
            await admin.close()
        policies = {name: dict(e[:2] for e in entries)["cleanup.policy"]
                    for c in configs for (_, _, _, name, entries) in c.resources}
        return topics, policies

    topics, policies = asyncio.run(described())
    # Every topic the worker made has three replicas; the changelogs are compacted.
    assert {len(p["replicas"]) for t in topics for p in t["partitions"]} == {3}
    assert policies == {changelog_topic("cluster", t): "compact" for t in TABLES}


def test_the_controller_quorum_leader_killed_mid_stream(setting):
    cluster = setting.broker.impl
    killed, leader = run_losing_a_node(setting, "quorum", 5, cluster.quorum_leader)
    assert leader != killed  # the two left elected one of them
