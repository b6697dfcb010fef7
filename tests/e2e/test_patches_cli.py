"""``upkeep patches`` as an engineer runs it: real processes, exit codes, messages; the gate
answered with ``upkeep reject`` and ``upkeep patches revise`` through the resume API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from tests.apt_repo import CANARY, LocalAptRepo, canary_advisory, local_apt_repo_fixture  # noqa: F401
from tests.e2e.test_cli import upkeep
from tests.flow_fixtures import host_entry, wait_for_code
from tests.inspection_helpers import pending
from upkeep.domain.patching import PLAN_GATE, REVISION_GATE
from upkeep.models import PatchPlan

pytestmark = pytest.mark.e2e


def _env(prefect_server: str, smtp_server, client_key) -> dict[str, str]:
    return {
        "PREFECT_API_URL": prefect_server,
        "UPKEEP_APPROVAL_POLL_SECONDS": "1",
        "UPKEEP_SMTP_HOST": smtp_server.host,
        "UPKEEP_SMTP_PORT": str(smtp_server.port),
        "UPKEEP_SMTP_TLS": "none",
        "UPKEEP_SSH_KEY_FILE": str(client_key.private),
    }


def test_a_rejected_plan_is_revised_and_cancelled_from_the_command_line(
    prefect_server: str,
    engine,
    load_inventory,
    sshd,
    data_dir: Path,
    tmp_path: Path,
    smtp_server,
    client_key,
    local_apt_repo: LocalAptRepo,
) -> None:
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    env = _env(prefect_server, smtp_server, client_key)
    record = tmp_path / "canary.json"
    record.write_text(json.dumps(canary_advisory("Debian:12")))
    synced = upkeep("advisories", "sync", str(record), data_dir=data_dir, env=env)
    assert synced.returncode == 0, synced.stderr
    full = {k: v for k, v in os.environ.items() if not k.startswith("UPKEEP_")}
    full |= {"UPKEEP_DATA_DIR": str(data_dir), "COLUMNS": "200", **env}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "upkeep.cli",
            "patches",
            "run",
            "--contract",
            "ACME",
            "--mode",
            "apply",
            "--as",
            "Eve Engineer",
        ],
        env=full,
        cwd=data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        gate = pending(engine, PLAN_GATE)
        # A second run of the same contract is refused while this one waits.
        second = upkeep("patches", "run", "--contract", "ACME", data_dir=data_dir, env=env)
        assert second.returncode == 1 and "another patch run of ACME" in second.stderr
        code = wait_for_code(smtp_server, "alice@acme.example")
        rejected = upkeep(
            "reject",
            gate.flow_run_id,
            "--as",
            "Alice Owner",
            "--code",
            code,
            "--comment",
            "not during the sale",
            data_dir=data_dir,
            env=env,
        )
        assert rejected.returncode == 0, rejected.stderr
        pending(engine, REVISION_GATE)
        wrong = upkeep(
            "patches",
            "revise",
            gate.flow_run_id,
            "--as",
            "Eve Engineer",
            "--drop",
            "no-such",
            data_dir=data_dir,
            env=env,
        )
        assert wrong.returncode == 1 and "not in the plan: no-such" in wrong.stderr
        cancel = upkeep(
            "patches",
            "revise",
            gate.flow_run_id,
            "--as",
            "Eve Engineer",
            "--cancel",
            data_dir=data_dir,
            env=env,
        )
        assert cancel.returncode == 0, cancel.stderr
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4, stdout + stderr
    assert "cancelled" in stdout
    assert local_apt_repo.installed_version() == local_apt_repo.old
    listed = upkeep("patches", "show", "--contract", "ACME", data_dir=data_dir)
    assert listed.returncode == 0 and "cancelled" in listed.stdout
    with Session(engine) as s:
        (row,) = s.exec(select(PatchPlan)).all()
    assert f"sha256:{row.plan_hash[7:19]}" in listed.stdout
    shown = upkeep("patches", "show", str(row.id), data_dir=data_dir)
    assert shown.returncode == 0, shown.stderr
    assert "reject by Alice Owner: not during the sale" in shown.stdout
    assert CANARY in shown.stdout and "sha256:" in shown.stdout


def test_bad_patch_commands_are_named_with_a_nonzero_exit(
    prefect_server: str, load_inventory, sshd, data_dir: Path
) -> None:
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    env = {"PREFECT_API_URL": prefect_server}
    nope = upkeep("patches", "run", "--contract", "NOPE", data_dir=data_dir, env=env)
    assert nope.returncode == 1 and "no contract 'NOPE'" in nope.stderr
    mode = upkeep("patches", "run", "--contract", "ACME", "--mode", "yolo", data_dir=data_dir)
    assert mode.returncode == 2 and "--mode must be report or apply" in mode.stderr
    missing = upkeep("patches", "show", "99", data_dir=data_dir)
    assert missing.returncode == 1 and "no patch plan 99" in missing.stderr
    stranger = upkeep(
        "patches",
        "fix",
        "--contract",
        "ACME",
        "--host",
        "nosuch",
        "--package",
        "bash",
        "--symptom",
        "x",
        data_dir=data_dir,
        env=env,
    )
    assert stranger.returncode == 1
    assert "not an active host of ACME: nosuch" in stranger.stderr


def test_a_cycle_with_no_records_synced_says_so_and_exits_3(
    prefect_server: str, load_inventory, sshd, data_dir: Path, smtp_server, client_key
) -> None:
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    env = _env(prefect_server, smtp_server, client_key)
    done = upkeep("patches", "run", "--contract", "ACME", data_dir=data_dir, env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "nothing-to-do, 0 update(s)" in done.stdout
    assert "web1: not surveyed: no advisory records for Debian:12 in the store" in done.stderr
