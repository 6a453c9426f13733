"""`dunning demo` end to end, small: a few hundred customers over a few weeks."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from dunning.demo.simulate import simulate

pytestmark = pytest.mark.broker  # `dunning demo` starts one (embedded_broker)


def test_a_small_demo_runs_end_to_end_and_matches_the_engine(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "dunning.cli", "demo", "--customers", "200", "--days", "35"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "dunning demo: 200 customers over 35 days" in out
    assert "day  35/35" in out
    assert re.search(r"engine check: the worker's [\d,]+ commands match the pure engine's", out)
    invoices = int(re.search(r"invoices: ([\d,]+)", out).group(1).replace(",", ""))
    assert invoices == simulate(7, 200, 35).invoices
    for kpi in ("collection rate", "of what is due", "debt outstanding", "overdue", "DSO",
                "days to pay", "(paid invoices, issue to paid)",
                "subjects suspended at the end", "promises to pay",
                "enforcement (limit, suspend, delete) by weekday, UTC", "commands: "):
        assert kpi in out
    assert "service.suspend" in out  # five weeks is long enough for someone to be suspended
    # Everything it started is stopped: no broker or worker left behind.
    left = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in left


def test_the_simulation_is_reproducible():
    a, b = simulate(3, 100, 40), simulate(3, 100, 40)
    assert list(a.script()) == list(b.script())
    assert list(a.script()) != list(simulate(4, 100, 40).script())


def test_compare_runs_two_policies_side_by_side_and_writes_the_report(tmp_path):
    config = pathlib.Path(__file__).resolve().parents[2] / "config"
    done = subprocess.run(
        [sys.executable, "-m", "dunning.cli", "demo", "--customers", "150", "--days", "30",
         "--compare", str(config / "standard.toml"), str(config / "strict.toml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    header = next(line for line in out.splitlines() if "standard" in line and "strict" in line)
    assert header.index("standard") < header.index("strict")
    reminders = next(line for line in out.splitlines() if "reminders and notices" in line)
    standard, strict = (int(v.replace(",", "")) for v in reminders.split()[-2:])
    assert strict > standard  # weekly reminders and two due-soon notices
    assert "engine check, standard:" in out and "engine check, strict:" in out
    assert out.count("match the pure engine's exactly") == 2
    page = (tmp_path / ".dunning" / "demo-compare.html").read_text()
    assert page.count("<polyline") == 6  # debt, actions and enforcement, for each policy
    assert "Outstanding debt" in page and "Collection actions per day" in page
    assert "Enforcement per day" in page and "by local weekday" in page
    assert "strict (Asia/Tokyo)" in page and "standard (UTC)" in page
    closed = next(line for line in out.splitlines() if "enforcement on closed days" in line)
    assert closed.split()[-2:] == ["calendar", "0"]  # standard has none; strict holds to it


def test_ctrl_c_stops_everything_the_demo_started(tmp_path):
    demo = subprocess.Popen(
        [sys.executable, "-u", "-m", "dunning.cli", "demo", "--customers", "300", "--days", "90"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # its own process group, as a terminal's foreground job
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if "day  10/90" in line:
                break
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C sends
        rest = demo.communicate(timeout=120)[0]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode == 130, rest
    assert "everything it started is stopped too" in rest
    time.sleep(1)
    left = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in left  # no worker, broker log or PostgreSQL left behind
