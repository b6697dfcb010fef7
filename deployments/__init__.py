"""Deployments from the inventory: one per active contract and process, on its cadence.

Each contract's cadences (``deployments.cadence``) become Prefect schedules in the contract's
timezone; every deployment carries the contract code as its parameter and switches e-mail on.
The inspection and re-check are deployed for every contract (the UI can start them at any
time); the service report and the annual plan on their cadence (the annual plan defaults to
the first Monday of January). The approval watchdog runs on an interval.

Two ways to run them, both Prefect's own: ``upkeep serve`` serves them all in one process;
``upkeep deploy --pool P`` registers them with a work pool for ``prefect worker start`` on
several machines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from models import Contract
from tasks.markup import md_escape

ANNUAL_PLAN_DEFAULT = "yearly, January, first Monday, 09:00"
NO_FLOW_YET = ("patch_advisory",)
"""Processes contracts may already schedule; their flows come with later work."""


@dataclass(frozen=True)
class DeploymentSpec:
    """What one deployment is, before Prefect objects are built. Pure data, easy to test."""

    process: str
    flow: str
    """``module:function`` of the flow."""
    name: str
    contract: str
    timezone: str
    parameters: dict[str, Any]
    cadence: Any = None
    """As written in the inventory; None: started by hand only."""
    tags: list[str] = field(default_factory=list)
    description: str = ""


FLOWS = {
    "inspection": "flows.inspection:quarterly_health_inspection",
    "recheck": "flows.inspection:recheck_findings",
    "service_report": "flows.service_report:service_report",
    "annual_plan": "flows.annual_plan:send_annual_plan",
    "backup_verification": "flows.backup_verification:backup_verification",
    "drill": "flows.backup_verification:backup_verification",
}
TITLES = {
    "inspection": "Health inspection",
    "recheck": "Re-check of open findings",
    "service_report": "Service report",
    "annual_plan": "Annual service plan",
    "backup_verification": "Backup-restore verification",
    "drill": "Disaster-recovery drill",
    "patch_advisory": "Patch advisory",
}


def deployment_name(contract_code: str) -> str:
    return contract_code.lower()


def report_period(cadence: Any) -> str:
    """The period a service report covers, from how often it runs."""
    text = str(cadence).lower()
    if text.startswith(("quarterly",)) or "bymonth=1,4,7,10" in text:
        return "quarter"
    if text.startswith(("yearly", "annually")) or "freq=yearly" in text:
        return "year"
    return "month"


def specs_for(contract: Contract) -> list[DeploymentSpec]:
    """The deployments one active contract needs."""
    cadences = dict(contract.cadences or {})
    cadences.setdefault("annual_plan", ANNUAL_PLAN_DEFAULT)
    out = []
    has_backups = bool(contract.backup_sources)
    for process in (
        "inspection",
        "recheck",
        "service_report",
        "annual_plan",
        "backup_verification",
        "drill",
    ):
        cadence = cadences.get(process)
        if cadence is None and process == "service_report":
            continue
        if process in ("backup_verification", "drill") and not has_backups:
            continue
        params: dict[str, Any] = {"contract": contract.code, "requested_by": "schedule"}
        if process != "annual_plan":
            params["email_report"] = True
        if process == "service_report":
            params["period"] = report_period(cadence)
        if process == "drill":
            params["drill"] = True
        out.append(
            DeploymentSpec(
                process=process,
                flow=FLOWS[process],
                name=deployment_name(contract.code) + ("-drill" if process == "drill" else ""),
                contract=contract.code,
                timezone=contract.timezone,
                parameters={"params": params},
                cadence=cadence,
                tags=["upkeep", f"contract:{contract.code}", f"process:{process}"],
                # The UI renders a deployment's description as Markdown.
                description=f"{TITLES[process]} of {md_escape(contract.name)}"
                + (f" ({md_escape(cadence)})" if isinstance(cadence, str) else ""),
            )
        )
    return out


def unsupported(contract: Contract) -> list[str]:
    """Cadences upkeep will not schedule (said, not silently dropped): processes without a
    flow yet, and backup cadences of a contract that lists no backup sources."""
    backup_only = () if contract.backup_sources else ("backup_verification", "drill")
    return [p for p in (contract.cadences or {}) if p in NO_FLOW_YET or p in backup_only]


def active_contracts(session: Session) -> list[Contract]:
    return list(
        session.exec(
            select(Contract).where(Contract.active == True).order_by(Contract.code)  # noqa: E712
        )
    )


def all_specs(contracts: Iterable[Contract]) -> list[DeploymentSpec]:
    return [spec for c in contracts for spec in specs_for(c)]


def load_flow(ref: str) -> Any:
    import importlib

    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def to_runner_deployment(spec: DeploymentSpec) -> Any:
    from deployments.cadence import parse_cadence, to_prefect_schedule

    schedules = None
    if spec.cadence is not None:
        schedules = [to_prefect_schedule(parse_cadence(spec.cadence), spec.timezone)]
    return load_flow(spec.flow).to_deployment(
        name=spec.name,
        parameters=spec.parameters,
        schedules=schedules,
        tags=spec.tags,
        description=spec.description,
    )


def watchdog_deployment() -> Any:
    from flows.watchdog import approval_watchdog
    from upkeep.settings import get_settings

    return approval_watchdog.to_deployment(
        name="upkeep",
        interval=get_settings().watchdog_minutes * 60,
        tags=["upkeep"],
        description="Escalates and expires approval gates that wait too long",
    )


def build_deployments(session: Session) -> list[Any]:
    """Every active contract's deployments, plus the approval watchdog."""
    deps = [to_runner_deployment(spec) for spec in all_specs(active_contracts(session))]
    deps.append(watchdog_deployment())
    return deps


def serve_all(deps: list[Any]) -> None:
    from prefect import serve

    serve(*deps)


@dataclass
class DeployReport:
    deployed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, list[str]] = field(default_factory=dict)


def pause_gone(active_codes: set[str]) -> list[str]:
    """Pause upkeep's deployments whose contract is no longer active (history is kept)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    paused = []
    with get_client(sync_client=True) as client:
        deps = client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["upkeep"]))
        )
        for d in deps:
            codes = [t.split(":", 1)[1] for t in d.tags if t.startswith("contract:")]
            if codes and codes[0] not in active_codes and not d.paused:
                client.pause_deployment(d.id)
                paused.append(f"{d.name} ({codes[0]})")
    return paused


def ensure_process_pool(name: str) -> bool:
    """Create a ``process`` work pool called ``name`` unless it exists; True if created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True


def deploy_to_pool(session: Session, pool: str, contract_limit: int | None) -> DeployReport:
    """Register every deployment with work pool ``pool`` (idempotent: updates by name),
    pause those of contracts that are gone, and cap each contract's concurrent host tasks."""
    from prefect.client.orchestration import get_client

    contracts = active_contracts(session)
    report = DeployReport()
    for spec in all_specs(contracts):
        to_runner_deployment(spec).apply(work_pool_name=pool)
        report.deployed.append(f"{load_flow(spec.flow).name}/{spec.name}")
    watchdog_deployment().apply(work_pool_name=pool)
    report.deployed.append("approval-watchdog/upkeep")
    report.paused = pause_gone({c.code for c in contracts})
    report.unsupported = {c.code: unsupported(c) for c in contracts if unsupported(c)}
    if contract_limit:
        with get_client(sync_client=True) as client:
            for c in contracts:
                client.create_concurrency_limit(
                    tag=f"contract:{c.code}", concurrency_limit=contract_limit
                )
                report.limits[c.code] = contract_limit
    return report
