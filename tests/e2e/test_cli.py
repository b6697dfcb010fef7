"""The ``upkeep`` command as an ops engineer runs it: real processes, exit codes, messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.flow_fixtures import host_entry, inventory_text
from upkeep.sshd import ThrowawaySshd

pytestmark = pytest.mark.e2e

GOOD = Path(__file__).parent.parent / "fixtures" / "inventory" / "good.yaml"


def upkeep(
    *args: str,
    data_dir: Path,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("UPKEEP_")}
    full_env.update({"UPKEEP_DATA_DIR": str(data_dir), "COLUMNS": "200"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "upkeep.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
        cwd=data_dir.parent,
    )


def test_inventory_load_then_show(data_dir: Path) -> None:
    first = upkeep("inventory", "load", str(GOOD), data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    assert "created host ACME-OPS/web1" in first.stdout
    again = upkeep("inventory", "load", str(GOOD), data_dir=data_dir)
    assert again.stdout.strip() == "no changes"
    shown = upkeep("inventory", "show", "--contract", "ACME-OPS", data_dir=data_dir)
    assert shown.returncode == 0
    assert "db1.acme.example:2222" in shown.stdout and "secret:acme-ssh-key" in shown.stdout


def test_bad_inventory_exits_nonzero_and_writes_nothing(data_dir: Path, tmp_path: Path) -> None:
    assert upkeep("inventory", "load", str(GOOD), data_dir=data_dir).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        GOOD.read_text()
        .replace("port: 2222", "port: 0")
        .replace("name: Globex Logistics", "name: Globex Renamed")
    )
    result = upkeep("inventory", "load", str(bad), data_dir=data_dir)
    assert result.returncode == 1
    assert f"{bad}:" in result.stderr and "hosts[1].port" in result.stderr
    shown = upkeep("inventory", "show", data_dir=data_dir)
    assert "Globex Logistics" in shown.stdout and "Globex Renamed" not in shown.stdout


def test_unknown_contract_is_named(data_dir: Path) -> None:
    upkeep("inventory", "load", str(GOOD), data_dir=data_dir)
    result = upkeep("findings", "list", "--contract", "NOPE", data_dir=data_dir)
    assert result.returncode == 1
    assert "no contract 'NOPE'" in result.stderr and "ACME-OPS" in result.stderr


def test_bad_setting_is_named_with_exit_2(data_dir: Path) -> None:
    result = upkeep(
        "inventory", "show", data_dir=data_dir, env={"UPKEEP_SSH_CONNECT_TIMEOUT": "soon"}
    )
    assert result.returncode == 2
    assert "UPKEEP_SSH_CONNECT_TIMEOUT" in result.stderr


def test_db_upgrade_is_explicit_and_idempotent(data_dir: Path) -> None:
    first = upkeep("db", "upgrade", data_dir=data_dir)
    assert "upgraded from nothing" in first.stdout
    second = upkeep("db", "upgrade", data_dir=data_dir)
    assert "already at" in second.stdout


def _inventory_for(server: ThrowawaySshd, tmp_path: Path) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(inventory_text([host_entry("web1", server)]))
    return path


def test_hosts_trust_asks_and_records_only_when_confirmed(
    data_dir: Path, tmp_path: Path, sshd: ThrowawaySshd
) -> None:
    from tasks.ssh import fingerprint_sha256

    upkeep("inventory", "load", str(_inventory_for(sshd, tmp_path)), data_dir=data_dir)
    declined = upkeep("hosts", "trust", "web1", data_dir=data_dir, input="n\n")
    assert declined.returncode == 1
    assert fingerprint_sha256(sshd.host_key) in declined.stdout
    known = data_dir / "known_hosts"
    assert not known.exists() or f"[127.0.0.1]:{sshd.port}" not in known.read_text()
    accepted = upkeep("hosts", "trust", "web1", "--yes", data_dir=data_dir)
    assert accepted.returncode == 0, accepted.stderr
    assert f"[127.0.0.1]:{sshd.port}" in known.read_text()


def test_hosts_trust_unknown_host(data_dir: Path) -> None:
    upkeep("inventory", "load", str(GOOD), data_dir=data_dir)
    result = upkeep("hosts", "trust", "nosuch", "--yes", data_dir=data_dir)
    assert result.returncode == 1 and "no active host 'nosuch'" in result.stderr


def test_sweep_command_prints_tables_and_exit_code(
    prefect_server: str, data_dir: Path, tmp_path: Path, sshd: ThrowawaySshd, client_key
) -> None:
    env = {"PREFECT_API_URL": prefect_server, "UPKEEP_SSH_KEY_FILE": str(client_key.private)}
    upkeep("inventory", "load", str(_inventory_for(sshd, tmp_path)), data_dir=data_dir)
    untrusted = upkeep("run", "sweep", "--contract", "ACME", data_dir=data_dir, env=env)
    assert untrusted.returncode == 3
    assert "NOT REACHED" in untrusted.stdout and "host_key_unknown" in untrusted.stdout
    upkeep("hosts", "trust", "web1", "--yes", data_dir=data_dir)
    ok = upkeep("run", "sweep", "--contract", "ACME", data_dir=data_dir, env=env)
    assert ok.returncode == 0, ok.stderr
    for check in ("cpu", "memory", "disk", "inodes", "ports", "clock"):
        assert f"│ {check}" in ok.stdout
    listed = upkeep("findings", "list", "--contract", "ACME", data_dir=data_dir)
    assert "reachability" in listed.stdout and "resolved" in listed.stdout


def test_inspection_needs_a_lasting_prefect_api(
    data_dir: Path, tmp_path: Path, sshd: ThrowawaySshd
) -> None:
    upkeep("inventory", "load", str(_inventory_for(sshd, tmp_path)), data_dir=data_dir)
    result = upkeep(
        "run", "inspection", "--contract", "ACME", data_dir=data_dir, env={"PREFECT_API_URL": ""}
    )
    assert result.returncode == 2 and "PREFECT_API_URL" in result.stderr


def test_approve_unknown_run_is_refused(prefect_server: str, data_dir: Path) -> None:
    upkeep("db", "upgrade", data_dir=data_dir)
    result = upkeep(
        "approve",
        "deadbeef",
        "--as",
        "Alice",
        "--code",
        "ABCDE-FGHJK",
        data_dir=data_dir,
        env={"PREFECT_API_URL": prefect_server},
    )
    assert result.returncode == 1 and "no pending approval" in result.stderr


def test_cli_approval_and_rejection_through_the_resume_api(
    prefect_server: str,
    engine: sa.Engine,
    load_inventory,
    sshd: ThrowawaySshd,
    data_dir: Path,
    smtp_server,
) -> None:
    from tests.flow_fixtures import wait_for_code
    from tests.flows.test_inspection import pending, run_inspection

    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    env = {"PREFECT_API_URL": prefect_server, "UPKEEP_APPROVAL_POLL_SECONDS": "1"}
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    code = wait_for_code(smtp_server, "alice@acme.example")
    wrong = upkeep(
        "approve",
        gate.flow_run_id[:8],
        "--as",
        "Alice Owner",
        "--code",
        "ABCDE-FGHJK",
        data_dir=data_dir,
        env=env,
    )
    assert wrong.returncode == 1 and "wrong code" in wrong.stderr
    listed = upkeep("approvals", "list", "--pending", data_dir=data_dir)
    assert gate.flow_run_id in listed.stdout
    ok = upkeep(
        "approve",
        gate.flow_run_id,
        "--as",
        "Alice Owner",
        "--code",
        code,
        "--comment",
        "fine",
        data_dir=data_dir,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "approve by Alice Owner" in ok.stdout
    assert bg.state().is_completed()
    shown = upkeep("approvals", "show", str(gate.id), data_dir=data_dir)
    assert shown.returncode == 0
    for line in ("opened", "notified", "refused", "wrong code", "decided", "Alice Owner"):
        assert line in shown.stdout
    report = upkeep("approvals", "report", "--contract", "ACME", data_dir=data_dir)
    assert report.returncode == 0 and "Alice Owner" in report.stdout
    bad = upkeep("approvals", "report", "--since", "yesterday", data_dir=data_dir)
    assert bad.returncode == 1 and "--since" in bad.stderr


def test_plan_command_writes_the_page_and_the_calendar(data_dir: Path) -> None:
    upkeep("inventory", "load", str(GOOD), data_dir=data_dir)
    result = upkeep("plan", "--contract", "ACME-OPS", "--year", "2027", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "Health inspection: 4" in result.stdout and "moved" in result.stdout
    paths = {
        line.split(": ", 1)[0]: Path(line.split(": ", 1)[1])
        for line in result.stdout.splitlines()
        if line.startswith(("plan:", "calendar:"))
    }
    assert paths["plan"].read_text().lstrip().startswith("<!DOCTYPE html>")
    assert "BEGIN:VCALENDAR" in paths["calendar"].read_text()
    bad = upkeep("plan", "--contract", "NOPE", "--year", "2027", data_dir=data_dir)
    assert bad.returncode == 1 and "no contract 'NOPE'" in bad.stderr
