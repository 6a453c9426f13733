"""What exactly once costs: the worker at least once vs exactly once on Apache Kafka.

The same input as `bench.worker` (a billing run fed live, each tick once the group has the
days before), one worker, each guarantee on an Apache Kafka node of its own, measured in one
run. Prints events/s both ways and their ratio, after checking that each run did the engine's
work (its commands by type, and the ledger holding each command once).

    python -m bench.guarantee [--invoices N] [--days N] [--tick-days N] [--partitions N]
"""

from __future__ import annotations

import asyncio

from bench.core import billing_run
from bench.worker import (
    APP_ID,
    bench_files,
    create_topics,
    expected_commands,
    run_arguments,
    say,
    start_feed,
    worker_run,
)
from dunning.config.settings import GUARANTEES
from dunning.streams.apache_kafka import KafkaBroker


def main(argv: list[str] | None = None) -> int:
    args = run_arguments(argv, __doc__.splitlines()[0])
    records = billing_run(args.invoices, args.days, args.tick_days)
    say(f"the worker at least once vs exactly once, on Apache Kafka: {len(records):,} records "
        f"({args.invoices:,} invoices, {args.days} days, a tick every {args.tick_days}), "
        f"{args.partitions} partitions, one worker")
    expected = expected_commands(args.invoices, args.days, args.tick_days)
    database_url, policy = bench_files()
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
