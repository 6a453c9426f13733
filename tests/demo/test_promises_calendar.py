"""The simulation's promises to pay and the example calendar, through the pure engine (fast,
no broker): some promises are kept, some broken, and the strict policy's calendar keeps
enforcement off weekends and holidays where the standard policy's falls on any day."""

from __future__ import annotations

import pathlib

import orjson

from dunning.config.policy import load_policy
from dunning.demo.kpis import ENFORCEMENT
from dunning.demo.simulate import simulate
from dunning.rules.engine import Engine
from dunning.rules.times import parse_time
from dunning.streams import topics
from dunning.streams.codec import feed

CONFIG = pathlib.Path(__file__).resolve().parents[2] / "config"


def run(policy: str) -> tuple[list[str], list[dict], Engine]:
    sim = simulate(7, 300, 75)
    engine = Engine(load_policy(CONFIG / policy))
    out: list[dict] = []
    for _, records in sim.script():
        for topic, key, value in records:
            out += [c.value for c in feed(engine, topic, key, value).commands]
    return sim.promised, out, engine


def test_promises_are_made_kept_and_broken():
    sim = simulate(7, 300, 75)
    pauses = [orjson.loads(v) for records in sim.plan.values() for t, _, v in records
              if t == topics.INVOICES and b"collection.paused" in v]
    assert len(pauses) == len(sim.promised) > 0
    assert all(p["reason"] == "promise_to_pay" and p["until"] for p in pauses)
    promised, out, engine = run("standard.toml")
    broken = {c["invoice_id"] for c in out if c["type"] == "notify.collection_resumed"
              and c["reason"] == "expired"}
    kept = {i for i in promised if engine.invoices[i].status == "paid"} - broken
    assert broken and kept
    assert broken <= set(promised)
    assert not any(c["type"] == "notify.collection_resumed" and c["reason"] != "expired"
                   for c in out)  # no operator resumes in the simulation


def test_the_strict_calendar_keeps_enforcement_to_business_days_in_tokyo():
    calendar = load_policy(CONFIG / "strict.toml").terms().calendar
    assert calendar is not None and calendar.time_zone == "Asia/Tokyo"

    def closed(policy: str) -> tuple[int, int]:
        _, out, _ = run(policy)
        days = [calendar.local(parse_time(c["issued_at"])).date() for c in out
                if c["type"] in ENFORCEMENT]
        return len(days), sum(not calendar.enforces_on(d) for d in days)

    enforced, on_closed = closed("strict.toml")
    assert enforced > 0 and on_closed == 0
    enforced, on_closed = closed("standard.toml")  # no calendar: any day
    assert enforced > 0 and on_closed > 0
