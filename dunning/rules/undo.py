"""Copies of a slotted object's state, to put it back as it was when processing a record fails
half-way (contract v1.1 §2: the invoice's, or subject's, state stays as it was before that
record)."""

from __future__ import annotations

from operator import attrgetter
from typing import Any


class Copier:
    """`in_place` names the slots whose containers the rules change in place; the rest are
    replaced whole, so sharing them is safe (a test checks no other slot holds a container).
    `fixed` names slots set once when the object is made and never changed after, left out of
    the copy because it runs for every record (a test checks they never change)."""

    def __init__(self, cls: type, in_place: tuple[str, ...], fixed: tuple[str, ...] = ()) -> None:
        self.slots: tuple[str, ...] = tuple(
            s for s in cls.__slots__ if s not in fixed)  # type: ignore[attr-defined]
        self.fixed = fixed
        self._get = attrgetter(*self.slots)
        self._copy = [self.slots.index(name) for name in in_place]

    def copy(self, obj: Any) -> list[Any]:
        values = list(self._get(obj))
        for i in self._copy:
            value = values[i]
            if value is not None:
                values[i] = value.copy()
        return values

    def restore(self, obj: Any, values: list[Any]) -> None:
        for name, value in zip(self.slots, values, strict=True):
            setattr(obj, name, value)
