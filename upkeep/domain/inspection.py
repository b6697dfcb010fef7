"""The quarterly health inspection's decisions, pure: the plan, how an engineer's revision
changes it, what a re-check targets, and how each is shown to a person.

No database, no Prefect: the flows (``upkeep.flows.inspection``) and their tasks
(``upkeep.tasks.inspection_plan``) bring the records and the runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Protocol

from pydantic import BaseModel

from upkeep.domain.contract import GatePolicy
from upkeep.domain.findings import REACHABILITY
from upkeep.domain.markup import md_escape

PLAN_GATE = "inspection-plan"
REVISION_GATE = "inspection-plan-revision"
PRECHECK_CHARS = 120
"""A host's pre-check result is cut to this many characters in the forms."""


def quarter_of(day: date) -> str:
    """``2026-Q4``."""
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def default_window(day: date) -> str:
    """The quarter of ``day`` with its first and last day, e.g. ``2026-Q4 (2026-10-01 – …)``."""
    q = (day.month - 1) // 3
    start = date(day.year, 3 * q + 1, 1)
    end = date(day.year + (q == 3), (3 * q + 3) % 12 + 1, 1)
    last = date.fromordinal(end.toordinal() - 1)
    return f"{quarter_of(day)} ({start.isoformat()} – {last.isoformat()})"


def plan_needs_approval(contract_says: bool, asked: bool | None) -> bool:
    """Whether the plan goes to the approvers: as the run asked, else as the contract says."""
    return contract_says if asked is None else asked


class HostTarget(BaseModel):
    """One host of a sweep and the checks to run on it."""

    id: int
    name: str
    checks: list[str] | None = None
    """None: the whole catalogue."""


class HostOutcome(BaseModel):
    """What the sweep learns of one host: reached or not (and why), findings per severity."""

    host: str
    reachable: bool
    error_kind: str | None = None
    """Why it was not reached (``refused``, ``timeout``, ``crashed``...); None when reached."""
    findings: dict[str, int] = {}
    """Severity -> how many findings the host's checks raised."""


class PlanHost(BaseModel):
    id: int
    name: str
    address: str
    port: int
    role: str | None = None
    tags: list[str] = []


class InspectionPlan(BaseModel):
    contract: str
    contract_id: int
    contract_name: str
    customer: str
    timezone: str
    window: str
    hosts: list[PlanHost]
    excluded: list[str] = []
    checks: list[tuple[str, str]]
    thresholds: dict[str, Any]
    approvers: list[dict[str, str]]
    backup_approver: dict[str, str] | None = None
    policy: GatePolicy = GatePolicy()
    requires_approval: bool
    preflight: dict[str, str] = {}
    """Host name -> "ok" or why upkeep could not log in, checked before approval."""
    revision: int = 1
    notes: list[str] = []

    def host_names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def targets(self) -> list[HostTarget]:
        """Every host of the plan, with the whole catalogue."""
        return [HostTarget(id=h.id, name=h.name) for h in self.hosts]


# --- revision after a rejection ----------------------------------------------------------------


class Revision(Protocol):
    """What an engineer answers to a rejected plan (the flow's ``PlanRevision`` form)."""

    @property
    def engineer(self) -> str: ...
    @property
    def exclude_hosts(self) -> list[str]: ...
    @property
    def include_hosts(self) -> list[str]: ...
    @property
    def window(self) -> str | None: ...
    @property
    def note(self) -> str: ...


def apply_revision(
    plan: InspectionPlan, revision: Revision, all_hosts: list[PlanHost]
) -> InspectionPlan:
    """The revised plan, or ValueError naming what cannot be applied.

    Exclusions add up over revisions and an inclusion brings an excluded host back; the hosts
    keep the order of ``all_hosts`` (the first plan's); a blank window keeps the plan's; the
    revision number goes up and the engineer's note is kept with it.
    """
    by_name = {h.name: h for h in all_hosts}
    unknown = sorted(set(revision.exclude_hosts + revision.include_hosts) - set(by_name))
    if unknown:
        raise ValueError(f"unknown host(s): {', '.join(unknown)}")
    excluded = (set(plan.excluded) | set(revision.exclude_hosts)) - set(revision.include_hosts)
    hosts = [h for h in all_hosts if h.name not in excluded]
    if not hosts:
        raise ValueError("the revision leaves no host to inspect")
    note = revision.note.strip() or "revised"
    return plan.model_copy(
        update={
            "hosts": hosts,
            "excluded": sorted(excluded),
            "window": revision.window.strip() if revision.window else plan.window,
            "revision": plan.revision + 1,
            "notes": [*plan.notes, f"rev {plan.revision + 1} by {revision.engineer}: {note}"],
        }
    )


# --- re-check ----------------------------------------------------------------------------------


class OpenFinding(Protocol):
    """The part of an open finding a re-check looks at (a ``models.Finding`` has it)."""

    @property
    def host_id(self) -> int | None: ...
    @property
    def check(self) -> str: ...


def recheck_targets(
    open_findings: Iterable[OpenFinding], host_names: Mapping[int, str]
) -> list[HostTarget]:
    """Per host, the checks with open findings, hosts by name; a host with an open
    reachability finding gets the whole catalogue (nothing about it was checked). Findings
    without a host (backups: the backup flow re-checks them) and of hosts not in
    ``host_names`` (inactive) are left out."""
    by_host: dict[int, set[str]] = {}
    for f in open_findings:
        if f.host_id is not None and f.host_id in host_names:
            by_host.setdefault(f.host_id, set()).add(f.check)
    targets = []
    for host_id, checks in sorted(by_host.items(), key=lambda kv: host_names[kv[0]]):
        wanted = None if REACHABILITY in checks else sorted(checks)
        targets.append(HostTarget(id=host_id, name=host_names[host_id], checks=wanted))
    return targets


class RecheckLine(Protocol):
    @property
    def host_id(self) -> int | None: ...
    @property
    def check(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def severity(self) -> str: ...


def render_recheck_markdown(
    contract: str,
    run_id: int,
    resolved: Iterable[RecheckLine],
    still_open: Iterable[RecheckLine],
    host_names: Mapping[int, str],
) -> str:
    """The re-check's difference as a Markdown artifact: what it resolved, what is still open."""
    resolved, still_open = list(resolved), list(still_open)

    def host(f: RecheckLine) -> str:
        return md_escape(host_names.get(f.host_id, f.host_id) if f.host_id is not None else None)

    lines = [
        f"## Re-check of {md_escape(contract)} (run {run_id})",
        "",
        f"**Resolved:** {len(resolved)} · **still open:** {len(still_open)}",
        "",
    ]
    lines += [
        f"- resolved: {host(f)} {md_escape(f.check)} {md_escape(f.subject)}" for f in resolved
    ]
    lines += [
        f"- open: {host(f)} {md_escape(f.check)} {md_escape(f.subject)} ({md_escape(f.severity)})"
        for f in still_open
    ]
    return "\n".join(lines)


# --- what the approver sees --------------------------------------------------------------------


def render_plan_markdown(plan: InspectionPlan) -> str:
    """The plan as the approver sees it in the resume form and the e-mail.

    Every value from the inventory goes through ``md_escape``, so a host or contract name
    holding Markdown or HTML shows as text.
    """
    lines = [
        f"### Health inspection plan · {md_escape(plan.customer)} · {md_escape(plan.contract)} "
        f"(revision {plan.revision})",
        "",
        f"- **Contract:** {md_escape(plan.contract_name)} ({md_escape(plan.contract)})",
        f"- **Window:** {md_escape(plan.window)} ({md_escape(plan.timezone)})",
        f"- **Method:** read-only commands over SSH, host keys verified; {len(plan.checks)} checks",
        f"- **Hosts in scope:** {len(plan.hosts)}",
        "",
        "| host | address | role | tags | pre-check |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {md_escape(h.name)} | {md_escape(f'{h.address}:{h.port}')} | "
        f"{md_escape(h.role or '')} | {md_escape(', '.join(h.tags))} | "
        f"{md_escape(plan.preflight.get(h.name, 'not checked'), limit=PRECHECK_CHARS)} |"
        for h in plan.hosts
    ]
    if plan.excluded:
        lines += ["", f"**Excluded from this inspection:** {md_escape(', '.join(plan.excluded))}"]
    lines += ["", "**Checks:** " + md_escape(", ".join(title for _, title in plan.checks))]
    changed = {k: v for k, v in plan.thresholds.items() if v is not None}
    if changed:
        lines += [
            "",
            "**Contract thresholds:** "
            + md_escape(", ".join(f"{k}={v}" for k, v in sorted(changed.items()))),
        ]
    if plan.notes:
        lines += ["", "**Revision notes:**"] + [f"- {md_escape(n)}" for n in plan.notes]
    return "\n".join(lines)


def render_revision_body(plan: InspectionPlan, rejection: str, refused: str | None) -> str:
    """The revision form's description: the rejection, ``refused`` (what was wrong with an
    earlier answer, already Markdown), what to do, then the plan compactly, one line per host
    (fits a normal window)."""
    # No heading or quote block: the UI shows this in a short scrolling box above the fields.
    lines = [f"**The plan (revision {plan.revision}) was rejected:** {md_escape(rejection)}"]
    if refused:
        lines += ["", refused]
    lines += [
        "",
        "Exclude hosts, change the window and **resubmit**, or **cancel** the inspection. "
        "Give your name as *engineer* and say what you changed in *note*.",
        "",
        "---",
        f"**{md_escape(plan.contract)}** · {md_escape(plan.customer)} · window "
        f"{md_escape(plan.window)} ({md_escape(plan.timezone)}) · {len(plan.hosts)} host(s) · "
        f"{len(plan.checks)} checks",
        "",
    ]
    for h in plan.hosts:
        role = f" · {md_escape(h.role)}" if h.role else ""
        check = md_escape(plan.preflight.get(h.name, "not checked"), limit=PRECHECK_CHARS // 2)
        address = md_escape(f"{h.address}:{h.port}")
        lines.append(f"- {md_escape(h.name)} · {address}{role} · pre-check: {check}")
    if plan.excluded:
        lines += ["", f"**Excluded:** {md_escape(', '.join(plan.excluded))}"]
    if plan.notes:
        lines += ["", f"**Earlier revisions:** {md_escape('; '.join(plan.notes), limit=400)}"]
    return "\n".join(lines)
