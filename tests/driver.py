"""A test driver for the pure engine: feed raw records, step logical time, read commands.

Like Kafka Streams' TopologyTestDriver: no broker, time moves only when a test ticks.
Records go through the real codec, so tests exercise the edge as well as the rules.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from dunning.config.policy import parse_policy
from dunning.rules import model as m
from dunning.rules.engine import Engine, Result
from dunning.streams import topics
from dunning.streams.codec import feed

# The contract's sample policy, with no due-soon, reminder or limit stage unless a test asks.
BASE_POLICY = """
[defaults]
terms_days = 30
suspend_after_days = 15
delete_after_days = 60
request_cancel_after_days = 9
notify_reseller = true
"""

# Every stage off but what a test turns on (values are TOML literals): see `policy`.
OFF = {
    "terms_days": "30",
    "suspend_after_days": "false",
    "delete_after_days": "false",
    "request_cancel_after_days": "false",
    "notify_reseller": "false",
}


def policy(extra: str = "", **keys: str) -> str:
    """A [defaults] section with every stage off unless given (values are TOML literals)."""
    lines = [f"{k} = {v}" for k, v in {**OFF, **keys}.items()]
    return "[defaults]\n" + "\n".join(lines) + "\n" + extra


TOPIC_OF = {t: topic for topic, types in topics.EVENT_TYPES.items() for t in types}


def at(day: str) -> str:
    """'2026-01-10' -> '2026-01-10T00:00:00Z'; full timestamps pass through."""
    return day if "T" in day else f"{day}T00:00:00Z"


class Driver:
    def __init__(self, policy: str = BASE_POLICY) -> None:
        self.engine = Engine(parse_policy(policy, "test-policy"))
        self.log: list[m.Command] = []  # every command so far, in order
        self.dead: list[m.DeadLetter] = []
        self._ids = itertools.count(1)
        self._offset = itertools.count()

    # -- feeding -------------------------------------------------------------------------

    def send(self, record: dict[str, Any] | bytes | None, topic: str | None = None,
             key: bytes | None = None, headers: Any = ()) -> Result:
        if isinstance(record, dict):
            record = dict(record)
            record.setdefault("event_id", f"ev-{next(self._ids)}")
            topic = topic or TOPIC_OF[record["type"]]
            if key is None and "invoice_id" in record:
                key = str(record["invoice_id"]).encode()
            value = orjson.dumps(record)
        else:
            value = record
        assert topic is not None
        result = self.feed(topic, key, value, next(self._offset), headers)
        self.log += result.commands
        self.dead += result.dead_letters
        return result

    def feed(self, topic: str, key: bytes | None, value: bytes | None, offset: int,
             headers: Any = ()) -> Result:
        """One raw record through the codec into the engine."""
        return feed(self.engine, topic, key, value, 0, offset, headers)

    def tick(self, day: str, event_id: str | None = None) -> Result:
        return self.send({"type": "clock.tick", "now": at(day),
                          "event_id": event_id or f"tick-{at(day)}"})

    def ticks(self, first: str, last: str, every_days: int = 1) -> list[m.Command]:
        """Tick every `every_days` from `first` to `last` inclusive; returns their commands."""
        from datetime import date, timedelta

        day, end, out = date.fromisoformat(first), date.fromisoformat(last), []
        while day <= end:
            out += self.tick(day.isoformat()).commands
            day += timedelta(days=every_days)
        return out

    def issue(self, invoice_id: str = "inv-1", *, issued_at: str = "2026-01-01",
              amount: str = "100.00", customer_id: str = "cust-1", currency: str = "USD",
              **fields: Any) -> Result:
        for name in ("due_at",):
            if name in fields:
                fields[name] = at(fields[name])
        overrides = fields.get("overrides")
        if overrides:
            fields["overrides"] = {
                k: at(v) if isinstance(v, str) else v for k, v in overrides.items()
            }
        return self.send({"type": "invoice.issued", "invoice_id": invoice_id,
                          "customer_id": customer_id, "amount": amount, "currency": currency,
                          "issued_at": at(issued_at), **fields})

    def pay(self, invoice_id: str = "inv-1", amount: str = "100.00", payment_id: str | None = None,
            currency: str = "USD", **fields: Any) -> Result:
        return self.send({"type": "payment.applied", "invoice_id": invoice_id,
                          "payment_id": payment_id or f"pay-{next(self._ids)}",
                          "amount": amount, "currency": currency, **fields})

    def reverse(self, payment_id: str, amount: str, invoice_id: str = "inv-1") -> Result:
        return self.send({"type": "payment.reversed", "invoice_id": invoice_id,
                          "payment_id": payment_id, "amount": amount})

    def adjust(self, amount: str, invoice_id: str = "inv-1") -> Result:
        return self.send({"type": "invoice.adjusted", "invoice_id": invoice_id, "amount": amount})

    def cancel(self, invoice_id: str = "inv-1") -> Result:
        return self.send({"type": "invoice.cancelled", "invoice_id": invoice_id})

    def charge_failed(self, attempt: int, hard: bool = False, invoice_id: str = "inv-1") -> Result:
        return self.send({"type": "charge.failed", "invoice_id": invoice_id,
                          "attempt": attempt, "hard": hard})

    def complete_request(self, invoice_id: str = "inv-1", without_payment: bool = False) -> Result:
        return self.send({"type": "request.completed", "invoice_id": invoice_id,
                          "without_payment": without_payment})

    # -- reading -------------------------------------------------------------------------

    def invoice(self, invoice_id: str = "inv-1"):
        return self.engine.invoices[invoice_id]

    def of(self, ctype: str, *, audience: str | None = "customer",
           invoice_id: str | None = None) -> list[dict[str, Any]]:
        """Every command of a type so far (notifications: the customer's copy by default)."""
        found = []
        for c in self.log:
            v = c.value
            if v["type"] != ctype:
                continue
            if audience is not None and "audience" in v and v["audience"] != audience:
                continue
            if invoice_id is not None and v.get("invoice_id") != invoice_id:
                continue
            found.append(v)
        return found

    def types(self, commands: list[m.Command] | Result | None = None,
              audience: str | None = "customer") -> list[str]:
        """The command types in order (notifications: one audience), for compact asserts."""
        if isinstance(commands, Result):
            commands = commands.commands
        commands = self.log if commands is None else commands
        return [c.value["type"] for c in commands
                if audience is None or c.value.get("audience", audience) == audience]

    def statuses(self, invoice_id: str = "inv-1") -> list[str]:
        return [v["status"] for v in self.of("invoice.status", invoice_id=invoice_id)]


def days_between(a: str, b: str) -> float:
    from dunning.rules.times import DAY, parse_time

    return (parse_time(at(b)) - parse_time(at(a))) / DAY
