"""Logical time: whole seconds since the Unix epoch, UTC. Parsed and printed at the edge."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

DAY = 86_400
# ASCII digits only: `\d` would take any Unicode digit ("٢٠٢٦").
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The contract's range for input times (years 1970 to 9998 in UTC): dates derived from them
# (a due date, a deletion 3 650 days after it) must still print as four-digit years.
MAX_TIME = int((datetime(9999, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds()) - 1
# Billing runs repeat the same timestamps many times; both directions are cached.
_parsed: dict[str, int] = {}
_printed: dict[int, str] = {}
_CACHE_MAX = 65_536


def parse_time(text: object) -> int:
    """An RFC 3339 timestamp with an offset, as epoch seconds (fractions dropped).

    Raises ValueError with a reason a person can read.
    """
    if not isinstance(text, str):
        raise ValueError("a time must be an RFC 3339 string such as \"2026-01-10T00:00:00Z\"")
    seconds = _parsed.get(text)
    if seconds is not None:
        return seconds
    if _RFC3339.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp with an offset")
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date and time") from exc
    seconds = int((moment - _EPOCH) // timedelta(seconds=1))
    if seconds < 0:
        raise ValueError(f"{text!r} is before 1970")
    if seconds > MAX_TIME:
        raise ValueError(f"{text!r} is after the year 9998")
    if len(_parsed) >= _CACHE_MAX:
        _parsed.clear()
    _parsed[text] = seconds
    return seconds


def format_time(seconds: int) -> str:
    """RFC 3339 in UTC. Total for any int, so that no state can make printing fail; a time
    past 9999 (which validation keeps off the wire) prints with the year it has."""
    text = _printed.get(seconds)
    if text is None:
        try:
            text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        except OverflowError:
            text = _format_far(seconds)
        if len(_printed) >= _CACHE_MAX:
            _printed.clear()
        _printed[seconds] = text
    return text


def _format_far(seconds: int) -> str:
    """Outside datetime's years 1 to 9999: the proleptic Gregorian calendar by arithmetic
    (days to civil date after H. Hinnant's algorithm)."""
    days, rest = divmod(seconds, DAY)
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    hour, rest = divmod(rest, 3600)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{rest // 60:02d}:{rest % 60:02d}Z"
