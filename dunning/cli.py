"""The `dunning` command line. Every flag also reads a DUNNING_* variable of the same name."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from dunning.config.policy import Policy, PolicyError, default_policy, load_policy
from dunning.config.security import MECHANISMS, BrokerSecurity, SecurityError
from dunning.config.settings import DEFAULT_BROKER, GUARANTEES, Settings, bootstrap
from dunning.config.settings import env as _env


def _show_terms(policy: Policy) -> None:
    from dunning.rules.calendar import Calendar
    from dunning.tables.state import calendar_view

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
            if key == "calendar" and value is not None:
                cal = calendar_view(Calendar(**value))
                hours = cal["notice_hours"]
                shown = (f"{cal['time_zone']}, enforce on {' '.join(cal['enforce_on'])}, "
                         f"{len(cal['holidays'])} holidays, notices "
                         + ("at any hour" if hours is None else "-".join(hours)))
            elif isinstance(value, dict):  # an amount by currency; the others have it off
                shown = ", ".join(f"{cur} {amount}" for cur, amount in value.items()) or "off"
            print(f"  {key:26} {shown}")


def _days(text: str) -> float:
    """A --max-tick-jump value: days, 0 or more."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 <= days <= 3650:
        raise argparse.ArgumentTypeError(f"{text} must be from 0 to 3650 days")
    return days


def _broker_args(p: argparse.ArgumentParser, default: str | None = DEFAULT_BROKER,
                 about: str = "Kafka bootstrap servers, kafka://host:port[;host:port]") -> None:
    """--broker and the contract's TLS and SASL settings (§4), for every command that talks
    to Kafka."""
    p.add_argument("--broker", default=_env("--broker", default), help=about)
    p.add_argument("--broker-ssl-ca", default=_env("--broker-ssl-ca"), metavar="FILE",
                   help="TLS to Kafka: the CA bundle the brokers' certificates must chain to")
    p.add_argument("--broker-ssl-cert", default=_env("--broker-ssl-cert"), metavar="FILE",
                   help="TLS client certificate (mutual TLS), with --broker-ssl-key")
    p.add_argument("--broker-ssl-key", default=_env("--broker-ssl-key"), metavar="FILE")
    p.add_argument("--broker-sasl-mechanism", default=_env("--broker-sasl-mechanism"),
                   choices=MECHANISMS, help="SASL login to Kafka, with --broker-username")
    p.add_argument("--broker-username", default=_env("--broker-username"), metavar="USER")
    # The password's default is read but never shown: argparse would print it in --help.
    p.add_argument("--broker-password", default=None, metavar="PASSWORD",
                   help="best given as DUNNING_BROKER_PASSWORD")


def _security(args: argparse.Namespace) -> BrokerSecurity:
    security = BrokerSecurity(
        ssl_ca=args.broker_ssl_ca or None, ssl_cert=args.broker_ssl_cert or None,
        ssl_key=args.broker_ssl_key or None,
        sasl_mechanism=args.broker_sasl_mechanism or None,
        username=args.broker_username or None,
        password=args.broker_password or _env("--broker-password") or None)
    try:
        security.check()
    except SecurityError as exc:
        raise SystemExit(f"dunning {args.command}: {exc}") from None
    return security


def _reach(args: argparse.Namespace, security: BrokerSecurity) -> None:
    """Stop with a message naming the setting when the broker cannot be used with it."""
    from dunning.streams.reach import BrokerError, check_broker

    try:
        asyncio.run(check_broker(bootstrap(args.broker), security))
    except BrokerError as exc:
        raise SystemExit(f"dunning {args.command}: {exc}") from None


def _guarantee(text: str) -> str:
    """A --guarantee value (argparse checks choices on the command line only, not on a
    DUNNING_GUARANTEE default)."""
    if text not in GUARANTEES:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(GUARANTEES)}")
    return text


def cmd_policy(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file) if args.file else default_policy()
    except PolicyError as exc:
        print(f"invalid policy: {exc}", file=sys.stderr)
        return 2
    print(f"{policy.source}: valid")
    _show_terms(policy)
    return 0


def _policy(path: str | None) -> Policy:
    try:
        return load_policy(path) if path else default_policy()
    except PolicyError as exc:
        raise SystemExit(f"invalid policy: {exc}") from None


def cmd_broker(args: argparse.Namespace) -> int:
    from dunning.streams.broker import broker_command

    command = broker_command(args.port, host=args.host)
    print(f"dunning broker: Kafka-compatible broker (Tansu, in memory) on {args.host}:{args.port}",
          flush=True)
    os.execv(command[0], command)
    return 0  # not reached


def cmd_worker(args: argparse.Namespace) -> int:
    from dunning.agents.app import run_worker
    from dunning.runtime import tune_gc

    settings = Settings(
        broker=args.broker, policy=args.policy, database_url=args.database_url,
        web_port=int(args.web_port), web_host=args.web_host,
        partitions=int(args.partitions), replication_factor=int(args.replication_factor),
        app_id=args.app_id, output_prefix=args.output_prefix,
        rebalance_timeout=float(args.rebalance_timeout),
        session_timeout=float(args.session_timeout), log_level=args.log_level,
        max_tick_jump=round(args.max_tick_jump * 86_400), web_token=args.web_token or None,
        kafka=_security(args), guarantee=args.guarantee,
    )
    policy = _policy(settings.policy)
    _reach(args, settings.kafka)
    tune_gc()
    run_worker(settings, policy)
    return 0


def cmd_tick(args: argparse.Namespace) -> int:
    from dunning.rules.times import parse_time

    at = args.at
    if at and len(at) == 10:  # a date: its midnight, UTC
        at += "T00:00:00Z"
    try:
        start = parse_time(at) if at else int(time.time())
    except ValueError as exc:
        raise SystemExit(f"dunning tick: --at: {exc}") from None
    security = _security(args)
    _reach(args, security)
    if args.every is None:
        asyncio.run(_ticks(args.broker, start, None, 1.0, args.confirm_jump, security))
    else:
        asyncio.run(_ticks(args.broker, start, float(args.every), float(args.speed),
                           args.confirm_jump, security))
    return 0


async def _ticks(broker: str, start: int, every: float | None, speed: float,
                 confirm_jump: bool = False, security: BrokerSecurity | None = None) -> None:
    """One tick at `start`; or one every `every` wall seconds, logical time running `speed`
    times as fast from `start`. A tick's event_id is its time: sending it twice is harmless."""
    import orjson
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from dunning.rules.times import format_time
    from dunning.streams.codec import CONFIRM_JUMP, H_CONFIRM
    from dunning.streams.records import after_header
    from dunning.streams.topics import CLOCK

    options = (security or BrokerSecurity()).client_options()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker), acks="all", **options)
    # Each tick carries the other inputs' end offsets as it is sent (`dunning.after`): the
    # worker then applies it after exactly what was sent before it, however far behind it is.
    offsets = AIOKafkaConsumer(bootstrap_servers=bootstrap(broker), **options)
    await producer.start()
    await offsets.start()
    try:
        began = time.monotonic()
        while True:
            now = start + int((time.monotonic() - began) * speed)
            at = format_time(now)
            await producer.send_and_wait(CLOCK, orjson.dumps(
                {"type": "clock.tick", "event_id": f"tick-{at}", "now": at}),
                headers=[after_header(await _input_ends(offsets)),
                         *([(H_CONFIRM, CONFIRM_JUMP)] if confirm_jump else [])])
            print(f"tick {at}", flush=True)
            if every is None:
                return
            await asyncio.sleep(every)
    finally:
        await offsets.stop()
        await producer.stop()


async def _input_ends(consumer: Any) -> dict[tuple[str, int], int]:
    """The end offset of every partition of the input topics other than the clock."""
    from dunning.streams.topics import CLOCK, INPUTS, partitions

    tps = await partitions(consumer, [t for t in INPUTS if t != CLOCK])
    ends = await consumer.end_offsets(tps) if tps else {}
    return {(tp.topic, tp.partition): end for tp, end in ends.items()}


def _control(args: argparse.Namespace, build: Callable[[], dict[str, Any]]) -> int:
    """Build an operator control and check it at the worker's edge, then send it: a record
    the worker would refuse exits 2 with nothing sent."""
    from dunning.operator import Refused, checked

    try:
        control = checked(build())
    except Refused as exc:
        print(f"dunning {args.command}: {exc}", file=sys.stderr)
        return 2
    security = _security(args)
    _reach(args, security)
    asyncio.run(_publish(args.broker, security, control.topic, control.key, control.value))
    print(f"{control.event.type} {control.event.invoice_id} sent to {control.topic} "
          f"(event_id {control.event.event_id})", flush=True)
    return 0


async def _publish(broker: str, security: BrokerSecurity, topic: str, key: bytes,
                   value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker), acks="all",
                                **security.client_options())
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def cmd_pause(args: argparse.Namespace) -> int:
    from dunning import operator

    return _control(args, lambda: operator.pause(args.invoice_id, args.reason, args.until,
                                                 args.event_id))


def cmd_resume(args: argparse.Namespace) -> int:
    from dunning import operator

    return _control(args, lambda: operator.resume(args.invoice_id, args.event_id))


def cmd_update(args: argparse.Namespace) -> int:
    from dunning import operator

    changes = {name: getattr(args, name) for name in operator.UPDATE_KEYS}
    return _control(args, lambda: operator.update(args.invoice_id, changes, args.event_id))


def cmd_inspect(args: argparse.Namespace) -> int:
    import orjson

    from dunning.ledger.db import database_name, embedded_url
    from dunning.ledger.inspect import lookup, render

    url = args.database_url or embedded_url(args.data_dir, database_name(args.app_id))
    try:
        found = asyncio.run(lookup(url, args.invoice_id))
    except (OSError, ConnectionError) as exc:
        print(f"dunning inspect: cannot reach the ledger: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an unknown database, refused login, and the like
        if type(exc).__module__.startswith("asyncpg"):
            print(f"dunning inspect: no ledger at {url}: {exc}", file=sys.stderr)
            return 1
        raise
    if found is None:
        print(f"dunning inspect: no invoice {args.invoice_id} in the ledger", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(found))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dunning.demo.run import Lane, report, report_compare, run

    if args.compare:
        lanes = [Lane(Path(path).stem, _policy(path), path, f"demo-{n}", f"demo-{n}.")
                 for n, path in zip("ab", args.compare, strict=True)]
    else:
        lanes = [Lane("policy", _policy(args.policy), args.policy, "demo")]
    security = _security(args)
    if args.broker:
        _reach(args, security)
    try:
        outcomes = run(lanes, args.customers, args.days, args.seed, broker_url=args.broker,
                       security=security)
    except KeyboardInterrupt:
        print("\ndunning demo: stopped; everything it started is stopped too", file=sys.stderr)
        return 130
    if args.compare:
        report_compare(lanes, outcomes, ".dunning")
    else:
        report(outcomes[0])
    return 0 if all(o.check.ok for o in outcomes) else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dunning", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    pol = sub.add_parser("policy", help="validate a policy file and show the terms it resolves to")
    pol.add_argument("file", nargs="?", default=_env("--policy"),
                     help="policy TOML (default: $DUNNING_POLICY, else the built-in policy)")
    pol.set_defaults(run=cmd_policy)

    brk = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (foreground)")
    brk.add_argument("--port", type=int, default=int(_env("--port", 9092)))
    brk.add_argument("--host", default=_env("--host", "127.0.0.1"),
                     help="the address the broker advertises to clients")
    brk.set_defaults(run=cmd_broker)

    wrk = sub.add_parser("worker", help="the stream worker (creates missing topics)")
    _broker_args(wrk)
    wrk.add_argument("--policy", default=_env("--policy"), help="policy TOML file")
    wrk.add_argument("--database-url", default=_env("--database-url"))
    wrk.add_argument("--web-port", type=int, default=int(_env("--web-port", 6066)))
    wrk.add_argument("--web-host", default=_env("--web-host", socket.gethostname()),
                     help="the host name other workers reach this one's web views by")
    wrk.add_argument("--web-token", default=_env("--web-token"), metavar="TOKEN",
                     help="GET /invoices/{id} then needs 'Authorization: Bearer TOKEN'; without "
                          "it, only loopback clients are answered (best given as "
                          "DUNNING_WEB_TOKEN; /health and /metrics stay open)")
    wrk.add_argument("--partitions", type=int, default=int(_env("--partitions", 8)),
                     help="partitions of the topics it creates")
    wrk.add_argument("--replication-factor", type=int,
                     default=int(_env("--replication-factor", 1)),
                     help="replicas of the topics it creates, internal ones and table changelogs "
                          "included (production: 3, with min.insync.replicas 2 on the brokers)")
    wrk.add_argument("--app-id", default=_env("--app-id", "dunning"),
                     help="consumer group, and prefix of internal topics")
    wrk.add_argument("--output-prefix", default=_env("--output-prefix", ""),
                     help="write the command and dead-letter topics under this prefix (a shadow "
                          "worker trying another policy on the same input)")
    wrk.add_argument("--rebalance-timeout", type=float,
                     default=float(_env("--rebalance-timeout", 10.0)),
                     help="seconds a member has to rejoin; on Tansu also the join delay")
    wrk.add_argument("--session-timeout", type=float,
                     default=float(_env("--session-timeout", 30.0)))
    wrk.add_argument("--max-tick-jump", type=_days, metavar="DAYS",
                     default=_env("--max-tick-jump", "7"),  # a string: argparse applies type
                     help="refuse (dead-letter as clock_jump) a tick that moves logical time "
                          "more than this many days at once; 0 turns the guard off")
    wrk.add_argument("--guarantee", type=_guarantee, choices=GUARANTEES,
                     default=_env("--guarantee", GUARANTEES[0]),
                     help="at_least_once: after a crash a batch's commands may come out twice; "
                          "exactly_once: a batch's commands, state and input offsets commit in "
                          "one transaction (consumers reading read_committed see each command "
                          "once; needs a broker with transactions, such as Apache Kafka)")
    wrk.add_argument("--log-level", default=_env("--log-level", "info"),
                     choices=("crit", "error", "warn", "info", "debug"))
    wrk.set_defaults(run=cmd_worker)

    ins = sub.add_parser("inspect", help="an invoice's state and every command it caused")
    ins.add_argument("invoice_id")
    ins.add_argument("--database-url", default=_env("--database-url"),
                     help="the ledger's PostgreSQL (default: the embedded one under .dunning/)")
    ins.add_argument("--app-id", default=_env("--app-id", "dunning"),
                     help="whose ledger, on the embedded server")
    ins.add_argument("--data-dir", default=_env("--data-dir", ".dunning"), help=argparse.SUPPRESS)
    ins.add_argument("--json", action="store_true", help="JSON for scripts")
    ins.set_defaults(run=cmd_inspect)

    dem = sub.add_parser("demo", help="a billing cycle end to end on embedded defaults")
    dem.add_argument("--customers", type=int, default=int(_env("--customers", 10_000)))
    dem.add_argument("--days", type=int, default=int(_env("--days", 90)))
    dem.add_argument("--seed", type=int, default=int(_env("--seed", 7)))
    dem.add_argument("--policy", default=_env("--policy"), help="policy TOML file")
    _broker_args(dem, None, "run on this Kafka instead of starting the embedded broker (a "
                            "staging cluster: the demo writes the billing topics)")
    dem.add_argument("--compare", nargs=2, metavar=("A.toml", "B.toml"),
                     help="run the same input through two policies (two consumer groups, like "
                          "a shadow deployment) and compare them; writes an HTML report")
    dem.set_defaults(run=cmd_demo)

    tck = sub.add_parser("tick", help="publish clock ticks")
    _broker_args(tck)
    tck.add_argument("--at", default=_env("--at"),
                     help="logical time (RFC 3339, or a date for its midnight UTC); default now")
    tck.add_argument("--every", type=float, default=_env("--every"),
                     help="send a tick every this many wall seconds, until stopped")
    tck.add_argument("--speed", type=float, default=float(_env("--speed", 1.0)),
                     help="logical seconds per wall second with --every")
    tck.add_argument("--confirm-jump", action="store_true",
                     default=_env("--confirm-jump", "") not in ("", "0", "false"),
                     help="send the tick past the workers' clock guard (--max-tick-jump): an "
                          "operator who means a jump of logical time")
    tck.set_defaults(run=cmd_tick)
    _control_parsers(sub)
    return p


def _control_parsers(sub: Any) -> None:
    """The operator controls (contract v1.1 §1), each one event on billing.invoices."""
    when = "RFC 3339, or a date for its midnight UTC"
    eid = ("the event's id (default: a new unique one, printed); give a printed one to send "
           "the same event again harmlessly")
    pse = sub.add_parser("pause", help="pause an invoice's collection (collection.paused)")
    pse.add_argument("invoice_id")
    pse.add_argument("--until", default=_env("--until"), metavar="TIME",
                     help=f"when the pause ends by itself ({when}); default: at resume")
    pse.add_argument("--reason", default=_env("--reason", "other"),
                     help="promise_to_pay, dispute or other (default)")
    pse.add_argument("--event-id", default=_env("--event-id"), help=eid)
    pse.set_defaults(run=cmd_pause)

    rsm = sub.add_parser("resume", help="end an invoice's pause (collection.resumed)")
    rsm.add_argument("invoice_id")
    rsm.add_argument("--event-id", default=_env("--event-id"), help=eid)
    rsm.set_defaults(run=cmd_resume)

    upd = sub.add_parser("update", help="move an invoice's collection dates (invoice.updated)")
    upd.add_argument("invoice_id")
    upd.add_argument("--due-at", default=_env("--due-at"), metavar="TIME", help=when)
    for flag in ("--suspend-at", "--delete-at", "--request-cancel-at"):
        upd.add_argument(flag, default=_env(flag), metavar="TIME|none",
                         help=f"{when}; none removes the date")
    upd.add_argument("--reminder-every-days", default=_env("--reminder-every-days"),
                     metavar="DAYS|none", help="none turns reminders off")
    upd.add_argument("--event-id", default=_env("--event-id"), help=eid)
    upd.set_defaults(run=cmd_update)
    for cmd in (pse, rsm, upd):
        _broker_args(cmd)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
