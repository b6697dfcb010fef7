"""A sweep always ends: hosts that hang (real sshd processes stopped with SIGSTOP, a listener
that never speaks) are timeout findings within the stated bound, the other hosts are
inspected, and a sweep process stopped with SIGTERM exits and keeps what it recorded."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.flow_fixtures import host_entry
from tests.polling import wait_until
from tests.sshd_fixtures import Freezer, SilentListener
from upkeep.demo.sshd import KeyPair
from upkeep.domain.checks import CATALOGUE
from upkeep.flows.sweep import SweepParams, run_sweep
from upkeep.models import Finding, Host, HostResult, InspectionRun, RunStatus
from upkeep.settings import get_settings, reset_settings
from upkeep.tasks.inspect import host_bound, sweep_bound
from upkeep.tasks.ssh import command_bound, connect_bound

pytestmark = pytest.mark.flows

SLACK = 20.0
"""Seconds of Prefect bookkeeping and a loaded machine on top of a stated bound."""

SHORT = {
    "UPKEEP_SSH_CONNECT_TIMEOUT": "3",
    "UPKEEP_SSH_BANNER_TIMEOUT": "2",
    "UPKEEP_SSH_AUTH_TIMEOUT": "3",
    "UPKEEP_SSH_CHANNEL_TIMEOUT": "3",
    "UPKEEP_SSH_RETRIES": "0",
}


def _rows(engine: sa.Engine) -> dict[str, HostResult]:
    with Session(engine) as s:
        names = {h.id: h.name for h in s.exec(select(Host))}
        return {names[r.host_id]: r for r in s.exec(select(HostResult))}


def _reachability(engine: sa.Engine) -> dict[str, Finding]:
    with Session(engine) as s:
        names = {h.id: h.name for h in s.exec(select(Host))}
        found = s.exec(select(Finding).where(Finding.check == "reachability"))
        return {names[f.host_id]: f for f in found}


def test_hung_hosts_are_timeouts_within_the_bound_and_the_others_are_inspected(
    engine: sa.Engine,
    load_inventory,
    sshd_servers,
    own_sshd,
    freezer: Freezer,
    silent_listener: SilentListener,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in SHORT.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    ssh = get_settings().ssh
    good, other = sshd_servers[0], sshd_servers[1]
    after_login, before_banner = own_sshd(), own_sshd()
    mute = {"name": "mute", "address": silent_listener.address, "port": silent_listener.port}
    load_inventory(
        [
            host_entry("good", good),
            host_entry("frozen", after_login),
            host_entry("stopped", before_banner),
            mute,
            host_entry("other", other),
        ],
        trust=[good, other, after_login, before_banner],
    )
    freezer.stop_listener(before_banner)
    freezer.stop_sessions_after_login(after_login)

    begun = time.monotonic()
    with caplog.at_level(logging.WARNING):
        result = run_sweep(SweepParams(contract="ACME"), concurrency=5)
    elapsed = time.monotonic() - begun

    # The stated bound holds; and a hung host costs at most its login and one command.
    assert elapsed <= sweep_bound(5, 5, host_bound(ssh)) + SLACK
    longest_check = max(c.timeout or ssh.command_timeout for c in CATALOGUE)
    assert elapsed <= connect_bound(ssh) + command_bound(ssh, longest_check) + SLACK
    assert freezer.stopped  # the frozen host really was frozen after its login
    assert after_login.logins() == 1

    by_host = {h.host: h for h in result.hosts}
    assert {h: by_host[h].error_kind for h in ("frozen", "stopped", "mute")} == {
        "frozen": "timeout",
        "stopped": "timeout",
        "mute": "timeout",
    }
    assert by_host["good"].reachable and by_host["other"].reachable
    assert result.crashed == []
    rows = _rows(engine)
    assert set(rows) == {"good", "frozen", "stopped", "mute", "other"}
    assert rows["good"].facts and rows["other"].facts
    assert "stopped answering" in (rows["frozen"].error or "")
    assert "no SSH banner" in (rows["stopped"].error or "")
    assert "no SSH banner" in (rows["mute"].error or "")
    findings = _reachability(engine)
    assert set(findings) == {"frozen", "stopped", "mute"}
    assert all(f.severity == "critical" for f in findings.values())
    with Session(engine) as s:
        run = s.get(InspectionRun, result.run_id)
        assert run is not None and run.status == RunStatus.COMPLETED
    assert "Exception (client)" not in caplog.text and "Traceback" not in caplog.text


@pytest.fixture
def sweep_process() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at teardown is killed (by its pid)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_sigterm_ends_a_sweep_stuck_on_a_frozen_host_keeping_what_it_recorded(
    prefect_server: str,
    engine: sa.Engine,
    data_dir: Path,
    load_inventory,
    sshd,
    own_sshd,
    freezer: Freezer,
    client_key: KeyPair,
    sweep_process: list[subprocess.Popen[str]],
) -> None:
    stuck = own_sshd()
    load_inventory([host_entry("good", sshd), host_entry("stuck", stuck)], trust=[sshd, stuck])
    freezer.stop_sessions_after_login(stuck)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPKEEP_")}
    env.update(
        {
            "UPKEEP_DATA_DIR": str(data_dir),
            "PREFECT_API_URL": prefect_server,
            "UPKEEP_SSH_KEY_FILE": str(client_key.private),
            "UPKEEP_SWEEP_CONCURRENCY": "2",
            # Patient: without SIGTERM this sweep would wait 10 minutes on the frozen host.
            "UPKEEP_SSH_CHANNEL_TIMEOUT": "600",
            "UPKEEP_SSH_RETRIES": "0",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "upkeep.cli", "run", "sweep", "--contract", "ACME"],
        env=env,
        cwd=data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sweep_process.append(proc)
    wait_until("the good host to be recorded", lambda: "good" in _rows(engine), timeout=180)
    wait_until("the stuck host to be frozen after its login", lambda: freezer.stopped, 60)
    assert proc.poll() is None  # stuck on the frozen host

    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the sweep process did not exit within 60 s of SIGTERM")
    output = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode != 0, output

    assert set(_rows(engine)) == {"good"}  # what was done stays; the aborted host adds nothing
    assert "stuck" not in _reachability(engine)
    with Session(engine) as s:
        (run,) = s.exec(select(InspectionRun)).all()
    assert run.status == RunStatus.CANCELLED and run.finished_at is not None
    assert run.flow_run_id is not None

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.flow_run_id).state
    assert state is not None and state.type.value in {"CRASHED", "CANCELLED"}, state
