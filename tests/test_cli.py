from pathlib import Path

import orjson
import pytest

from dunning import operator
from dunning.cli import main
from dunning.rules import model as m
from dunning.rules.times import parse_time
from dunning.streams.topics import INVOICES


def test_policy_shows_the_built_in_terms(capsys):
    assert main(["policy"]) == 0
    out = capsys.readouterr().out
    assert "default_policy.toml: valid" in out
    assert "[class business, out_of_turn]" in out and "terms_days                 6" in out
    assert "[product domain_registration]" in out


def test_invalid_policy_exits_2_naming_the_key(tmp_path: Path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[defaults]\nlate_fee = 5.0\n")
    assert main(["policy", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "[defaults] late_fee" in err and "money must be a string" in err


def test_policy_file_from_environment(tmp_path: Path, capsys, monkeypatch):
    good = tmp_path / "p.toml"
    good.write_text("[defaults]\nterms_days = 14\n")
    monkeypatch.setenv("DUNNING_POLICY", str(good))
    from dunning.cli import parser

    args = parser().parse_args(["policy"])
    assert args.run(args) == 0
    assert "terms_days                 14" in capsys.readouterr().out


def test_replication_factor_flag_and_variable(monkeypatch):
    from dunning.cli import parser

    assert parser().parse_args(["worker"]).replication_factor == 1
    assert parser().parse_args(["worker", "--replication-factor", "3"]).replication_factor == 3
    monkeypatch.setenv("DUNNING_REPLICATION_FACTOR", "3")
    assert parser().parse_args(["worker"]).replication_factor == 3


def test_guarantee_from_environment_and_checked(monkeypatch, capsys):
    from dunning.cli import parser

    assert parser().parse_args(["worker"]).guarantee == "at_least_once"
    monkeypatch.setenv("DUNNING_GUARANTEE", "exactly_once")
    assert parser().parse_args(["worker"]).guarantee == "exactly_once"
    monkeypatch.setenv("DUNNING_GUARANTEE", "twice")
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["worker"])
    assert exit_.value.code == 2
    assert "'twice': one of at_least_once, exactly_once" in capsys.readouterr().err


# The operator controls (contract v1.1 §1): built and checked without a broker.


def test_a_pause_is_keyed_by_its_invoice_and_reads_as_the_worker_reads_it():
    control = operator.checked(operator.pause("INV-1", "promise_to_pay",
                                              "2026-03-01T02:00:00+02:00", "ev-1"))
    assert (control.topic, control.key) == (INVOICES, b"INV-1")
    assert orjson.loads(control.value) == {  # times written in UTC
        "type": "collection.paused", "event_id": "ev-1", "invoice_id": "INV-1",
        "reason": "promise_to_pay", "until": "2026-03-01T00:00:00Z"}
    assert control.event == m.CollectionPaused(
        type="collection.paused", event_id="ev-1", invoice_id="INV-1", reason="promise_to_pay",
        until=parse_time("2026-03-01T00:00:00Z"), source=control.event.source)


def test_a_pause_without_until_and_a_resume():
    paused = operator.checked(operator.pause("INV-1", "dispute")).event
    assert isinstance(paused, m.CollectionPaused) and paused.until is None
    resumed = operator.checked(operator.resume("INV-1", "ev-2"))
    assert orjson.loads(resumed.value) == {
        "type": "collection.resumed", "event_id": "ev-2", "invoice_id": "INV-1"}


def test_each_control_gets_a_unique_event_id_unless_given():
    ids = {operator.pause("INV-1", "other")["event_id"] for _ in range(3)}
    ids |= {operator.resume("INV-1")["event_id"]}
    assert len(ids) == 4
    assert operator.update("INV-1", {"due_at": "2026-03-01"}, "mine")["event_id"] == "mine"


def test_an_update_sets_every_date_and_none_removes_them():
    doc = operator.update("INV-1", {"due_at": "2026-03-01", "suspend_at": "2026-04-01T12:00:00Z",
                                    "delete_at": "2026-05-01", "request_cancel_at": None,
                                    "reminder_every_days": "5"})
    event = operator.checked(doc).event
    assert isinstance(event, m.InvoiceUpdated)
    assert event.due_at == parse_time("2026-03-01T00:00:00Z")
    assert event.overrides == {"suspend_at": parse_time("2026-04-01T12:00:00Z"),
                               "delete_at": parse_time("2026-05-01T00:00:00Z"),
                               "reminder_every_days": 5}
    removed = operator.update("INV-1", {"suspend_at": "none", "delete_at": "None",
                                        "request_cancel_at": "none",
                                        "reminder_every_days": "none"})
    assert "due_at" not in removed
    assert operator.checked(removed).event.overrides == {
        "suspend_at": False, "delete_at": False, "request_cancel_at": False,
        "reminder_every_days": False}


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, str, bytes, bytes]]:
    """What the commands would publish; they may not reach for a broker before validating."""
    records: list[tuple[str, str, bytes, bytes]] = []

    async def publish(broker, security, topic, key, value):
        records.append((broker, topic, key, value))

    monkeypatch.setattr("dunning.cli._reach", lambda args, security: None)
    monkeypatch.setattr("dunning.cli._publish", publish)
    return records


@pytest.mark.parametrize(("argv", "says"), [
    (["pause", "INV-1", "--reason", "because"], "--reason 'because' must be one of promise_to_pay"),
    (["pause", "INV-1", "--until", "next week"], "--until: 'next week' is not an RFC 3339"),
    (["pause", "INV-1", "--until", "2026-02-30"], "--until: '2026-02-30T00:00:00Z' is not a valid"),
    (["pause", "INV-1", "--event-id", "a\x01b"], r"--event-id 'a\x01b' must not contain control"),
    (["resume", "x" * 201], "INVOICE_ID must be a non-empty string of at most 200"),
    (["update", "INV-1"], "nothing to update: give at least one of --due-at"),
    (["update", "INV-1", "--due-at", "none"], "--due-at: an invoice's due date can be moved"),
    (["update", "INV-1", "--suspend-at", "soon"], "--suspend-at: 'soon' is not an RFC 3339"),
    (["update", "INV-1", "--suspend-at", "in 10 days"], "--suspend-at: 'in 10 days' is not"),
    (["update", "INV-1", "--delete-at", "1969-12-31"], "--delete-at: '1969-12-31T00:00:00Z' is"),
    (["update", "INV-1", "--request-cancel-at", "x"], "--request-cancel-at: 'x' is not"),
    (["update", "INV-1", "--reminder-every-days", "0"],
     "--reminder-every-days 0 must be a whole number from 1 to 3650, or none"),
    (["update", "INV-1", "--reminder-every-days", "weekly"],
     "--reminder-every-days 'weekly' must be"),
])
def test_a_control_the_worker_would_refuse_exits_2_naming_the_flag_and_sends_nothing(
        argv, says, sent, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dunning {argv[0]}: ") and says in err, err
    assert sent == []


def test_the_controls_send_what_they_built_with_the_broker_flag(sent, capsys):
    assert main(["pause", "INV-1", "--until", "2026-03-01", "--reason", "promise_to_pay",
                 "--event-id", "ev-1", "--broker", "kafka://b:9092"]) == 0
    assert main(["resume", "INV-1", "--event-id", "ev-2"]) == 0
    assert main(["update", "INV-1", "--suspend-at", "none", "--event-id", "ev-3"]) == 0
    assert [(b, t, k) for b, t, k, _ in sent] == [
        ("kafka://b:9092", INVOICES, b"INV-1"), ("kafka://127.0.0.1:9092", INVOICES, b"INV-1"),
        ("kafka://127.0.0.1:9092", INVOICES, b"INV-1")]
    assert orjson.loads(sent[2][3]) == {"type": "invoice.updated", "event_id": "ev-3",
                                        "invoice_id": "INV-1",
                                        "overrides": {"suspend_at": False}}
    out = capsys.readouterr().out
    assert "collection.paused INV-1 sent to billing.invoices (event_id ev-1)" in out


def test_control_flags_read_their_variables_and_are_checked_there_too(sent, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("DUNNING_REASON", "dispute")
    assert main(["pause", "INV-1"]) == 0
    assert orjson.loads(sent[0][3])["reason"] == "dispute"
    monkeypatch.setenv("DUNNING_REASON", "bogus")
    assert main(["pause", "INV-1"]) == 2
    assert "--reason 'bogus' must be one of" in capsys.readouterr().err and len(sent) == 1


def test_controls_take_the_security_settings_of_tick(sent, monkeypatch):
    seen = []
    monkeypatch.setattr("dunning.cli._reach", lambda args, security: seen.append(security))
    monkeypatch.setenv("DUNNING_BROKER_USERNAME", "ops")
    monkeypatch.setenv("DUNNING_BROKER_PASSWORD", "pw")
    assert main(["resume", "INV-1", "--broker-sasl-mechanism", "SCRAM-SHA-512"]) == 0
    assert (seen[0].sasl_mechanism, seen[0].username, seen[0].password) == (
        "SCRAM-SHA-512", "ops", "pw")
    monkeypatch.delenv("DUNNING_BROKER_USERNAME")
    with pytest.raises(SystemExit, match=r"dunning resume: .*needs --broker-username"):
        main(["resume", "INV-1", "--broker-sasl-mechanism", "SCRAM-SHA-512"])
    assert len(sent) == 1


def test_policy_shows_a_calendar_in_the_policy_file_terms(tmp_path, capsys):
    path = tmp_path / "cal.toml"
    path.write_text('[defaults]\nterms_days = 14\n[calendar]\ntime_zone = "Asia/Tokyo"\n'
                    'enforce_on = ["mon", "tue", "wed", "thu", "fri"]\n'
                    'holidays = ["2026-01-01"]\nnotice_hours = ["09:00", "20:00"]\n')
    assert main(["policy", str(path)]) == 0
    out = capsys.readouterr().out
    assert "calendar                   Asia/Tokyo, enforce on mon tue wed thu fri, 1 holidays," \
           " notices 09:00-20:00" in out
