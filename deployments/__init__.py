"""Deployments from the inventory: one per active contract and process, on its cadence.

Each contract's cadences (``upkeep.domain.cadence``) become Prefect schedules in the contract's
timezone; every deployment carries the contract code as its parameter and switches e-mail on.
The inspection and re-check are deployed for every contract (the UI can start them at any
time); the service report and the annual plan on their cadence (the annual plan defaults to
the first Monday of January). The approval watchdog runs on an interval.

Two ways to run them, both Prefect's own: ``upkeep serve`` serves them all in one process;
``upkeep deploy --pool P`` registers them with a work pool for ``prefect worker start`` on
several machines.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
from prefect.exceptions import ObjectNotFound
from prefect.types.entrypoint import EntrypointType
from sqlmodel import Session, select

from upkeep.domain.cadence import parse_cadence, to_prefect_schedule
from upkeep.domain.contract import ContractView
from upkeep.domain.processes import DeploymentSpec, specs_for, unsupported
from upkeep.flows.watchdog import approval_watchdog
from upkeep.models import Contract
from upkeep.settings import get_settings


def active_contracts(session: Session) -> list[Contract]:
    return list(
        session.exec(
            select(Contract).where(Contract.active == True).order_by(Contract.code)  # noqa: E712
        )
    )


def all_specs(contracts: Iterable[Contract]) -> list[DeploymentSpec]:
    return [spec for c in contracts for spec in specs_for(ContractView.of(c))]


def load_flow(ref: str) -> Any:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def to_runner_deployment(spec: DeploymentSpec) -> Any:
    schedules = None
    if spec.cadence is not None:
        schedules = [to_prefect_schedule(parse_cadence(spec.cadence), spec.timezone)]
    return load_flow(spec.flow).to_deployment(
        name=spec.name,
        # "upkeep.flows.inspection.quarterly_health_inspection", not a file path: a worker
        # with upkeep installed from the wheel has no flows/ directory to load a file from.
        entrypoint_type=EntrypointType.MODULE_PATH,
        parameters=spec.parameters,
        schedules=schedules,
        tags=spec.tags,
        description=spec.description,
    )


def watchdog_deployment() -> Any:
    return approval_watchdog.to_deployment(
        name="upkeep",
        entrypoint_type=EntrypointType.MODULE_PATH,
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
    serve(*deps)


@dataclass
class DeployReport:
    deployed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, list[str]] = field(default_factory=dict)


def pause_gone(active_codes: set[str]) -> list[str]:
    """Pause upkeep's deployments whose contract is no longer active (history is kept)."""
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
    contracts = active_contracts(session)
    report = DeployReport()
    for spec in all_specs(contracts):
        to_runner_deployment(spec).apply(work_pool_name=pool)
        report.deployed.append(f"{load_flow(spec.flow).name}/{spec.name}")
    watchdog_deployment().apply(work_pool_name=pool)
    report.deployed.append("approval-watchdog/upkeep")
    report.paused = pause_gone({c.code for c in contracts})
    not_scheduled = {c.code: unsupported(ContractView.of(c)) for c in contracts}
    report.unsupported = {code: found for code, found in not_scheduled.items() if found}
    if contract_limit:
        with get_client(sync_client=True) as client:
            for c in contracts:
                client.create_concurrency_limit(
                    tag=f"contract:{c.code}", concurrency_limit=contract_limit
                )
                report.limits[c.code] = contract_limit
    return report
