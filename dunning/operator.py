"""Operator controls as records (contract v1.1 §1): what `dunning pause`, `dunning resume` and
`dunning update` publish on billing.invoices. Each record is checked by the worker's own edge
(`dunning.streams.codec.decode`) before anything is sent, so what the worker would
dead-letter is refused here, with the flag to fix."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from dunning.rules import model as m
from dunning.rules.times import format_time, parse_time
from dunning.streams.codec import OVERRIDE_TIMES, decode, encode
from dunning.streams.topics import INVOICES

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
NONE = "none"  # on `dunning update`: remove that date (the contract's `false`)
# The record's fields as the command line names them, longest first: the edge's reasons start
# with the field's name, and the operator is told the flag instead.
FLAGS = {
    "overrides.reminder_every_days": "--reminder-every-days",
    "overrides.request_cancel_at": "--request-cancel-at",
    "overrides.suspend_at": "--suspend-at",
    "overrides.delete_at": "--delete-at",
    "invoice_id": "INVOICE_ID",
    "event_id": "--event-id",
    "due_at": "--due-at",
    "reason": "--reason",
    "until": "--until",
}
UPDATE_KEYS = ("due_at", "reminder_every_days", *OVERRIDE_TIMES)


class Refused(ValueError):
    """A record the worker would not accept; the message names the flag."""


@dataclass(frozen=True, slots=True)
class Control:
    """One checked record, ready to send: keyed by invoice_id, as billing systems key theirs."""

    event: m.Event
    key: bytes
    value: bytes
    topic: str = INVOICES


def new_event_id(etype: str) -> str:
    """A unique id: each pause, resume or update is an operator's act of its own (two pauses
    of an invoice with the same reason are two events, not a redelivery)."""
    return f"{etype}-{uuid.uuid4()}"


def _when(text: str) -> str:
    """A time flag: RFC 3339, or a date for its midnight UTC; written in UTC as the contract
    has times. Text that is no time is left as given, for the edge to say why."""
    if _DATE.fullmatch(text):
        text += "T00:00:00Z"
    try:
        return format_time(parse_time(text))
    except ValueError:
        return text


def pause(invoice_id: str, reason: str, until: str | None = None,
          event_id: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "collection.paused",
                           "event_id": event_id or new_event_id("collection.paused"),
                           "invoice_id": invoice_id, "reason": reason}
    if until:
        doc["until"] = _when(until)
    return doc


def resume(invoice_id: str, event_id: str | None = None) -> dict[str, Any]:
    return {"type": "collection.resumed",
            "event_id": event_id or new_event_id("collection.resumed"), "invoice_id": invoice_id}


def update(invoice_id: str, changes: dict[str, str | None],
           event_id: str | None = None) -> dict[str, Any]:
    """`changes`: UPDATE_KEYS to their flags' text (None: not given; `none`: remove)."""
    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        raise Refused("nothing to update: give at least one of " +
                      ", ".join(FLAGS[k if k == "due_at" else f"overrides.{k}"]
                                for k in UPDATE_KEYS))
    doc: dict[str, Any] = {"type": "invoice.updated",
                           "event_id": event_id or new_event_id("invoice.updated"),
                           "invoice_id": invoice_id}
    overrides: dict[str, Any] = {}
    for name, text in given.items():
        if name not in UPDATE_KEYS:
            raise ValueError(f"{name} is not a date invoice.updated carries")
        removed = text.strip().lower() == NONE
        if name == "due_at":
            if removed:  # the contract removes only the overrides' dates
                raise Refused("--due-at: an invoice's due date can be moved, not removed")
            doc["due_at"] = _when(text)
        elif removed:
            overrides[name] = False
        elif name == "reminder_every_days":
            overrides[name] = int(text) if text.strip().isdigit() else text
        else:
            overrides[name] = _when(text)
    if overrides:
        doc["overrides"] = overrides
    return doc


def _flagged(reason: str, doc: dict[str, Any]) -> str:
    """The edge's reason with the field named as the flag that sets it (and the value given,
    where the reason does not quote it)."""
    for field, flag in FLAGS.items():
        if reason.startswith(field):
            rest = reason[len(field):]
            name = field.removeprefix("overrides.")
            value = doc.get("overrides", {}).get(name) if name != field else doc.get(field)
            if rest.startswith(" ") and isinstance(value, str | int) and field != "invoice_id":
                flag += f" {value!r}"
            reason = flag + rest
            if flag.startswith("--") and field.startswith("overrides."):
                reason = reason.replace("or false", f"or {NONE}")
            return reason
        quoted = f"has no {field!r}"
        if reason.endswith(quoted):
            return f"{flag} is required"
    return reason


def checked(doc: dict[str, Any]) -> Control:
    """The record as the worker's edge reads it on billing.invoices; Refused if it would be
    dead-lettered."""
    try:
        key = doc["invoice_id"].encode() if isinstance(doc.get("invoice_id"), str) else None
        value = encode(doc)
    except (UnicodeEncodeError, TypeError):  # orjson's JSONEncodeError is a TypeError
        raise Refused("the values must be UTF-8 text") from None
    event = decode(INVOICES, key, value)
    if isinstance(event, m.DeadLetter):
        raise Refused(_flagged(event.reason, doc))
    return Control(event, key or b"", value)
