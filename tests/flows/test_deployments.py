"""Every deployment builds; served deployments run from the API as the UI starts them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

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
        "quarterly-health-inspection/acme-ops",
        "quarterly-health-inspection/globex",
        "recheck-findings/acme-ops",
        "recheck-findings/globex",
    ]
    for d in deps:
        params = d.parameters["params"]
        assert params["email_report"] is True  # deployments switch e-mail on
        assert params["contract"] in {"ACME-OPS", "GLOBEX"}
        assert "params" in d._parameter_openapi_schema.properties


def test_served_inspection_runs_from_the_api_and_is_approved(
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

    from tests.flows.test_inspection import answer, pending, wait_until

    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPKEEP_")}
    env.update(
        {
            "PREFECT_API_URL": prefect_server,
            "UPKEEP_DATA_DIR": str(data_dir),
            "UPKEEP_SSH_KEY_FILE": str(client_key.private),
            "UPKEEP_APPROVAL_POLL_SECONDS": "1",
            "UPKEEP_SMTP_HOST": smtp_server.host,
            "UPKEEP_SMTP_PORT": str(smtp_server.port),
            "UPKEEP_SMTP_TLS": "none",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }
    )
    log = (data_dir / "serve.log").open("w")
    serve = subprocess.Popen(
        [sys.executable, "-m", "upkeep.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:

        def deployed() -> bool:
            with get_client(sync_client=True) as c:
                names = {d.name for d in c.read_deployments()}
            return "acme" in names

        wait_until("the deployments to be served", deployed, timeout=60)
        run = run_deployment("quarterly-health-inspection/acme", timeout=0)
        gate = pending(engine, "inspection-plan", after=0)
        answer(gate, decision="approve", approver="Paul Lead", comment="from the UI")

        def finished() -> bool:
            with get_client(sync_client=True) as c:
                state = c.read_flow_run(UUID(str(run.id))).state
            return bool(state and state.is_final())

        wait_until("the served run to finish", finished, timeout=120)
        with get_client(sync_client=True) as c:
            state = c.read_flow_run(UUID(str(run.id))).state
        assert state is not None and state.is_completed(), (data_dir / "serve.log").read_text()
        smtp_server.handler.wait_for(1, timeout=30)  # deployments e-mail the report
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        log.close()
