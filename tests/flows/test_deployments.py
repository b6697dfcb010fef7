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

from deployments import build_deployments
from tests.flow_fixtures import host_entry
from upkeep.inventory import apply_inventory, load_inventory_file

pytestmark = pytest.mark.flows

GOOD = Path(__file__).parent.parent / "fixtures" / "inventory" / "good.yaml"


def test_every_flow_imports_and_every_deployment_builds(engine: sa.Engine) -> None:
    import flows.approvals
    import flows.inspection
    import flows.sweep  # noqa: F401

    with Session(engine) as s:
        apply_inventory(s, load_inventory_file(GOOD))
        s.commit()
        deps = build_deployments(s)
    names = sorted(f"{d.flow_name}/{d.name}" for d in deps)
    assert names == [
        "approval-watchdog/upkeep",
        "quarterly-health-inspection/acme-ops",
        "quarterly-health-inspection/globex",
        "recheck-findings/acme-ops",
        "recheck-findings/globex",
    ]
    watchdog = next(d for d in deps if d.flow_name == "approval-watchdog")
    assert watchdog.schedules and watchdog.schedules[0].schedule.interval.total_seconds() == 300
    for d in deps:
        if d is watchdog:
            continue
        params = d.parameters["params"]
        assert params["email_report"] is True  # deployments switch e-mail on
        assert params["contract"] in {"ACME-OPS", "GLOBEX"}
        assert "params" in d._parameter_openapi_schema.properties


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
    from tests.flows.test_inspection import answer, pending, wait_until

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
        run = run_deployment("quarterly-health-inspection/acme", timeout=0)
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
            from models import ApprovalCode, ApprovalEvent

            kinds = [
                e.kind
                for e in s.exec(
                    select(ApprovalEvent)
                    .where(ApprovalEvent.approval_id == gate.id)
                    .order_by(col(ApprovalEvent.id))
                )
            ]
            assert kinds == ["opened", "notified", "notified", "approved", "decided"]
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
    from tests.flows.test_inspection import answer, pending, wait_until
    from upkeep.prefect_server import LocalPrefectServer
    from upkeep.sshd import ThrowawaySshd

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
            run = run_deployment("quarterly-health-inspection/acme", timeout=0)
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
