"""Byte encodings of invoice, subject, held-event and signal state (dunning.tables.state).

Round trips compare every slot, found by walking `__slots__`, so a slot added to a rules class
without codec support fails here. Random scenarios run through the engine with every state and
every signal replaced by its decoded copy after each step must emit exactly what a plain run
emits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from dunning.rules import engine as engine_module
from dunning.rules import model as m
from dunning.rules.calendar import Calendar
from dunning.rules.engine import Held
from dunning.rules.invoice import DELETED, LIMITED, SUSPENDED, Invoice, Signal
from dunning.rules.subject import Subject
from dunning.streams import codec, topics
from dunning.tables.state import (
    decode_held,
    decode_invoice,
    decode_signal,
    decode_subject,
    encode_held,
    encode_invoice,
    encode_signal,
    encode_subject,
    invoice_view,
)
from tests.driver import Driver
from tests.rules.strategies import Run, Scenario, run, scenarios

# -- exact comparison -------------------------------------------------------------------------


def slots(cls: type) -> list[str]:
    return [name for k in cls.__mro__ for name in getattr(k, "__slots__", ())]


def same(a: Any, b: Any, path: str = "") -> None:
    """Equal, of the same types all the way down, Decimals with the same exponent."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if slots(type(a)):
        for name in slots(type(a)):
            same(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, Decimal):
        assert a.as_tuple() == b.as_tuple(), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, set):
        same(sorted(a), sorted(b), path)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def round_trip(obj: Any, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]) -> Any:
    data = encode(obj)
    back = decode(data)
    same(obj, back, type(obj).__name__)
    assert encode(back) == data  # the same state, the same bytes
    return back


# -- invoices -----------------------------------------------------------------------------------


def full_invoice() -> Invoice:
    """Every slot away from its default, with Decimals of several exponents."""
    inv = Invoice()
    values: dict[str, Any] = {
        "actions": [(100, 6, "late_fee"), (200, 8, "delete")],
        "amount": Decimal("1234.500"),
        "calendar": Calendar("Europe/Berlin", frozenset((0, 1, 2, 3, 4)),
                             frozenset((date(2027, 12, 24), date(2027, 12, 25))), (480, 1200)),
        "charge_at": 300,
        "charge_next": 2,
        "charge_retry": (3, 5, 7),
        "charge_sent": 1,
        "currency": "BHD",
        "customer_id": "cust-é",
        "debit": True,
        "delete_at": 200,
        "due_at": 50,
        "explicit": ("suspend", "delete"),
        "fee_fixed": Decimal("2.5"),
        "fee_percent": Decimal("1.50"),
        "hold_version": 4,
        "invoice_id": "inv-1",
        "issued_at": 10,
        "issued_by": "ev-issue",
        "level": SUSPENDED,
        "limit_at": 150,
        "next_reminder": 400,
        "notify_reseller": True,
        "order_id": "ord-1",
        "paid": Decimal("12.345"),
        "parked": [(60, 4, "overdue_notice"), (120, 7, "suspend")],
        "pause_until": 700,
        "pause_reason": "dispute",
        "paused_at": 20,
        "payments": {"pay-b": Decimal("0.000"), "pay-a": Decimal("12.345")},
        "pending_request": True,
        "reminder_every": 86_400,
        "reminder_start": 10,
        "request_cancel_at": 500,
        "request_id": "req-1",
        "reseller_id": "res-1",
        "seen": {"ev-2", "ev-1", "ev-3"},
        "skipped": True,
        "status": "overdue",
        "status_seq": 3,
        "suspend_at": 175,
        "threshold": Decimal("1E+1"),
        "waiting": ((900, {"type": "notify.reminder", "command_id": "c-1"}),),
    }
    for name, value in values.items():
        setattr(inv, name, value)
    return inv


def test_the_full_invoice_moves_every_slot_off_its_default() -> None:
    fresh, full = Invoice(), full_invoice()
    assert [s for s in Invoice.__slots__ if getattr(full, s) == getattr(fresh, s)] == []


@pytest.mark.parametrize("make", [Invoice, full_invoice], ids=["fresh", "full"])
def test_invoice_round_trip_keeps_every_slot_exactly(make: Callable[[], Invoice]) -> None:
    round_trip(make(), encode_invoice, decode_invoice)


def test_invoice_encoding_is_a_compact_versioned_array() -> None:
    data = encode_invoice(full_invoice())
    row = orjson.loads(data)
    assert row[0] == 4 and len(row) == len(Invoice.__slots__) + 1
    assert b'"1234.500"' in data and b'"1E+1"' in data
    assert b"invoice_id" not in data  # no field names
    assert b'["ev-1","ev-2","ev-3"]' in data  # the set, sorted


# The state of an invoice as version 1 wrote it (dunning before v1.1): suspended on 01-10 by
# its own suspend_at, 95.00 of 100.00 paid, its threshold 10.00, the deletion to come.
INVOICE_V1 = (
    b'[1,"inv-1","cust-1","ord-1",null,null,"ev-2","USD","100.00","95.00",{"p-1":"95.00"},'
    b'"10.00",null,null,1767225600,1769817600,"partially_paid",2,[[1769817600,4,"overdue"],'
    b'[1775001600,8,"delete"]],null,1768003200,1775001600,null,604800,1767225600,1768435200,'
    b'[],null,0,0,false,false,false,false,2,1,["ev-pay"]]'
)


def test_an_invoice_of_version_1_is_migrated() -> None:
    inv = decode_invoice(INVOICE_V1)
    # Version 1 did not say which dates were explicit, and set nothing aside.
    assert (inv.explicit, inv.parked) == ((), None)
    assert (inv.amount, inv.paid, inv.level, inv.seen) == (
        Decimal("100.00"), Decimal("95.00"), SUSPENDED, {"ev-pay"})
    assert inv.actions == [(1769817600, 4, "overdue"), (1775001600, 8, "delete")]
    row = orjson.loads(encode_invoice(inv))
    assert row == [4, *orjson.loads(INVOICE_V1)[1:], [], None, None, None, None, None, None]


def test_an_invoice_of_version_2_is_migrated_as_not_paused() -> None:
    v2 = orjson.dumps([2, *orjson.loads(INVOICE_V1)[1:], ["suspend"], None])
    inv = decode_invoice(v2)
    assert (inv.paused_at, inv.pause_until, inv.explicit) == (None, None, ("suspend",))
    assert orjson.loads(encode_invoice(inv)) == [4, *orjson.loads(v2)[1:], *[None] * 5]


def test_an_invoice_of_version_3_is_migrated_without_a_calendar() -> None:
    v3 = orjson.dumps([3, *orjson.loads(INVOICE_V1)[1:], ["suspend"], None, 5, None])
    inv = decode_invoice(v3)
    assert (inv.calendar, inv.paused_at) == (None, 5)
    assert inv.waiting is None
    assert orjson.loads(encode_invoice(inv)) == [4, *orjson.loads(v3)[1:], None, None, None]


def test_a_migrated_invoice_goes_on_under_the_v11_rules() -> None:
    d = Driver("[defaults]\nterms_days = 30\ncollection_threshold = \"10.00\"\n"
               "suspend_after_days = 15\ndelete_after_days = 60\nreminder_every_days = 7\n")
    d.tick("2026-01-10")
    d.engine.invoices["inv-1"] = decode_invoice(INVOICE_V1)
    d.engine.schedule.set("inv-1", d.invoice().next_at())
    d.ticks("2026-01-11", "2026-04-30")
    # Within the threshold at due_at: the policy's deletion is set aside; still suspended, the
    # customer goes on being reminded.
    assert d.of("service.delete") == [] and d.of("notify.overdue") == []
    assert [v["issued_at"][:10] for v in d.of("notify.reminder")][-1] == "2026-04-30"
    assert d.invoice().parked == [(1769817600, 4, "overdue_notice"), (1775001600, 8, "delete")]


# -- subjects -----------------------------------------------------------------------------------


def held_subject() -> Subject:
    subj = Subject("order", "ord-1")
    subj.level, subj.epoch = SUSPENDED, 2
    subj.holders = {"inv-2": SUSPENDED, "inv-1": LIMITED}
    subj.versions = {"inv-1": 3, "inv-2": 5, "inv-0": 2}
    subj.waiting = ({"type": "notify.suspended", "invoice_id": "inv-2"},)
    return subj


@pytest.mark.parametrize("make", [lambda: Subject("customer", "c-1"), held_subject],
                         ids=["fresh", "held"])
def test_subject_round_trip_keeps_every_slot(make: Callable[[], Subject]) -> None:
    back = round_trip(make(), encode_subject, decode_subject)
    assert back.key == f"{back.kind}:{back.id}"


def test_the_held_subject_moves_every_slot_off_its_default() -> None:
    fresh, full = Subject("x", "y"), held_subject()
    assert [s for s in Subject.__slots__ if getattr(full, s) == getattr(fresh, s)] == []


# -- held events --------------------------------------------------------------------------------


def payment(key: bytes | None, offset: int, payment_id: str = "pay-1",
            headers: tuple[tuple[str, bytes], ...] = ()) -> m.Event:
    value = orjson.dumps({"type": "payment.applied", "event_id": f"ev-{offset}",
                          "invoice_id": "inv-9", "payment_id": payment_id,
                          "amount": "10.00", "currency": "USD"})
    event = codec.decode(topics.PAYMENTS, key, value, 3, offset, headers)
    assert isinstance(event, m.Event)
    return event


def test_held_events_round_trip_with_their_source_records() -> None:
    held = [
        Held(payment(b"inv-9", 10), None),
        Held(payment(None, 11), 1_767_225_600),
        Held(payment(b"\xff\x00not-utf8", 12, payment_id="paiement-é"), 1_767_312_000),
        Held(payment(b"inv-9", 13, headers=(("trace", b"\x00\xfe"), ("trace", b"2"))), 5),
        Held(payment(b"inv-9", 14, headers=(("null", None),)), 6),  # Kafka allows null values
    ]
    back = round_trip(held, encode_held, decode_held)
    assert [h.event.source.key for h in back] == [b"inv-9", None, b"\xff\x00not-utf8", b"inv-9",
                                                  b"inv-9"]
    assert back[4].event.source.headers == (("null", None),)
    assert back[3].event.source.headers == (("trace", b"\x00\xfe"), ("trace", b"2"))
    assert round_trip([], encode_held, decode_held) == []


def test_held_events_written_before_headers_were_kept_still_decode() -> None:
    value = orjson.loads(payment(b"inv-9", 10).source.value)  # type: ignore[union-attr]
    data = orjson.dumps([1, [topics.PAYMENTS, 3, 10, "inv-9", orjson.dumps(value).decode(),
                             1_767_225_600]])
    (back,) = decode_held(data)
    assert back.held_at == 1_767_225_600 and back.event.source.headers == ()
    assert back.event == payment(b"inv-9", 10)


def test_a_held_event_without_its_source_record_is_refused() -> None:
    event = m.PaymentApplied(type="payment.applied", event_id="ev-1", invoice_id="inv-1",
                             payment_id="p", amount=Decimal("1.00"), currency="USD")
    with pytest.raises(ValueError, match="ev-1 has no source record"):
        encode_held([Held(event, 5)])


def test_a_held_record_that_no_longer_decodes_is_named() -> None:
    data = orjson.dumps([2, [topics.PAYMENTS, 0, 7, None, '{"type": "nope"}', 5, []]])
    with pytest.raises(ValueError, match=r"offset 7.*no longer decodes: unknown_type"):
        decode_held(data)


# -- signals ------------------------------------------------------------------------------------


def test_a_hand_made_signal_round_trips() -> None:
    for sig in (
        Signal("order", "o-1", "inv-1", 3, "hold", DELETED, 99, "ev-1",
               {"invoice_id": "inv-1", "amount_due": "1.00"}, ("customer", "reseller"), "req-1",
               True),
        Signal("customer", "c-1", "inv-2", 1, "release", 0, 5, "tick-1"),
    ):
        round_trip(sig, encode_signal, decode_signal)


def test_subjects_and_signals_of_version_1_are_migrated() -> None:
    subj = decode_subject(orjson.dumps([1, "order", "o-1", 2, 1, {"inv-1": 2}, {"inv-1": 4}]))
    assert (subj.level, subj.waiting, subj.holders) == (SUSPENDED, None, {"inv-1": 2})
    sig = decode_signal(orjson.dumps([1, "order", "o-1", "inv-1", 3, "hold", 2, 99, "ev-1",
                                      {}, ["customer"], None]))
    assert (sig.quiet, sig.now, sig.audiences) == (False, 99, ("customer",))


@contextmanager
def signals_through_the_codec(sent: list[Signal]) -> Iterator[None]:
    """The engine's subjects get each signal as decoded from its bytes, as over Kafka."""
    apply_signals = engine_module.apply_signals

    def via_bytes(subject_of: Callable[[Signal], Any], signals: list[Signal],
                  failed: Any = None) -> list[m.Command]:
        sent.extend(signals)
        return apply_signals(subject_of, [round_trip(sig, encode_signal, decode_signal)
                                          for sig in signals], failed)

    with mock.patch.object(engine_module, "apply_signals", via_bytes):
        yield


SIGNALS_POLICY = """
[defaults]
terms_days = 10
limit_after_days = 1
suspend_after_days = 2
request_cancel_after_days = 30
"""


def test_signals_of_every_action_round_trip() -> None:
    sent: list[Signal] = []
    with signals_through_the_codec(sent):
        d = Driver(SIGNALS_POLICY)
        d.issue("inv-1", order_id="o-1", reseller_id="r-1")
        d.issue("inv-2", order_id="o-1", origin="system", request_id="req-2",
                request_status="pending")
        d.tick("2026-01-13")
        d.pay("inv-1")
        d.tick("2026-02-01")
    assert {s.action for s in sent} == {"hold", "release", "cancel_request"}
    assert d.types(d.log).count("service.suspend") == 1


# -- the engine, continued from decoded state -----------------------------------------------------


def wire(r: Run) -> list[Any]:
    return [(c.topic, c.key, c.value) for c in r.log] + [
        (x.error, x.reason, x.source) for s in r.steps for x in s.dead
    ]


def round_trip_engine(d: Driver, _step: Any) -> None:
    """Swap every state in the engine for its decoded copy."""
    e = d.engine
    for iid, inv in list(e.invoices.items()):
        e.invoices[iid] = round_trip(inv, encode_invoice, decode_invoice)
    for key, subj in list(e.subjects.items()):
        e.subjects[key] = round_trip(subj, encode_subject, decode_subject)
    for iid, held in list(e.held.items()):
        e.held[iid] = round_trip(held, encode_held, decode_held)


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_a_run_continued_from_decoded_state_emits_the_same(sc: Scenario) -> None:
    plain = wire(run(sc))
    with signals_through_the_codec([]):
        assert wire(run(sc, check=round_trip_engine)) == plain


# -- garbage ------------------------------------------------------------------------------------

INVOICE = encode_invoice(full_invoice())
SUBJECT = encode_subject(held_subject())
DECODERS = {"invoice": decode_invoice, "subject": decode_subject, "signal": decode_signal,
            "held": decode_held}


@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize(("data", "error"), [
    (b"", "is not JSON"),
    (b"\xff\xfe", "is not JSON"),
    (b'{"v": 1}', "not a JSON array"),
    (b"[]", "not a JSON array"),
    (b"[9, 1, 2]", "format version 9; this dunning reads version [1234]"),
    (b"[true]", "format version True"),
    (b'["1"]', "format version '1'"),
])
def test_garbage_is_refused_naming_the_problem(kind: str, data: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        DECODERS[kind](data)


@pytest.mark.parametrize(("decoder", "data", "error"), [
    (decode_invoice, b"[1]", "invoice state has 0 fields; version 1 has 36"),
    (decode_invoice, b"[2]", "invoice state has 0 fields; version 2 has 38"),
    (decode_invoice, b"[3]", "invoice state has 0 fields; version 3 has 40"),
    (decode_subject, INVOICE_V1, "subject state has 36 fields"),
    (decode_signal, SUBJECT, "signal state has 7 fields"),
    (decode_held, SUBJECT, "held event 1 is not"),
    (decode_invoice, INVOICE.replace(b'"1234.500"', b'"12x"'), "field amount"),
    (decode_invoice, INVOICE.replace(b'"1234.500"', b"1234.5"), "field amount: expected a"),
    (decode_invoice, INVOICE.replace(b'"pay-a":"12.345"', b'"pay-a":1'), "field payments"),
    (decode_invoice, INVOICE.replace(b'[200,8,"delete"]', b"[200]"), "field actions"),
    (decode_subject, SUBJECT.replace(b'{"inv-2":2', b'[{"inv-2":2').replace(b"1}", b"1}]", 1),
     "field holders"),
    (decode_held, b'[2, ["t", 0, 0, 5, "{}", null, []]]', "latin-1"),
])
def test_damaged_records_are_refused_naming_the_field(
    decoder: Callable[[bytes], Any], data: bytes, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        decoder(data)


# -- the invoice as JSON ----------------------------------------------------------------------

VIEW_POLICY = """
[defaults]
terms_days = 30
auto_charge = "on_due"
charge_retry_days = [3]
reminder_every_days = 7
late_fee = "5"
limit_after_days = 5
suspend_after_days = 15
delete_after_days = 60
"""


def test_invoice_view_shows_the_state_in_wire_terms() -> None:
    d = Driver(VIEW_POLICY)
    d.issue(order_id="o-1", reseller_id="r-1")
    d.pay(amount="30.00", payment_id="pay-1")
    d.tick("2026-02-10")
    view = invoice_view(decode_invoice(encode_invoice(d.invoice())))
    assert view == {
        "invoice_id": "inv-1", "customer_id": "cust-1", "order_id": "o-1",
        "reseller_id": "r-1", "subject": {"kind": "order", "id": "o-1"},
        "document": "invoice", "status": "overdue", "currency": "USD",
        "amount": "100.00", "amount_paid": "30.00", "amount_due": "70.00",
        "amount_credit": "0.00",
        "payments": [{"payment_id": "pay-1", "amount": "30.00"}],
        "issued_at": "2026-01-01T00:00:00Z", "due_at": "2026-01-31T00:00:00Z",
        "limit_at": "2026-02-05T00:00:00Z", "suspend_at": "2026-02-15T00:00:00Z",
        "delete_at": "2026-04-01T00:00:00Z", "request_cancel_at": None, "request": None,
        "next_action": {"action": "reminder", "at": "2026-02-12T00:00:00Z"},
        "scheduled": [{"action": "reminder", "at": "2026-02-12T00:00:00Z"},
                      {"action": "suspend", "at": "2026-02-15T00:00:00Z"},
                      {"action": "delete", "at": "2026-04-01T00:00:00Z"}],
        "pause": None,
        "reminders": {"every_days": 7, "started_at": "2026-01-01T00:00:00Z",
                      "next_at": "2026-02-12T00:00:00Z"},
        "charge": {"next_attempt": 1, "next_at": None, "awaiting_attempt": 1,
                   "retry_days": [3]},
        "late_fee": {"amount": "5.00", "percent": None},
        "collection_threshold": "0.00", "overdue_stage_skipped": False,
        "service": "limited", "issued_by": "ev-1", "events_applied": 1,
    }
    assert orjson.loads(orjson.dumps(view)) == view


def test_invoice_view_of_a_settled_or_waiting_invoice() -> None:
    d = Driver()
    d.issue("inv-1")
    d.issue("inv-2", origin="system", request_id="req-2", request_status="pending")
    d.issue("inv-3", document="debit_note", currency="JPY", amount="500")
    d.pay("inv-1", amount="130.00")  # overpaid: the view shows no negative money
    paid, waiting, debit = (invoice_view(d.invoice(i)) for i in ("inv-1", "inv-2", "inv-3"))
    assert (paid["status"], paid["amount_due"], paid["next_action"]) == ("paid", "0.00", None)
    assert (paid["amount_paid"], paid["amount_credit"]) == ("130.00", "30.00")
    assert waiting["request"] == {"request_id": "req-2", "pending": True}
    assert waiting["next_action"] == {"action": "request_cancel", "at": "2026-01-10T00:00:00Z"}
    assert waiting["reminders"] is None and waiting["charge"] is None
    assert (debit["document"], debit["amount_due"], debit["late_fee"]) == ("debit_note", "500",
                                                                          None)
    assert debit["subject"] == {"kind": "customer", "id": "cust-1"}


def test_a_paused_invoice_stays_paused_through_its_state() -> None:
    d = Driver()
    d.tick("2026-02-01")
    d.issue(issued_at="2026-01-01")
    d.send({"type": "collection.paused", "invoice_id": "inv-1", "reason": "dispute",
            "until": "2026-02-10T00:00:00Z"})
    inv = decode_invoice(encode_invoice(d.invoice()))
    assert (inv.paused_at, inv.pause_until) == (d.invoice().paused_at, d.invoice().pause_until)


def test_invoice_view_shows_a_pause_and_the_dates_it_holds() -> None:
    from tests.rules.test_controls import pause, resume

    d = Driver(VIEW_POLICY)
    d.issue()
    d.tick("2026-02-01")
    pause(d, until="2026-03-01", reason="dispute")
    view = invoice_view(decode_invoice(encode_invoice(d.invoice())))
    assert view["pause"] == {"reason": "dispute", "since": "2026-02-01T00:00:00Z",
                             "until": "2026-03-01T00:00:00Z"}
    d.tick("2026-02-11")
    resume(d)
    view = invoice_view(decode_invoice(encode_invoice(d.invoice())))
    assert view["pause"] is None
    assert view["suspend_at"] == "2026-02-25T00:00:00Z"  # 2026-02-15, ten paused days later
