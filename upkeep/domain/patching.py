"""The patch-advisory cycle's decisions, pure (PROCESSES.md, 3): fault statistics, the
analysis of what an update needs (restart or reboot, predicted before anything changes), the
version-upgrade plan and its hash, its revision after a rejection, and whether a re-scan
proves each advisory closed.

Nothing here reads a host or the database: the survey (``upkeep.tasks.patch_survey``) brings
scans, matches and the package manager's candidates; the apply task
(``upkeep.tasks.patch_apply``) brings what happened on the host.

The plan's hash (:meth:`PatchPlan.digest`) covers exactly what would be changed: contract, and
per host the (package, architecture, installed version, target version) rows. The approval
gate shows it; the apply task refuses a plan whose hash is not the approved one.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from upkeep.domain.advisories import Family, Installed, Match
from upkeep.domain.advisories.versions import compare
from upkeep.domain.contract import GatePolicy
from upkeep.domain.markup import md_escape

PLAN_GATE = "patch-plan"
REVISION_GATE = "patch-plan-revision"
RESPONSIVE_GATE = "patch-test-report"

Restart = Literal["reboot", "services", "package"]
Stage = Literal["staging", "production"]

_WORST_FIRST = ("critical", "high", "important", "medium", "moderate", "low", "negligible")

# Packages whose update takes effect only after a reboot: the kernel and what every process
# has mapped from boot (the C library, the init system, the message bus, CPU microcode).
_REBOOT_SOURCES = frozenset(
    {
        "linux",
        "linux-signed-amd64",
        "linux-signed-arm64",
        "kernel",
        "glibc",
        "musl",
        "linux-lts",
        "linux-virt",
        "linux-edge",
        "systemd",
        "dbus",
        "dbus-broker",
        "intel-microcode",
        "amd64-microcode",
        "microcode_ctl",
        "linux-firmware",
    }
)
_REBOOT_PREFIXES = ("linux-image-", "kernel-", "linux-modules-")


# --- fault statistics --------------------------------------------------------------------------


class FaultRow(Protocol):
    """What the statistics read of a finding (``upkeep.models.Finding`` fits)."""

    @property
    def host_id(self) -> int | None: ...
    @property
    def check(self) -> str: ...
    @property
    def severity(self) -> str: ...


class FaultStats(BaseModel):
    """Which hosts failed most and which (host, check) problems recur, over a period."""

    model_config = ConfigDict(frozen=True)

    since: datetime | None = None
    findings: int = 0
    by_host: list[tuple[str, int]] = []
    """(host, findings), most first."""
    recurring: list[tuple[str, str, int]] = []
    """(host, check, times) for problems seen more than once, most first."""
    by_check: list[tuple[str, int]] = []


def fault_statistics(
    rows: Iterable[FaultRow], host_names: Mapping[int, str], since: datetime | None = None
) -> FaultStats:
    """Count past findings per host, per check, and the (host, check) pairs that recur.
    Findings of hosts not in ``host_names`` (left the contract) count under their id."""
    hosts: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    total = 0
    for row in rows:
        total += 1
        host = host_names.get(row.host_id, f"host #{row.host_id}") if row.host_id else "(none)"
        hosts[host] += 1
        checks[row.check] += 1
        pairs[(host, row.check)] += 1

    def ranked(counter: Counter[Any]) -> list[Any]:
        return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))

    return FaultStats(
        since=since,
        findings=total,
        by_host=ranked(hosts),
        by_check=ranked(checks),
        recurring=[(h, c, n) for (h, c), n in ranked(pairs) if n > 1],
    )


# --- the analysis --------------------------------------------------------------------------------


def worst_severity(words: Iterable[str | None]) -> str | None:
    """The worst of the records' severity words (``high`` over ``low``); a CVSS vector or an
    unknown word only when nothing better is known."""
    known = [w.lower() for w in words if w and w.lower() in _WORST_FIRST]
    if known:
        return min(known, key=_WORST_FIRST.index)
    others = [w for w in words if w]
    return others[0] if others else None


def severity_rank(word: str | None) -> int:
    if word and word.lower() in _WORST_FIRST:
        return _WORST_FIRST.index(word.lower())
    return len(_WORST_FIRST)


def predict_restart(package: str, source: str) -> tuple[Restart, str]:
    """What an update of ``package`` (built from ``source``) needs before it takes effect,
    decided from its name only, before anything is installed."""
    if (
        source in _REBOOT_SOURCES
        or package.startswith(_REBOOT_PREFIXES)
        or package
        in (
            "kernel",
            "kernel-core",
        )
    ):
        return (
            "reboot",
            f"{source or package}: the running system keeps the old code until a reboot",
        )
    if package.startswith("lib") or source.startswith("lib") or source in ("openssl", "gnutls28"):
        return "services", (
            f"{package} is a library: the services that loaded it keep the old code until "
            "they are restarted"
        )
    return "package", f"{package}: its own services are restarted by the package manager"


class PlanItem(BaseModel):
    """One update: this package on this host, from the installed to the target version."""

    model_config = ConfigDict(frozen=True)

    package: str
    arch: str = ""
    source: str = ""
    installed: str
    target: str
    """The version the host's repositories offer (its package manager's candidate)."""
    fixed: str
    """The lowest version that fixes every advisory listed (the target is at least this)."""
    advisories: list[str]
    severity: str | None = None
    restart: Restart = "package"
    restart_why: str = ""
    how: str = ""
    """Which name and version were compared (from the first match)."""


class Unavailable(BaseModel):
    """An advisory whose fix the host cannot install yet: told, not planned."""

    model_config = ConfigDict(frozen=True)

    host: str
    package: str
    installed: str
    advisories: list[str]
    fixed: str | None
    candidate: str | None
    why: str


class Deferred(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    package: str
    reason: str


class HostPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    host_id: int
    stage: Stage = "production"
    ecosystem: str
    family: Family
    reboot_pending: bool | None = None
    """A reboot the host already waited for before this plan (its own marker)."""
    items: list[PlanItem] = []

    @property
    def reboot(self) -> bool:
        return any(i.restart == "reboot" for i in self.items)

    @property
    def severity(self) -> str | None:
        return worst_severity(i.severity for i in self.items)


def plan_host(
    host: str,
    host_id: int,
    stage: Stage,
    ecosystem: str,
    family: Family,
    matches: Sequence[Match],
    candidates: Mapping[str, str | None],
    reboot_pending: bool | None = None,
) -> tuple[HostPlan, list[Unavailable]]:
    """One host's updates from its matches and its package manager's ``candidates``
    (binary package -> the version it would install, None: none).

    Per installed package the target is the candidate when it is at least the highest fixed
    version of the advisories matched; a package with no fix published, no candidate or a
    candidate below the fix is :class:`Unavailable`, said with the reason."""
    grouped: dict[tuple[str, str], list[Match]] = {}
    for m in matches:
        grouped.setdefault((m.package, m.installed_version), []).append(m)
    items: list[PlanItem] = []
    unavailable: list[Unavailable] = []
    for (package, installed), found in sorted(grouped.items()):
        ids = sorted({m.advisory for m in found})
        fixes = [m.fixed_version for m in found if m.fixed_version]
        candidate = candidates.get(package)
        fixed = max_version(family, fixes) if fixes else None
        why = ""
        if len(fixes) < len(found):
            unfixed = sorted({m.advisory for m in found if not m.fixed_version})
            why = f"no fix published yet for {', '.join(unfixed)}"
        elif candidate is None:
            why = f"the host's repositories offer no version of {package}"
        elif fixed is not None and compare(family, candidate, fixed) < 0:
            why = f"the repositories offer {candidate}, below the fix {fixed}"
        elif compare(family, candidate, installed) <= 0:
            why = f"the repositories offer nothing newer than {installed}"
        if why or fixed is None or candidate is None:
            unavailable.append(
                Unavailable(
                    host=host,
                    package=package,
                    installed=installed,
                    advisories=ids,
                    fixed=fixed,
                    candidate=candidate,
                    why=why,
                )
            )
            continue
        first = found[0]
        restart, restart_why = predict_restart(package, first.source)
        items.append(
            PlanItem(
                package=package,
                source=first.source,
                installed=installed,
                target=candidate,
                fixed=fixed,
                advisories=ids,
                severity=worst_severity(m.severity for m in found),
                restart=restart,
                restart_why=restart_why,
                how=first.how,
            )
        )
    return (
        HostPlan(
            host=host,
            host_id=host_id,
            stage=stage,
            ecosystem=ecosystem,
            family=family,
            reboot_pending=reboot_pending,
            items=items,
        ),
        unavailable,
    )


def plan_updates(
    host: str,
    host_id: int,
    stage: Stage,
    ecosystem: str,
    family: Family,
    installed: Sequence[Installed],
    candidates: Mapping[str, str | None],
    matches: Sequence[Match] = (),
    reboot_pending: bool | None = None,
) -> HostPlan:
    """The responsive path: every named package the host has installed whose candidate is
    newer, whether or not an advisory names it (a defect fix often has none); the advisories
    that do match are listed with it."""
    by_package: dict[str, list[Match]] = {}
    for m in matches:
        by_package.setdefault(m.package, []).append(m)
    items = []
    for p in sorted(installed, key=lambda p: p.name):
        candidate = candidates.get(p.name)
        if candidate is None or compare(family, candidate, p.version) <= 0:
            continue
        found = by_package.get(p.name, [])
        restart, why = predict_restart(p.name, p.source_name)
        items.append(
            PlanItem(
                package=p.name,
                source=p.source_name,
                installed=p.version,
                target=candidate,
                fixed=candidate,
                advisories=sorted({m.advisory for m in found}),
                severity=worst_severity(m.severity for m in found),
                restart=restart,
                restart_why=why,
            )
        )
    return HostPlan(
        host=host,
        host_id=host_id,
        stage=stage,
        ecosystem=ecosystem,
        family=family,
        reboot_pending=reboot_pending,
        items=items,
    )


def max_version(family: Family, versions: Iterable[str]) -> str:
    best: str | None = None
    for v in versions:
        if best is None or compare(family, v, best) > 0:
            best = v
    if best is None:
        raise ValueError("no version to choose from")
    return best


# --- the plan ------------------------------------------------------------------------------------


class PatchPlan(BaseModel):
    """The version-upgrade plan the customer reviews: host × package × installed → target."""

    model_config = ConfigDict(frozen=True)

    contract: str
    contract_id: int
    contract_name: str
    customer: str
    timezone: str
    mode: Literal["report", "apply"] = "report"
    kind: Literal["preventive", "responsive"] = "preventive"
    created_at: datetime
    hosts: list[HostPlan] = []
    unavailable: list[Unavailable] = []
    deferred: list[Deferred] = []
    not_scanned: dict[str, str] = {}
    """Host -> why it could not be surveyed (unreachable, unreadable inventory)."""
    statistics: FaultStats = FaultStats()
    approvers: list[dict[str, str]] = []
    backup_approver: dict[str, str] | None = None
    policy: GatePolicy = GatePolicy()
    revision: int = 1
    notes: list[str] = []
    symptom: str = ""
    """Responsive path: the fault the patch is for."""
    tests: dict[str, str] = {}
    """Responsive path: staging host -> what the test installation there showed."""
    finding_id: int | None = None

    @property
    def items(self) -> int:
        return sum(len(h.items) for h in self.hosts)

    @property
    def empty(self) -> bool:
        return self.items == 0

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """What the hash covers: (host, package, arch, installed, target), sorted."""
        return sorted(
            (h.host, i.package, i.arch, i.installed, i.target) for h in self.hosts for i in h.items
        )

    def digest(self) -> str:
        """``sha256:<hex>`` of the contract and :meth:`rows`, canonical JSON."""
        text = json.dumps({"contract": self.contract, "rows": self.rows()}, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def ordered_hosts(self) -> list[HostPlan]:
        """Staging hosts first, then production; by name within each."""
        return sorted(
            (h for h in self.hosts if h.items), key=lambda h: (h.stage != "staging", h.host)
        )


# --- revision after a rejection ------------------------------------------------------------------


class Revision(Protocol):
    """What an engineer answers to a rejected plan (the flow's ``PatchRevision`` form)."""

    @property
    def engineer(self) -> str: ...
    @property
    def drop_hosts(self) -> list[str]: ...
    @property
    def drop_packages(self) -> list[str]: ...
    @property
    def defer(self) -> list[str]: ...
    @property
    def note(self) -> str: ...


def _pick(entry: str, host: str, package: str) -> bool:
    """``pkg`` (every host) or ``host:pkg`` names this row."""
    if ":" in entry:
        h, p = entry.split(":", 1)
        return h == host and p == package
    return entry == package


def apply_revision(plan: PatchPlan, revision: Revision) -> PatchPlan:
    """The plan with the revision applied: hosts dropped, packages dropped (``pkg`` or
    ``host:pkg``) or deferred (kept in :attr:`PatchPlan.deferred`, with the note as the reason).
    Raises ``ValueError`` naming what does not exist in the plan, or when nothing would change."""
    names = {h.host for h in plan.hosts}
    unknown = [h for h in revision.drop_hosts if h not in names]
    rows = {(h.host, i.package) for h in plan.hosts for i in h.items}
    for entry in [*revision.drop_packages, *revision.defer]:
        if not any(_pick(entry, h, p) for h, p in rows):
            unknown.append(entry)
    if unknown:
        raise ValueError(f"not in the plan: {', '.join(unknown)}")
    if not (revision.drop_hosts or revision.drop_packages or revision.defer):
        raise ValueError("the revision changes nothing: drop hosts or packages, or defer some")
    deferred = list(plan.deferred)
    hosts = []
    reason = revision.note.strip() or f"deferred by {revision.engineer}"
    for h in plan.hosts:
        if h.host in revision.drop_hosts:
            continue
        kept = []
        for item in h.items:
            if any(_pick(e, h.host, item.package) for e in revision.drop_packages):
                continue
            if any(_pick(e, h.host, item.package) for e in revision.defer):
                deferred.append(Deferred(host=h.host, package=item.package, reason=reason))
                continue
            kept.append(item)
        hosts.append(h.model_copy(update={"items": kept}))
    changes = []
    if revision.drop_hosts:
        changes.append("dropped hosts " + ", ".join(revision.drop_hosts))
    if revision.drop_packages:
        changes.append("dropped " + ", ".join(revision.drop_packages))
    if revision.defer:
        changes.append("deferred " + ", ".join(revision.defer))
    note = f"revision {plan.revision + 1} by {revision.engineer}: {'; '.join(changes)}"
    if revision.note.strip():
        note += f" ({revision.note.strip()})"
    return plan.model_copy(
        update={
            "hosts": hosts,
            "deferred": deferred,
            "revision": plan.revision + 1,
            "notes": [*plan.notes, note],
        }
    )


# --- closure: does the re-scan prove the advisories closed? ------------------------------------


@dataclass(frozen=True)
class Closure:
    host: str
    package: str
    advisory: str
    closed: bool
    detail: str


def closures(
    host: HostPlan, installed_after: Mapping[str, str], matches_after: Iterable[Match]
) -> list[Closure]:
    """Per (package, advisory) of the host's plan: closed when the re-scan shows the package
    at its target version (or newer) and the advisory no longer matches it."""
    still = {(m.package, m.advisory) for m in matches_after}
    out = []
    for item in host.items:
        now = installed_after.get(item.package)
        for advisory in item.advisories:
            if now is None:
                out.append(Closure(host.host, item.package, advisory, False, "not installed"))
            elif (item.package, advisory) in still:
                out.append(
                    Closure(host.host, item.package, advisory, False, f"{now}: still affected")
                )
            elif compare(host.family, now, item.target) < 0:
                out.append(
                    Closure(host.host, item.package, advisory, False, f"{now}: below {item.target}")
                )
            else:
                out.append(Closure(host.host, item.package, advisory, True, f"{now} installed"))
    return out


# --- what the approver reads ---------------------------------------------------------------------


def render_plan_markdown(plan: PatchPlan) -> str:
    """The plan as the approver sees it (gate form, page, e-mail): every value escaped."""
    title = "Patch test report" if plan.kind == "responsive" else "Patch plan"
    reboots = [h.host for h in plan.hosts if h.reboot]
    lines = [
        f"### {title} · {md_escape(plan.customer)} · {md_escape(plan.contract)} "
        f"(revision {plan.revision})",
        "",
        f"- **Plan hash:** `{plan.digest()}`",
        "- **What happens after approval:** "
        + (
            "upkeep installs exactly these versions, staging hosts first, health checks after"
            if plan.mode == "apply"
            else "nothing is installed by upkeep (report only); the plan is the agreed basis"
        ),
        f"- **Updates:** {plan.items} on {sum(1 for h in plan.hosts if h.items)} host(s)",
        "- **Reboot needed:** " + (md_escape(", ".join(reboots)) if reboots else "no host"),
    ]
    if plan.symptom:
        lines.append(f"- **Fault:** {md_escape(plan.symptom)}")
    if plan.kind == "responsive":
        tested = "; ".join(f"{h}: {r}" for h, r in plan.tests.items())
        lines.append(
            "- **Tested on staging:** "
            + (md_escape(tested) if tested else "NOT TESTED (no staging host has the packages)")
        )
    lines += [
        "",
        "| host | stage | package | installed | target | advisories | severity | restart |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for h in plan.ordered_hosts():
        for i in h.items:
            lines.append(
                f"| {md_escape(h.host)} | {h.stage} | {md_escape(i.package)} | "
                f"{md_escape(i.installed)} | {md_escape(i.target)} | "
                f"{md_escape(', '.join(i.advisories), limit=200)} | "
                f"{md_escape(i.severity or '')} | "
                f"{i.restart} |"
            )
    if plan.unavailable:
        lines += ["", "**Not in the plan (no installable fix yet):**"]
        lines += [
            f"- {md_escape(u.host)}: {md_escape(u.package)} {md_escape(u.installed)}: "
            f"{md_escape(u.why)}"
            for u in plan.unavailable[:30]
        ]
        if len(plan.unavailable) > 30:
            lines.append(f"- … and {len(plan.unavailable) - 30} more (full list in the report)")
    if plan.deferred:
        lines += ["", "**Deferred:**"]
        lines += [
            f"- {md_escape(d.host)}: {md_escape(d.package)}: {md_escape(d.reason)}"
            for d in plan.deferred
        ]
    if plan.not_scanned:
        lines += ["", "**Not surveyed:**"]
        lines += [f"- {md_escape(h)}: {md_escape(why)}" for h, why in plan.not_scanned.items()]
    if plan.notes:
        lines += ["", "**Revision notes:**"] + [f"- {md_escape(n)}" for n in plan.notes]
    return "\n".join(lines)
