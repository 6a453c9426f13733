"""The business calendar (contract v1.1 §3): when enforcement may land and notices may go.

Pure arithmetic on logical time (epoch seconds): the local days and hours are those of the
calendar's IANA zone, so a move lands on the local business day across daylight-saving changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
ALL_DAYS = frozenset(range(7))


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Calendar:
    """Enforcement days and notice hours in one zone. Notice hours are minutes after local
    midnight, [start, end); None: notices at any hour."""

    time_zone: str = "UTC"
    enforce_on: frozenset[int] = ALL_DAYS  # weekdays, Monday = 0
    holidays: frozenset[date] = frozenset()
    notice_hours: tuple[int, int] | None = None

    def local(self, at: int) -> datetime:
        return datetime.fromtimestamp(at, zone(self.time_zone))

    def enforces_on(self, day: date) -> bool:
        return day.weekday() in self.enforce_on and day not in self.holidays

    def enforce_at(self, at: int) -> int:
        """The time a limitation, suspension or deletion due at `at` takes effect: `at` on an
        enforcement day, else the start of the next one (its notice hours' start, when set)."""
        try:
            day = self.local(at).date()
        except (OverflowError, ValueError, OSError):
            return at  # past what datetime can name (a date ten years after 9998)
        if self.enforces_on(day):
            return at
        # Every week holds an enforcement day, and each holiday can cost at most a week.
        for _ in range(7 * (len(self.holidays) + 1)):
            try:
                day += timedelta(days=1)
            except OverflowError:
                return at  # past year 9999: nothing to move to
            if self.enforces_on(day):
                start = self.notice_hours[0] if self.notice_hours else 0
                return max(at, self._at(day, start))
        return at

    def notice_at(self, at: int) -> int:
        """The time a notification due at `at` may go: `at` within notice hours, else the next
        opening (later today, or tomorrow's)."""
        if self.notice_hours is None:
            return at
        start, end = self.notice_hours
        try:
            moment = self.local(at)
        except (OverflowError, ValueError, OSError):
            return at
        minute = moment.hour * 60 + moment.minute
        if start <= minute < end:
            return at
        day = moment.date()
        if minute >= end:
            try:
                day += timedelta(days=1)
            except OverflowError:
                return at
        return max(at, self._at(day, start))

    def in_notice_hours(self, at: int) -> bool:
        return self.notice_at(at) == at

    def _at(self, day: date, minute: int) -> int:
        """The first epoch second at or after a local wall time: a wall time that a
        daylight-saving change skips comes out as the moment the clocks jump past it."""
        tz = zone(self.time_zone)
        wall = datetime.combine(day, time(minute // 60, minute % 60))
        early = int(wall.replace(tzinfo=tz).timestamp())  # fold 0: the earlier of two
        if datetime.fromtimestamp(early, tz).replace(tzinfo=None) == wall:
            return early
        # In a gap: fold 1 reads it with the later offset, landing before the gap; the
        # jump lies between, where local wall time passes `wall` (monotone there).
        low = int(wall.replace(tzinfo=tz, fold=1).timestamp())
        low, high = min(low, early), max(low, early)
        while low < high:
            mid = (low + high) // 2
            if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
                high = mid
            else:
                low = mid + 1
        return high
