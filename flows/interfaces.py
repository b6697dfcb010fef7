"""The interface monitor and its daily status (PROCESSES.md, section 4: after a release broke
the interface a customer's group depended on, the provider watched it and sent a daily message
that it was working).

``interface-monitor`` runs on the contract's ``interface_monitor`` cadence: it probes every
system's smoke checks (HTTP endpoints from upkeep: expected status, body text, latency bound;
commands over SSH on each of the system's active hosts: expected exit status and output),
records each probe, opens a finding when a check fails (one finding however long it fails, one
per host for a command check), resolves it when the check passes again, and mails the
recipients when an interface goes down or comes back. ``interface-status`` (on
``interface_status``, by default daily at 08:00 for a contract that monitors) mails the
figures of the last 24 hours, computed from the records: availability, response times,
outages. Neither is held by blackouts: they only read.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed, State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.db import open_session
from upkeep.domain.contract import ContractView
from upkeep.domain.interfaces import MONITOR_RUN_KIND, STATUS_RUN_KIND
from upkeep.flows.starting import start_or_refuse
from upkeep.models import RunStatus
from upkeep.tasks.guards import refuse_if_running
from upkeep.tasks.interfaces import (
    CheckFigures,
    CheckResult,
    contract_view,
    headline_of,
    mail_interface_alert,
    mail_interface_status,
    probe_system,
    publish_results,
    status_figures,
    systems_to_probe,
)
from upkeep.tasks.records import finish_run, get_contract, start_run
from upkeep.tasks.runs import current_flow_run_id, run_namer

__all__ = [
    "MonitorOutcome",
    "MonitorParams",
    "StatusOutcome",
    "StatusParams",
    "interface_monitor",
    "interface_status",
]


class MonitorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    systems: list[str] = Field(
        default_factory=list, description="Only these systems (default: every one with checks)"
    )
    email_alerts: bool = Field(True, description="Mail when an interface goes down or comes back")
    requested_by: str | None = None


class MonitorOutcome(BaseModel):
    run_id: int
    results: list[CheckResult]

    @property
    def failing(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]


class StatusParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    hours: float = Field(24, gt=0, le=24 * 31, description="The window the figures cover")
    email_report: bool = Field(True, description="Mail the status to the contract's recipients")
    requested_by: str | None = None


class StatusOutcome(BaseModel):
    run_id: int
    headline: str
    rows: list[CheckFigures]


def _start(contract_code: str, kind: str, requested_by: str | None) -> int:
    with open_session() as db:
        contract = get_contract(session=db, code=contract_code)
        run = start_run(
            session=db,
            contract=contract,
            kind=kind,
            flow_run_id=current_flow_run_id(),
            requested_by=requested_by,
        )
        assert run.id is not None
        return run.id


def _finish(run_id: int, status: RunStatus) -> None:
    with open_session() as db:
        finish_run(session=db, run_id=run_id, status=status)


@flow(name="interface-monitor", flow_run_name=run_namer("interface monitor"))
def interface_monitor(params: MonitorParams) -> MonitorOutcome | State[Any]:
    """Probe the contract's smoke checks; record, raise or resolve findings; tell on change."""
    logger = get_run_logger()

    def check() -> tuple[ContractView, list[str]]:
        view = contract_view(params.contract)
        systems = systems_to_probe(view, params.systems)
        refuse_if_running("interface-monitor", view.code, view.id, current_flow_run_id())
        return view, systems

    started = start_or_refuse(check)
    if isinstance(started, State):
        return started
    view, systems = started
    run_id = _start(view.code, MONITOR_RUN_KIND, params.requested_by)
    futures = [probe_system.submit(view.code, name, run_id) for name in systems]
    results: list[CheckResult] = []
    status = RunStatus.COMPLETED
    for future, name in zip(futures, systems, strict=True):
        future.wait()
        if future.state.is_completed():
            results += future.result()
        else:  # the probing itself broke (not a failing interface): say so, keep the rest
            status = RunStatus.FAILED
            logger.error("probing %s broke: %s", name, future.state.message)
    _finish(run_id, status)
    publish_results(view.code, results)
    for r in results:
        if not r.ok:
            logger.warning("%s FAILED: %s", r.interface, r.reason)
    if params.email_alerts and any(r.change in ("down", "up") for r in results):
        mail_interface_alert(view.code, results)
    outcome = MonitorOutcome(run_id=run_id, results=results)
    if status is RunStatus.FAILED:
        return Failed(message="probing a system broke; see the log", data=outcome)
    return outcome


@flow(name="interface-status", flow_run_name=run_namer("interface status"))
def interface_status(params: StatusParams) -> StatusOutcome | State[Any]:
    """The figures of the last ``hours`` from the probe records, mailed to the customer."""

    def check() -> ContractView:
        view = contract_view(params.contract)
        systems_to_probe(view, [])
        return view

    view = start_or_refuse(check)
    if isinstance(view, State):
        return view
    run_id = _start(view.code, STATUS_RUN_KIND, params.requested_by)
    _, rows = status_figures(view.code, params.hours)
    headline = (
        mail_interface_status(view.code, params.hours, rows)
        if params.email_report
        else headline_of(view.code, rows)
    )
    _finish(run_id, RunStatus.COMPLETED)
    return StatusOutcome(run_id=run_id, headline=headline, rows=rows)
