"""Applying an approved patch plan, only what was approved, and proving it.

:func:`record_decision` writes the gate's decision on the plan's row with the hash of the plan
the approvers saw. :func:`check_approved` is the guard every rollout passes first: it refuses
(:class:`NotApproved`) a plan without an approval on record whose hash matches the plan given.

:func:`apply_host` does one host, each step a :class:`~upkeep.models.PatchStep` with its
evidence: health checks before (the inspection catalogue), the inventory before (a host whose
packages moved since the plan is refused, nothing installed), the installation of exactly the
approved versions, the inventory after, the re-match proving each advisory closed, the health
checks after. Anything wrong: the previous versions are installed again where the package
manager can, a critical finding is raised, and the flow stops the rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task

from upkeep.db import open_session
from upkeep.domain.advisories import Family, Platform
from upkeep.domain.advisories.match import match
from upkeep.domain.advisories.packages import install_command, install_failure
from upkeep.domain.advisories.scan import Scan
from upkeep.domain.approvals import ApprovalResult, Decision
from upkeep.domain.checks.base import Severity
from upkeep.domain.contract import ContractView
from upkeep.domain.patching import HostPlan, PatchPlan, closures
from upkeep.models import Approval, Contract, Finding, Host, PatchStep, RunStatus, utcnow
from upkeep.models import PatchPlan as PlanRow
from upkeep.settings import Settings, get_settings
from upkeep.tasks.advisory_store import load_store
from upkeep.tasks.inspect import inspect_host_now, target_for
from upkeep.tasks.inventory_scan import ScanUnreadable, record_scan, scan_host
from upkeep.tasks.records import finish_run, start_run
from upkeep.tasks.runs import current_flow_run_id
from upkeep.tasks.ssh import SshError, SshSession

__all__ = [
    "HostRollout",
    "NotApproved",
    "apply_host",
    "check_approved",
    "finish_plan",
    "log_step",
    "record_decision",
]

_TAIL = 4000


class NotApproved(RuntimeError):
    """The plan given has no approval on record, or not for this exact plan."""


@dataclass(frozen=True)
class HostRollout:
    host: str
    ok: bool
    summary: str
    rolled_back: bool = False
    reboot_needed: bool = False


def log_step(
    plan_id: int,
    step: str,
    ok: bool,
    summary: str,
    *,
    host: Host | None = None,
    host_name: str = "",
    actor: str = "upkeep",
    detail: dict[str, Any] | None = None,
    started: Any = None,
) -> None:
    """One step of the plan's record: who, when, on which host, what came of it."""
    with open_session() as db:
        db.add(
            PatchStep(
                plan_id=plan_id,
                host_id=host.id if host else None,
                host=host.name if host else host_name,
                step=step,
                actor=actor[:200],
                ok=ok,
                summary=summary,
                detail=detail or {},
                started_at=started or utcnow(),
                finished_at=utcnow(),
            )
        )


def record_decision(plan_id: int, result: ApprovalResult, digest: str) -> None:
    """The gate's decision on the plan's row; an approval keeps the hash it approved."""
    with open_session() as db:
        row = db.get(PlanRow, plan_id)
        assert row is not None
        if row.approval_id == result.approval_id:
            return  # a re-run after resume: already recorded
        row.approval_id = result.approval_id
        row.approved_by = result.approver[:400]
        row.approved_at = result.decided_at
        if result.decision is Decision.APPROVE:
            row.status = "approved"
            row.approved_hash = digest
        else:
            row.status = "rejected"
        db.add(row)
    log_step(
        plan_id,
        "decision",
        result.decision is Decision.APPROVE,
        f"{result.decision.value} by {result.approver}"
        + (f": {result.comment}" if result.comment else ""),
        actor=result.approver,
        detail={"approval_id": result.approval_id, "plan_hash": digest},
    )


def finish_plan(plan_id: int, status: str) -> None:
    with open_session() as db:
        row = db.get(PlanRow, plan_id)
        assert row is not None
        row.status = status
        row.finished_at = utcnow()
        db.add(row)


def check_approved(plan_id: int, plan: PatchPlan) -> None:
    """Refuse (:class:`NotApproved`, recorded as a ``refused`` step) unless plan ``plan_id``
    was approved at its gate and the hash approved is the hash of ``plan``."""
    digest = plan.digest()
    with open_session() as db:
        row = db.get(PlanRow, plan_id)
        if row is None:
            raise NotApproved(f"no patch plan {plan_id}: nothing is installed without one")
        gate = db.get(Approval, row.approval_id) if row.approval_id else None
        why = ""
        if gate is None or row.approved_hash is None:
            why = f"patch plan {plan_id} has no approval on record (status {row.status})"
        elif gate.decision != Decision.APPROVE.value:
            why = f"approval {gate.id} of patch plan {plan_id} was not given ({gate.decision})"
        elif row.approved_hash != digest or row.approved_hash not in gate.evidence:
            why = (
                f"the plan given ({digest}) is not the plan approved in approval {gate.id} "
                f"({row.approved_hash})"
            )
    if why:
        log_step(plan_id, "refused", False, why, detail={"plan_hash": digest})
        raise NotApproved(why)


def check_host_allowed(plan_id: int, host_plan: HostPlan, host: Host) -> None:
    """Refuse (:class:`NotApproved`, recorded) unless ``host_plan`` is exactly the host's part
    of plan ``plan_id`` as stored, and that plan is approved (:func:`check_approved`); the one
    exception is the responsive path's test installation (revision 0 of a responsive run),
    allowed on the contract's staging hosts only, as the inventory says, before the review."""
    with open_session() as db:
        row = db.get(PlanRow, plan_id)
        if row is None:
            raise NotApproved(f"no patch plan {plan_id}: nothing is installed without one")
        plan = PatchPlan.model_validate(row.plan)
        contract = db.get(Contract, host.contract_id)
        assert contract is not None
        staging_tag = ContractView.of(contract).patching.staging_tag
        trial = row.kind == "responsive" and row.revision == 0
    stored = next((h for h in plan.hosts if h.host_id == host_plan.host_id), None)
    why = ""
    if stored is None or stored.items != host_plan.items:
        why = f"the updates given for {host.name} are not those of patch plan {plan_id}"
    elif trial and staging_tag not in (host.tags or []) and host.role != staging_tag:
        why = f"{host.name} is not a staging host: a test installation goes to staging only"
    if why:
        log_step(plan_id, "refused", False, why, host=host)
        raise NotApproved(why)
    if not trial:
        check_approved(plan_id, plan)


# --- one host ------------------------------------------------------------------------------------


def _criticals(inspection: Any) -> set[tuple[str, str]]:
    return {(o.check, o.subject) for o in inspection.observed if o.severity is Severity.CRITICAL}


def _versions(scan: Scan) -> dict[str, str]:
    return {p.name: p.version for p in scan.packages}


def _scan(plan_id: int, host: Host, step: str, settings: Settings) -> Scan | None:
    started = utcnow()
    try:
        scan = scan_host(host, settings)
    except (SshError, ScanUnreadable) as exc:
        log_step(plan_id, step, False, f"no inventory: {exc}", host=host, started=started)
        return None
    with open_session() as db:
        fresh = db.get(Host, host.id)
        assert fresh is not None
        record, found = record_scan(db, fresh, scan)
        inventory_id = record.id
    lines = found.lines() if found is not None else []
    log_step(
        plan_id,
        step,
        True,
        f"{len(scan.packages)} packages"
        + (f"; changed: {', '.join(lines[:10])}" if lines else "; no change"),
        host=host,
        detail={"inventory_id": inventory_id, "changes": lines},
        started=started,
    )
    return scan


def _run_install(
    plan_id: int,
    host: Host,
    family: Family,
    items: list[tuple[str, str]],
    step: str,
    settings: Settings,
    downgrade: bool = False,
) -> bool:
    started = utcnow()
    command = install_command(family, items, downgrade=downgrade)
    what = ", ".join(f"{n} {v}" for n, v in items)
    try:
        with SshSession(target_for(host, settings), settings.ssh, settings.known_hosts_file) as ssh:
            raw = ssh.run(command, timeout=settings.patch_install_timeout)
    except SshError as exc:
        log_step(plan_id, step, False, f"{what}: {exc}", host=host, started=started)
        return False
    ok = raw.exit_code == 0
    log_step(
        plan_id,
        step,
        ok,
        f"installed {what}"
        if ok
        else f"{what}: {install_failure(raw.stdout, raw.stderr, raw.exit_code)}",
        host=host,
        detail={
            "command": command,
            "exit_code": raw.exit_code,
            "stdout": raw.stdout[-_TAIL:],
            "stderr": raw.stderr[-_TAIL:],
        },
        started=started,
    )
    return ok


def _health(plan_id: int, host: Host, step: str) -> set[tuple[str, str]] | None:
    """The inspection catalogue on the host, as a run of its own (kind ``patch-check``: a
    host has one result per run) that keeps the findings up to date; the critical problems it
    found, or None when the host could not be inspected."""
    assert host.id is not None
    started = utcnow()
    with open_session() as db:
        contract = db.get(Contract, host.contract_id)
        assert contract is not None
        check_run = start_run(
            session=db,
            contract=contract,
            kind="patch-check",
            flow_run_id=current_flow_run_id(),
            requested_by="upkeep",
        )
        check_run_id = check_run.id
    assert check_run_id is not None
    result = inspect_host_now(host.id, check_run_id)
    with open_session() as db:
        finish_run(session=db, run_id=check_run_id, status=RunStatus.COMPLETED)
    if not result.reachable:
        log_step(plan_id, step, False, f"not inspected: {result.error}", host=host, started=started)
        return None
    found = _criticals(result)
    log_step(
        plan_id,
        step,
        True,
        f"{len(result.evaluated_checks)} checks; critical: "
        + (", ".join(f"{c} {s}".strip() for c, s in sorted(found)) or "none"),
        host=host,
        detail={
            "critical": sorted(found),
            "observed": len(result.observed),
            "run_id": check_run_id,
        },
        started=started,
    )
    return found


def _raise_finding(run_id: int, host: Host, plan_id: int, message: str, evidence: str) -> None:
    with open_session() as db:
        db.add(
            Finding(
                contract_id=host.contract_id,
                host_id=host.id,
                run_id=run_id,
                check="patch-rollout",
                subject=f"plan {plan_id}",
                severity=Severity.CRITICAL.value,
                message=message,
                evidence=evidence[:_TAIL],
                recommendation="Look at the rollout's steps in the patch report; the previous "
                "versions were installed again where the package manager could.",
                last_seen_run_id=run_id,
            )
        )


@task(name="apply-host", task_run_name="apply on {host_name}")
def apply_host(plan_id: int, run_id: int, host_plan: HostPlan, host_name: str) -> HostRollout:
    """Install the host's approved updates and prove them; roll back on any failure.
    Refuses (:class:`NotApproved`) a host plan that is not part of an approved plan."""
    settings = get_settings()
    logger = get_run_logger()
    with open_session() as db:
        host = db.get(Host, host_plan.host_id)
        if host is None:
            raise LookupError(f"no host {host_name} (id {host_plan.host_id})")
        db.expunge(host)
    check_host_allowed(plan_id, host_plan, host)
    family = host_plan.family

    def failed(summary: str, rolled_back: bool = False) -> HostRollout:
        logger.error("%s: %s", host_name, summary)
        _raise_finding(
            run_id, host, plan_id, f"patch rollout failed on {host_name}: {summary}", summary
        )
        return HostRollout(host_name, False, summary, rolled_back)

    before_health = _health(plan_id, host, "health-before")
    if before_health is None:
        return failed("health checks before the update could not run: nothing installed")
    before = _scan(plan_id, host, "inventory-before", settings)
    if before is None:
        return failed("no inventory before the update: nothing installed")
    installed_before = _versions(before)
    drift = [
        f"{i.package} is {installed_before.get(i.package, 'not installed')}, "
        f"the plan says {i.installed}"
        for i in host_plan.items
        if installed_before.get(i.package) != i.installed
    ]
    if drift:
        log_step(
            plan_id, "refused", False, "changed since the plan: " + "; ".join(drift), host=host
        )
        return failed("the host changed since the plan was approved: " + "; ".join(drift))

    wanted = [(i.package, i.target) for i in host_plan.items]
    installed_ok = _run_install(plan_id, host, family, wanted, "install", settings)
    after = _scan(plan_id, host, "inventory-after", settings)
    problems: list[str] = []
    if not installed_ok:
        problems.append("the installation failed")
    if after is None:
        problems.append("no inventory after the update")
    else:
        with open_session() as db:
            records = load_store(db, host_plan.ecosystem)
        platform = Platform(host_plan.ecosystem, family, before.platform.pretty)
        proof = closures(host_plan, _versions(after), match(after.packages, platform, records))
        open_ones = [c for c in proof if not c.closed]
        log_step(
            plan_id,
            "closure",
            not open_ones,
            "; ".join(
                f"{c.advisory} on {c.package}: {'closed' if c.closed else 'OPEN'} ({c.detail})"
                for c in proof
            ),
            host=host,
            detail={"closures": [c.__dict__ for c in proof]},
        )
        if open_ones:
            problems.append(f"{len(open_ones)} advisory(ies) still open")
    after_health = _health(plan_id, host, "health-after")
    if after_health is None:
        problems.append("the health checks after the update could not run")
    else:
        new = sorted(after_health - before_health)
        if new:
            problems.append(
                "new critical problems: " + ", ".join(f"{c} {s}".strip() for c, s in new)
            )
    if not problems:
        reboot = [i.package for i in host_plan.items if i.restart == "reboot"]
        summary = f"{len(wanted)} update(s) installed and verified" + (
            f"; reboot needed for {', '.join(reboot)}" if reboot else ""
        )
        logger.info("%s: %s", host_name, summary)
        return HostRollout(host_name, True, summary, reboot_needed=bool(reboot))

    # Roll back what moved: the versions before, where the package manager still has them.
    rolled_back = False
    if after is not None:
        now = _versions(after)
        back = [
            (name, version)
            for name, version in installed_before.items()
            if name in now and now[name] != version
        ]
        if back:
            _run_install(plan_id, host, family, back, "rollback", settings, downgrade=True)
            verify = _scan(plan_id, host, "inventory-rollback", settings)
            rolled_back = verify is not None and all(_versions(verify).get(n) == v for n, v in back)
            log_step(
                plan_id,
                "rollback-verified",
                rolled_back,
                ("previous versions back: " if rolled_back else "previous versions NOT all back: ")
                + ", ".join(f"{n} {v}" for n, v in back),
                host=host,
            )
    return failed("; ".join(problems), rolled_back)
