"""Fuzz run of the edge and the engine: `python -m bench.fuzz [--cases N]` (default 100 000).

The same generators and properties as `tests/streams/test_fuzz.py` (imported from there, so
there is one copy), on a seeded `random.Random` instead of Hypothesis: a quarter of the cases
are one arbitrary record (bytes, JSON, a tombstone), a quarter one mutated record of any type,
each after a valid invoice and tick, and half are sequences of up to `--max-records` valid
and mutated records and ticks through one engine. Each case ends with the state round trips,
the rebuild from table rows and one more tick on both engines.

Prints progress every 10 000 cases, then the case and record counts, dead letters by code,
outcomes, elapsed time and cases/s, and each distinct failure (property, exception and where
it was raised) with how many cases hit it and the smallest case found for it, shrunk record
by record. Exits 1 if any property failed. `--only I` runs case I alone and prints it.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace

from tests.streams.test_fuzz import (
    Case,
    FuzzFailure,
    Seeded,
    failures_of,
    make_case,
    make_single,
)

PROGRESS_EVERY = 10_000


@dataclass
class Seen:
    """One distinct failure: how many cases hit it, and the smallest of them."""

    count: int
    case: Case
    failure: FuzzFailure
    number: int


def case_number(seed: str, i: int, max_records: int) -> Case:
    ch = Seeded(random.Random(f"{seed}:{i}"))
    kind = i % 4
    if kind == 0:
        return make_single(ch, arbitrary=True)
    if kind == 1:
        return make_single(ch, arbitrary=False)
    return make_case(ch, max_records)


def _size(case: Case) -> int:
    return sum(len(r.value or b"") + 50 for r in case.records)


def shrink(case: Case, signature: tuple[str, str, str]) -> tuple[Case, FuzzFailure]:
    """Drop records (and batch ends) while the same failure remains."""

    def failure(c: Case) -> FuzzFailure | None:
        return next((f for f in failures_of(c) if f.signature == signature), None)

    found = failure(case)
    assert found is not None
    records = list(case.records)
    changed = True
    while changed:
        changed = False
        for j in range(len(records)):
            trial = replace(case, records=tuple(records[:j] + records[j + 1:]))
            got = failure(trial)
            if got is not None:
                records, found, changed = list(trial.records), got, True
                break
    for j, r in enumerate(records):
        if not r.flush:
            trial = replace(case, records=tuple(
                [*records[:j], replace(r, flush=True), *records[j + 1:]]))
            got = failure(trial)
            if got is not None:
                records, found = list(trial.records), got
    return replace(case, records=tuple(records)), found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", default="dunning")
    parser.add_argument("--max-records", type=int, default=12)
    parser.add_argument("--only", type=int, default=None, help="run this case number alone")
    parser.add_argument("--no-shrink", action="store_true")
    args = parser.parse_args(argv)

    if args.only is not None:
        case = case_number(args.seed, args.only, args.max_records)
        print(repr(case))
        failures = failures_of(case)
        for f in failures:
            print(f"FAIL {f}")
        return 1 if failures else 0

    stats: Counter[str] = Counter()
    seen: dict[tuple[str, str, str], Seen] = {}
    failing = 0
    start = time.perf_counter()
    for i in range(args.cases):
        case = case_number(args.seed, i, args.max_records)
        failures = failures_of(case, stats)
        if failures:
            failing += 1
        for f in {f.signature: f for f in failures}.values():
            entry = seen.setdefault(f.signature, Seen(0, case, f, i))
            entry.count += 1
            if _size(case) < _size(entry.case):
                entry.case, entry.failure, entry.number = case, f, i
        done = i + 1
        if done % PROGRESS_EVERY == 0 or done == args.cases:
            elapsed = time.perf_counter() - start
            print(f"{done:>8} cases {stats['records']:>9} records {elapsed:8.1f} s "
                  f"{done / elapsed:7.0f} cases/s  {failing} failing, {len(seen)} distinct",
                  flush=True)
    elapsed = time.perf_counter() - start

    print(f"\ncases: {args.cases} (seed {args.seed!r}), records: {stats['records']}, "
          f"completed with every property: {args.cases - failing}")
    print(f"elapsed: {elapsed:.1f} s, {args.cases / elapsed:.0f} cases/s, "
          f"{stats['records'] / elapsed:.0f} records/s")
    print("dead letters by code:")
    for key, n in sorted((k, n) for k, n in stats.items() if k.startswith("dead letter ")):
        print(f"  {key.removeprefix('dead letter '):<18} {n:>9}")
    print("outcomes:")
    for key, n in sorted((k, n) for k, n in stats.items() if k.startswith("outcome ")):
        print(f"  {key.removeprefix('outcome '):<18} {n:>9}")
    print("commands by type:")
    for key, n in sorted((k, n) for k, n in stats.items() if k.startswith("command ")):
        print(f"  {key.removeprefix('command '):<26} {n:>9}")
    if not seen:
        print("\nevery property held")
        return 0
    print(f"\n{len(seen)} distinct failures in {failing} cases:")
    ranked = sorted(seen.items(), key=lambda kv: -kv[1].count)
    for n, (signature, entry) in enumerate(ranked, 1):
        case, failure = entry.case, entry.failure
        if not args.no_shrink:
            case, failure = shrink(case, signature)
        print(f"\n[{n}] {entry.count} cases (smallest: case {entry.number}, "
              f"--only {entry.number} --seed {args.seed!r})")
        print(f"FAIL {failure}")
        print(f"case: {case!r}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
