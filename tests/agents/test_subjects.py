"""The subject agent's ordering, batch by batch: signals wait until every invoice partition
has passed their tick, then apply in the order one engine would have used, also when they
arrive in separate batches, out of order, twice, or across a restart."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from faust.types import TP

from dunning.agents.metrics import Metrics
from dunning.agents.subjects import SubjectAgent, Waiting
from dunning.rules.invoice import LIMITED, SUSPENDED, Signal
from dunning.rules.times import DAY
from dunning.streams import records as wire
from dunning.tables.state import encode_signal

SIGNALS = "test-signals"
T = 100 * DAY  # the tick every partition must pass


class Builder:
    def __init__(self) -> None:
        self.records: list[tuple[Any, bytes | None]] = []

    def append(self, *, timestamp: Any, key: Any, value: bytes | None, headers: Any) -> bool:
        self.records.append((key, value))
        return True


class Producer:
    """Faust's producer as the agent uses it (the aiokafka one under it does the batches);
    collects what is sent, delivered at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, bytes | None, int]] = []

    def _ensure_producer(self) -> Producer:
        return self

    def create_batch(self) -> Builder:
        return Builder()

    async def send_batch(self, batch: Builder, topic: str, *, partition: int) -> Any:
        self.sent += [(topic, k, v, partition) for k, v in batch.records]
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    async def flush(self) -> None:
        pass

    def commands(self) -> list[str]:
        """Provisioning commands in the order sent (notices go to a topic of their own)."""
        return [orjson.loads(v)["type"] for t, _, v, _ in self.sent
                if t == "collection.provisioning"]


class Changelog:
    def get_topic_name(self) -> str:
        return "test-subjects-changelog"


@dataclass
class Table:
    data: dict[bytes, bytes]
    changelog_topic: Changelog


@dataclass
class Rec:
    value: bytes
    offset: int = 0
    key: bytes | None = None
    headers: tuple[()] = ()


def signal(invoice: str, level: int, at: int, version: int = 1) -> Rec:
    sig = Signal("order", "o-1", invoice, version, "hold", level, T, f"tick-{T}",
                 {"invoice_id": invoice, "customer_id": "c-1", "amount_due": "100.00",
                  "currency": "USD"}, ("customer",))
    return Rec(wire.signal_value([T, 0, at, invoice, version], encode_signal(sig)))


def marker(partition: int, clock: int = T) -> Rec:
    return Rec(wire.marker_value(clock, partition))


def agent(table: Table | None = None) -> tuple[SubjectAgent, Producer, Table]:
    producer, table = Producer(), table or Table({}, Changelog())
    return SubjectAgent(producer, table, 2, Metrics()), producer, table


def feed(a: SubjectAgent, *records: Rec) -> None:
    async def batch() -> None:
        finish = await a.handle({TP(SIGNALS, 0): list(records)})
        await finish()

    asyncio.run(batch())


# Partition 1's invoice suspends (action time day 90) before partition 0's limits (day 95).
SUSPEND_FIRST = signal("inv-p1", SUSPENDED, 90 * DAY)
LIMIT_LATER = signal("inv-p0", LIMITED, 95 * DAY)


def test_signals_wait_for_every_partition_then_apply_in_action_order():
    a, producer, _ = agent()
    feed(a, LIMIT_LATER, marker(0))  # partition 0 is done with the tick; 1 is not
    assert producer.commands() == []
    feed(a, SUSPEND_FIRST, marker(1))
    # One engine: suspend (day 90) first; the later limit asks for less, so nothing more.
    assert producer.commands() == ["service.suspend"]


def test_arrival_order_does_not_matter():
    a, producer, _ = agent()
    feed(a, SUSPEND_FIRST, marker(1))
    feed(a, LIMIT_LATER, marker(0))
    assert producer.commands() == ["service.suspend"]


def test_limit_before_suspend_gives_both_commands_in_order():
    a, producer, _ = agent()
    feed(a, signal("inv-p1", SUSPENDED, 96 * DAY), marker(1))
    feed(a, signal("inv-p0", LIMITED, 95 * DAY), marker(0))
    assert producer.commands() == ["service.limit", "service.suspend"]


def test_waiting_signals_survive_a_restart_and_redelivery():
    a, producer, table = agent()
    feed(a, LIMIT_LATER, marker(0))
    # A new worker takes over from the table; the first batch is redelivered to it.
    b, producer_b, _ = agent(table)
    feed(b, LIMIT_LATER, marker(0))
    feed(b, SUSPEND_FIRST, marker(1))
    assert producer.commands() == []
    assert producer_b.commands() == ["service.suspend"]
    # And a redelivery of everything after that changes nothing.
    feed(b, LIMIT_LATER, SUSPEND_FIRST, marker(0), marker(1))
    assert producer_b.commands() == ["service.suspend"]


def test_markers_only_move_forward():
    a, producer, _ = agent()
    feed(a, marker(0), marker(1, clock=T - DAY), LIMIT_LATER)
    assert producer.commands() == []  # partition 1 is a day behind
    feed(a, marker(1))
    assert producer.commands() == ["service.limit"]


# Kafka refuses a record over its max.message.bytes (1 MiB by default): no row may near it.
ROW_LIMIT = 1 << 20


def many_waiting(n: int, prefix: str = "inv") -> list[Rec]:
    return [signal(f"{prefix}-{i:05d}", SUSPENDED, 90 * DAY, version=1) for i in range(n)]


def test_many_waiting_signals_stay_under_the_record_limit_and_survive_a_restart():
    """A billing run suspends tens of thousands of invoices in one tick; their signals wait
    for the other invoice partitions' markers. Kept in one row they made a record over 1 MiB,
    which Kafka refused (MessageSizeTooLargeError) and the worker stopped."""
    a, producer, table = agent()
    feed(a, *many_waiting(6000), marker(0))  # partition 1 has not passed the tick yet
    rows = [(k, v) for t, k, v, _ in producer.sent if t == "test-subjects-changelog"]
    assert rows and max(len(v or b"") for _, v in rows) < ROW_LIMIT // 2
    assert rows[-1][0] == b"w:0"  # the partition's header row last (batches.write_rows)
    assert producer.commands() == []
    # A new worker from the table (what the changelog holds) applies them all once.
    b, producer_b, _ = agent(table)
    feed(b, marker(1))
    assert producer_b.commands().count("service.suspend") == 1  # one order: held once
    held = [orjson.loads(v) for t, _, v, _ in producer_b.sent
            if t == "collection.provisioning"]
    assert len(held[0]["invoice_ids"]) == 6000


def test_waiting_signals_written_again_and_again_leave_no_rows_behind():
    """Each write of the waiting signals replaces the one before: the rows of the write
    before last are deleted, so the table (and its compacted changelog) holds two at most."""
    a, _, table = agent()
    for round_ in range(4):
        feed(a, *many_waiting(3000, prefix=f"r{round_}"), marker(0))
    chunks = [k for k in table.data if k.startswith(b"w:0.")]
    assert 0 < len(chunks) <= 2 * (12000 * 200 // (ROW_LIMIT // 4) + 1)
    b, producer_b, _ = agent(table)
    feed(b, marker(1))
    held = [orjson.loads(v) for t, _, v, _ in producer_b.sent
            if t == "collection.provisioning"]
    assert len(held[0]["invoice_ids"]) == 12000


def test_a_waiting_row_of_the_single_row_layout_still_loads():
    a, producer, table = agent()
    old = orjson.dumps([[T, 0], [orjson.loads(LIMIT_LATER.value)[1:]]])
    table.data[b"w:0"] = old
    feed(a, SUSPEND_FIRST, marker(1))
    assert producer.commands() == ["service.suspend"]


def test_a_write_cut_short_before_its_header_leaves_the_last_state_whole():
    """Whatever prefix of a write reaches the changelog, the header there and the chunks it
    names are whole: from many waiting signals to few, and back."""
    a, producer, _ = agent()
    batches = [many_waiting(3000, "a"), many_waiting(10, "b"), many_waiting(3000, "c"),
               many_waiting(2, "d")]
    for records in batches:
        feed(a, *records, marker(0))
    rows = [(k, v) for t, k, v, _ in producer.sent if t == "test-subjects-changelog"]
    headers = [i for i, (k, _) in enumerate(rows) if k == b"w:0"]
    wanted = 0
    for n, end in enumerate(headers):
        wanted += len(batches[n])
        # The changelog cut anywhere between this header and the next one's: the state is
        # this header's, whole.
        for cut in range(end + 1, (headers[n + 1] if n + 1 < len(headers) else end) + 1):
            data: dict[bytes, bytes] = {}
            for k, v in rows[:cut]:
                if v is None:
                    data.pop(k, None)
                else:
                    data[k] = v
            assert len(Waiting.decode(0, data, 2).signals) == wanted
