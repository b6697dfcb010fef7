"""upkeep as it runs in production, for the production-path tests.

``prefect server start`` (a real server process with its own scheduler), ``upkeep inventory
load``, ``upkeep hosts trust`` and ``upkeep serve`` started as the README says, a real SMTP
server, and the Prefect REST API the UI uses: create a run from a deployment, watch its state,
and resume a paused run with typed input (``POST /flow_runs/{id}/resume``, exactly the call the
UI's resume form makes).
"""

from __future__ import annotations

import email
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.polling import wait_until
from upkeep.demo import LINK_RE

UPKEEP = str(Path(sys.executable).with_name("upkeep"))
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
CODE = re.compile(r"\b[0-9A-Z]{5}-[0-9A-Z]{5}\b")


class _PressAgain(httpx.BaseTransport):
    """The Prefect server on SQLite answers 503 when two writes race ("database is locked");
    a person in the UI would press again, and so does this, for at most 30 s."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + 30
        while True:
            response = self.inner.handle_request(request)
            if response.status_code != 503 or time.monotonic() > deadline:
                return response
            response.read()
            response.close()
            time.sleep(0.2)


class Api:
    """The Prefect REST API, called the way the UI calls it."""

    def __init__(self, api_url: str) -> None:
        self.url = api_url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=30, transport=_PressAgain())

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        r = self.http.get(f"/deployments/name/{flow}/{name}")
        r.raise_for_status()
        return dict(r.json())

    def deployments(self, tag: str) -> list[dict[str, Any]]:
        body = {"deployments": {"tags": {"all_": [tag]}}}
        r = self.http.post("/deployments/filter", json=body)
        r.raise_for_status()
        return list(r.json())

    def delete_deployment(self, deployment_id: str) -> None:
        self.http.delete(f"/deployments/{deployment_id}")

    def start(self, flow: str, name: str, parameters: dict[str, Any] | None = None) -> str:
        """A run of the deployment, as the UI's *Run* button creates it; returns its id."""
        dep = self.deployment(flow, name)
        body: dict[str, Any] = {}
        if parameters is not None:
            body["parameters"] = parameters
        r = self.http.post(f"/deployments/{dep['id']}/create_flow_run", json=body)
        r.raise_for_status()
        return str(r.json()["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.http.get(f"/flow_runs/{run_id}")
        r.raise_for_status()
        return dict(r.json())

    def runs_of(self, deployment_id: str) -> list[dict[str, Any]]:
        body = {
            "flow_runs": {"deployment_id": {"any_": [deployment_id]}},
            "sort": "START_TIME_DESC",
        }
        r = self.http.post("/flow_runs/filter", json=body)
        r.raise_for_status()
        return list(r.json())

    def state(self, run_id: str) -> tuple[str, str]:
        """(state type, state name) of the run."""
        s = self.run(run_id)["state"] or {}
        return str(s.get("type")), str(s.get("name"))

    def wait_state(self, run_id: str, *types: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the run's state type is one of ``types``; fail early on another terminal
        state. Returns the run."""

        def reached() -> dict[str, Any] | None:
            try:
                run = self.run(run_id)
            except httpx.TimeoutException:
                # The server on SQLite can stall a read for longer than the client waits
                # while the runs write; like the UI, look again (the wait stays bounded).
                return None
            kind = (run["state"] or {}).get("type")
            if kind in types:
                return run
            if kind in TERMINAL:
                raise AssertionError(
                    f"run {run_id} ended {kind} ({run['state'].get('message')}) "
                    f"while waiting for {'/'.join(types)}"
                )
            return None

        return dict(wait_until(f"run {run_id} to be {'/'.join(types)}", reached, timeout))

    def wait_paused(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        return self.wait_state(run_id, "PAUSED", timeout=timeout)

    def resume(self, run_id: str, run_input: dict[str, Any]) -> dict[str, Any]:
        """The UI's resume call with the form's values. Returns Prefect's orchestration
        result (``status`` ACCEPT, REJECT or ABORT, with ``details``)."""
        r = self.http.post(f"/flow_runs/{run_id}/resume", json={"run_input": run_input})
        r.raise_for_status()
        return dict(r.json())

    def answer(
        self, run_id: str, run_input: dict[str, Any], timeout: float = 120
    ) -> dict[str, Any]:
        """Resume as a person does once the form is up: wait until the run is paused, then
        send the form. Prefect marks a run paused a moment before it saves the form's schema,
        and an answer in between is refused with "Run input schema not found": sent again,
        as a person would. Returns Prefect's orchestration result."""
        self.wait_paused(run_id, timeout=timeout)

        def sent() -> dict[str, Any] | None:
            result = self.resume(run_id, run_input)
            reason = str((result.get("details") or {}).get("reason") or "")
            return None if "schema not found" in reason else result

        return dict(wait_until(f"the form of run {run_id} to take the answer", sent, 30))

    def input_keys(self, run_id: str) -> list[str]:
        r = self.http.post(f"/flow_runs/{run_id}/input/filter", json={"prefix": "", "limit": 100})
        r.raise_for_status()
        return [str(i["key"]) for i in r.json()]


@dataclass
class Mailbox:
    """The .eml files the mail sink saved."""

    directory: Path

    def messages(self) -> list[EmailMessage]:
        out = []
        for path in sorted(self.directory.glob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if address in str(m["To"])]

    def codes_for(self, address: str) -> list[str]:
        """Every one-time code mailed to ``address``, oldest first."""
        codes = []
        for msg in self.to(address):
            body = msg.get_body(preferencelist=("plain",))
            codes += CODE.findall(body.get_content() if body else "")
        return codes

    def links_for(self, address: str) -> list[str]:
        """Every approval-page link mailed to ``address``, oldest first (one per mail)."""
        links = []
        for msg in self.to(address):
            body = msg.get_body(preferencelist=("plain",))
            links += LINK_RE.findall(body.get_content() if body else "")[:1]
        return links

    def wait_link(self, address: str, count: int = 1, timeout: float = 120) -> str:
        """The newest link once ``address`` has been mailed ``count`` links."""
        links = wait_until(
            f"{count} link(s) mailed to {address}",
            lambda: c if len(c := self.links_for(address)) >= count else None,
            timeout,
        )
        return str(links[-1])

    def wait_code(self, address: str, count: int = 1, timeout: float = 60) -> str:
        """The newest code once ``address`` has been mailed ``count`` codes."""
        codes = wait_until(
            f"{count} code(s) mailed to {address}",
            lambda: c if len(c := self.codes_for(address)) >= count else None,
            timeout,
        )
        return str(codes[-1])


@dataclass
class Served:
    """One ``upkeep serve`` process with its own data directory, against the shared server."""

    api: Api
    env: dict[str, str]
    workdir: Path
    mailbox: Mailbox
    contract: str
    proc: subprocess.Popen[bytes] | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def page_url(self) -> str:
        """Where this instance's approval page listens (``upkeep serve`` starts it)."""
        return f"http://127.0.0.1:{self.env['UPKEEP_APPROVALS_PORT']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "serve.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def upkeep(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run an ``upkeep`` command with this deployment's environment."""
        return subprocess.run(
            [UPKEEP, *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def serve(self, ready_timeout: float = 120) -> Served:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [UPKEEP, "serve"],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        name = self.contract.lower()
        wait_until(
            f"upkeep serve to register inspection/{name} and to listen for runs",
            lambda: self._registered(name) and "serving" in self.log(),
            ready_timeout,
        )
        return self

    def flow_processes(self) -> list[int]:
        """The flow run processes (``python -m prefect.engine``) descending from this
        ``upkeep serve`` that are still alive."""
        if self.proc is None:
            return []
        parent: dict[int, int] = {}
        cmdlines: dict[int, list[bytes]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # gone meanwhile
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])

        def descends(pid: int) -> bool:
            while pid > 1:
                pid = parent.get(pid, 0)
                if pid == self.proc.pid:  # type: ignore[union-attr]
                    return True
            return False

        return [pid for pid, cmd in cmdlines.items() if b"prefect.engine" in cmd and descends(pid)]

    def wait_idle(self, timeout: float = 120) -> None:
        """Until no flow run process of this serve is alive: a run that just suspended at its
        gate has finished exiting (stopping the service before that crashes the run)."""
        wait_until(
            "upkeep serve's flow run processes to exit", lambda: not self.flow_processes(), timeout
        )

    def _registered(self, name: str) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"upkeep serve exited {self.proc.returncode}:\n{self.log()}")
        try:
            self.api.deployment("inspection", name)
        except httpx.HTTPStatusError:
            return False
        return True

    def stop(self) -> None:
        """Stop serving (SIGTERM, as a service manager would) and remove this contract's
        deployments from the shared server so its scheduler stops creating their runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        try:
            for dep in self.api.deployments(f"contract:{self.contract}"):
                self.api.delete_deployment(dep["id"])
        except httpx.TransportError:
            pass  # that server is gone already, and its deployments with it


def inventory(
    contract: str,
    hosts: list[dict[str, Any]],
    *,
    approvers: list[dict[str, str]] | None = None,
    **contract_fields: Any,
) -> str:
    """An inventory with one customer and one contract named ``contract``."""
    c: dict[str, Any] = {
        "code": contract,
        "name": f"{contract} operations",
        "timezone": "Europe/Berlin",
        "approvers": approvers or [{"name": "Alice Owner", "email": "alice@customer.example"}],
        "backup_approver": {"name": "Bob Backup", "email": "bob@provider.example"},
        "report_recipients": ["it@customer.example"],
        "hosts": hosts,
    }
    c.update(contract_fields)
    doc = {"customers": [{"code": contract.lower(), "name": f"{contract} GmbH", "contracts": [c]}]}
    return yaml.safe_dump(doc, sort_keys=False)


ServeUpkeep = Callable[..., Served]
"""The ``serve_upkeep`` fixture: ``serve_upkeep(contract, **contract_fields) -> Served``."""
