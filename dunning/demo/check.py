"""Does the worker emit what the pure engine emits for the same input?

Compared by command id: every command the engine emits must be out at least once, nothing
else may be, and every copy of a command must be the same record. Commands a subject makes on
an event are compared by what they do: when several invoices of one subject are settled between
the same two ticks, which of them came last (and so is named in the restore) depends on how the
partitions interleave, in the worker as in any consumer of several partitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SUBJECT_TYPES = {"service.limit", "service.suspend", "service.unsuspend", "service.delete",
                 "request.cancel", "notify.limited", "notify.suspended", "notify.unsuspended",
                 "notify.deleted"}
WHAT_IT_DOES = ("command_id", "type", "issued_at", "subject", "audience")


def comparable(v: dict[str, Any]) -> dict[str, Any]:
    if v["type"] in SUBJECT_TYPES and not v["causation_id"].startswith("tick-"):
        return {k: v[k] for k in WHAT_IT_DOES if k in v}
    return v


@dataclass
class Comparison:
    expected: int = 0
    emitted: int = 0  # records, duplicates included
    duplicates: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    differing: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.differing)


def compare(expected: Iterable[dict[str, Any]], emitted: Iterable[dict[str, Any]]) -> Comparison:
    want = {v["command_id"]: v for v in expected}
    got: dict[str, dict[str, Any]] = {}
    result = Comparison(expected=len(want))
    for v in emitted:
        result.emitted += 1
        first = got.setdefault(v["command_id"], v)
        if first is not v:
            result.duplicates += 1
            if first != v:
                result.differing.append((first, v))
    result.missing = [want[i] for i in sorted(set(want) - set(got))]
    result.extra = [got[i] for i in sorted(set(got) - set(want))]
    result.differing += [(want[i], got[i]) for i in sorted(set(want) & set(got))
                         if comparable(want[i]) != comparable(got[i])]
    return result
