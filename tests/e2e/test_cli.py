"""The ``upkeep`` command as an ops engineer runs it: real processes, exit codes, messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.flow_fixtures import host_entry, inventory_text
from upkeep.demo.sshd import ThrowawaySshd

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
    from upkeep.tasks.ssh import fingerprint_sha256

    upkeep("inventory", "load", str(_inventory_for(sshd, tmp_path)), data_dir=data_dir)
    declined = upkeep("hosts", "trust", "web1", data_dir=data_dir, input="n\n")
    assert declined.returncode == 1
    assert fingerprint_sha256(sshd.host_key) in declined.stdout
    assert "CHANGED" not in declined.stderr + declined.stdout
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
    prefect_server: str,
    data_dir: Path,
    tmp_path: Path,
    sshd: ThrowawaySshd,
    client_key,
    engine: sa.Engine,
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
    with engine.connect() as db:
        kinds = db.execute(sa.text("SELECT kind FROM inspectionrun")).scalars().all()
    assert kinds == ["sweep", "sweep"]  # ad-hoc sweeps are not inspections


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
    from tests.inspection_helpers import pending, run_inspection

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
    stranger = upkeep(
        "approve", gate.flow_run_id, "--as", "Mallory", "--code", code, data_dir=data_dir, env=env
    )
    assert stranger.returncode == 1 and "Traceback" not in stranger.stderr
    assert "'Mallory' is not one of the people who may answer" in stranger.stderr
    listed = upkeep("approvals", "list", "--pending", data_dir=data_dir)
    assert gate.flow_run_id in listed.stdout
    # An approver may name herself by e-mail, in any case: sent as the contract spells her.
    ok = upkeep(
        "approve",
        gate.flow_run_id,
        "--as",
        "ALICE@acme.example",
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


# --- bad input: a clear error, a non-zero exit, nothing created -------------------------------


def flow_runs(*flow_names: str) -> set[str]:
    """Ids of the newest flow runs of these flows on the session's Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(flow_names))),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=100,
        )
    return {str(r.id) for r in runs}


RUN_FLOWS = ("host-sweep", "inspection", "recheck", "backup-verification")


def rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as db:
        return int(db.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def assert_refused(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert "nothing was run" in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


def test_run_commands_refuse_an_unknown_or_inactive_contract_before_creating_a_run(
    prefect_server: str, data_dir: Path, tmp_path: Path, engine: sa.Engine
) -> None:
    env = {"PREFECT_API_URL": prefect_server}
    assert upkeep("inventory", "load", str(GOOD), data_dir=data_dir).returncode == 0
    before = flow_runs(*RUN_FLOWS)
    for command in (
        ["run", "sweep"],
        ["run", "inspection"],
        ["run", "recheck"],
        ["run", "backups"],
        ["run", "drill", "--source", "shop-db"],
    ):
        result = upkeep(*command, "--contract", "NOPE", data_dir=data_dir, env=env)
        assert_refused(result, "no contract 'NOPE'", "known: ACME-OPS, GLOBEX")
    without_globex = tmp_path / "acme-only.yaml"
    without_globex.write_text(GOOD.read_text().split("  - code: globex")[0])
    assert upkeep("inventory", "load", str(without_globex), data_dir=data_dir).returncode == 0
    gone = upkeep("run", "sweep", "--contract", "GLOBEX", data_dir=data_dir, env=env)
    assert_refused(gone, "contract 'GLOBEX' is no longer active")
    drill = upkeep(
        "run", "drill", "--contract", "ACME-OPS", "--source", "x", data_dir=data_dir, env=env
    )
    assert_refused(drill, "contract ACME-OPS has no backup sources")
    assert flow_runs(*RUN_FLOWS) == before
    assert rows(engine, "inspectionrun") == 0 and rows(engine, "approval") == 0


def test_a_sweep_of_a_tag_no_host_has_is_refused_naming_the_tags(
    prefect_server: str, data_dir: Path, engine: sa.Engine
) -> None:
    env = {"PREFECT_API_URL": prefect_server}
    upkeep("inventory", "load", str(GOOD), data_dir=data_dir)
    before = flow_runs("host-sweep", "inspection")
    for command in ("sweep", "inspection"):
        result = upkeep(
            "run",
            command,
            "--contract",
            "ACME-OPS",
            "--tag",
            "nosuchtag",
            data_dir=data_dir,
            env=env,
        )
        assert_refused(result, "'nosuchtag'", "tags in use: db, prod, web")
    assert flow_runs("host-sweep", "inspection") == before
    assert rows(engine, "inspectionrun") == 0


def test_inventory_text_with_brackets_is_printed_as_written(data_dir: Path, tmp_path: Path) -> None:
    inv = tmp_path / "brackets.yaml"
    inv.write_text(
        inventory_text(
            [{"name": "old1", "address": "192.0.2.1", "role": "[legacy]", "tags": ["[/]"]}],
            name="Ops [/] [bold]night[/bold]",
            approvers=[
                {"name": "Eve [red]E[/]", "email": "eve@acme.example"},
                {"name": "Paul Lead", "email": "paul@provider.example"},
            ],
        )
    )
    assert upkeep("inventory", "load", str(inv), data_dir=data_dir).returncode == 0
    shown = upkeep("inventory", "show", data_dir=data_dir)
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    for text in ("Ops [/] [bold]night[/bold]", "Eve [red]E[/]", "[legacy]", "│ [/]"):
        assert text in shown.stdout, text


def test_an_inventory_alias_bomb_is_refused_in_bounded_time(data_dir: Path, tmp_path: Path) -> None:
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]" for i in range(1, 13)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join([*lines, "customers: [*lol12]"]) + "\n")
    result = upkeep("inventory", "load", str(bomb), data_dir=data_dir, timeout=60)
    assert result.returncode == 1
    assert f"{bomb}:" in result.stderr and "alias" in result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing loaded" in upkeep("inventory", "show", data_dir=data_dir).stdout


def test_hosts_trust_on_a_changed_key_warns_loudly_and_needs_the_host_name(
    data_dir: Path, tmp_path: Path, sshd: ThrowawaySshd, other_sshd: ThrowawaySshd
) -> None:
    from upkeep.tasks.ssh import fingerprint_sha256, trust_host_key

    upkeep("inventory", "load", str(_inventory_for(sshd, tmp_path)), data_dir=data_dir)
    known = data_dir / "known_hosts"
    trust_host_key(known, sshd.address, sshd.port, other_sshd.host_key)  # the key trusted before
    old_line = known.read_text()
    old_fp, new_fp = fingerprint_sha256(other_sshd.host_key), fingerprint_sha256(sshd.host_key)

    confirmed_as_if_new = upkeep("hosts", "trust", "web1", data_dir=data_dir, input="y\n")
    assert confirmed_as_if_new.returncode == 1
    assert "HAS CHANGED" in confirmed_as_if_new.stderr
    assert f"recorded: {other_sshd.host_key.get_name()} {old_fp}" in confirmed_as_if_new.stderr
    assert f"offered:  {sshd.host_key.get_name()} {new_fp}" in confirmed_as_if_new.stderr
    assert "not replaced" in confirmed_as_if_new.stderr
    assert known.read_text() == old_line

    yes_only = upkeep("hosts", "trust", "web1", "--yes", data_dir=data_dir)
    assert yes_only.returncode == 1 and "--replace" in yes_only.stderr
    assert known.read_text() == old_line

    typed = upkeep("hosts", "trust", "web1", data_dir=data_dir, input="web1\n")
    assert typed.returncode == 0, typed.stderr
    assert "replaced" in typed.stdout
    text = known.read_text()
    assert sshd.host_key.get_base64() in text and other_sshd.host_key.get_base64() not in text

    again = upkeep("hosts", "trust", "web1", "--yes", data_dir=data_dir)
    assert again.returncode == 0 and "already trusted" in again.stdout
    assert "CHANGED" not in again.stderr


def test_hosts_trust_replace_flag_replaces_a_changed_key_without_a_prompt(
    data_dir: Path, tmp_path: Path, sshd: ThrowawaySshd, other_sshd: ThrowawaySshd
) -> None:
    from upkeep.tasks.ssh import trust_host_key

    upkeep("inventory", "load", str(_inventory_for(sshd, tmp_path)), data_dir=data_dir)
    known = data_dir / "known_hosts"
    trust_host_key(known, sshd.address, sshd.port, other_sshd.host_key)
    result = upkeep("hosts", "trust", "web1", "--replace", data_dir=data_dir, input="")
    assert result.returncode == 0, result.stderr
    assert "HAS CHANGED" in result.stderr and "replaced" in result.stdout
    assert sshd.host_key.get_base64() in known.read_text()


def test_an_inspection_its_starter_alone_could_approve_is_refused_at_start(
    prefect_server: str, data_dir: Path, tmp_path: Path, sshd: ThrowawaySshd, engine: sa.Engine
) -> None:
    inv = tmp_path / "single.yaml"
    inv.write_text(
        inventory_text(
            [host_entry("web1", sshd)],
            approvers=[{"name": "Alice Owner", "email": "alice@acme.example"}],
        )
    )
    loaded = upkeep("inventory", "load", str(inv), data_dir=data_dir)
    assert loaded.returncode == 0
    assert (
        "warning: contract ACME: approval_policy: a run started by Alice Owner could not be "
        "approved" in loaded.stderr
    )
    before = flow_runs("inspection")
    result = upkeep(
        "run",
        "inspection",
        "--contract",
        "ACME",
        "--as",
        "alice@acme.example",
        data_dir=data_dir,
        env={"PREFECT_API_URL": prefect_server},
    )
    assert_refused(result, "Alice Owner started this run and is its only approver")
    assert flow_runs("inspection") == before
    assert rows(engine, "approval") == 0 and rows(engine, "inspectionrun") == 0


def test_a_second_inspection_of_a_contract_is_refused_while_one_waits_at_its_gate(
    prefect_server: str,
    engine: sa.Engine,
    load_inventory,
    sshd: ThrowawaySshd,
    data_dir: Path,
    smtp_server,
    client_key,
) -> None:
    from tests.flow_fixtures import wait_for_code
    from tests.inspection_helpers import answer, paused, pending, run_inspection
    from tests.polling import wait_until
    from upkeep.flows.inspection import InspectionParams, quarterly_health_inspection

    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    wait_until("the first run to wait at its gate", lambda: paused(gate.flow_run_id))
    before = flow_runs("inspection")

    cli = upkeep(
        "run",
        "inspection",
        "--contract",
        "ACME",
        "--as",
        "ops",
        data_dir=data_dir,
        env={"PREFECT_API_URL": prefect_server},
    )
    assert_refused(cli, "another inspection run of ACME is under way", gate.flow_run_id)
    assert flow_runs("inspection") == before

    # Started some other way (the UI, a schedule): the flow itself ends at once, with the reason.
    second = quarterly_health_inspection(
        InspectionParams(contract="ACME", requested_by="ops"), return_state=True
    )
    assert second.is_cancelled()
    assert "another inspection run of ACME is under way" in (second.message or "")
    assert gate.flow_run_id in (second.message or "")
    assert rows(engine, "approval") == 1 and rows(engine, "inspectionrun") == 0

    code = wait_for_code(smtp_server, "alice@acme.example")
    answer(gate, decision="approve", approver="Alice Owner", code=code, comment="ok")
    assert bg.state().is_completed()
    assert rows(engine, "inspectionrun") == 1

    # The first run has ended: its claim is stale and the next inspection goes ahead.
    after = upkeep(
        "run",
        "inspection",
        "--contract",
        "ACME",
        "--no-approval",
        "--as",
        "ops",
        data_dir=data_dir,
        env={"PREFECT_API_URL": prefect_server, "UPKEEP_SSH_KEY_FILE": str(client_key.private)},
    )
    assert after.returncode == 0, after.stderr
    assert rows(engine, "inspectionrun") == 2
