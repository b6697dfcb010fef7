"""Every deployment builds; served deployments run from the API as the UI starts them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from tests.flow_fixtures import host_entry
from upkeep.demo.sshd import free_loopback_port
from upkeep.deployments import build_deployments
from upkeep.inventory import apply_inventory, load_inventory_file

pytestmark = pytest.mark.flows

GOOD = Path(__file__).parent.parent / "fixtures" / "inventory" / "good.yaml"


def test_every_flow_imports_and_every_deployment_builds(engine: sa.Engine) -> None:
    import upkeep.flows.annual_plan
    import upkeep.flows.approvals
    import upkeep.flows.inspection
    import upkeep.flows.service_report
    import upkeep.flows.sweep
    import upkeep.flows.watchdog  # noqa: F401

    with Session(engine) as s:
        apply_inventory(s, load_inventory_file(GOOD))
        s.commit()
        deps = build_deployments(s)
    by_name = {f"{d.flow_name}/{d.name}": d for d in deps}
    assert sorted(by_name) == [
        "annual-plan/acme-ops",
        "annual-plan/globex",
        "approval-watchdog/upkeep",
        "inspection/acme-ops",
        "inspection/globex",
        "patch-advisory/acme-ops",
        "patch-advisory/globex",
        "patch-fix/acme-ops",
        "patch-fix/globex",
        "recheck/acme-ops",
        "recheck/globex",
        "service-report/acme-ops",
    ]
    watchdog = by_name["approval-watchdog/upkeep"]
    assert watchdog.schedules[0].schedule.interval.total_seconds() == 300
    for name, d in by_name.items():
        if d is watchdog:
            continue
        params = d.parameters["params"]
        assert params["contract"] in {"ACME-OPS", "GLOBEX"}
        assert params.get("email_report", True) is True  # deployments switch e-mail on
        assert "params" in d._parameter_openapi_schema.properties
        assert f"contract:{params['contract']}" in d.tags
    assert by_name["service-report/acme-ops"].parameters["params"]["period"] == "month"
    assert not by_name["inspection/globex"].schedules  # no cadence: started by hand
    (schedule,) = by_name["inspection/acme-ops"].schedules
    assert schedule.schedule.timezone == "Europe/Berlin"


def test_next_run_times_match_the_written_cadence(engine: sa.Engine) -> None:
    """What the deployment will schedule (Prefect's own computation) is the written cadence,
    and the plan applies the blackout and keeps the wall-clock time across DST."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from prefect.server.schemas.schedules import RRuleSchedule

    from upkeep.flows.annual_plan import annual_plan

    with Session(engine) as s:
        apply_inventory(s, load_inventory_file(GOOD))
        s.commit()
        deps = {f"{d.flow_name}/{d.name}": d for d in build_deployments(s)}
        plan = annual_plan(session=s, contract_code="ACME-OPS", year=2027)
    berlin = ZoneInfo("Europe/Berlin")
    rule = deps["inspection/acme-ops"].schedules[0].schedule
    server = RRuleSchedule(rrule=rule.rrule, timezone=rule.timezone)
    import asyncio

    start = datetime(2027, 1, 1, tzinfo=berlin)
    got = asyncio.run(server.get_dates(n=4, start=start))
    assert [d.astimezone(berlin).strftime("%Y-%m-%d %H:%M %Z") for d in got] == [
        "2027-01-05 02:00 CET",  # first Tuesdays of each quarter
        "2027-04-06 02:00 CEST",  # after the change to summer time: still 02:00
        "2027-07-06 02:00 CEST",
        "2027-10-05 02:00 CEST",
    ]
    inspections = [i for i in plan.items if i.process == "inspection"]
    first = inspections[0]
    assert first.moved and first.at.strftime("%Y-%m-%d %H:%M") == "2027-01-06 02:00"
    assert "2027-01-05" in first.original.strftime("%Y-%m-%d")
    reports = [i for i in plan.items if i.process == "service_report"]
    assert len(reports) == 12
    december = [i for i in reports if i.original.month == 12][0]
    assert december.original.strftime("%Y-%m-%d") == "2027-12-06"  # not in the freeze
    with Session(engine) as s:
        next_year = annual_plan(session=s, contract_code="ACME-OPS", year=2028)
    january = [i for i in next_year.items if i.process == "service_report"][0]
    # The first Monday, 2028-01-03, is inside the year-end freeze: moved past it.
    assert january.original.strftime("%Y-%m-%d") == "2028-01-03"
    assert january.moved and january.at.strftime("%Y-%m-%d %H:%M") == "2028-01-07 08:00"
    assert "freeze" in (january.reason or "")


def test_deploy_registers_with_a_pool_and_pauses_gone_contracts(
    prefect_server: str, engine: sa.Engine, flow_env
) -> None:
    from prefect.client.orchestration import get_client

    from upkeep.deployments import deploy_to_pool, ensure_process_pool

    with Session(engine) as s:
        apply_inventory(s, load_inventory_file(GOOD))
        s.commit()
    assert ensure_process_pool("upkeep-test") in (True, False)
    assert ensure_process_pool("upkeep-test") is False
    with Session(engine) as s:
        first = deploy_to_pool(s, "upkeep-test", contract_limit=5)
        again = deploy_to_pool(s, "upkeep-test", contract_limit=5)
    assert sorted(first.deployed) == sorted(again.deployed) and len(first.deployed) == 12
    assert first.unsupported == {"ACME-OPS": ["backup_verification"]}
    with get_client(sync_client=True) as c:
        mine = [d for d in c.read_deployments() if "upkeep" in d.tags]
        assert len([d for d in mine if d.work_pool_name == "upkeep-test"]) == 12
        limit = c.read_concurrency_limit_by_tag("contract:ACME-OPS")
        assert limit.concurrency_limit == 5
    only_acme = GOOD.read_text().split("  - code: globex")[0]
    from upkeep.inventory import parse_inventory

    with Session(engine) as s:
        apply_inventory(s, parse_inventory(only_acme))
        s.commit()
        third = deploy_to_pool(s, "upkeep-test", contract_limit=None)
    assert sorted(third.paused) == ["globex (GLOBEX)"] * 5
    with get_client(sync_client=True) as c:
        globex = [d for d in c.read_deployments() if "contract:GLOBEX" in d.tags]
        assert globex and all(d.paused for d in globex)


class Served:
    """``upkeep serve`` in a subprocess with this test's settings; restartable."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "upkeep.cli", "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def serve_env(prefect_api: str, data_dir: Path, client_key, smtp_server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPKEEP_", "PREFECT_"))}
    env.update(
        {
            "PREFECT_API_URL": prefect_api,
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "UPKEEP_DATA_DIR": str(data_dir),
            "UPKEEP_SSH_KEY_FILE": str(client_key.private),
            "UPKEEP_APPROVAL_POLL_SECONDS": "1",
            "UPKEEP_SMTP_HOST": smtp_server.host,
            "UPKEEP_SMTP_PORT": str(smtp_server.port),
            "UPKEEP_SMTP_TLS": "none",
            "UPKEEP_APPROVALS_PORT": str(free_loopback_port()),
        }
    )
    return env


def run_state(run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(run_id).state


def test_served_inspection_suspends_survives_its_process_and_completes(
    prefect_server: str,
    engine: sa.Engine,
    load_inventory,
    sshd,
    data_dir: Path,
    client_key,
    smtp_server,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from tests.flow_fixtures import wait_for_code
    from tests.inspection_helpers import answer, pending
    from tests.polling import wait_until

    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    served = Served(
        serve_env(prefect_server, data_dir, client_key, smtp_server), data_dir / "serve.log"
    )
    served.start()
    try:

        def deployed() -> bool:
            with get_client(sync_client=True) as c:
                names = {d.name for d in c.read_deployments()}
            return "acme" in names

        wait_until("the deployments to be served", deployed, timeout=60)
        run = run_deployment("inspection/acme", timeout=0)
        gate = pending(engine, "inspection-plan", after=0)
        code = wait_for_code(smtp_server, "paul@provider.example")
        wait_until(
            "the run to suspend",
            lambda: (st := run_state(run.id)) is not None and st.name == "Suspended",
        )
        served.kill()  # nothing waits in a process while the run is suspended
        answer(gate, decision="approve", approver="Paul Lead", code=code, comment="from the UI")
        served.start()

        wait_until("the served run to finish", lambda: run_state(run.id).is_final(), timeout=120)
        state = run_state(run.id)
        assert state.is_completed(), (data_dir / "serve.log").read_text()
        with Session(engine) as s:
            from upkeep.models import ApprovalCode, ApprovalEvent

            kinds = [
                e.kind
                for e in s.exec(
                    select(ApprovalEvent)
                    .where(ApprovalEvent.approval_id == gate.id)
                    .order_by(col(ApprovalEvent.id))
                )
            ]
            assert kinds == ["opened", "notified", "notified", "waiting", "approved", "decided"]
            assert len(s.exec(select(ApprovalCode)).all()) == 2  # no second round of codes
        mails = smtp_server.handler.wait_for(3, timeout=30)  # 2 codes, then the report
        assert len(mails) == 3
    finally:
        served.stop()


def test_gate_survives_a_server_restart_and_pre_gate_work_runs_once(
    tmp_path: Path, engine: sa.Engine, load_inventory, data_dir: Path, client_key, smtp_server
) -> None:
    """A suspended run outlives a restart of the Prefect server; on resume the flow re-runs
    from the top, and the pre-check logins made before the gate are not made again."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.flow_fixtures import wait_for_code
    from tests.inspection_helpers import answer, pending
    from tests.polling import wait_until
    from upkeep.demo.prefect_server import LocalPrefectServer
    from upkeep.demo.sshd import ThrowawaySshd

    home = tmp_path / "prefect"
    sshd = ThrowawaySshd(client_key=client_key, log_level="INFO").start()
    server = LocalPrefectServer(home).start()
    served = Served(
        serve_env(server.api_url, data_dir, client_key, smtp_server), data_dir / "serve.log"
    )
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            load_inventory([host_entry("web1", sshd)], trust=[sshd])
            served.start()

            def deployed() -> bool:
                with get_client(sync_client=True) as c:
                    return "acme" in {d.name for d in c.read_deployments()}

            wait_until("the deployments to be served", deployed, timeout=90)
            run = run_deployment("inspection/acme", timeout=0)
            gate = pending(engine, "inspection-plan")
            code = wait_for_code(smtp_server, "paul@provider.example")
            wait_until(
                "the run to suspend",
                lambda: (st := run_state(run.id)) is not None and st.name == "Suspended",
            )
            assert sshd.logins() == 1  # the pre-check, before the gate
            server.stop()
            server = LocalPrefectServer(home, port=server.port).start()
            answer(gate, decision="approve", approver="Paul Lead", code=code)
            wait_until("the run to finish", lambda: run_state(run.id).is_final(), timeout=180)
            assert run_state(run.id).is_completed(), (data_dir / "serve.log").read_text()
        assert sshd.logins() == 2  # the pre-check once, then the sweep
    finally:
        served.stop()
        server.stop()
        sshd.stop()
