"""Records on the wire: internal topics, partitioning, and the records the worker writes.

The worker re-keys every input record by invoice id onto one internal log per partition
(`<app>-events`), so a partition sees its invoices' events and every tick in one order that a
restart replays exactly. Subjects get their own log (`<app>-signals`), keyed by subject.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from dunning.rules import model as m
from dunning.streams.topics import EVENT_TYPES

Headers = list[tuple[str, bytes]]

# Where a forwarded record came from, so that a later dead letter can name the input record.
H_TOPIC, H_PARTITION, H_OFFSET, H_KEY = "dunning.topic", "dunning.partition", "dunning.offset", \
    "dunning.key"
_OURS = (H_TOPIC, H_PARTITION, H_OFFSET, H_KEY)
_KNOWN = {t for types in EVENT_TYPES.values() for t in types}


# On a tick, optionally: the end offsets of the other input topics' partitions when it was
# sent ({"billing.payments": {"0": 1200, ...}, ...}), as `dunning tick` sets it. The worker
# then forwards the tick after exactly those records, and the later ones after the tick.
H_AFTER = "dunning.after"


def after_header(ends: dict[tuple[str, int], int]) -> tuple[str, bytes]:
    doc: dict[str, dict[str, int]] = {}
    for (topic, partition), end in sorted(ends.items()):
        doc.setdefault(topic, {})[str(partition)] = end
    return H_AFTER, orjson.dumps(doc)


def after_of(headers: Any) -> dict[tuple[str, int], int] | None:
    """The end offsets a tick carries, or None (absent, or not in the expected form)."""
    for name, value in headers or ():
        if name != H_AFTER:
            continue
        try:
            doc = orjson.loads(value)
            ends = {(topic, int(p)): end for topic, parts in doc.items()
                    for p, end in parts.items()}
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            return None
        if all(type(end) is int and end >= 0 for end in ends.values()):
            return ends
        return None
    return None


def events_topic(app_id: str) -> str:
    return f"{app_id}-events"


def signals_topic(app_id: str) -> str:
    return f"{app_id}-signals"


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), so any client agrees on where a key lives."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def forward_headers(topic: str, partition: int, offset: int, key: bytes | None,
                    headers: Any = ()) -> Headers:
    out: Headers = [(k, v) for k, v in headers or () if k not in _OURS]
    out += [(H_TOPIC, topic.encode()), (H_PARTITION, b"%d" % partition),
            (H_OFFSET, b"%d" % offset)]
    if key is not None:
        out.append((H_KEY, key))
    return out


def forwarded_source(headers: Any, value: bytes | None) -> m.Source:
    """The input record behind a forwarded one, with the producer's own headers."""
    topic, partition, offset, key = "", 0, 0, None
    theirs: Headers = []
    for k, v in headers or ():
        if k == H_TOPIC:
            topic = v.decode()
        elif k == H_PARTITION:
            partition = int(v)
        elif k == H_OFFSET:
            offset = int(v)
        elif k == H_KEY:
            key = v
        else:
            theirs.append((k, v))
    return m.Source(topic, partition, offset, key, value, tuple(theirs))


def dead_letter(dl: m.DeadLetter) -> tuple[bytes | None, bytes | None, Headers]:
    """The rejected record unchanged (key, value, its headers) plus the dlq.* headers."""
    src = dl.source
    return src.key, src.value, [*src.headers,
        ("dlq.error", dl.error.encode()),
        ("dlq.reason", dl.reason.encode()),
        ("dlq.topic", src.topic.encode()),
        ("dlq.partition", b"%d" % src.partition),
        ("dlq.offset", b"%d" % src.offset),
    ]


def command_value(command: m.Command) -> bytes:
    return orjson.dumps(command.value)


def type_label(value: bytes | None) -> str:
    """The event type for metrics labels: a known type or "unknown", so labels stay few
    whatever producers send."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return "unknown"
    etype = doc.get("type") if isinstance(doc, dict) else None
    return etype if isinstance(etype, str) and etype in _KNOWN else "unknown"


# On the signals log: ["s", order, signal] and ["m", clock, invoice partition]. `order` sorts a
# signal among those of every partition (see agents.subjects).


def signal_value(order: list[Any], encoded_signal: bytes) -> bytes:
    return orjson.dumps(["s", order, orjson.Fragment(encoded_signal)])


def marker_value(clock: int, partition: int) -> bytes:
    return orjson.dumps(["m", clock, partition])
