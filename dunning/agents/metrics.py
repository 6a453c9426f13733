"""Prometheus metrics of contract §5, in a registry of their own (one per worker app)."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dunning.rules import model as m

# From a record reaching the broker to its batch's output being sent: seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Snapshot:
    """What the gauges show, read from the worker when Prometheus scrapes."""

    invoices: Tally[str] = field(default_factory=Tally)  # by status
    scheduled: int = 0  # invoices (and waiting orphans) with a next action in the schedule
    lag: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> n
    last_tick: float | None = None  # monotonic time the clock last moved


class WorkerCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.snapshot()
        invoices = GaugeMetricFamily("dunning_invoices", "Invoices on this worker, by status",
                                     labels=["status"])
        for status, n in sorted(s.invoices.items()):
            invoices.add_metric([status], n)
        yield invoices
        yield GaugeMetricFamily("dunning_scheduled_actions",
                                "Invoices with a next action due by time, on this worker",
                                value=s.scheduled)
        lag = GaugeMetricFamily("dunning_consumer_lag",
                                "Records not yet processed: end offset minus committed offset",
                                labels=["topic", "partition"])
        for (topic, partition), n in sorted(s.lag.items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag
        since = 0.0 if s.last_tick is None else time.monotonic() - s.last_tick
        yield GaugeMetricFamily("dunning_tick_lag_seconds",
                                "Seconds since a tick last moved this worker's logical time",
                                value=since)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_resident_memory_bytes, process_cpu_seconds_total, ...: what capacity
        # planning reads (memory per open invoice).
        ProcessCollector(registry=self.registry)
        self.events = Counter(
            "dunning_events", "Input events by topic, type and outcome",
            ["topic", "type", "outcome"], registry=self.registry,
        )
        self.commands = Counter(
            "dunning_commands", "Commands emitted, by type", ["type"], registry=self.registry,
        )
        self.dead_letters = Counter(
            "dunning_dead_letters", "Records dead-lettered, by dlq.error code", ["code"],
            registry=self.registry,
        )
        for code in m.DLQ_CODES:  # each served from the start, so rules can alert on it
            self.dead_letters.labels(code)
        self.clock_rejected = Counter(
            "dunning_clock_rejected", "Ticks refused by the clock guard (--max-tick-jump)",
            registry=self.registry,
        )
        self.processing = Histogram(
            "dunning_event_processing_seconds",
            "From an input record reaching the broker to the output of its batch being sent",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def watch(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry.register(WorkerCollector(snapshot))

    def processed(self, record_times_ms: list[int]) -> None:
        """A batch's records are out: observe each one's time since it reached the broker."""
        now = time.time()
        observe = self.processing.observe
        for ms in record_times_ms:
            observe(max(0.0, now - ms / 1000))

    def count(self, events: Tally[tuple[str, str, str]], commands: Tally[str]) -> None:
        """Add one batch's tallies: one label lookup per distinct label set, not per event."""
        for (topic, etype, outcome), n in events.items():
            self.events.labels(topic, etype, outcome).inc(n)
        for ctype, n in commands.items():
            self.commands.labels(ctype).inc(n)
