"""Fuzzing the edge: no record can stop the worker (contract §2, "Clarified in v1.1").

Random and structure-aware mutated records on all four input topics go through the codec and
one engine per example, with policies that turn every stage on. The records are arbitrary
bytes, arbitrary JSON values, and valid records of every input type with fields retyped,
dropped or added, control characters in ids, non-ASCII digits in amounts, extreme times and
day counts, wrong topics, odd keys and headers, tombstones and byte-level damage, interleaved
with valid records and ticks (some far ahead, some past the clock guard, some confirmed). The
properties, checked by `check_case`:

  * nothing escapes `decode`, `feed` or `records.type_label`;
  * every outcome is one of the contract's five; every dead letter carries one of its codes
    and goes on the wire as the record unchanged;
  * a record `decode` rejects yields exactly one dead letter, that record (topic, partition,
    offset, key, headers and value, a tombstone's None included), and changes nothing;
  * a record it accepts obeys "Validation at the edge" (string ids without control
    characters, ASCII digits in amounts, times in 1970-9998, day counts and override dates
    within 3 650 days), and is applied, held, a duplicate, ignored, or dead-lettered itself;
    a held one is later applied or dead-lettered (or still held at the end); one that fails
    as `internal_error` leaves the state as it was; a tick is refused as `clock_jump` exactly
    when it jumps past the guard unconfirmed (contract §4);
  * every command serialises with orjson and every time in it parses back;
  * the state round-trips: invoices, held events and subjects through their table encodings,
    slot for slot, and an engine rebuilt from the rows the worker writes (`engine_rows`) has
    the same invoices, held events, clock and schedule, and gives the same output (and ends
    in the same state) for one more tick as the original.

The generators are written once against `Choices`, so they run on Hypothesis here (which
shrinks a failure to a small case) and on a seeded `random.Random` in `bench/fuzz.py`
(`python -m bench.fuzz`, 100 000 cases). The crash records found so far are kept as plain
tests at the end, checked every run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import random
import traceback
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dunning.config.policy import Policy, parse_policy
from dunning.rules import model as m
from dunning.rules.engine import Engine, Result
from dunning.rules.invoice import Invoice
from dunning.rules.subject import Subject
from dunning.rules.times import DAY, format_time, parse_time
from dunning.streams import records as wire
from dunning.streams import topics
from dunning.streams.codec import MAX_RECORD_BYTES, decode, feed
from dunning.tables.partitions import apply_rows, engine_rows, rebuild_engine
from dunning.tables.state import (
    decode_held,
    decode_invoice,
    decode_subject,
    encode_held,
    encode_invoice,
    encode_subject,
)

T = TypeVar("T")

# -- the contract's vocabulary ----------------------------------------------------------------

INVOICES, PAYMENTS, REQUESTS, CLOCK = topics.INVOICES, topics.PAYMENTS, topics.REQUESTS, \
    topics.CLOCK
INPUTS = (INVOICES, PAYMENTS, REQUESTS, CLOCK)
TOPIC_OF = {t: topic for topic, types in topics.EVENT_TYPES.items() for t in types}
# The input types this fuzzer makes valid records of (contract §1), the tick last.
TYPES = ("invoice.issued", "invoice.adjusted", "invoice.cancelled", "payment.applied",
         "payment.reversed", "charge.failed", "request.completed", "clock.tick")
EVENTS = TYPES[:-1]
OUTCOMES = frozenset({"applied", "duplicate", "held", "dead_lettered", "ignored"})
CODES = frozenset({"malformed_json", "missing_field", "invalid_field", "unknown_type",
                   "currency_mismatch", "orphan", "too_large", "clock_jump", "internal_error"})
LABELS = frozenset({*TOPIC_OF, "unknown"})  # what records.type_label may answer
COMMAND_TOPICS = frozenset({topics.NOTIFICATIONS, topics.PROVISIONING, topics.BILLING})

HOUR = 3600
START = parse_time("2026-01-01T00:00:00Z")
FIRST_TIME = 0  # 1970-01-01T00:00:00Z
LAST_TIME = int((datetime(9999, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC))
                .total_seconds()) - 1  # 9998-12-31T23:59:59Z
LAST_PRINTABLE = LAST_TIME + 365 * DAY  # 9999-12-31T23:59:59Z
MAX_DAYS = 3650
ID_FIELDS = ("event_id", "invoice_id", "customer_id", "payment_id", "order_id", "reseller_id",
             "request_id")
OVERRIDE_TIMES = ("request_cancel_at", "suspend_at", "delete_at")

# Two policies between them turn every stage on: due-soon, reminders, auto-charge with
# retries (on due and on issue), a percent and a fixed late fee, a threshold, limit, suspend,
# delete, request cancellation, reseller copies, debit notes, class and product layers.
POLICY_TEXTS = (
    """
[defaults]
terms_days = 10
auto_charge = "on_due"
charge_retry_days = [1, 2, 3]
due_soon_days = [3, 1]
reminder_every_days = 2
collection_threshold = "1.00"
late_fee_percent = "1.5"
late_fee_after_days = 1
limit_after_days = 2
suspend_after_days = 4
delete_after_days = 8
request_cancel_after_days = 3
notify_reseller = true

[debit_note]
reminder_every_days = 3

[class.business.out_of_turn]
terms_days = 2

[product.domain_registration]
suspend_after_days = false
delete_after_days = false

[product.flat]
late_fee = { USD = "2.50", JPY = "250", BHD = "1.250" }
late_fee_percent = false
collection_threshold = { USD = "3.00", EUR = "3.00" }
""",
    """
[defaults]
terms_days = 0
auto_charge = "on_issue"
charge_retry_days = [2]
due_soon_days = [1]
reminder_every_days = 1
collection_threshold = "0.00"
late_fee = "5.00"
late_fee_after_days = 0
limit_after_days = 0
suspend_after_days = 1
delete_after_days = 3
request_cancel_after_days = 1
notify_reseller = true

[debit_note]
reminder_every_days = 1

[class.business]
terms_days = 5
""",
)
POLICIES: tuple[Policy, ...] = tuple(
    parse_policy(text, f"fuzz-policy-{i}") for i, text in enumerate(POLICY_TEXTS))


# -- choices: one generator, two sources of randomness ----------------------------------------


class Choices(Protocol):
    """What the generators draw from. Every choice shrinks towards its first option (or
    lowest number), so a shrunk failure is made of the plainest values."""

    def integer(self, lo: int, hi: int) -> int: ...

    def raw(self) -> bytes: ...  # arbitrary bytes

    def json(self) -> Any: ...  # an arbitrary JSON value (big ints and floats included)

    def text(self) -> str: ...  # an arbitrary string


def pick(ch: Choices, options: Sequence[T]) -> T:
    return options[ch.integer(0, len(options) - 1)]


def chance(ch: Choices, one_in: int) -> bool:
    return ch.integer(0, one_in - 1) == one_in - 1


JSON_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats()
               | st.text(max_size=12))
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=10,
)


@lru_cache(maxsize=4096)
def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


class Drawn:
    """Choices drawn by Hypothesis (inside `st.composite`)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(_integers(lo, hi))

    def raw(self) -> bytes:
        return self.draw(st.binary(max_size=48))

    def json(self) -> Any:
        return self.draw(JSON_VALUES)

    def text(self) -> str:
        return self.draw(st.text(max_size=16))


class Seeded:
    """Choices from a seeded `random.Random`: what `bench/fuzz.py` runs 100 000 cases on."""

    _JSONISH = b'{}[]":,0123456789.-+eEtrufalsn \\\xff\x00'
    _CHARS = ("a", "Z", "0", "9", " ", '"', "\\", "\x00", "\x1f", "\x7f", "\x85", "\u2028",
              "é", "١", "１", "🙂", "\ufeff", "\ud800", "{", ":")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def raw(self) -> bytes:
        rng = self.rng
        size = rng.choice((0, 1, 2, 3, 5, 8, 16, 48))
        if rng.random() < 0.5:
            return rng.randbytes(size)
        return bytes(rng.choice(self._JSONISH) for _ in range(size))

    def text(self) -> str:
        rng = self.rng
        size = rng.choice((0, 1, 2, 4, 12))
        if rng.random() < 0.3:
            return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(size))
        return "".join(rng.choice(self._CHARS) for _ in range(size))

    def json(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rng.choice((0, 1, -1, 2**63 - 1, 2**63, 2**64, 10**20, -(2**63) - 1,
                               rng.randint(-(2**70), 2**70)))
        if kind == 3:
            return rng.choice((0.0, -0.0, 1.5, 1e308, 5e-324, rng.uniform(-1e9, 1e9)))
        if kind in (4, 5):
            return self.text()
        if kind == 6:
            return [self.json(depth + 1) for _ in range(rng.randint(0, 4))]
        doc = {self.text(): self.json(depth + 1) for _ in range(rng.randint(0, 4))}
        if kind == 8:
            doc["type"] = rng.choice(TYPES)
        return doc


# -- odd values ---------------------------------------------------------------------------------

CONTROL = ("\x00", "\x1f", "\x7f", "\x85", "\n", "\t", "\x9f", "\x01")
NOT_ASCII_DIGITS = ("١٠٠.٠٠", "１００.００", "۱۰۰", "१००.००", "１", "٠", "10٠.00", "٣.50")
BAD_AMOUNTS = (
    *NOT_ASCII_DIGITS, "-1.00", "+1.00", "1e2", "1E2", "0x10", "1_000.00", "100,00", ".5", "5.",
    "", " ", "NaN", "nan", "Infinity", "-Infinity", "-0", "100.00\n", " 100.00", "100.00 ",
    "100.00\x00", "0.000000001", "1.123456789", "9" * 16, "9" * 15 + ".99", "0" * 20 + "1",
    "100.0000", "0.00", "0", "999999999999999", "999999999999999.99999999",
)
# Inside and outside the contract's range (years 1970 to 9998 in UTC), and not times at all.
ODD_TIMES = (
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
    "9998-12-31T23:59:59Z", "9999-12-31T23:59:59Z", "9999-01-01T00:00:00Z",
    "9998-12-31T23:59:59-00:01", "9998-12-31T23:59:59-23:59", "9999-12-31T23:59:59+14:00",
    "1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:01", "1970-01-01T23:59:59+23:59",
    "2016-12-31T23:59:60Z", "2026-06-30T23:59:60Z", "2026-02-29T00:00:00Z",
    "2028-02-29T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:00+23:59",
    "2026-01-01T00:00:00-23:59", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+99:99",
    "2026-01-01t00:00:00z", "2026-01-01T00:00:00.123456789Z", "2026-01-01T00:00:00.1234567890Z",
    "2026-01-01T00:00:00", "2026-01-01", "2026-01-01 00:00:00Z", "٢٠٢٦-٠١-٠١T00:00:00Z",
    "２０２６-01-01T00:00:00Z", "2026-01-01T00:00:00Z\n", "+2026-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z",
    "2026-01-01T00:00:00-00:00", "2026-W01-1T00:00:00Z", "", "now",
    1767225600, 1.7e9, -1, 0,
)
ODD_DAYS = (10**15, 2**63, 2**63 - 1, 2**64, 10**20, 3650, 3651, 0, -1, 1, True, None, 1.5,
            1e3, "5", [], {}, -(2**63), 2**53 + 1)
ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**20,
    -(2**63), -(2**63) - 1, 1.5, -0.0, 1e308, 5e-324, float("nan"), float("inf"), "NaN",
    "Infinity", "-Infinity", "nan", "", " ", "null", "true", "0", [], [None], ["x"], {},
    {"a": 1}, {"type": "invoice.issued"}, "x" * 200, "x" * 201, "\ud800", "é", "\x00",
)
ODD_TYPES: tuple[Any, ...] = (
    ["invoice.issued"], *TYPES, "invoice.updated", "collection.paused", "collection.resumed",
    "subject.restored", "invoice.foo", "", "INVOICE.ISSUED", "invoice.issued\x00",
    " invoice.issued", {"type": "invoice.issued"}, 1, True, None, 1.5, ["clock.tick"],
)
UNKNOWN_FIELDS = ("extra", "", "Type", "type ", "\x00", "__proto__", "amount_due", "status")
Headers = tuple[tuple[str, bytes | None], ...]
CONFIRM = ("dunning.confirm", b"jump")  # contract §4: a tick past the clock guard, meant
HEADERS: tuple[Headers, ...] = (
    (), (("trace-id", b"\xff\x00abc"),), (("x", None),), (("dunning.confirm", b"no"),),
    (CONFIRM, CONFIRM), (("dunning.topic", b"billing.clock"), ("dunning.offset", b"x")),
    (("", b""), ("é", "é".encode())),
)
ODD_KEYS: tuple[bytes | None, ...] = (None, b"", b"\xff\xfe", b"\x00", b"inv-0", b"inv-1",
                                      "é".encode(), b"x" * 300)

VALID_AMOUNTS = {
    "USD": ("0.00", "0.01", "10", "10.5", "100.00", "999999999999999.99", "1.00"),
    "EUR": ("20.00", "0.10"),
    "JPY": ("0", "1", "500", "999999999999999"),
    "BHD": ("0.000", "1.5", "100.250"),
}
CURRENCIES = ("USD", "USD", "JPY", "BHD", "EUR")
FIELDS = {
    "invoice.issued": ("invoice_id", "customer_id", "amount", "currency", "issued_at",
                       "customer_class", "order_id", "reseller_id", "product", "document",
                       "kind", "origin", "due_at", "request_id", "request_status",
                       "overrides"),
    "invoice.adjusted": ("invoice_id", "amount"),
    "invoice.cancelled": ("invoice_id",),
    "payment.applied": ("invoice_id", "payment_id", "amount", "currency"),
    "payment.reversed": ("invoice_id", "payment_id", "amount"),
    "charge.failed": ("invoice_id", "attempt", "hard"),
    "request.completed": ("invoice_id", "without_payment"),
    "clock.tick": ("now",),
}
IIDS = ("inv-0", "inv-1", "inv-2")  # inv-2 is issued rarely: its events wait, or orphan


# -- valid records --------------------------------------------------------------------------------


def rfc3339(at: int) -> str:
    """`at` in UTC, clamped to what datetime prints (the generator's own, so that a bug in
    dunning's printing cannot break the generator)."""
    at = min(max(at, FIRST_TIME), LAST_PRINTABLE)
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(ch: Choices, at: int) -> str:
    """`at` (kept within 1970 to 9998) as RFC 3339, in one of the forms producers use."""
    at = min(max(at, FIRST_TIME), LAST_TIME)
    form = ch.integer(0, 5)
    if form == 1 and DAY < at < LAST_TIME - DAY:  # another offset, the same instant
        tz = timezone(timedelta(hours=pick(ch, (2, -5, 14, -12))))
        return datetime.fromtimestamp(at, UTC).astimezone(tz).isoformat()
    if form == 2:  # a fraction of a second (dropped)
        return rfc3339(at)[:-1] + ".5Z"
    if form == 3:
        return rfc3339(at).lower()
    return rfc3339(at)


@dataclass
class World:
    """What the generator believes has happened, to make valid records that interact."""

    now: int = START
    count: int = 0
    issued: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    payments: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    sent: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)

    def event_id(self, ch: Choices) -> str:
        self.count += 1
        if chance(ch, 12) and self.count > 1:  # an id used before, for another event
            return f"ev-{ch.integer(1, self.count - 1)}"
        return f"ev-{self.count}"

    def invoice_id(self, ch: Choices) -> str:
        issued = sorted(self.issued)
        if issued and not chance(ch, 4):
            return pick(ch, issued)
        return pick(ch, IIDS)


def valid_issued(ch: Choices, w: World, iid: str) -> dict[str, Any]:
    currency = pick(ch, CURRENCIES)
    issued_at = max(FIRST_TIME, w.now + pick(ch, (0, -DAY, -20 * DAY, 2 * HOUR, -HOUR)))
    doc: dict[str, Any] = {
        "type": "invoice.issued", "event_id": w.event_id(ch), "invoice_id": iid,
        "customer_id": pick(ch, ("c0", "c1")), "amount": pick(ch, VALID_AMOUNTS[currency]),
        "currency": currency, "issued_at": stamp(ch, issued_at),
    }
    if chance(ch, 2):
        doc["order_id"] = pick(ch, ("o-a", "o-b"))
    if chance(ch, 3):
        doc["reseller_id"] = "res-1"
    if chance(ch, 4):
        doc["customer_class"] = pick(ch, ("business", "retail"))
    if chance(ch, 4):
        doc["kind"] = pick(ch, ("out_of_turn", "regular"))
    if chance(ch, 4):
        doc["product"] = pick(ch, ("flat", "domain_registration", "other"))
    if chance(ch, 5):
        doc["document"] = pick(ch, ("debit_note", "invoice"))
    if chance(ch, 3):
        doc.update(origin=pick(ch, ("system", "manual")), request_id=f"req-{iid}",
                   request_status=pick(ch, ("pending", "completed")))
    if chance(ch, 4):
        doc["due_at"] = stamp(ch, issued_at + pick(ch, (0, DAY, 5 * DAY, 40 * DAY)))
    if chance(ch, 3):
        overrides: dict[str, Any] = {}
        if chance(ch, 2):
            overrides["reminder_every_days"] = pick(ch, (1, 3, False, MAX_DAYS))
        for name in OVERRIDE_TIMES:
            if chance(ch, 2):
                overrides[name] = False if chance(ch, 4) else stamp(
                    ch, issued_at + pick(ch, (0, DAY, 3 * DAY, 12 * DAY, MAX_DAYS * DAY)))
        doc["overrides"] = overrides
    w.issued.setdefault(iid, (currency, min(issued_at, LAST_TIME)))
    return doc


def valid_record(ch: Choices, w: World) -> tuple[str, dict[str, Any]]:
    """A valid record of a non-tick type (issues more likely while few invoices exist)."""
    if not w.issued or chance(ch, 3 + 2 * len(w.issued)):
        etype = "invoice.issued"
    else:
        etype = pick(ch, EVENTS)
    iid = w.invoice_id(ch)
    if etype == "invoice.issued":
        return etype, valid_issued(ch, w, iid)
    currency = w.issued.get(iid, ("USD", 0))[0]
    doc: dict[str, Any] = {"type": etype, "event_id": w.event_id(ch), "invoice_id": iid}
    if etype == "invoice.adjusted":
        doc["amount"] = pick(ch, VALID_AMOUNTS[currency])
    elif etype == "payment.applied":
        pid = f"pay-{w.count}" if not w.payments or not chance(ch, 5) else \
            pick(ch, w.payments)[1]
        amount = pick(ch, VALID_AMOUNTS[currency][1:])
        doc.update(payment_id=pid, amount=amount, currency=currency)
        w.payments.append((iid, pid, amount))
    elif etype == "payment.reversed":
        if w.payments and not chance(ch, 5):
            piid, pid, amount = pick(ch, w.payments)
            doc.update(invoice_id=piid, payment_id=pid, amount=amount)
        else:
            doc.update(payment_id="pay-none", amount=pick(ch, VALID_AMOUNTS[currency][1:]))
    elif etype == "charge.failed":
        doc.update(attempt=ch.integer(1, 4), hard=chance(ch, 4))
    elif etype == "request.completed" and chance(ch, 2):
        doc["without_payment"] = chance(ch, 2)
    return etype, doc


def valid_tick(ch: Choices, w: World) -> dict[str, Any]:
    step = pick(ch, (DAY, 0, HOUR, 2 * DAY, 5 * DAY, 15 * DAY, 70 * DAY, -DAY, 400 * DAY))
    at = min(max(FIRST_TIME, w.now + step), LAST_TIME)
    if chance(ch, 25):  # far in the future, still valid
        at = pick(ch, (LAST_TIME, LAST_TIME - 30 * DAY, parse_time("9000-01-01T00:00:00Z")))
    w.now = max(w.now, at)
    return {"type": "clock.tick", "event_id": f"tick-{at}" if not chance(ch, 4)
            else w.event_id(ch), "now": stamp(ch, at)}


# -- mutations ----------------------------------------------------------------------------------

MUTATIONS = ("retype", "drop", "add", "control_id", "amount", "time", "override_days",
             "override_time", "due_at", "type", "topic", "key", "tombstone", "bytes",
             "odd_id", "text")


def _field(ch: Choices, etype: str, doc: dict[str, Any]) -> str:
    names = sorted({*FIELDS.get(etype, ()), *doc, "type", "event_id"}, key=str)
    return pick(ch, names)


def mutate(ch: Choices, w: World, etype: str, doc: dict[str, Any]
           ) -> tuple[str, bytes | None, bytes | None]:
    """A valid record with one to three structure-aware mutations: (topic, key, value)."""
    doc = copy.deepcopy(doc)
    topic = TOPIC_OF[etype]
    key: bytes | None = doc["invoice_id"].encode() if "invoice_id" in doc else None
    tombstone, damage = False, False
    for _ in range(ch.integer(1, 3)):
        kind = pick(ch, MUTATIONS)
        if kind == "retype":
            doc[_field(ch, etype, doc)] = pick(ch, ODD_VALUES)
        elif kind == "drop":
            doc.pop(_field(ch, etype, doc), None)
        elif kind == "add":
            doc[pick(ch, UNKNOWN_FIELDS)] = pick(ch, ODD_VALUES)
        elif kind == "control_id":
            name = pick(ch, [n for n in ID_FIELDS if isinstance(doc.get(n), str)] or
                        ["event_id"])
            ident = str(doc.get(name, "id"))
            at = ch.integer(0, len(ident))
            doc[name] = ident[:at] + pick(ch, CONTROL) + ident[at:]
        elif kind == "odd_id":
            name = pick(ch, ID_FIELDS)
            doc[name] = pick(ch, ("", " ", "x" * 201, "x" * 200, "\u2028", "\ufeff",
                                  "🙂", "inv-0 ", "\ud800"))
        elif kind == "amount":
            doc["amount"] = pick(ch, BAD_AMOUNTS)
        elif kind == "time":
            name = pick(ch, ("issued_at", "due_at", "now"))
            doc[name] = pick(ch, ODD_TIMES)
        elif kind == "override_days":
            ov = doc["overrides"] = dict(doc.get("overrides") or {}) \
                if isinstance(doc.get("overrides"), dict) else {}
            ov["reminder_every_days"] = pick(ch, ODD_DAYS)
        elif kind == "override_time":
            ov = doc["overrides"] = dict(doc.get("overrides") or {}) \
                if isinstance(doc.get("overrides"), dict) else {}
            ov[pick(ch, (*OVERRIDE_TIMES, "unknown_at"))] = pick(ch, (
                *ODD_TIMES[:10], rfc3339(w.now - 30 * DAY), rfc3339(w.now + (MAX_DAYS + 1) * DAY),
                "9998-12-31T23:59:59Z", True, 0))
        elif kind == "due_at":
            doc["due_at"] = pick(ch, (rfc3339(w.now - 30 * DAY),
                                      "9998-12-31T23:59:59Z", "9999-12-31T23:59:59Z",
                                      *ODD_TIMES[:6]))
        elif kind == "type":
            doc["type"] = pick(ch, ODD_TYPES)
        elif kind == "topic":
            topic = pick(ch, INPUTS)
        elif kind == "key":
            key = pick(ch, ODD_KEYS) if not chance(ch, 3) else ch.raw()
        elif kind == "tombstone":
            tombstone = True
        elif kind == "bytes":
            damage = True
        elif kind == "text":
            doc[_field(ch, etype, doc)] = ch.text()
    if tombstone:
        return topic, key, None
    value = serialise(ch, doc)
    return topic, key, damage_bytes(ch, value) if damage else value


def serialise(ch: Choices, doc: Any) -> bytes:
    """JSON as different producers write it; values orjson cannot write (ints past 64 bits,
    lone surrogates) go through the standard library, NaN as its non-JSON literal."""
    style = ch.integer(0, 3)
    if style < 2:
        try:
            return orjson.dumps(doc)
        except (TypeError, orjson.JSONEncodeError):
            pass
    text = json.dumps(doc, ensure_ascii=style == 2, allow_nan=True,
                      separators=(", ", ": ") if style == 3 else (",", ":"))
    return text.encode("utf-8", "surrogatepass")


def damage_bytes(ch: Choices, value: bytes) -> bytes:
    kind = ch.integer(0, 10)
    at = ch.integer(0, len(value))
    if kind == 0:
        return value[:at]
    if kind == 1:
        return value[:at] + bytes([ch.integer(0, 255)]) + value[at + 1:]
    if kind == 2:
        return value[:at] + pick(ch, (b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x00")) + \
            value[at:]
    if kind == 3:
        return b"\xef\xbb\xbf" + value
    if kind == 4:
        return value + pick(ch, (b" x", b"}", b",", b" \n\t", b"\x00"))
    if kind == 5:
        return b"[" + value + b"]"
    if kind == 6:
        return value + value
    if kind == 7:  # past the size limit, or just within it
        size = MAX_RECORD_BYTES + pick(ch, (1, 0, 1000))
        return value + b" " * max(0, size - len(value))
    if kind == 8:
        return b"[" * 2000 + b"]" * 2000
    if kind == 9:  # a duplicate key: the last one wins
        return value[:-1] + b',"type":"clock.tick"}' if value.endswith(b"}") else value
    return value[:at] + ch.raw() + value[at:]


# -- cases --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rec:
    """One input record, and whether the worker's batch ends after it (rows written)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int = 0
    offset: int = 0
    flush: bool = True
    headers: Headers = ()

    def __repr__(self) -> str:
        value = self.value if self.value is None or len(self.value) <= 400 else \
            self.value[:400] + b"...(%d bytes)" % len(self.value)
        headers = f", headers={self.headers!r}" if self.headers else ""
        return (f"Rec({self.topic!r}, key={self.key!r}, value={value!r}, "
                f"partition={self.partition}, offset={self.offset}{headers})")


@dataclass(frozen=True, slots=True)
class Case:
    policy: int
    records: tuple[Rec, ...]
    last_tick: Rec  # after the rebuild, to the original engine and the rebuilt one
    max_tick_jump: int = 0  # the clock guard, seconds (0 = off)

    def __repr__(self) -> str:
        lines = [f"Case(policy={self.policy}, max_tick_jump={self.max_tick_jump}, records=["]
        lines += [f"  {r!r},{'' if r.flush else '  # no flush'}" for r in self.records]
        return "\n".join([*lines, f"], last_tick={self.last_tick!r})"])


STEPS = ("valid", "mutated", "tick", "valid", "mutated", "tick", "valid", "mutated",
         "duplicate", "bytes", "json", "typed_json", "odd_tick")


def make_case(ch: Choices, max_records: int = 10) -> Case:
    w = World()
    policy = ch.integer(0, len(POLICIES) - 1)
    base = pick(ch, (0, 0, 0, 2**40))
    records: list[Rec] = []
    guard = pick(ch, (0, 7 * DAY, 0, 30 * DAY))
    for i in range(ch.integer(1, max_records)):
        topic, key, value = make_record(ch, w)
        partition = pick(ch, (0, 0, 1, 5, 2**31 - 1))
        headers = pick(ch, HEADERS) if not chance(ch, 4) else (CONFIRM,)
        records.append(Rec(topic, key, value, partition, base + i, not chance(ch, 3), headers))
    tick = valid_tick(ch, w)
    last = Rec(CLOCK, None, orjson.dumps(tick), 0, base + len(records),
               headers=pick(ch, ((), (CONFIRM,))))
    return Case(policy, tuple(records), last, guard)


def make_record(ch: Choices, w: World) -> tuple[str, bytes | None, bytes | None]:
    step = pick(ch, STEPS)
    if step == "tick":
        return CLOCK, None, orjson.dumps(valid_tick(ch, w))
    if step == "odd_tick":
        tick = valid_tick(ch, w)
        return mutate(ch, w, "clock.tick", tick)
    if step == "duplicate" and w.sent:
        topic, value = pick(ch, w.sent)
        return topic, pick(ch, ODD_KEYS), value
    if step == "bytes":
        return pick(ch, INPUTS), pick(ch, ODD_KEYS), ch.raw()
    if step == "json":
        return pick(ch, INPUTS), pick(ch, ODD_KEYS), serialise(ch, ch.json())
    if step == "typed_json":  # a known type among arbitrary fields
        doc = ch.json()
        doc = doc if isinstance(doc, dict) else {"x": doc}
        etype = pick(ch, TYPES)
        doc["type"] = etype
        return TOPIC_OF[etype], pick(ch, ODD_KEYS), serialise(ch, doc)
    etype, doc = valid_record(ch, w)
    if step == "mutated":
        return mutate(ch, w, etype, doc)
    value = orjson.dumps(doc)
    topic = TOPIC_OF[etype]
    w.sent.append((topic, value))
    return topic, doc["invoice_id"].encode() if chance(ch, 2) else pick(ch, ODD_KEYS), value


# -- the properties -------------------------------------------------------------------------------


class FuzzFailure(AssertionError):
    """A property that does not hold, for one record of a case."""

    def __init__(self, prop: str, detail: str, rec: Rec | None,
                 cause: BaseException | None = None) -> None:
        self.prop, self.detail, self.rec = prop, detail, rec
        self.terminal = False  # it ended the case (see failures_of)
        self.where = _where(cause) if cause is not None else ""
        self.exc = type(cause).__name__ if cause is not None else ""
        text = f"{prop}: {detail}" + (f"\n  at {self.where}" if self.where else "")
        super().__init__(f"{text}\n  record: {rec!r}")

    @property
    def signature(self) -> tuple[str, str, str]:
        """What tells distinct failures apart: the property, and for an exception its type
        and the innermost lines of dunning it came through."""
        return self.prop, self.exc, self.where


def _where(exc: BaseException) -> str:
    """The innermost two frames in dunning (paths from the package on)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "dunning" in f.filename.replace("\\", "/").split("/")]
    out = []
    for f in reversed((ours or frames[-1:])[-2:]):
        parts = f.filename.replace("\\", "/").split("/")
        short = "/".join(parts[parts.index("dunning"):]) if "dunning" in parts else parts[-1]
        out.append(f"{short}:{f.lineno} in {f.name}")
    return " <- ".join(out)


def _guard(prop: str, rec: Rec | None, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except FuzzFailure:
        raise
    except Exception as exc:
        raise FuzzFailure(prop, f"{type(exc).__name__}: {exc}"[:300], rec, exc) from exc


def _require(ok: bool, prop: str, detail: str | Callable[[], str], rec: Rec | None) -> None:
    """Raise FuzzFailure unless `ok`; `detail` may be a function, to be made only then."""
    if not ok:
        raise FuzzFailure(prop, detail if isinstance(detail, str) else detail(), rec)


def norm(value: Any) -> Any:
    """A comparable form that tells apart what == does not: Decimal exponents ("5.00" vs
    "5.0"), tuples from lists, dict order, and every slot of slotted objects."""
    if isinstance(value, bool | int | str | None | float):
        return (type(value).__name__, value)
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, set | frozenset):
        return ("set", sorted(map(repr, value)))
    if isinstance(value, dict):
        return ("dict", [(norm(k), norm(v)) for k, v in value.items()])
    if isinstance(value, tuple | list):
        return (type(value).__name__, [norm(v) for v in value])
    if dataclasses.is_dataclass(value):
        names = [f.name for f in dataclasses.fields(value)]
    else:
        names = sorted(getattr(type(value), "__slots__", ()))
    missing = object()
    return (type(value).__name__,
            [(n, norm(v) if (v := getattr(value, n, missing)) is not missing else "UNSET")
             for n in names])


def _source(dl: m.DeadLetter) -> tuple[Any, ...]:
    s = dl.source
    return (s.topic, s.partition, s.offset, s.key, s.value, tuple(s.headers))


def _ident(rec: Rec) -> tuple[Any, ...]:
    return (rec.topic, rec.partition, rec.offset, rec.key, rec.value, rec.headers)


def _held_sources(engine: Engine) -> set[tuple[Any, ...]]:
    return {(h.event.source.topic, h.event.source.partition, h.event.source.offset)
            for waiting in engine.held.values() for h in waiting if h.event.source is not None}


def _sorted(table: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(table.items(), key=lambda kv: kv[0])  # the order of a table means nothing


def snapshot(engine: Engine) -> Any:
    return norm((engine.clock, _sorted(engine.invoices), _sorted(engine.held),
                 _sorted(engine.subjects), sorted(engine._unclocked), _schedule(engine)))


def _schedule(engine: Engine) -> dict[str, int | None]:
    keys = sorted({*engine.invoices, *engine.held, *engine._unclocked})
    return {k: engine.schedule.at(k) for k in keys if engine.schedule.at(k) is not None}


def _is_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def check_edge(event: m.Event, rec: Rec) -> None:
    """Contract §2, "Validation at the edge", for a record the codec accepted."""
    for name in ID_FIELDS:
        ident = getattr(event, name, None)
        if ident is None or (name == "invoice_id" and isinstance(event, m.ClockTick)):
            continue
        _require(isinstance(ident, str) and ident != "", "edge: ids are non-empty strings",
                 f"{name}={ident!r}", rec)
        _require(not _is_control(ident), "edge: ids have no control characters",
                 f"{name}={ident!r} accepted", rec)
    times = {n: getattr(event, n, None) for n in ("issued_at", "due_at", "now")}
    overrides = getattr(event, "overrides", None) or {}
    times.update({f"overrides.{n}": overrides.get(n) for n in OVERRIDE_TIMES})
    for name, at in times.items():
        if at is None or at is False:
            continue
        _require(FIRST_TIME <= at <= LAST_TIME, "edge: times lie in years 1970 to 9998 in UTC",
                 f"{name}={format_time_safe(at)} accepted", rec)
    if isinstance(event, m.InvoiceIssued):
        _require(event.due_at is None or event.due_at >= event.issued_at,
                 "edge: due_at is not before issued_at", "due_at before issued_at accepted",
                 rec)
        for name in OVERRIDE_TIMES:
            at = overrides.get(name)
            if at is None or at is False:
                continue
            _require(event.issued_at <= at <= event.issued_at + MAX_DAYS * DAY,
                     "edge: override dates lie within 0 to 3 650 days of issued_at",
                     f"overrides.{name} {format_time_safe(at)} for an invoice issued "
                     f"{format_time_safe(event.issued_at)} accepted", rec)
        every = overrides.get("reminder_every_days")
        _require(every in (None, False) or (type(every) is int and 0 < every <= MAX_DAYS),
                 "edge: day counts lie within 0 to 3 650 days",
                 f"overrides.reminder_every_days={every!r} accepted", rec)
    if hasattr(event, "amount"):
        raw = orjson.loads(rec.value or b"")
        text = raw.get("amount") if isinstance(raw, dict) else None
        _require(isinstance(text, str) and text.isascii(),
                 "edge: amounts use ASCII digits only", f"amount {text!r} accepted", rec)


def format_time_safe(at: int) -> str:
    try:
        return format_time(at)
    except (OverflowError, ValueError):
        return f"{at} s (past year 9999)"


def check_commands(commands: list[m.Command], rec: Rec) -> None:
    for c in commands:
        _guard("commands serialise with orjson", rec, lambda c=c: wire.command_value(c))
        _guard("command keys encode", rec, lambda c=c: c.key.encode())
        _require(c.topic in COMMAND_TOPICS, "commands go to an output topic", c.topic, rec)
        v = c.value
        for name in ("command_id", "type", "issued_at", "causation_id"):
            _require(isinstance(v.get(name), str), "every command has its fields",
                     f"{v.get('type')}.{name}={v.get(name)!r}", rec)
        for name, at in v.items():
            if name.endswith("_at"):
                _guard("every time in a command parses back", rec,
                       lambda at=at: parse_time(at))


def check_dead_letter(dl: m.DeadLetter, rec: Rec) -> None:
    _require(dl.error in CODES, "dead letters carry a contract code", repr(dl.error), rec)
    key, value, headers = _guard("dead letters go on the wire", rec,
                                 lambda: wire.dead_letter(dl))
    _require((key, value) == (dl.source.key, dl.source.value),
             "a dead letter is the record unchanged", "key or value differs", rec)
    _require(all(isinstance(k, str) and (v is None or isinstance(v, bytes))
                 for k, v in headers), "dead-letter headers are (str, bytes or None)",
             repr(headers), rec)


class Run:
    """One case through one engine, as the worker's invoice agent runs a partition."""

    def __init__(self, case: Case, stats: Counter[str] | None = None) -> None:
        self.case = case
        self.policy = POLICIES[case.policy]
        self.engine = Engine(self.policy, max_tick_jump=case.max_tick_jump)
        self.engine.touched = set()
        self.table: dict[bytes, bytes] = {}
        self.held_rows: set[str] = set()
        self.held: dict[tuple[Any, ...], tuple[Rec, str]] = {}  # waiting: record, invoice id
        self.stats = stats if stats is not None else Counter()
        self.failures: list[FuzzFailure] = []  # soft ones so far, then the one that ended it

    def soft(self, check: Callable[[], None]) -> None:
        """A property whose failure leaves the engine usable: noted, and the case goes on
        (so that what a bad record does later is found too)."""
        try:
            check()
        except FuzzFailure as failure:
            if failure.exc:
                raise
            self.failures.append(failure)

    def record(self, rec: Rec) -> Result:
        engine, stats = self.engine, self.stats
        stats["records"] += 1
        label = _guard("type_label never raises", rec, lambda: wire.type_label(rec.value))
        self.soft(lambda: _require(label in LABELS, "type_label gives a known type or "
                                   "'unknown'", repr(label), rec))
        event = _guard("decode never raises", rec, lambda: decode(
            rec.topic, rec.key, rec.value, rec.partition, rec.offset, rec.headers))
        before, clock = snapshot(engine), engine.clock
        result = _guard("feed never raises", rec, lambda: feed(
            engine, rec.topic, rec.key, rec.value, rec.partition, rec.offset, rec.headers))
        stats[f"outcome {result.outcome}"] += 1
        for c in result.commands:
            stats[f"command {c.value.get('type')}"] += 1
        for dl in result.dead_letters:
            stats[f"dead letter {dl.error}"] += 1
            self.soft(lambda dl=dl: check_dead_letter(dl, rec))
        self.soft(lambda: _require(result.outcome in OUTCOMES, "outcomes are the contract's",
                                   repr(result.outcome), rec))
        own = [dl for dl in result.dead_letters if _source(dl) == _ident(rec)]
        if isinstance(event, m.DeadLetter):
            self.soft(lambda: self.rejected(rec, event, result, own, before))
            return result
        self.soft(lambda: check_edge(event, rec))
        tick = isinstance(event, m.ClockTick)
        if result.outcome == m.DEAD_LETTERED:
            _require(len(own) == 1 or (tick and own), "a dead-lettered record is its own "
                     "dead letter, once", f"{len(own)} dead letters are the record", rec)
            if own[0].error == "internal_error" and not tick:
                _require(snapshot(engine) == before,
                         "a record that fails leaves the state as it was", "", rec)
        elif any(dl.error != "internal_error" for dl in own):
            # A record applied in part (a tick that failed for one invoice, an event whose
            # signal failed for its subject) is dead-lettered for the part that failed.
            raise FuzzFailure("a record not dead-lettered is not in the dead letters",
                              f"outcome {result.outcome} with {own[0].error}", rec)
        if tick:
            self.soft(lambda: self.clock_guard(rec, event, result, own, clock))
        # Other dead letters are earlier records the engine held (orphans, or rejected when
        # their invoice arrived).
        for dl in result.dead_letters:
            if dl in own:
                continue
            ident = _source(dl)
            if ident not in self.held:
                raise FuzzFailure("a dead letter names a record that waited",
                                  f"{dl.error} for {ident!r}"[:300], rec)
            del self.held[ident]
        if result.outcome == m.HELD:
            self.held[_ident(rec)] = (rec, event.invoice_id)
        waiting = _held_sources(engine)
        for ident, (held_rec, iid) in list(self.held.items()):
            if ident[:3] not in waiting:
                if iid not in engine.invoices:
                    raise FuzzFailure("a held record is applied or dead-lettered",
                                      f"{held_rec!r} left the held events", rec)
                del self.held[ident]
        self.soft(lambda: check_commands(result.commands, rec))
        return result

    def clock_guard(self, rec: Rec, tick: Any, result: Result, own: list[m.DeadLetter],
                    clock: int) -> None:
        """Contract §4: a tick moving the clock more than the guard at once, unconfirmed
        and not the first, is refused as clock_jump; no other tick is."""
        guard = self.case.max_tick_jump
        jump = bool(guard and clock and tick.now - clock > guard and CONFIRM not in rec.headers)
        codes = [dl.error for dl in own]
        if jump:
            _require(result.outcome == m.DEAD_LETTERED and codes == ["clock_jump"]
                     and self.engine.clock == clock, "a jump past the clock guard is refused",
                     f"{(tick.now - clock) / DAY:g} days past a guard of {guard / DAY:g}: "
                     f"{result.outcome} {codes}", rec)
        else:
            _require("clock_jump" not in codes, "only a jump past the clock guard is refused",
                     f"{(tick.now - clock) / DAY:g} days, guard {guard / DAY:g}", rec)

    def rejected(self, rec: Rec, event: m.DeadLetter, result: Result,
                 own: list[m.DeadLetter], before: Any) -> None:
        _require(len(result.dead_letters) == 1 and len(own) == 1,
                 "a rejected record is dead-lettered once, unchanged",
                 lambda: f"{event.error}: {len(own)} of {len(result.dead_letters)} dead "
                 f"letters are the record; sources: "
                 f"{[_source(d) for d in result.dead_letters]!r}"[:400], rec)
        _require(result.outcome == m.DEAD_LETTERED and not result.commands,
                 "a rejected record does nothing", result.outcome, rec)
        _require(snapshot(self.engine) == before, "a rejected record changes no state", "",
                 rec)

    def write(self, rec: Rec | None) -> None:
        rows = _guard("state encodes to table rows", rec,
                      lambda: engine_rows(self.engine, 0, self.held_rows))
        apply_rows(self.table, rows)

    def round_trips(self) -> None:
        engine = self.engine
        for inv in engine.invoices.values():
            back = _guard("invoices round-trip", None,
                          lambda inv=inv: decode_invoice(encode_invoice(inv)))
            if norm(back) != norm(inv):
                raise FuzzFailure("invoices round-trip, slot for slot",
                                  _diff(inv, back, Invoice) + f" of {inv.invoice_id!r}", None)
        for iid, held in engine.held.items():
            back = _guard("held events round-trip", None,
                          lambda held=held: decode_held(encode_held(held)))
            _require(norm(back) == norm(held), "held events round-trip",
                     f"held events of {iid!r}", None)
        for key, subj in engine.subjects.items():
            back = _guard("subjects round-trip", None,
                          lambda subj=subj: decode_subject(encode_subject(subj)))
            if norm(back) != norm(subj):
                raise FuzzFailure("subjects round-trip, slot for slot",
                                  _diff(subj, back, Subject) + f" of {key!r}", None)

    def rebuilt(self) -> Engine:
        engine = self.engine
        rebuilt = _guard("an engine rebuilds from its rows", None, lambda: rebuild_engine(
            self.policy, self.table, 0, 1, self.case.max_tick_jump))
        # Subjects live in the subject agent's table: restore them as it would.
        rebuilt.subjects = {k: decode_subject(encode_subject(s))
                            for k, s in engine.subjects.items()}
        _require(sorted(engine.invoices) == sorted(rebuilt.invoices),
                 "a rebuilt engine has the same state", lambda: f"invoices "
                 f"{sorted(engine.invoices)} != {sorted(rebuilt.invoices)}", None)
        for iid, inv in engine.invoices.items():
            if norm(inv) != norm(rebuilt.invoices[iid]):
                raise FuzzFailure("a rebuilt engine has the same state", "invoice "
                                  f"{iid!r}: {_diff(inv, rebuilt.invoices[iid], Invoice)}",
                                  None)
        for name, a, b in (("held events", _sorted(engine.held), _sorted(rebuilt.held)),
                           ("clock", engine.clock, rebuilt.clock),
                           ("clockless held events", sorted(engine._unclocked),
                            sorted(rebuilt._unclocked)),
                           ("schedule", _schedule(engine), _schedule(rebuilt)),
                           ("schedule size", len(engine.schedule), len(rebuilt.schedule))):
            if norm(a) != norm(b):
                raise FuzzFailure("a rebuilt engine has the same state",
                                  f"{name} differ: {_short(a)} != {_short(b)}", None)
        return rebuilt

    def run(self) -> None:
        for rec in self.case.records:
            self.record(rec)
            if rec.flush:
                self.write(rec)
        self.write(None)
        self.round_trips()
        rebuilt = self.rebuilt()
        tick = self.case.last_tick
        ours = self.record(tick)  # the original engine, with every property
        again = _guard("feed never raises (rebuilt engine)", tick, lambda: feed(
            rebuilt, tick.topic, tick.key, tick.value, tick.partition, tick.offset,
            tick.headers))
        _require(_wire(again) == _wire(ours), "a rebuilt engine gives the same output for "
                 "a tick", lambda: f"{_short(_wire(again))} != {_short(_wire(ours))}", tick)
        _require(snapshot(rebuilt) == snapshot(self.engine), "a rebuilt engine has the same "
                 "state after that tick", "", tick)
        self.stats["cases"] += 1


def _wire(result: Any) -> Any:
    return (result.outcome, [(c.topic, c.key, c.value) for c in result.commands],
            [(d.error, _source(d)) for d in result.dead_letters])


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + "..."


def _diff(a: Any, b: Any, cls: type) -> str:
    missing = object()
    for name in sorted(cls.__slots__):
        x, y = getattr(a, name, missing), getattr(b, name, missing)
        if (x is missing) != (y is missing) or (x is not missing and norm(x) != norm(y)):
            return f"slot {name}: {x!r} became {y!r}"
    return "equal slots"


def failures_of(case: Case, stats: Counter[str] | None = None) -> list[FuzzFailure]:
    """Every property over one case: the failures found (empty if all hold). A failure that
    leaves the engine unusable (an exception, a state that does not round-trip) ends the
    case; the others are noted and the case goes on."""
    run = Run(case, stats)
    try:
        run.run()
    except FuzzFailure as failure:
        failure.terminal = True
        run.failures.append(failure)
    return run.failures


def check_case(case: Case, stats: Counter[str] | None = None) -> Counter[str]:
    """Every property over one case; raises the failure that ended it, else the first.
    Returns counts (records, outcomes, commands and dead letters by type)."""
    stats = stats if stats is not None else Counter()
    failures = failures_of(case, stats)
    if failures:
        raise failures[-1] if failures[-1].terminal else failures[0]
    return stats


# -- Hypothesis ---------------------------------------------------------------------------------


def _settings(examples: int) -> settings:
    # Derandomized and database-less like tests/rules/test_properties.py: every run (and CI)
    # checks the same examples.
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def make_single(ch: Choices, arbitrary: bool) -> Case:
    """One fuzzed record after a valid invoice and tick, so that it meets some state."""
    w = World()
    policy = ch.integer(0, len(POLICIES) - 1)
    issue = orjson.dumps(valid_issued(ch, w, "inv-0"))
    tick = orjson.dumps(valid_tick(ch, w))
    if arbitrary:
        value = pick(ch, (ch.raw, lambda: serialise(ch, ch.json()), ch.raw,
                          lambda: serialise(ch, ch.json()), lambda: None))()
        fuzzed = pick(ch, INPUTS), pick(ch, ODD_KEYS), value
    else:
        etype, doc = (("clock.tick", valid_tick(ch, w)) if chance(ch, 8)
                      else valid_record(ch, w))
        fuzzed = mutate(ch, w, etype, doc)
    records = (Rec(INVOICES, b"inv-0", issue, 0, 0), Rec(CLOCK, None, tick, 0, 1),
               Rec(*fuzzed, 0, 2, headers=pick(ch, HEADERS)))
    last = Rec(CLOCK, None, orjson.dumps(valid_tick(ch, w)), 0, 3)
    return Case(policy, records, last, pick(ch, (0, 7 * DAY)))


@st.composite
def sequences(draw: st.DrawFn, max_records: int = 10) -> Case:
    return make_case(Drawn(draw), max_records)


@st.composite
def singles(draw: st.DrawFn, arbitrary: bool) -> Case:
    return make_single(Drawn(draw), arbitrary)


@_settings(1000)
@given(singles(arbitrary=True))
def test_arbitrary_bytes_and_json_on_any_topic(case: Case) -> None:
    check_case(case)


@_settings(2000)
@given(singles(arbitrary=False))
def test_one_mutated_record_of_any_type(case: Case) -> None:
    check_case(case)


@_settings(1500)
@given(sequences(max_records=12))
def test_sequences_of_mutated_and_valid_records_and_ticks(case: Case) -> None:
    check_case(case)


# -- the crash records found so far, checked every run ------------------------------------------

T0 = "2026-01-01T00:00:00Z"
ISSUED = {"type": "invoice.issued", "event_id": "iss-0", "invoice_id": "inv-0",
          "customer_id": "c0", "amount": "100.00", "currency": "USD", "issued_at": T0}


def tick_at(now: str, event_id: str | None = None) -> dict[str, Any]:
    return {"type": "clock.tick", "event_id": event_id or f"tick-{now}", "now": now}


def case_of(*records: dict[str, Any] | Rec, policy: int = 0,
            last: str = "2026-06-01T00:00:00Z") -> Case:
    """Records (dicts go on their type's topic, keyed by invoice id), then a final tick."""
    recs = []
    for offset, r in enumerate(records):
        if isinstance(r, Rec):
            recs.append(dataclasses.replace(r, offset=offset))
            continue
        etype = r["type"] if isinstance(r["type"], str) and r["type"] in TOPIC_OF \
            else "invoice.issued"
        iid = r.get("invoice_id")
        recs.append(Rec(TOPIC_OF[etype], iid.encode() if isinstance(iid, str) else None,
                        serialise_plain(r), 0, offset))
    return Case(policy, tuple(recs), Rec(CLOCK, None, orjson.dumps(tick_at(last)), 0,
                                         len(recs)))


def serialise_plain(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(doc).encode()


CRASH_RECORDS = {
    # records.type_label (metrics) took the type as a dict key: TypeError for a list.
    "type is a list": case_of({"type": ["invoice.issued"], "event_id": "e-1",
                               "invoice_id": "inv-0"}),
    "type is an object": case_of(Rec(INVOICES, b"inv-0",
                                     b'{"type":{"a":1},"event_id":"e-1","invoice_id":"x"}')),
    # A NUL (or any control character) in an id passed the codec.
    "NUL in invoice_id": case_of({**ISSUED, "invoice_id": "H-id-nul\u0000X"}),
    "U+0085 in event_id": case_of({**ISSUED, "event_id": "iss\u0085"}),
    "DEL in payment_id": case_of(ISSUED, {
        "type": "payment.applied", "event_id": "p-1", "invoice_id": "inv-0",
        "payment_id": "pay\x7f", "amount": "1.00", "currency": "USD"}),
    # Years past 9998: OverflowError in times.format_time, on issue or at a later tick.
    "issued_at in year 10000 UTC": case_of({**ISSUED,
                                            "issued_at": "9999-12-31T23:59:59-01:00"}),
    "issued_at in 9999": case_of({**ISSUED, "issued_at": "9999-06-01T00:00:00Z"}),
    "due_at in 9999": case_of({**ISSUED, "due_at": "9999-12-31T23:59:59Z"},
                              tick_at("2026-01-20T00:00:00Z")),
    "overrides.delete_at near 9999": case_of(
        {**ISSUED, "overrides": {"delete_at": "9999-12-31T23:59:59-01:00"}},
        tick_at("2026-01-09T00:00:00Z")),
    "overrides.suspend_at before issue": case_of(
        {**ISSUED, "overrides": {"suspend_at": "2025-01-01T00:00:00Z"}}),
    "due_at before issue": case_of({**ISSUED, "due_at": "2025-01-01T00:00:00Z"}),
    "a tick near 9999 once something is due": case_of(
        ISSUED, tick_at("9999-12-31T23:59:59-01:00")),
    "a tick in 9999": case_of(ISSUED, tick_at("9999-12-31T23:59:59Z")),
    "a tick before 1970": case_of(ISSUED, tick_at("1969-12-31T23:59:59Z")),
    # orjson writes integers of 64 bits at most: the state of this invoice could not be
    # written to the table.
    "overrides.reminder_every_days = 10**15": case_of(
        {**ISSUED, "overrides": {"reminder_every_days": 10**15}}),
    "overrides.reminder_every_days = 2**63": case_of(
        {**ISSUED, "overrides": {"reminder_every_days": 2**63}}),
    "overrides.reminder_every_days = 3651": case_of(
        {**ISSUED, "overrides": {"reminder_every_days": 3651}}),
    # Money is ASCII digits only; `\d` took any Unicode digit.
    "Arabic-Indic digits in an amount": case_of({**ISSUED, "amount": "١٠٠.٠٠"}),
    "full-width digits in a payment": case_of(ISSUED, {
        "type": "payment.applied", "event_id": "p-1", "invoice_id": "inv-0",
        "payment_id": "pay-1", "amount": "１００.００", "currency": "USD"}),
    "Arabic-Indic digits in a time": case_of({**ISSUED, "issued_at": "٢٠٢٦-٠١-٠١T00:00:00Z"}),
    # A tombstone's dead letter must keep the null value, not b"".
    "tombstone": case_of(Rec(INVOICES, b"inv-0", None)),
    "tombstone on the clock": case_of(Rec(CLOCK, None, None)),
    # Kafka headers may have null values; a held record keeps its headers in the table.
    "a held record with a null header value": case_of(Rec(PAYMENTS, b"inv-9", orjson.dumps({
        "type": "payment.applied", "event_id": "p-1", "invoice_id": "inv-9",
        "payment_id": "pay-1", "amount": "1.00", "currency": "USD"}), headers=(("x", None),))),
    "a tombstone with headers": case_of(Rec(PAYMENTS, None, None, headers=(
        ("trace", b"\xff"), ("x", None)))),
    "a jump past the clock guard, then confirmed": dataclasses.replace(case_of(
        ISSUED, tick_at(T0), tick_at("2026-03-01T00:00:00Z"),
        Rec(CLOCK, None, orjson.dumps(tick_at("2026-03-01T00:00:00Z", "again")),
            headers=(CONFIRM,))), max_tick_jump=7 * DAY),
    # The record past the size limit, and one nested past orjson's depth.
    "too large": case_of(Rec(PAYMENTS, b"inv-0", b" " * (MAX_RECORD_BYTES + 1))),
    "nested 2000 deep": case_of(Rec(REQUESTS, None, b"[" * 2000 + b"]" * 2000)),
}


@pytest.mark.parametrize("case", list(CRASH_RECORDS.values()), ids=list(CRASH_RECORDS))
def test_crash_records(case: Case) -> None:
    check_case(case)


def test_the_generators_reach_every_type_and_outcome() -> None:
    # A guard on the fuzzer itself: the derandomized cases of one seed reach every input
    # type valid, every outcome, and the dead-letter codes the codec and engine can give.
    stats: Counter[str] = Counter()
    types: Counter[str] = Counter()
    for i in range(300):
        case = make_case(Seeded(random.Random(f"reach:{i}")), 12)
        for rec in case.records:
            event = decode(rec.topic, rec.key, rec.value)
            if not isinstance(event, m.DeadLetter):
                types[event.type] += 1
        with contextlib.suppress(FuzzFailure):  # the tests above count those
            check_case(case, stats)
    assert set(TYPES) <= set(types), types
    outcomes = {k.split()[1] for k in stats if k.startswith("outcome ")}
    assert outcomes == OUTCOMES, stats
    codes = {k.split()[2] for k in stats if k.startswith("dead letter ")}
    assert {"malformed_json", "missing_field", "invalid_field", "unknown_type",
            "currency_mismatch", "too_large", "orphan", "clock_jump"} <= codes, stats
    commands = {k.split()[1] for k in stats if k.startswith("command ")}
    assert len(commands) >= 18, commands  # every stage fires somewhere
