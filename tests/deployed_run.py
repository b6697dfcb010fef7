"""A deployment's run executed the way ``upkeep serve``'s runner executes it: each execution a
fresh ``python -m prefect.engine`` process, every answer through the REST resume call the
Prefect UI's form makes (a plain module: the replay tests import it)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 180.0


class DeployedRun:
    """One run of a deployment of ``flow``, executed process by process like a runner."""

    def __init__(
        self,
        api: str,
        env: dict[str, str],
        log: Path,
        flow: Any,
        parameters: dict[str, Any],
        run_id: UUID | None = None,
    ) -> None:
        self.api, self.env, self.log = api.rstrip("/"), env, log
        if run_id is not None:  # a run the server already holds (e.g. one upkeep scheduled)
            self.id: UUID = run_id
            return
        name = f"replay-{uuid.uuid4().hex[:8]}"
        flow.to_deployment(name=name, parameters=parameters).apply()
        from prefect.deployments import run_deployment

        self.id = run_deployment(f"{flow.name}/{name}", timeout=0).id

    def execute(self) -> Any:
        """Run the flow run in a fresh process until it suspends or ends; its state."""
        with self.log.open("a") as out:
            proc = subprocess.run(
                [sys.executable, "-m", "prefect.engine"],
                env={**self.env, "PREFECT__FLOW_RUN_ID": str(self.id)},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT,
                check=False,
            )
        assert proc.returncode == 0 or self.state().is_final(), self.log.read_text()[-4000:]
        return self.state()

    def start(self) -> subprocess.Popen[bytes]:
        """Run the flow run in a fresh process in the background (to kill it mid-run)."""
        out = self.log.open("a")
        return subprocess.Popen(
            [sys.executable, "-m", "prefect.engine"],
            env={**self.env, "PREFECT__FLOW_RUN_ID": str(self.id)},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def state(self) -> Any:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return client.read_flow_run(self.id).state

    def suspended(self) -> bool:
        state = self.state()
        return state is not None and state.name == "Suspended"

    def resume(self, **run_input: Any) -> httpx.Response:
        """The UI's resume form: POST /flow_runs/{id}/resume with the typed answer.

        A 503 (the test server's SQLite busy under load) is sent again, as a person would."""

        def post() -> httpx.Response | None:
            response = httpx.post(
                f"{self.api}/flow_runs/{self.id}/resume", json={"run_input": run_input}, timeout=30
            )
            return None if response.status_code == 503 else response

        return wait_until("the resume call to get an answer", post, timeout=60)

    def answer(self, **run_input: Any) -> Any:
        """Resume through the REST endpoint (accepted), then execute the re-run; its state."""
        response = self.resume(**run_input)
        assert response.status_code in (200, 201), response.text
        assert response.json()["status"] == "ACCEPT", response.text
        return self.execute()

    def plant(self, value: str) -> httpx.Response:
        """Store ``value`` under the open form's response key without resuming the run
        (``POST /flow_runs/{id}/input``, as anyone with API access can)."""
        keyset = self.state().state_details.run_input_keyset
        return httpx.post(
            f"{self.api}/flow_runs/{self.id}/input",
            json={"key": keyset["response"], "value": value},
            timeout=30,
        )

    def force_state(self, state: Any) -> None:
        """Set the run's state as the UI or a lost worker would, whatever it was."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(self.id, state, force=True)

    def cancel_if_running(self) -> None:
        from prefect.states import Cancelled

        state = self.state()
        if state is not None and not state.is_final():
            self.force_state(Cancelled(message="test teardown"))


def retry(run: DeployedRun) -> Any:
    """The UI's Retry button: the run goes back to Scheduled (AwaitingRetry), then runs."""
    response = httpx.post(
        f"{run.api}/flow_runs/{run.id}/set_state",
        json={"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": False},
        timeout=30,
    )
    assert response.json()["status"] == "ACCEPT", response.text
    return run.execute()


@pytest.fixture
def deploy(
    prefect_server: str, flow_env: Any, data_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., DeployedRun]]:
    """``deploy(flow, parameters)``: a new run of a new deployment of ``flow`` on the session's
    Prefect server, not yet executed (``deploy(None, {}, run_id)``: that existing run); runs
    left unfinished are cancelled afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_API_URL": prefect_server, "PREFECT_HOME": str(tmp_path / "prefect")})
    runs: list[DeployedRun] = []

    def make(flow: Any, parameters: dict[str, Any], run_id: UUID | None = None) -> DeployedRun:
        log = data_dir.parent / "engine.log"
        run = DeployedRun(prefect_server, env, log, flow, parameters, run_id)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.cancel_if_running()
