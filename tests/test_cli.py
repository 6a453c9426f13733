from pathlib import Path

import pytest

from dunning.cli import main


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
