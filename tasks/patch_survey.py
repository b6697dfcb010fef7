"""The patch cycle's survey and its records: fault statistics, each host's inventory over SSH,
the match against the synced advisories, the package manager's candidates, the plan.

Before the approval gate every step here is a Prefect task whose result the flow run keeps,
so a run that suspends at the gate and re-runs from the top reads the same scans and the same
plan back instead of surveying again. The decisions are :mod:`upkeep.domain.patching`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from prefect import get_run_logger, task
from pydantic import BaseModel
from sqlmodel import Session, col, select

from upkeep.db import open_session
from upkeep.domain.advisories import Family, Platform
from upkeep.domain.advisories.match import match
from upkeep.domain.advisories.packages import candidates_command, parse_candidates
from upkeep.domain.contract import ContractView
from upkeep.domain.patching import (
    PLAN_GATE,
    RESPONSIVE_GATE,
    FaultStats,
    HostPlan,
    PatchPlan,
    Stage,
    Unavailable,
    fault_statistics,
    plan_host,
    plan_updates,
)
from upkeep.models import Finding, Host, HostInventory, InspectionRun, utcnow
from upkeep.models import PatchPlan as PlanRow
from upkeep.settings import Settings, get_settings
from upkeep.tasks.advisory_store import load_store
from upkeep.tasks.guards import refuse_if_running
from upkeep.tasks.inspect import target_for
from upkeep.tasks.inventory_scan import ScanUnreadable, record_scan, scan_host, stored_packages
from upkeep.tasks.records import get_contract, get_customer, hosts_in_scope, start_run
from upkeep.tasks.runs import current_flow_run_id
from upkeep.tasks.ssh import SshError, SshSession

__all__ = [
    "Scanned",
    "build_patch_plan",
    "check_patch_alone",
    "contract_fault_statistics",
    "load_plan",
    "plan_of",
    "record_plan",
    "scan_inventory",
    "stage_of",
    "start_patch_run",
]


class Scanned(BaseModel):
    """One host's survey: the stored inventory, or why there is none."""

    host: str
    host_id: int
    inventory_id: int | None = None
    error: str | None = None
    changes: list[str] = []
    """What changed since the host's previous inventory (``^ pkg old -> new`` lines)."""


def stage_of(host: Host, staging_tag: str) -> Stage:
    return (
        "staging" if staging_tag in (host.tags or []) or host.role == staging_tag else "production"
    )


@task(name="start-patch-run")
def start_patch_run(contract_code: str, requested_by: str | None, kind: str) -> int:
    """The run's record (kind ``patch``): inventories, findings and plans hang off it."""
    with open_session() as db:
        contract = get_contract(session=db, code=contract_code)
        run = start_run(
            session=db,
            contract=contract,
            kind="patch" if kind == "preventive" else "patch-fix",
            flow_run_id=current_flow_run_id(),
            requested_by=requested_by,
        )
        assert run.id is not None
        return run.id


@task(name="fault-statistics")
def contract_fault_statistics(contract_code: str) -> FaultStats:
    """Past findings of the contract's hosts over the contract's statistics period."""
    with open_session() as db:
        contract = get_contract(session=db, code=contract_code)
        view = ContractView.of(contract)
        since = utcnow() - timedelta(days=view.patching.statistics_days)
        rows = db.exec(
            select(Finding).where(
                Finding.contract_id == view.id, col(Finding.first_seen_at) >= since
            )
        ).all()
        names = {
            h.id: h.name
            for h in db.exec(select(Host).where(Host.contract_id == view.id)).all()
            if h.id is not None
        }
        return fault_statistics(rows, names, since)


@task(name="scan-inventory", task_run_name="inventory {host_name}")
def scan_inventory(host_id: int, host_name: str) -> Scanned:
    """Read the host's packages over SSH and store them as its newest inventory. A host that
    cannot be reached or read is told, not fatal: the plan says it was not surveyed."""
    settings = get_settings()
    with open_session() as db:
        host = db.get(Host, host_id)
        if host is None:
            raise LookupError(f"no host with id {host_id}")
    try:
        scan = scan_host(host, settings)
    except (SshError, ScanUnreadable) as exc:
        kind = getattr(exc, "kind", "unreadable")
        get_run_logger().warning("%s: not surveyed (%s): %s", host_name, kind, exc)
        return Scanned(host=host_name, host_id=host_id, error=f"{kind}: {exc}")
    with open_session() as db:
        host = db.get(Host, host_id)
        assert host is not None
        record, found = record_scan(db, host, scan, current_flow_run_id())
        assert record.id is not None
        return Scanned(
            host=host_name,
            host_id=host_id,
            inventory_id=record.id,
            changes=found.lines() if found is not None else [],
        )


def ask_candidates(
    host: Host, family: Family, names: list[str], settings: Settings
) -> dict[str, str | None]:
    """The version the host's package manager would install for each name (read-only)."""
    if not names:
        return {}
    target = target_for(host, settings)
    with SshSession(target, settings.ssh, settings.known_hosts_file) as ssh:
        raw = ssh.run_checked(candidates_command(family, names))
    return parse_candidates(family, raw.stdout, names)


def _survey_host(
    db: Session,
    host: Host,
    inventory: HostInventory,
    stage: Stage,
    records: dict[str, list],  # type: ignore[type-arg]
    packages: list[str] | None,
    settings: Settings,
) -> tuple[HostPlan, list[Unavailable]]:
    assert host.id is not None
    family = cast(Family, inventory.family)
    if inventory.ecosystem not in records:
        records[inventory.ecosystem] = load_store(db, inventory.ecosystem)
    platform = Platform(inventory.ecosystem, family, inventory.os_pretty)
    installed = stored_packages(inventory)
    if packages is not None:
        installed = [p for p in installed if p.name in packages]
    found = match(installed, platform, records[inventory.ecosystem])
    if packages is not None:  # the responsive path: the suspects, with or without advisories
        names = sorted({p.name for p in installed})
        candidates = ask_candidates(host, family, names, settings)
        hosted = plan_updates(
            host.name,
            host.id,
            stage,
            inventory.ecosystem,
            family,
            installed,
            candidates,
            found,
            inventory.reboot_required,
        )
        return hosted, []
    names = sorted({m.package for m in found})
    candidates = ask_candidates(host, family, names, settings)
    return plan_host(
        host.name,
        host.id,
        stage,
        inventory.ecosystem,
        family,
        found,
        candidates,
        inventory.reboot_required,
    )


@task(name="build-patch-plan")
def build_patch_plan(
    contract_code: str,
    scanned: list[Scanned],
    statistics: FaultStats,
    kind: str = "preventive",
    symptom: str = "",
    finding_id: int | None = None,
    packages: list[str] | None = None,
) -> PatchPlan:
    """Match each surveyed host against the synced records, ask its package manager what it
    would install, and put the installable fixes into a plan (the rest is listed as
    unavailable, with the reason). ``packages``: only these binary packages (the responsive
    path's suspects)."""
    settings = get_settings()
    logger = get_run_logger()
    with open_session() as db:
        contract = get_contract(session=db, code=contract_code)
        view = ContractView.of(contract)
        customer = get_customer(session=db, contract=contract)
        records: dict[str, list] = {}  # type: ignore[type-arg]
        hosts: list[HostPlan] = []
        unavailable: list[Unavailable] = []
        not_scanned = {s.host: s.error or "not scanned" for s in scanned if s.inventory_id is None}
        for s in scanned:
            if s.inventory_id is None:
                continue
            host = db.get(Host, s.host_id)
            inventory = db.get(HostInventory, s.inventory_id)
            assert host is not None and inventory is not None
            stage = stage_of(host, view.patching.staging_tag)
            try:
                plan, missing = _survey_host(
                    db, host, inventory, stage, records, packages, settings
                )
            except (SshError, ValueError) as exc:
                logger.warning("%s: no candidates (%s)", host.name, exc)
                not_scanned[host.name] = f"candidate versions not read: {exc}"
                continue
            if not records[inventory.ecosystem]:
                not_scanned[host.name] = (
                    f"no advisory records for {inventory.ecosystem} in the store "
                    "(run upkeep advisories sync)"
                )
            hosts.append(plan)
            unavailable += missing
        logger.info(
            "plan: %d update(s) on %d host(s), %d without an installable fix",
            sum(len(h.items) for h in hosts),
            sum(1 for h in hosts if h.items),
            len(unavailable),
        )
        return PatchPlan(
            contract=view.code,
            contract_id=view.id,
            contract_name=view.name,
            customer=customer.name,
            timezone=view.timezone,
            mode=view.patching.mode,
            kind=kind,  # type: ignore[arg-type]
            created_at=datetime.now(ZoneInfo(view.timezone)),
            hosts=hosts,
            unavailable=unavailable,
            not_scanned=not_scanned,
            statistics=statistics,
            approvers=[p.model_dump() for p in view.approvers],
            backup_approver=view.backup_approver.model_dump() if view.backup_approver else None,
            policy=view.policy(RESPONSIVE_GATE if kind == "responsive" else PLAN_GATE),
            symptom=symptom,
            finding_id=finding_id,
        )


def contract_hosts(contract_code: str, only: list[str] | None = None) -> list[tuple[int, str]]:
    """(id, name) of the contract's active hosts, or of the named ones (LookupError naming
    any that is not an active host of the contract)."""
    with open_session() as db:
        contract = get_contract(session=db, code=contract_code)
        hosts = hosts_in_scope(session=db, contract=contract)
        by_name = {h.name: h for h in hosts}
        if only:
            missing = [n for n in only if n not in by_name]
            if missing:
                raise LookupError(f"not an active host of {contract_code}: {', '.join(missing)}")
            hosts = [by_name[n] for n in only]
        return [(h.id, h.name) for h in hosts if h.id is not None]


def check_patch_alone(contract_code: str, me: str | None) -> None:
    """AlreadyRunning when another patch run (preventive or responsive) of the contract is
    under way: one plan, one gate and one rollout per contract at a time."""
    with open_session() as db:
        contract = get_contract(session=db, code=contract_code)
        assert contract.id is not None
        contract_id = contract.id
    refuse_if_running("patch", contract_code, contract_id, me)


def record_plan(plan: PatchPlan, run_id: int) -> int:
    """Store the plan (one row per revision of a run; a re-run finds the row it wrote)."""
    digest = plan.digest()
    flow_run_id = current_flow_run_id()
    with open_session() as db:
        found = db.exec(
            select(PlanRow).where(PlanRow.run_id == run_id, PlanRow.revision == plan.revision)
        ).first()
        if found is not None:
            assert found.id is not None
            return found.id
        row = PlanRow(
            contract_id=plan.contract_id,
            run_id=run_id,
            flow_run_id=flow_run_id,
            kind=plan.kind,
            revision=plan.revision,
            plan=plan.model_dump(mode="json"),
            plan_hash=digest,
            finding_id=plan.finding_id,
        )
        db.add(row)
        db.flush()
        assert row.id is not None
        return row.id


def load_plan(plan_id: int) -> tuple[PlanRow, PatchPlan]:
    with open_session() as db:
        row = db.get(PlanRow, plan_id)
        if row is None:
            raise LookupError(f"no patch plan {plan_id}")
        db.expunge(row)
        return row, PatchPlan.model_validate(row.plan)


def plan_of(run: InspectionRun | int) -> list[PlanRow]:
    """A run's plans, oldest revision first."""
    run_id = run if isinstance(run, int) else run.id
    with open_session() as db:
        rows = list(
            db.exec(select(PlanRow).where(PlanRow.run_id == run_id).order_by(col(PlanRow.revision)))
        )
        for r in rows:
            db.expunge(r)
        return rows
