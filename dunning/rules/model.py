"""Typed input events and the outputs of the rules. Validation happens in streams.codec."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Headers = tuple[tuple[str, bytes | None], ...]  # Kafka header values may be null


@dataclass(slots=True)
class Source:
    """Where an input record came from: enough to dead-letter it unchanged later (its key,
    its exact value, None for a tombstone, and the producer's headers)."""

    topic: str
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    value: bytes | None = b""
    headers: Headers = ()


@dataclass(slots=True, kw_only=True)
class Event:
    type: str
    event_id: str
    invoice_id: str = ""
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True, kw_only=True)
class InvoiceIssued(Event):
    customer_id: str
    amount: Decimal
    currency: str
    issued_at: int
    customer_class: str | None = None
    order_id: str | None = None
    reseller_id: str | None = None
    product: str | None = None
    document: str = "invoice"  # "invoice" | "debit_note"
    kind: str = "regular"  # "regular" | "out_of_turn"
    origin: str = "manual"  # "manual" | "system"
    due_at: int | None = None
    request_id: str | None = None
    request_status: str | None = None  # "pending" | "completed"
    # Per-invoice overrides; a value of False turns that stage off for this invoice.
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class InvoiceAdjusted(Event):
    amount: Decimal


@dataclass(slots=True, kw_only=True)
class InvoiceCancelled(Event):
    pass


@dataclass(slots=True, kw_only=True)
class PaymentApplied(Event):
    payment_id: str
    amount: Decimal
    currency: str


@dataclass(slots=True, kw_only=True)
class PaymentReversed(Event):
    payment_id: str
    amount: Decimal


@dataclass(slots=True, kw_only=True)
class ChargeFailed(Event):
    attempt: int
    hard: bool


@dataclass(slots=True, kw_only=True)
class RequestCompleted(Event):
    without_payment: bool = False


@dataclass(slots=True, kw_only=True)
class InvoiceUpdated(Event):
    """v1.1: the invoice's collection dates changed after issue (only the keys given)."""

    due_at: int | None = None  # None: unchanged
    # The same keys as at issue; False removes that date (or turns reminders off).
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class CollectionPaused(Event):
    reason: str  # "promise_to_pay" | "dispute" | "other"
    until: int | None = None


@dataclass(slots=True, kw_only=True)
class CollectionResumed(Event):
    pass


@dataclass(slots=True, kw_only=True)
class ClockTick(Event):
    now: int
    # The producer confirmed a jump past the clock guard (header `dunning.confirm: jump`).
    confirmed: bool = False


@dataclass(slots=True)
class Command:
    """One output record: `value` is the JSON object as it goes on the wire."""

    topic: str
    key: str
    value: dict[str, Any]

    @property
    def command_id(self) -> str:
        return self.value["command_id"]

    @property
    def type(self) -> str:
        return self.value["type"]


@dataclass(slots=True)
class DeadLetter:
    """A rejected input record with the `dlq.error` code and a reason for a person."""

    source: Source
    error: str
    reason: str


# Outcomes of one input event, as counted in dunning_events_total{outcome}.
APPLIED = "applied"
DUPLICATE = "duplicate"
HELD = "held"
DEAD_LETTERED = "dead_lettered"
IGNORED = "ignored"

# dlq.error codes (contract §1).
MALFORMED_JSON = "malformed_json"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
UNKNOWN_TYPE = "unknown_type"
CURRENCY_MISMATCH = "currency_mismatch"
ORPHAN = "orphan"
TOO_LARGE = "too_large"
CLOCK_JUMP = "clock_jump"  # v1.1: a tick refused by the jump guard
INTERNAL_ERROR = "internal_error"  # v1.1: processing the record failed unexpectedly
DLQ_CODES = (MALFORMED_JSON, MISSING_FIELD, INVALID_FIELD, UNKNOWN_TYPE, CURRENCY_MISMATCH,
             ORPHAN, TOO_LARGE, CLOCK_JUMP, INTERNAL_ERROR)
