"""What exactly once costs: the worker at least once vs exactly once on Apache Kafka.

The same input as `bench.worker` (a billing run fed live, each tick once the group has the
days before), one worker, each guarantee on an Apache Kafka node of its own, measured in one
run. Prints events/s both ways and their ratio, after checking that each run did the engine's
work (its commands by type, and the ledger holding each command once).

    python -m bench.guarantee [--invoices N] [--days N] [--tick-days N] [--partitions N]
"""

from __future__ import annotations

import argparse
import asyncio
import os

from bench.core import POLICY, billing_run
from bench.worker import APP_ID, create_topics, expected_commands, say, start_feed, worker_run
from dunning.config.settings import GUARANTEES
from dunning.ledger.db import embedded_url
from dunning.streams.apache_kafka import KafkaBroker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--tick-days", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    records = billing_run(args.invoices, args.days, args.tick_days)
    say(f"the worker at least once vs exactly once, on Apache Kafka: {len(records):,} records "
        f"({args.invoices:,} invoices, {args.days} days, a tick every {args.tick_days}), "
        f"{args.partitions} partitions, one worker")
    expected = expected_commands(args.invoices, args.days, args.tick_days)
    folder = os.path.join(os.path.dirname(__file__), "..", ".dunning")
    os.makedirs(folder, exist_ok=True)
    database_url = embedded_url(folder, APP_ID)
    policy = os.path.join(folder, "bench-policy.toml")
    with open(policy, "w") as f:
        f.write(POLICY)
    rates = {}
    for guarantee in GUARANTEES:
        broker = KafkaBroker()
        try:
            asyncio.run(create_topics(broker.bootstrap, args.partitions))
            rate, ledger_after, busy = worker_run(
                broker, len(records), expected, args.partitions, policy, database_url,
                lambda b=broker: start_feed(b, args, APP_ID), guarantee=guarantee)
            rates[guarantee] = rate
            say(f"   {guarantee:>13}: {rate:>8,.0f} events/s, the worker busy {busy:.0%} of the "
                f"time; {len(expected):,} commands, the engine's; the ledger had them all "
                f"{ledger_after:.1f} s later")
        finally:
            broker.stop()
    at_least, exactly = (rates[g] for g in GUARANTEES)
    say(f"   exactly once / at least once: {exactly / at_least:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
