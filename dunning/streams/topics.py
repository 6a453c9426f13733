"""Topic names of the contract (§1), and what partitions a broker has of them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

INVOICES = "billing.invoices"
PAYMENTS = "billing.payments"
REQUESTS = "billing.requests"
CLOCK = "billing.clock"
INPUTS = (INVOICES, PAYMENTS, REQUESTS, CLOCK)

NOTIFICATIONS = "collection.notifications"
PROVISIONING = "collection.provisioning"
BILLING = "collection.billing"
DEADLETTER = "collection.deadletter"
OUTPUTS = (NOTIFICATIONS, PROVISIONING, BILLING, DEADLETTER)

# Which event types each input topic carries; anything else there is dead-lettered.
EVENT_TYPES = {
    INVOICES: ("invoice.issued", "invoice.adjusted", "invoice.cancelled",
               "invoice.updated", "collection.paused", "collection.resumed"),  # v1.1 controls
    PAYMENTS: ("payment.applied", "payment.reversed", "charge.failed"),
    REQUESTS: ("request.completed",),
    CLOCK: ("clock.tick",),
}


async def partitions(consumer: Any, names: Iterable[str]) -> list[Any]:
    """The partitions (TopicPartitions) of `names` that exist now, asked of the broker.

    Not `consumer.partitions_for_topic` after `consumer.topics()`: that keeps what it learns
    in a copy, and a consumer that has subscribed to nothing asked for no topic at start
    (Apache Kafka answers that with none; Tansu with all of them)."""
    from aiokafka.structs import TopicPartition

    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(t, p) for t in names for p in sorted(cluster.partitions_for_topic(t)
                                                                or ())]
