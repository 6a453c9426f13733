"""Topic names of the contract (§1)."""

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
    INVOICES: ("invoice.issued", "invoice.adjusted", "invoice.cancelled"),
    PAYMENTS: ("payment.applied", "payment.reversed", "charge.failed"),
    REQUESTS: ("request.completed",),
    CLOCK: ("clock.tick",),
}
