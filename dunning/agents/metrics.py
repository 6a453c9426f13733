"""Prometheus metrics of contract §5, in a registry of their own (one per worker app)."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "dunning_events", "Input events by topic, type and outcome",
            ["topic", "type", "outcome"], registry=self.registry,
        )
        self.commands = Counter(
            "dunning_commands", "Commands emitted, by type", ["type"], registry=self.registry,
        )

    def count(self, events: Tally[tuple[str, str, str]], commands: Tally[str]) -> None:
        """Add one batch's tallies: one label lookup per distinct label set, not per event."""
        for (topic, etype, outcome), n in events.items():
            self.events.labels(topic, etype, outcome).inc(n)
        for ctype, n in commands.items():
            self.commands.labels(ctype).inc(n)
