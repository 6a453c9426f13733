"""The time-ordered schedule: which invoices need a tick, so a tick costs what is due.

Ids are kept in buckets by time, with a heap of the distinct times: a billing run issues
invoices on the same second, so their dates coincide and scheduling one is a list append.
Rescheduling leaves the old entry behind, skipped when its time comes (and compacted if such
leftovers pile up). The streaming layer keeps one per partition and rebuilds it on assignment.
"""

from __future__ import annotations

import heapq


class Schedule:
    __slots__ = ("_at", "_buckets", "_stale", "_times")

    def __init__(self) -> None:
        self._at: dict[str, int] = {}  # the one live time of each scheduled id
        self._buckets: dict[int, list[str]] = {}
        self._times: list[int] = []  # heap of the bucket times
        self._stale = 0

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: str) -> bool:
        return key in self._at

    def at(self, key: str) -> int | None:
        return self._at.get(key)

    def set(self, key: str, at: int | None) -> None:
        """Schedule `key` at `at`, or unschedule it with None."""
        old = self._at.get(key)
        if old == at:
            return
        if old is not None:
            self._stale += 1
        if at is None:
            del self._at[key]
        else:
            self._at[key] = at
            bucket = self._buckets.get(at)
            if bucket is None:
                self._buckets[at] = [key]
                heapq.heappush(self._times, at)
            else:
                bucket.append(key)
        if self._stale > len(self._at) + 4096:
            self._compact()

    def pop_due(self, now: int) -> list[str]:
        """Every id due by `now`, earliest first (ties by id), each once, unscheduled."""
        times, buckets, live, due = self._times, self._buckets, self._at, []
        while times and times[0] <= now:
            at = heapq.heappop(times)
            keys = buckets.pop(at)
            found = [key for key in keys if live.get(key) == at]
            self._stale -= len(keys) - len(found)
            found = sorted(set(found))
            for key in found:
                del live[key]
            due += found
        return due

    def next_time(self) -> int | None:
        while self._times:
            at = self._times[0]
            if any(self._at.get(key) == at for key in self._buckets[at]):
                return at
            heapq.heappop(self._times)
            self._stale -= len(self._buckets.pop(at))
        return None

    def entries(self) -> int:
        """Entries held, live and stale: what compaction keeps within bounds."""
        return sum(len(b) for b in self._buckets.values())

    def _compact(self) -> None:
        self._buckets = {}
        for key, at in sorted(self._at.items(), key=lambda kv: kv[1]):
            self._buckets.setdefault(at, []).append(key)
        self._times = list(self._buckets)
        heapq.heapify(self._times)
        self._stale = 0
