"""Deterministic command ids: the same logical command always gets the same id."""

from __future__ import annotations

from hashlib import blake2b


def command_id(scope: str, ctype: str, key: object = "", audience: str = "") -> str:
    """`scope` is the invoice or subject; `key` tells repeats of one type apart."""
    raw = f"{scope}\x1f{ctype}\x1f{key}\x1f{audience}".encode()
    return blake2b(raw, digest_size=16).hexdigest()
