"""Contract v1.1 §3, the business calendar: enforcement lands on local business days, notices
wait for notice hours.

Europe/Berlin, 2027: summer time begins Sunday 03-28 (UTC+1 -> UTC+2) and ends Sunday 10-31.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dunning.rules.calendar import Calendar
from dunning.rules.times import format_time, parse_time
from tests.driver import Driver

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = frozenset(range(5))
HOLIDAYS = frozenset((date(2027, 12, 24), date(2027, 12, 25), date(2027, 12, 26)))
OFFICE = Calendar("Europe/Berlin", WEEKDAYS, HOLIDAYS, (8 * 60, 20 * 60))
ANY_HOUR = Calendar("Europe/Berlin", WEEKDAYS, HOLIDAYS)


def t(text: str) -> int:
    return parse_time(text)


# -- the arithmetic ---------------------------------------------------------------------------


def test_a_time_on_an_enforcement_day_does_not_move() -> None:
    # Friday 2027-03-26 23:30 in Berlin; the calendar speaks of days, not hours, here.
    assert OFFICE.enforce_at(t("2027-03-26T22:30:00Z")) == t("2027-03-26T22:30:00Z")


def test_a_weekend_moves_to_the_start_of_notice_hours_on_monday_across_summer_time() -> None:
    # Saturday 03-27 11:00 CET -> Monday 03-29 08:00 CEST (06:00 UTC), past the change.
    assert OFFICE.enforce_at(t("2027-03-27T10:00:00Z")) == t("2027-03-29T06:00:00Z")


def test_without_notice_hours_it_moves_to_the_start_of_the_next_enforcement_day() -> None:
    assert ANY_HOUR.enforce_at(t("2027-03-27T10:00:00Z")) == t("2027-03-28T22:00:00Z")
    # Back to winter time: Saturday 10-30 -> Monday 11-01 00:00 CET (23:00 UTC on Sunday).
    assert ANY_HOUR.enforce_at(t("2027-10-30T12:00:00Z")) == t("2027-10-31T23:00:00Z")


def test_the_local_day_decides_not_the_utc_day() -> None:
    # Friday 23:30 UTC is already Saturday 00:30 in Berlin: it moves.
    assert ANY_HOUR.enforce_at(t("2027-03-26T23:30:00Z")) == t("2027-03-28T22:00:00Z")
    # Saturday 03:00 UTC is still Friday 23:00 in New York: it stays.
    new_york = Calendar("America/New_York", WEEKDAYS)
    assert new_york.enforce_at(t("2027-03-27T03:00:00Z")) == t("2027-03-27T03:00:00Z")


def test_holidays_and_the_weekend_after_them_are_skipped() -> None:
    # Friday 12-24 (holiday), 25-26 (holiday and weekend) -> Monday 12-27 08:00 CET.
    assert OFFICE.enforce_at(t("2027-12-24T09:00:00Z")) == t("2027-12-27T07:00:00Z")


def test_notices_wait_for_the_next_opening() -> None:
    assert OFFICE.notice_at(t("2027-03-26T12:00:00Z")) == t("2027-03-26T12:00:00Z")
    # 06:30 CET: later the same morning, 08:00 CET.
    assert OFFICE.notice_at(t("2027-03-26T05:30:00Z")) == t("2027-03-26T07:00:00Z")
    # 20:00 CET is closed already: tomorrow 08:00 (any day: notice hours are every day).
    assert OFFICE.notice_at(t("2027-03-26T19:00:00Z")) == t("2027-03-27T07:00:00Z")
    # Saturday night 22:00 CET -> Sunday 08:00, which is summer time already (06:00 UTC).
    assert OFFICE.notice_at(t("2027-03-27T21:00:00Z")) == t("2027-03-28T06:00:00Z")
    assert OFFICE.in_notice_hours(t("2027-03-26T18:59:59Z"))
    assert not OFFICE.in_notice_hours(t("2027-03-26T19:00:00Z"))


def test_an_opening_that_summer_time_skips_comes_just_after_the_gap() -> None:
    night = Calendar("Europe/Berlin", notice_hours=(2 * 60 + 30, 6 * 60))
    # 02:30 does not exist on 03-28: the window opens at 03:00 CEST (01:00 UTC).
    assert night.notice_at(t("2027-03-27T23:30:00Z")) == t("2027-03-28T01:00:00Z")


def test_every_day_of_a_year_moves_onto_a_business_day() -> None:
    at = t("2027-01-01T00:00:00Z")
    for _ in range(365 * 6):
        moved = OFFICE.enforce_at(at)
        local = datetime.fromtimestamp(moved, BERLIN)
        assert moved >= at and OFFICE.enforces_on(local.date())
        assert moved == at or (local.hour, local.minute) == (8, 0)
        at += 4 * 3600 + 7  # every hour of the day, across both changes


# -- in the engine ----------------------------------------------------------------------------

CALENDAR = """
[calendar]
time_zone = "Europe/Berlin"
enforce_on = ["mon", "tue", "wed", "thu", "fri"]
holidays = ["2027-12-24", "2027-12-25", "2027-12-26"]
"""
HOURS = 'notice_hours = ["08:00", "20:00"]\n'


def policy(calendar: str = CALENDAR + HOURS, **days: int) -> str:
    keys = {"terms_days": 30, "suspend_after_days": 15, "delete_after_days": 60, **days}
    return "[defaults]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + calendar


def hourly(d: Driver, first: str, last: str) -> None:
    at, end = t(first), t(last)
    while at <= end:
        d.tick(format_time(at))
        at += 3600


def enforcement(d: Driver) -> list[tuple[str, str]]:
    kinds = ("service.limit", "service.suspend", "service.delete")
    return [(c.value["type"], c.value["issued_at"]) for c in d.log if c.value["type"] in kinds]


def test_a_suspension_due_on_saturday_lands_on_monday_at_the_opening() -> None:
    d = Driver(policy())
    d.tick("2027-02-10T10:00:00Z")
    d.issue(issued_at="2027-02-10T10:00:00Z")  # due 03-12, suspension 03-27 (a Saturday)
    hourly(d, "2027-03-27T00:00:00Z", "2027-03-30T00:00:00Z")
    assert enforcement(d) == [("service.suspend", "2027-03-29T06:00:00Z")]
    assert [v["issued_at"] for v in d.of("notify.suspended")] == ["2027-03-29T06:00:00Z"]
    assert d.invoice().suspend_at == t("2027-03-29T06:00:00Z")


def test_notices_announce_the_moved_times() -> None:
    d = Driver(policy())
    d.tick("2027-02-10T10:00:00Z")
    d.issue(issued_at="2027-02-10T10:00:00Z")
    hourly(d, "2027-03-12T09:00:00Z", "2027-03-12T11:00:00Z")  # due at 10:00 UTC, Friday
    overdue = d.of("notify.overdue")
    assert [v["suspend_at"] for v in overdue] == ["2027-03-29T06:00:00Z"]
    # The deletion, 05-11 (a Tuesday), stays where the policy put it.
    assert [v["delete_at"] for v in overdue] == ["2027-05-11T10:00:00Z"]


def test_a_deletion_on_a_holiday_waits_past_the_holidays_and_the_weekend() -> None:
    d = Driver(policy(suspend_after_days="false", delete_after_days=0))
    d.tick("2027-11-24T09:00:00Z")
    d.issue(issued_at="2027-11-24T09:00:00Z")  # due and deletion 12-24 10:00 CET
    hourly(d, "2027-12-24T00:00:00Z", "2027-12-28T00:00:00Z")
    assert enforcement(d) == [("service.delete", "2027-12-27T07:00:00Z")]


def test_a_limitation_moves_too_and_without_notice_hours_lands_at_local_midnight() -> None:
    d = Driver(policy(CALENDAR, limit_after_days=1, suspend_after_days="false",
                      delete_after_days="false"))
    d.tick("2027-09-29T10:00:00Z")
    d.issue(issued_at="2027-09-29T10:00:00Z")  # due Friday 10-29, limit Saturday 10-30
    hourly(d, "2027-10-30T00:00:00Z", "2027-11-01T12:00:00Z")
    # Monday 11-01 00:00 CET, after summer time ended on Sunday.
    assert enforcement(d) == [("service.limit", "2027-10-31T23:00:00Z")]


def test_charges_statuses_and_fees_do_not_move() -> None:
    d = Driver(policy(auto_charge='"on_due"', late_fee='"5.00"', suspend_after_days="false",
                      delete_after_days="false"))
    d.tick("2027-02-25T10:00:00Z")
    d.issue(issued_at="2027-02-25T10:00:00Z")  # due Saturday 03-27 11:00 CET
    hourly(d, "2027-03-27T09:00:00Z", "2027-03-27T11:00:00Z")
    at_due = {c.value["type"]: c.value["issued_at"] for c in d.log[-10:]}
    assert at_due["charge.request"] == at_due["invoice.late_fee"] == "2027-03-27T10:00:00Z"
    assert d.of("invoice.status")[-1]["status"] == "overdue"
    assert d.of("invoice.status")[-1]["issued_at"] == "2027-03-27T10:00:00Z"


def test_a_tick_that_jumps_onto_a_weekend_waits_for_the_next_enforcement_day() -> None:
    d = Driver(policy())
    d.tick("2027-02-10T10:00:00Z")
    d.issue(issued_at="2027-02-10T10:00:00Z")  # suspension moved to Monday 03-29 08:00
    d.tick("2027-04-03T12:00:00Z")  # the next tick comes on a Saturday
    assert enforcement(d) == []
    hourly(d, "2027-04-05T05:00:00Z", "2027-04-05T07:00:00Z")
    assert enforcement(d) == [("service.suspend", "2027-04-05T06:00:00Z")]


def test_a_class_has_its_own_calendar() -> None:
    text = policy() + '[class.vip.calendar]\nenforce_on = ["mon", "tue", "wed", "thu", "fri", ' \
        '"sat", "sun"]\n'
    d = Driver(text)
    d.tick("2027-02-10T10:00:00Z")
    d.issue("inv-1", issued_at="2027-02-10T10:00:00Z")
    d.issue("inv-2", issued_at="2027-02-10T10:00:00Z", customer_id="cust-2",
            customer_class="vip")
    hourly(d, "2027-03-27T09:00:00Z", "2027-03-29T06:00:00Z")
    assert [(v["invoice_ids"], v["issued_at"]) for v in d.of("service.suspend")] == [
        (["inv-2"], "2027-03-27T10:00:00Z"), (["inv-1"], "2027-03-29T06:00:00Z")]


@pytest.mark.parametrize("days", [14, 15, 16, 17, 18])
def test_without_a_calendar_nothing_moves(days: int) -> None:
    d = Driver(policy("", suspend_after_days=days))
    d.tick("2027-02-10T10:00:00Z")
    d.issue(issued_at="2027-02-10T10:00:00Z")
    d.tick(format_time(t("2027-03-12T10:00:00Z") + days * 86_400))
    assert enforcement(d) == [("service.suspend", format_time(
        t("2027-03-12T10:00:00Z") + int(timedelta(days=days).total_seconds())))]


# -- notice hours -----------------------------------------------------------------------------


def notices(d: Driver) -> list[tuple[str, str]]:
    return [(c.value["type"], c.value["issued_at"]) for c in d.log
            if c.value["type"].startswith("notify.") and c.value["audience"] == "customer"]


def test_a_reminder_due_at_night_waits_for_the_opening() -> None:
    d = Driver(policy(reminder_every_days=1, suspend_after_days="false",
                      delete_after_days="false"))
    d.tick("2027-03-01T22:00:00Z")
    d.issue(issued_at="2027-03-01T22:00:00Z")  # 23:00 CET: every reminder falls at night
    hourly(d, "2027-03-02T21:00:00Z", "2027-03-03T08:00:00Z")
    # The 23:00 CET reminder goes at 08:00 CET the next morning, once, issued then.
    assert notices(d) == [("notify.reminder", "2027-03-03T07:00:00Z")]
    reminder = d.of("notify.reminder")[0]
    assert reminder["causation_id"] == "tick-2027-03-02T22:00:00Z"
    assert reminder["due_at"] == "2027-03-31T22:00:00Z"


def test_a_held_notice_keeps_its_command_id() -> None:
    plain = Driver(policy("", reminder_every_days=1, suspend_after_days="false",
                          delete_after_days="false"))
    held = Driver(policy(reminder_every_days=1, suspend_after_days="false",
                         delete_after_days="false"))
    for d in (plain, held):
        d.tick("2027-03-01T22:00:00Z")
        d.issue(issued_at="2027-03-01T22:00:00Z")
        hourly(d, "2027-03-02T21:00:00Z", "2027-03-03T08:00:00Z")
    assert [v["command_id"] for v in plain.of("notify.reminder")] == \
        [v["command_id"] for v in held.of("notify.reminder")]


def test_a_held_reminder_is_dropped_once_paid() -> None:
    d = Driver(policy(reminder_every_days=1, suspend_after_days="false",
                      delete_after_days="false"))
    d.tick("2027-03-01T22:00:00Z")
    d.issue(issued_at="2027-03-01T22:00:00Z")
    hourly(d, "2027-03-02T21:00:00Z", "2027-03-03T01:00:00Z")
    d.pay()  # at night, before the opening
    hourly(d, "2027-03-03T02:00:00Z", "2027-03-03T09:00:00Z")
    assert d.of("notify.reminder") == []


def test_a_reaction_at_night_waits_too_but_charges_and_statuses_do_not() -> None:
    d = Driver(policy(auto_charge='"on_due"', charge_retry_days="[]",
                      suspend_after_days="false", delete_after_days="false"))
    d.tick("2027-02-01T02:00:00Z")
    d.issue(issued_at="2027-02-01T02:00:00Z")  # due 03-03 03:00 CET
    hourly(d, "2027-03-03T01:00:00Z", "2027-03-03T02:00:00Z")
    assert d.of("charge.request")[0]["issued_at"] == "2027-03-03T02:00:00Z"
    assert d.of("invoice.status")[-1]["issued_at"] == "2027-03-03T02:00:00Z"
    assert d.of("notify.overdue") == []
    d.charge_failed(1, hard=True)  # at 03:00 CET
    assert d.of("notify.charge_failed") == []
    hourly(d, "2027-03-03T03:00:00Z", "2027-03-03T07:00:00Z")
    assert notices(d) == [("notify.overdue", "2027-03-03T07:00:00Z"),
                          ("notify.charge_failed", "2027-03-03T07:00:00Z")]


def test_a_suspension_at_night_on_an_enforcement_day_is_told_at_the_opening() -> None:
    d = Driver(policy(delete_after_days="false"))
    d.tick("2027-02-09T02:00:00Z")
    d.issue(issued_at="2027-02-09T02:00:00Z", order_id="ord-1")  # suspension Fri 03-26 03:00
    hourly(d, "2027-03-26T01:00:00Z", "2027-03-26T08:00:00Z")
    assert enforcement(d) == [("service.suspend", "2027-03-26T02:00:00Z")]
    suspended = d.of("notify.suspended")
    assert [v["issued_at"] for v in suspended] == ["2027-03-26T07:00:00Z"]
    # Paid at night: the order is restored at once, the customer told at the opening.
    hourly(d, "2027-03-26T20:00:00Z", "2027-03-26T21:00:00Z")
    d.pay()
    assert [v["type"] for v in d.of("service.unsuspend")] == ["service.unsuspend"]
    assert d.of("notify.unsuspended") == []
    hourly(d, "2027-03-26T22:00:00Z", "2027-03-27T08:00:00Z")
    unsuspended = d.of("notify.unsuspended")
    assert [v["issued_at"] for v in unsuspended] == ["2027-03-27T07:00:00Z"]
    assert "suspend_at" not in unsuspended[0] and unsuspended[0]["amount_due"] == "0.00"


def test_a_deletion_at_night_is_still_told() -> None:
    d = Driver(policy(suspend_after_days="false", delete_after_days=0))
    d.tick("2027-02-24T02:00:00Z")
    d.issue(issued_at="2027-02-24T02:00:00Z")  # due and deletion Fri 03-26 03:00 CET
    hourly(d, "2027-03-26T01:00:00Z", "2027-03-26T08:00:00Z")
    assert enforcement(d) == [("service.delete", "2027-03-26T02:00:00Z")]
    assert [v["issued_at"] for v in d.of("notify.deleted")] == ["2027-03-26T07:00:00Z"]
    assert d.of("notify.overdue") == []  # held, then dropped: deletion ended pursuit


def test_held_notices_survive_the_state_codec() -> None:
    from dunning.tables.state import decode_invoice, encode_invoice

    d = Driver(policy(reminder_every_days=1, suspend_after_days="false",
                      delete_after_days="false"))
    d.tick("2027-03-01T22:00:00Z")
    d.issue(issued_at="2027-03-01T22:00:00Z")
    hourly(d, "2027-03-02T21:00:00Z", "2027-03-02T23:00:00Z")
    assert d.invoice().waiting
    d.engine.invoices["inv-1"] = decode_invoice(encode_invoice(d.invoice()))
    hourly(d, "2027-03-03T00:00:00Z", "2027-03-03T08:00:00Z")
    assert notices(d) == [("notify.reminder", "2027-03-03T07:00:00Z")]


# -- the property -----------------------------------------------------------------------------

ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe",
         "Pacific/Chatham", "UTC")
ENFORCEMENT = {"service.limit", "service.suspend", "service.delete"}


@st.composite
def calendar_scenarios(draw: st.DrawFn) -> tuple[str, Calendar, list[tuple[int, dict]], int]:
    zone = draw(st.sampled_from(ZONES))
    days = draw(st.sets(st.integers(0, 6), min_size=1))
    start = t("2027-01-01T00:00:00Z") + draw(st.integers(0, 330)) * 86_400
    holidays = draw(st.sets(st.integers(0, 120), max_size=12))
    hours = draw(st.none() | st.tuples(st.integers(0, 23 * 60), st.integers(1, 16 * 60)))
    window = None if hours is None else (hours[0], min(1440, hours[0] + hours[1]))
    first = date(2027, 1, 1) + timedelta(days=(start - t("2027-01-01T00:00:00Z")) // 86_400)
    cal = Calendar(zone, frozenset(days), frozenset(first + timedelta(days=h) for h in holidays),
                   window)
    names = ", ".join(f'"{d}"' for d in sorted(WEEKDAY_NAMES[i] for i in days))
    text = policy(
        f'[calendar]\ntime_zone = "{zone}"\nenforce_on = [{names}]\n'
        f"holidays = [{', '.join(sorted(f'{h.isoformat()!r}' for h in cal.holidays))}]\n"
        + ("" if window is None else
           f'notice_hours = ["{window[0] // 60:02d}:{window[0] % 60:02d}", '
           f'"{window[1] // 60:02d}:{window[1] % 60:02d}"]\n'),
        terms_days=draw(st.integers(0, 20)), limit_after_days=draw(st.integers(0, 5)),
        suspend_after_days=draw(st.integers(0, 10)), delete_after_days=draw(st.integers(10, 30)),
        reminder_every_days=draw(st.integers(1, 4)), due_soon_days="[1, 2]",
        late_fee='"1.00"', auto_charge='"on_due"')
    events: list[tuple[int, dict]] = []
    for n in range(draw(st.integers(1, 3))):
        at = start + draw(st.integers(0, 5 * 86_400))
        events.append((at, {"type": "invoice.issued", "invoice_id": f"inv-{n}",
                            "customer_id": f"cust-{n % 2}", "amount": "100.00",
                            "currency": "USD", "issued_at": format_time(at),
                            "order_id": draw(st.sampled_from([None, "ord-1"]))}))
        for _ in range(draw(st.integers(0, 2))):
            paid = at + draw(st.integers(0, 40 * 86_400))
            events.append((paid, {"type": "payment.applied", "invoice_id": f"inv-{n}",
                                  "payment_id": f"p-{n}-{paid}", "amount":
                                  draw(st.sampled_from(["10.00", "60.00", "100.00"])),
                                  "currency": "USD"}))
        if draw(st.booleans()):
            failed = at + draw(st.integers(0, 30 * 86_400))
            events.append((failed, {"type": "charge.failed", "invoice_id": f"inv-{n}",
                                    "attempt": 1, "hard": True}))
    gap = draw(st.integers(1, 30)) * 3600
    for event in events:
        if event[1]["type"] == "invoice.issued":
            event[1]["issued_at"] = format_time(event[0])
    return text, cal, sorted(events, key=lambda e: e[0]), gap


WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calendar_scenarios())
def test_no_enforcement_off_enforcement_days_and_no_notice_outside_notice_hours(
        scenario: tuple[str, Calendar, list[tuple[int, dict]], int]) -> None:
    text, cal, events, gap = scenario
    d = Driver(text)
    now = events[0][0]
    end = now + 90 * 86_400
    pending = list(events)
    while now <= end:
        d.tick(format_time(now))
        while pending and pending[0][0] <= now:
            d.send(pending.pop(0)[1])
        now += gap
    for c in d.log:
        ctype, at = c.value["type"], t(c.value["issued_at"])
        if ctype in ENFORCEMENT:
            assert cal.enforces_on(cal.local(at).date()), (ctype, c.value["issued_at"])
        elif ctype.startswith("notify."):
            assert cal.in_notice_hours(at), (ctype, c.value["issued_at"])


def test_times_past_what_a_calendar_can_name_do_not_move() -> None:
    far = t("9998-12-31T23:00:00Z") + 3650 * 86_400  # a deletion ten years after 9998
    assert OFFICE.enforce_at(far) == far and OFFICE.notice_at(far) == far
    # Friday 9999-12-31 in Berlin, a holiday: there is no later day to move to.
    last = int(datetime(9999, 12, 31, 12, tzinfo=BERLIN).timestamp())
    closing = Calendar("Europe/Berlin", WEEKDAYS, frozenset({date(9999, 12, 31)}))
    assert closing.enforce_at(last) == last


def test_an_updated_date_on_a_weekend_moves_too() -> None:
    d = Driver(policy())
    d.tick("2027-02-10T10:00:00Z")
    d.issue(issued_at="2027-02-10T10:00:00Z")
    d.send({"type": "invoice.updated", "invoice_id": "inv-1",
            "overrides": {"suspend_at": "2027-03-20T10:00:00Z"}})  # a Saturday
    hourly(d, "2027-03-20T09:00:00Z", "2027-03-22T07:00:00Z")
    assert enforcement(d) == [("service.suspend", "2027-03-22T07:00:00Z")]  # Monday 08:00 CET


def test_no_held_notice_goes_while_paused() -> None:
    d = Driver(policy(reminder_every_days=1, suspend_after_days="false",
                      delete_after_days="false"))
    d.tick("2027-03-01T22:00:00Z")
    d.issue(issued_at="2027-03-01T22:00:00Z")
    hourly(d, "2027-03-02T21:00:00Z", "2027-03-02T23:00:00Z")  # a reminder held
    d.send({"type": "collection.paused", "invoice_id": "inv-1", "reason": "dispute"})
    hourly(d, "2027-03-03T00:00:00Z", "2027-03-03T12:00:00Z")
    assert d.of("notify.reminder") == []
    d.send({"type": "collection.resumed", "invoice_id": "inv-1"})  # 13:00 CET: in hours
    hourly(d, "2027-03-03T12:00:00Z", "2027-03-03T13:00:00Z")
    assert [v["issued_at"] for v in d.of("notify.reminder")] == ["2027-03-03T12:00:00Z"]


def test_the_invoice_view_shows_its_calendar_and_the_notices_waiting() -> None:
    from dunning.tables.state import invoice_view

    d = Driver(policy(reminder_every_days=1, suspend_after_days="false",
                      delete_after_days="false"))
    d.tick("2027-03-01T22:00:00Z")
    d.issue(issued_at="2027-03-01T22:00:00Z")
    hourly(d, "2027-03-02T21:00:00Z", "2027-03-02T23:00:00Z")
    view = invoice_view(d.invoice())
    assert view["calendar"] == {"time_zone": "Europe/Berlin",
                                "enforce_on": ["mon", "tue", "wed", "thu", "fri"],
                                "holidays": ["2027-12-24", "2027-12-25", "2027-12-26"],
                                "notice_hours": ["08:00", "20:00"]}
    assert view["notices_waiting"] == [{"type": "notify.reminder", "at": "2027-03-03T07:00:00Z"}]
    plain = Driver(policy(""))
    plain.issue(issued_at="2027-03-01T22:00:00Z")
    assert "calendar" not in invoice_view(plain.invoice())
