"""The worker end to end on a real broker: every rule of §2 through Kafka, exactly as the pure
engine decides it; dead letters with their headers; the web views."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import orjson
import pytest
import yaml

from dunning.streams import topics
from dunning.streams.records import partition_for
from tests.agents import scenarios
from tests.agents.kafka import Broker, Client, Worker
from tests.conftest import fresh_database, query

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Any:
    """One worker run through the every-rule timeline; tests read what it emitted."""
    folder = tmp_path_factory.mktemp("worker")
    policy = folder / "policy.toml"
    policy.write_text(scenarios.POLICY)
    reference = scenarios.every_rule()
    broker = Broker()
    worker = Worker(broker, "e2e", policy=str(policy), log_path=str(folder / "worker.log"),
                    database_url=fresh_database(postgres))
    client = Client(broker, "e2e")
    try:
        worker.start().wait_healthy()
        client.play(reference.script)
        yield reference, client, worker
    finally:
        worker.kill()
        client.close()
        broker.stop()


def by_id(values: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        seen = out.setdefault(v["command_id"], v)
        assert seen == v, f"two commands share the id {v['command_id']}:\n{seen}\n{v}"
    return out


def test_worker_emits_exactly_what_the_engine_emits(run):
    reference, client, _ = run
    expected = by_id([c.value for c in reference.log])
    emitted = by_id(client.commands())
    assert len(expected) > 150  # the timeline exercises every rule
    missing = sorted(set(expected) - set(emitted), key=lambda i: expected[i]["type"])
    extra = sorted(set(emitted) - set(expected))
    assert not missing, [expected[i] for i in missing][:5]
    assert not extra, [emitted[i] for i in extra][:5]
    assert emitted == expected


def test_commands_go_to_their_topics_keyed_by_invoice_or_subject(run):
    reference, client, _ = run
    want = {(c.topic, c.key, c.command_id) for c in reference.log}
    got = {(r.topic, r.key.decode(), orjson.loads(r.value)["command_id"])
           for r in client.read(scenarios_output())}
    assert got == want


def scenarios_output() -> tuple[str, ...]:
    return (topics.NOTIFICATIONS, topics.PROVISIONING, topics.BILLING)


def test_each_rule_shows_in_the_worker_output(run):
    _, client, _ = run
    emitted = client.commands()

    def types(iid: str, audience: str = "customer") -> list[str]:
        return [v["type"] for v in emitted if v.get("invoice_id") == iid
                and v.get("audience", audience) == audience]

    assert "notify.due_soon" in types("due") and "notify.overdue" in types("due")
    assert "notify.due_soon" in types("due", "reseller")
    assert "service.suspend" in types("partial") and "service.unsuspend" in types("partial")
    assert "service.delete" in types("net") and "service.unsuspend" not in types("net")
    assert [v["attempt"] for v in emitted if v["type"] == "charge.request"
            and v["invoice_id"] == "card"] == [1, 2]
    assert "charge.request" in types("ondue")
    assert types("remind").count("notify.reminder") >= 3
    assert "notify.reminder" in types("debit") and "notify.overdue" not in types("debit")
    assert "request.cancel" in types("pending") and "notify.overdue" not in types("pending")
    assert "notify.reminder" in types("completed")
    assert "notify.overdue" not in types("small")
    assert "invoice.late_fee" in types("fee") and "invoice.late_fee" in types("feepct")
    assert "service.limit" in types("limit")
    # The two invoices of o-jump sit on different partitions: the subject agent merges them.
    assert partition_for(b"jump-c", 4) != partition_for(b"jump-f", 4)
    order = [v["type"] for v in emitted if v.get("subject") == {"kind": "order", "id": "o-jump"}]
    assert order == ["service.limit", "service.suspend", "service.unsuspend"]
    assert "service.unsuspend" in types("cancel")
    assert [v["status"] for v in emitted if v["type"] == "invoice.status"
            and v["invoice_id"] == "dup"].count("partially_paid") == 1
    assert "notify.overdue" in types("reversal")
    assert {"rekey-1", "rekey-2"} <= {v.get("invoice_id") for v in emitted}


def test_bad_records_are_dead_lettered_with_headers(run):
    reference, client, _ = run
    records = client.dead_letters()
    got = Counter((dict(r.headers)["dlq.error"].decode(), dict(r.headers)["dlq.topic"].decode(),
                   r.value) for r in records)
    want = Counter((d.error, d.source.topic, d.source.value) for d in reference.dead)
    assert got == want
    assert {e for e, _, _ in got} == scenarios.BAD_CODES | {"orphan"}
    for r in records:
        headers = dict(r.headers)
        assert set(headers) >= {"dlq.error", "dlq.reason", "dlq.topic", "dlq.partition",
                                "dlq.offset"}
        assert headers["dlq.reason"]
        assert "dunning.topic" not in headers
    orphan = next(r for r in records if dict(r.headers)["dlq.error"] == b"orphan")
    assert orphan.key == b"orphan"


def test_web_views(run):
    _, _, worker = run
    status, body = worker.get("/health")
    assert status == 200 and orjson.loads(body)["status"] == "ok"
    status, body = worker.get("/invoices/partial")
    assert status == 200
    view = orjson.loads(body)
    assert view["invoice_id"] == "partial" and view["amount_paid"] == "100.00"
    assert worker.get("/invoices/no-such-invoice")[0] == 404
    status, body = worker.get("/metrics")
    text = body.decode()
    assert status == 200
    assert ('dunning_events_total{outcome="applied",topic="billing.invoices",'
            'type="invoice.issued"}') in text
    assert 'dunning_events_total{outcome="duplicate",topic="billing.payments",' in text
    assert 'dunning_events_total{outcome="dead_lettered",topic="billing.payments",' in text
    assert 'dunning_commands_total{type="service.suspend"}' in text
    assert re.search(r"^process_resident_memory_bytes [0-9.e+]+$", text, re.MULTILINE)


def test_the_ledger_holds_every_command_once(run):
    reference, _, worker = run
    expected = {c.command_id: c for c in reference.log}
    assert worker.database_url is not None

    def recorded() -> list[Any]:
        return query(worker.database_url, "SELECT command_id, type, topic, record::text AS record"
                                          " FROM command_log")

    deadline = time.monotonic() + 60
    while len(recorded()) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = recorded()
    assert sorted(r["command_id"] for r in rows) == sorted(expected)  # each exactly once
    for r in rows:
        c = expected[r["command_id"]]
        assert (r["type"], r["topic"], orjson.loads(r["record"])) == (c.type, c.topic, c.value)


def test_any_worker_of_a_group_answers_for_any_invoice(tmp_path, database):
    """/invoices/{id} on a worker that does not own the invoice asks the one that does."""
    broker = Broker()
    a = Worker(broker, "web", partitions=4, log_path=str(tmp_path / "a.log"),
               database_url=database).start()
    b = Worker(broker, "web", partitions=4, log_path=str(tmp_path / "b.log"),
               database_url=database).start()
    client = Client(broker, "web")
    try:
        a.wait_healthy()
        b.wait_healthy()
        ids = [f"web-{n}" for n in range(8)]  # spread over the partitions, so over both workers
        client.send([(topics.INVOICES, i.encode(), orjson.dumps({
            "type": "invoice.issued", "event_id": f"ev-{i}", "invoice_id": i,
            "customer_id": "c-1", "amount": "10.00", "currency": "USD",
            "issued_at": "2026-01-01T00:00:00Z"})) for i in ids])
        client.settle()
        for worker in (a, b):
            for i in ids:
                status, body = worker.get(f"/invoices/{i}")
                assert status == 200, (i, body)
                assert orjson.loads(body)["invoice_id"] == i
            assert worker.get("/invoices/no-such-invoice")[0] == 404
    finally:
        a.kill()
        b.kill()
        client.close()
        broker.stop()


def wait_for_ledger(url: str, sql: str, want: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while query(url, sql)[0][0] < want and time.monotonic() < deadline:
        time.sleep(0.2)


def test_the_invoices_read_model_is_the_engine_state(run):
    reference, _, worker = run
    invoices = reference.engine.invoices
    wait_for_ledger(worker.database_url, "SELECT count(*) FROM invoices", len(invoices))
    rows = {r["invoice_id"]: r for r in query(worker.database_url, "SELECT * FROM invoices")}
    assert set(rows) == set(invoices)
    for iid, inv in invoices.items():
        r = rows[iid]
        assert (r["status"], r["amount_paid"], r["amount_due"]) == (inv.status, inv.paid,
                                                                    max(inv.due, 0)), iid
        assert r["due_at"].timestamp() == inv.due_at


def inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dunning.cli", "inspect", *args],
                          capture_output=True, text=True, timeout=60)


def test_inspect_shows_an_invoice_and_its_commands_in_time_order(run):
    reference, _, worker = run
    wait_for_ledger(worker.database_url, "SELECT count(*) FROM command_log",
                    len({c.command_id for c in reference.log}))
    shown = inspect("partial", "--database-url", worker.database_url)
    assert shown.returncode == 0, shown.stderr
    assert "invoice partial  customer c-partial" in shown.stdout
    assert "service.suspend" in shown.stdout and "service.unsuspend" in shown.stdout
    as_json = inspect("partial", "--database-url", worker.database_url, "--json")
    found = orjson.loads(as_json.stdout)
    assert found["invoice"]["amount_paid"] == "100.00"
    want = sorted((c.value for c in reference.log if c.value.get("invoice_id") == "partial"),
                  key=lambda v: v["issued_at"])
    got = [{k: v for k, v in c.items() if k != "topic"} for c in found["commands"]]
    assert sorted(got, key=lambda v: (v["issued_at"], v["command_id"])) == sorted(
        want, key=lambda v: (v["issued_at"], v["command_id"]))
    assert [c["issued_at"] for c in got] == sorted(c["issued_at"] for c in got)
    unknown = inspect("no-such-invoice", "--database-url", worker.database_url)
    assert unknown.returncode == 1 and "no invoice no-such-invoice" in unknown.stderr


def test_metrics_after_a_known_input(run):
    from prometheus_client.parser import text_string_to_metric_families

    reference, _, worker = run
    status, body = worker.get("/metrics")
    assert status == 200
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)

    def value(name: str, **labels: str) -> float:
        return sum(s.value for s in samples.get(name, []) if labels.items() <= s.labels.items())

    # Every input record counted once, by topic, type and outcome.
    assert value("dunning_events_total") == len(reference.script)
    assert value("dunning_events_total", outcome="dead_lettered") == len(reference.dead) - 1
    assert value("dunning_events_total", type="clock.tick") == sum(
        1 for topic, _, _ in reference.script if topic == topics.CLOCK)
    # Every command counted once, by type.
    by_type = Counter(c.type for c in reference.log)
    for ctype, n in by_type.items():
        assert value("dunning_commands_total", type=ctype) == n, ctype
    # The worker owns every partition here: its gauges are the engine's.
    statuses = Counter(inv.status for inv in reference.engine.invoices.values())
    for status, n in statuses.items():
        assert value("dunning_invoices", status=status) == n, status
    assert value("dunning_scheduled_actions") == len(reference.engine.schedule)
    lags = samples["dunning_consumer_lag"]
    assert lags and all(s.value == 0 for s in lags)
    assert {s.labels["topic"] for s in lags} >= {topics.INVOICES, "e2e-events", "e2e-signals"}
    assert 0 <= value("dunning_tick_lag_seconds") < 300
    forwarded = len(reference.script) + 3 * sum(1 for t, _, _ in reference.script
                                                if t == topics.CLOCK)  # ticks x 4 partitions
    assert value("dunning_event_processing_seconds_count") >= forwarded - len(reference.dead)


def test_dashboard_and_alert_rules_query_metrics_the_worker_serves(run):
    """Every dunning metric the Grafana dashboard and the Prometheus rules use is on /metrics."""
    _, _, worker = run
    served = set(re.findall(r"^((?:dunning|process)_[a-z_]+)", worker.get("/metrics")[1].decode(),
                            re.MULTILINE))
    dashboard = orjson.loads((ROOT / "deploy/grafana/dashboards/dunning.json").read_bytes())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {name for e in exprs for name in re.findall(r"(?:dunning|process)_[a-z_]+", e)}
    assert len(used) >= 7
    assert used <= served, used - served
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Consumer lag per partition", "Dead letters per second", "Tick lag",
            "Invoices by status", "Processing latency"} <= titles
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert alerts == {"DunningLagGrowing", "DunningTickLag", "DunningDeadLetters",
                      "DunningClockRejected", "DunningInternalErrors", "DunningWorkerDown"}


def test_compose_file_describes_the_production_stack():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka-1", "kafka-2", "kafka-3", "postgres", "worker-1",
                             "worker-2", "prometheus", "grafana", "certs", "kafka-users"}
    # (its Kafka nodes against the tests' cluster: tests/streams/test_compose.py)
    kafka = services["kafka-1"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"] and kafka["KAFKA_NUM_PARTITIONS"] == 8
    for name in ("worker-1", "worker-2"):
        env = services[name]["environment"]
        # The nodes' SASL_SSL listener (tests/streams/test_compose.py checks its settings)
        assert env["DUNNING_BROKER"] == "kafka://kafka-1:9094;kafka-2:9094;kafka-3:9094"
        assert env["DUNNING_DATABASE_URL"].startswith("postgresql://")
        assert env["DUNNING_WEB_HOST"] == name
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["worker-1:6066", "worker-2:6066"]
