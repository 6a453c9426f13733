"""Table changelogs are compacted on Apache Kafka: after many updates to the same invoices, the
log a restarted worker recovers from holds fewer records than were written, and what it holds
is the whole state (the run goes on with exactly the engine's commands). Tansu does not compact,
so the test runs under `make test-kafka` only."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import date, timedelta

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from dunning.agents.app import changelog_topic
from dunning.streams import topics
from tests.agents import scenarios
from tests.agents.test_crash import check_against_engine
from tests.agents.test_crash import guarantee as guarantee  # the fixtures: at least once,
from tests.agents.test_crash import setting as setting  # one broker, a ledger

pytestmark = pytest.mark.kafka

INVOICES, PAYING_DAYS, DAYS = 40, 25, 70

# The log cleaner's turn comes quickly: a segment rolls every 300 ms of writing, and a segment
# is cleaned as soon as any of it is superseded.
QUICK_CLEANING = {"cleanup.policy": "compact", "segment.ms": "300",
                  "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}


def many_updates() -> tuple[scenarios.Recorder, int]:
    """Invoices paid a little every day for weeks, then left to go overdue; returns the
    reference run and where in its script the last paying day ends."""
    d = scenarios.Recorder()
    for day in range(DAYS):
        d.tick((date(2026, 1, 1) + timedelta(days=day)).isoformat())
        for i in range(INVOICES):
            if day == 0:
                d.issue(f"inv-{i}", customer_id=f"c-{i}", amount="100.00",
                        issued_at="2026-01-01")
            elif day <= PAYING_DAYS:
                d.pay(f"inv-{i}", "1.00", payment_id=f"p-{i}-{day}")
        if day == PAYING_DAYS:
            cut = len(d.script)
    return d, cut


async def changelog_config(bootstrap: str, name: str, change: dict[str, str]) -> dict[str, str]:
    """The topic's configuration as the worker made it; then `change` is applied."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name)])
        [(_, _, _, _, entries)] = described.resources
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                  configs=change)])
        return {e[0]: e[1] for e in entries}
    finally:
        await admin.close()


async def written_and_kept(bootstrap: str, name: str) -> tuple[int, int]:
    """Records ever written to the topic (its end offsets) and records still on it: all that a
    reader from the start, as table recovery is, gets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topics.partitions(consumer, [name])
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        kept, left = 0, {tp for tp in tps if ends[tp] > 0}
        while left:
            for tp, records in (await consumer.getmany(*left, timeout_ms=1000)).items():
                kept += len(records)
                if records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return sum(ends.values()), kept
    finally:
        await consumer.stop()


def test_a_restart_recovers_from_the_compacted_changelog(setting):
    reference, cut = many_updates()
    changelog = changelog_topic("compaction", "invoices")
    first = setting.worker("compaction", "first")
    first.wait_healthy()
    bootstrap = setting.broker.bootstrap
    made = asyncio.run(changelog_config(bootstrap, changelog, QUICK_CLEANING))
    assert made["cleanup.policy"] == "compact"
    client = setting.connect("compaction")
    client.play(reference.script[:cut], timeout=120)
    # The cleaner runs on segments that have rolled: a last write after a pause rolls them.
    deadline = time.monotonic() + 60
    while True:
        written, kept = asyncio.run(written_and_kept(bootstrap, changelog))
        if kept * 2 < written or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(f"\n{changelog}: {written} rows written, {kept} kept after compaction")
    assert written > INVOICES * PAYING_DAYS  # every paying day updated every invoice
    assert kept * 2 < written
    first.kill(signal.SIGKILL)
    setting.worker("compaction", "second").wait_healthy()  # recovered from the kept rows
    client.play(reference.script[cut:], timeout=120)
    check_against_engine(reference, client)
