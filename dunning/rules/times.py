"""Logical time: whole seconds since the Unix epoch, UTC. Parsed and printed at the edge."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

DAY = 86_400
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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
    if len(_parsed) >= _CACHE_MAX:
        _parsed.clear()
    _parsed[text] = seconds
    return seconds


def format_time(seconds: int) -> str:
    text = _printed.get(seconds)
    if text is None:
        text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if len(_printed) >= _CACHE_MAX:
            _printed.clear()
        _printed[seconds] = text
    return text
