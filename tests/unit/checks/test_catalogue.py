"""The catalogue: order, fixed commands, quoting, and every command run for real under sh."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from upkeep.domain.checks import CATALOGUE, CHECKS_BY_NAME
from upkeep.domain.checks.base import EvalContext, RawResult, Thresholds, evaluate_check
from upkeep.domain.checks.syslog import CHECK as SYSLOG

NAMES = [
    "os",
    "cpu",
    "uptime",
    "memory",
    "disk",
    "inodes",
    "systemd",
    "syslog",
    "clock",
    "ports",
    "updates",
]


def test_catalogue_order_and_index() -> None:
    assert [c.name for c in CATALOGUE] == NAMES
    assert {c.name: c for c in CATALOGUE} == CHECKS_BY_NAME


@pytest.mark.parametrize("check", CATALOGUE, ids=lambda c: c.name)
def test_render_gives_a_fixed_string(check) -> None:
    rendered = check.render(Thresholds())
    assert isinstance(rendered, str) and rendered
    assert rendered == check.render(Thresholds())
    if check.params is None:
        assert rendered == check.command
    shlex.split(rendered)  # balanced quoting


def test_syslog_window_goes_in_through_params() -> None:
    assert "--since -24h" in SYSLOG.render(Thresholds())
    assert "--since -72h" in SYSLOG.render(Thresholds(syslog_window_hours=72))


def test_hostile_param_value_stays_one_literal_word() -> None:
    hostile = "1h; touch /tmp/upkeep-pwned $(id) `id` ' \""
    check = dataclasses.replace(SYSLOG, params=lambda t: {"hours": hostile})
    words = shlex.split(check.render(Thresholds()))
    assert f"-{hostile}h" in words


def _run_locally(shell: str) -> dict[str, object]:
    """Run the whole catalogue in order on this machine, as the sweep would over SSH."""
    facts: dict[str, BaseModel] = {}
    outcomes = {}
    for check in CATALOGUE:
        command = check.render(Thresholds())
        inspected_at = datetime.now(UTC)
        proc = subprocess.run(
            [shell, "-c", command], capture_output=True, text=True, timeout=120, check=False
        )
        raw = RawResult(command, proc.returncode, proc.stdout, proc.stderr)
        outcome = evaluate_check(check, raw, Thresholds(), EvalContext(inspected_at, dict(facts)))
        if outcome.parsed is not None:
            facts[check.name] = outcome.parsed
        outcomes[check.name] = outcome
    return outcomes


def _systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system")


def _journal_or_syslog_readable() -> bool:
    journals = [
        *Path("/run/log/journal").glob("*/*.journal"),
        *Path("/var/log/journal").glob("*/*.journal"),
    ]
    files = [Path("/var/log/messages"), Path("/var/log/syslog")]
    return any(os.access(p, os.R_OK) for p in journals + files)


@pytest.mark.parametrize("shell", [s for s in ("sh", "dash", "bash") if shutil.which(s)])
def test_every_command_runs_and_parses_here(shell: str) -> None:
    outcomes = _run_locally(shell)
    for name, outcome in outcomes.items():
        for m in outcome.measurements:
            assert m.value not in ("unparsed",) and not m.value.startswith("exit "), (name, m)
    assert outcomes["os"].parsed is not None and outcomes["cpu"].parsed is not None
    assert outcomes["uptime"].parsed is not None and outcomes["memory"].parsed is not None
    assert outcomes["disk"].parsed is not None
    # The load was graded against the CPU count read a moment before.
    assert "per CPU" in outcomes["uptime"].measurements[1].value
    if _systemd_running():
        assert outcomes["systemd"].skipped is None
    else:
        assert outcomes["systemd"].skipped is not None
        assert (
            "not running as PID 1" in outcomes["systemd"].skipped
            or "not found" in outcomes["systemd"].skipped
        )
    if not _journal_or_syslog_readable():
        assert (
            outcomes["syslog"].skipped
            == "no readable journal, /var/log/messages or /var/log/syslog"
        )
    clock = outcomes["clock"]
    assert clock.parsed is not None
    # Same machine: the skew is the time between taking inspected_at and running date.
    assert clock.findings == [] or all(m.subject == "NTP" for m in clock.findings)


def test_syslog_file_fallback_pipeline_runs_under_sh(tmp_path: Path) -> None:
    """The file branch of the real command, pointed at a temporary log instead of /var/log."""
    log = tmp_path / "messages"
    lines = [f"Mar  4 09:00:{i:02d} host app[1]: request {i} ok" for i in range(30)]
    lines += [f"Mar  4 09:01:{i:02d} host app[1]: error: disk {i} failed" for i in range(25)]
    lines += ["Mar  4 09:02:00 host app[1]: terrorist is not a word match"]
    log.write_text("\n".join(lines) + "\n")
    command = SYSLOG.render(Thresholds())
    command = command.replace("/run/log/journal/", f"{tmp_path}/nojournal/")
    command = command.replace("/var/log/journal/", f"{tmp_path}/nojournal/")
    command = command.replace("/var/log/messages", str(log))
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    facts = SYSLOG.parse(proc.stdout)
    assert facts.source == "file" and facts.path == str(log)
    assert facts.count == 25
    assert facts.last_lines == lines[30 + 15 : 30 + 25]


FIXTURES = sorted((Path(__file__).parents[2] / "fixtures" / "checks").glob("*/*.json"))


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_captured_output_records_the_command_the_catalogue_runs(fixture: Path) -> None:
    """A fixture's ``command`` is what produced its output: the catalogue's command, rendered
    with default thresholds. A catalogue change that leaves fixtures behind fails here."""
    recorded = json.loads(fixture.read_text())["command"]
    assert recorded == CHECKS_BY_NAME[fixture.parent.name].render(Thresholds())
