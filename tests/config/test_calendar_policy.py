"""The policy file's business calendar (contract v1.1 §3): `[calendar]`, per class in
`[class.NAME.calendar]`, and an error naming the key for each bad value."""

from datetime import date

import pytest

from dunning.config.policy import PolicyError, parse_policy
from dunning.rules.calendar import ALL_DAYS, Calendar

SAMPLE = """
[defaults]
terms_days = 30

[calendar]
time_zone = "Europe/Berlin"
enforce_on = ["mon", "tue", "wed", "thu", "fri"]
holidays = ["2027-12-24", "2027-12-25", "2027-12-26"]
notice_hours = ["08:00", "20:00"]
"""


def test_the_contracts_sample_calendar() -> None:
    cal = parse_policy(SAMPLE).terms().calendar
    assert cal == Calendar("Europe/Berlin", frozenset(range(5)),
                           frozenset((date(2027, 12, 24), date(2027, 12, 25),
                                      date(2027, 12, 26))), (480, 1200))


def test_no_calendar_means_any_day_any_hour() -> None:
    assert parse_policy("[defaults]\nterms_days = 30\n").terms().calendar is None


def test_every_key_is_optional() -> None:
    cal = parse_policy('[calendar]\ntime_zone = "Asia/Tokyo"\n').terms().calendar
    assert cal == Calendar("Asia/Tokyo", ALL_DAYS, frozenset(), None)
    assert parse_policy("[calendar]\n").terms().calendar == Calendar()


def test_a_class_calendar_overrides_the_keys_it_names() -> None:
    text = SAMPLE + """
[class.vip]
terms_days = 10

[class.vip.calendar]
notice_hours = false
enforce_on = ["mon"]

[class.vip.out_of_turn]
terms_days = 5
"""
    policy = parse_policy(text)
    vip = policy.terms(customer_class="vip", kind="out_of_turn")
    assert vip.terms_days == 5
    assert vip.calendar == Calendar("Europe/Berlin", frozenset({0}),
                                    policy.terms().calendar.holidays, None)
    assert policy.terms(customer_class="other").calendar == policy.terms().calendar
    assert policy.terms("debit_note", "vip").calendar == policy.terms().calendar
    assert policy.classes == ["vip"]


def test_a_class_calendar_alone_applies_to_that_class_only() -> None:
    policy = parse_policy('[class.vip.calendar]\ntime_zone = "Europe/Paris"\n')
    assert policy.terms(customer_class="vip").calendar == Calendar("Europe/Paris")
    assert policy.terms().calendar is None


def test_holidays_may_be_toml_dates() -> None:
    cal = parse_policy("[calendar]\nholidays = [2027-12-24]\n").terms().calendar
    assert cal is not None and cal.holidays == {date(2027, 12, 24)}


def test_notice_hours_may_end_at_midnight() -> None:
    cal = parse_policy('[calendar]\nnotice_hours = ["09:30", "24:00"]\n').terms().calendar
    assert cal is not None and cal.notice_hours == (570, 1440)


INVALID = {
    "zone_unknown": ('time_zone = "Mars/Olympus"', "time_zone", "unknown time zone"),
    "zone_path": ('time_zone = "../etc/passwd"', "time_zone", "unknown time zone"),
    "zone_not_text": ("time_zone = 1", "time_zone", "IANA time zone name"),
    "zone_empty": ('time_zone = ""', "time_zone", "IANA time zone name"),
    "days_empty": ("enforce_on = []", "enforce_on", "non-empty list"),
    "days_not_list": ('enforce_on = "mon"', "enforce_on", "non-empty list"),
    "day_unknown": ('enforce_on = ["monday"]', "enforce_on", "is not a day"),
    "day_twice": ('enforce_on = ["mon", "mon"]', "enforce_on", "twice"),
    "holiday_bad": ('holidays = ["2027-02-30"]', "holidays", "YYYY-MM-DD"),
    "holiday_format": ('holidays = ["24.12.2027"]', "holidays", "YYYY-MM-DD"),
    "holiday_time": ("holidays = [2027-12-24T10:00:00]", "holidays", "YYYY-MM-DD"),
    "holiday_twice": ('holidays = ["2027-12-24", 2027-12-24]', "holidays", "twice"),
    "holidays_not_list": ('holidays = "2027-12-24"', "holidays", "list of dates"),
    "hours_one": ('notice_hours = ["08:00"]', "notice_hours", "two local times"),
    "hours_bad": ('notice_hours = ["8:00", "20:00"]', "notice_hours", "HH:MM"),
    "hours_25": ('notice_hours = ["08:00", "25:00"]', "notice_hours", "HH:MM"),
    "hours_start_24": ('notice_hours = ["24:00", "24:00"]', "notice_hours", "HH:MM"),
    "hours_backwards": ('notice_hours = ["20:00", "08:00"]', "notice_hours", "end after"),
    "hours_empty": ('notice_hours = ["08:00", "08:00"]', "notice_hours", "end after"),
    "hours_true": ("notice_hours = true", "notice_hours", "or false"),
    "unknown_key": ('zone = "UTC"', "zone", "unknown key"),
}


@pytest.mark.parametrize(("line", "key", "reason"), INVALID.values(), ids=INVALID.keys())
@pytest.mark.parametrize("section", ["calendar", "class.vip.calendar"])
def test_an_invalid_calendar_names_the_key_and_why(section: str, line: str, key: str,
                                                   reason: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(f"[{section}]\n{line}\n", "bad.toml")
    assert err.value.key == f"[{section}] {key}"
    assert reason in err.value.reason


def test_a_calendar_that_is_not_a_table() -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy('calendar = "Europe/Berlin"\n', "bad.toml")
    assert err.value.key == "[calendar]"


def test_a_calendar_under_a_product_or_kind_is_refused() -> None:
    with pytest.raises(PolicyError, match="unknown key"):
        parse_policy('[product.x.calendar]\ntime_zone = "UTC"\n')
    with pytest.raises(PolicyError):
        parse_policy('[class.x.regular.calendar]\ntime_zone = "UTC"\n')
