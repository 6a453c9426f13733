"""The `dunning` command line. Every flag also reads a DUNNING_* variable of the same name."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from typing import Any

from dunning.config.policy import Policy, PolicyError, default_policy, load_policy


def _env(flag: str, default: Any = None) -> Any:
    """The DUNNING_* variable for `--some-flag`, else the default."""
    return os.environ.get("DUNNING_" + flag.lstrip("-").replace("-", "_").upper(), default)


def _show_terms(policy: Policy) -> None:
    rows: list[tuple[str, dict[str, Any]]] = [("invoice", asdict(policy.terms()))]
    for cls in policy.classes:
        for kind in ("regular", "out_of_turn"):
            rows.append((f"class {cls}, {kind}", asdict(policy.terms("invoice", cls, kind))))
    for product in policy.products:
        rows.append((f"product {product}", asdict(policy.terms("invoice", None, "regular",
                                                               product))))
    rows.append(("debit note", asdict(policy.terms("debit_note"))))
    for label, terms in rows:
        print(f"[{label}]")
        for key, value in terms.items():
            shown = "off" if value is None or value == () else value
            print(f"  {key:26} {shown}")


def cmd_policy(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file) if args.file else default_policy()
    except PolicyError as exc:
        print(f"invalid policy: {exc}", file=sys.stderr)
        return 2
    print(f"{policy.source}: valid")
    _show_terms(policy)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dunning", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    pol = sub.add_parser("policy", help="validate a policy file and show the terms it resolves to")
    pol.add_argument("file", nargs="?", default=_env("--policy"),
                     help="policy TOML (default: $DUNNING_POLICY, else the built-in policy)")
    pol.set_defaults(run=cmd_policy)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
