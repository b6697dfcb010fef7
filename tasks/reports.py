"""Inspection reports: gather a run's records into a typed report, then render it.

Three separate steps, so each can be tested alone and nothing here sends mail:

* :func:`build_inspection_report` reads the database and returns pure data
  (:class:`InspectionReport`), with every time already in the contract's timezone;
* :func:`render_inspection_html`, :func:`render_inspection_markdown` and
  :func:`findings_table` turn that data into a printable page, a Prefect Markdown artifact and
  the rows of a Prefect table artifact;
* :func:`save_report` writes the page under the report directory, atomically.

Everything a host printed (messages, evidence) is untrusted text: the HTML templates are
autoescaped and the Markdown goes through :func:`upkeep.domain.markup.md_escape`, the one
escaper.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlmodel import Session, col, or_, select

from upkeep.domain.calendar import AnnualPlan, plan_view
from upkeep.domain.checks.base import Severity
from upkeep.domain.findings import severity_rank
from upkeep.domain.inspection import PLAN_GATE
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import run_url
from upkeep.models import (
    Approval,
    Contract,
    Customer,
    Finding,
    FindingStatus,
    Host,
    InspectionRun,
    utcnow,
)
from upkeep.tasks.records import RecordNotFound, run_results

log = logging.getLogger(__name__)

SEVERITIES: tuple[str, ...] = tuple(s.value for s in sorted(Severity, key=lambda s: s.rank))
"""Severity values, worst first."""

SCORE_PENALTY: Mapping[str, int] = {"critical": 25, "major": 10, "minor": 3, "info": 0}

SCORE_FORMULA = (
    "Host score = 100 − 25 per critical − 10 per major − 3 per minor finding (info: 0), "
    "never below 0; a host that could not be reached scores 0. "
    "Overall score = the mean of the host scores, rounded."
)

REPORT_TEMPLATE = "report/inspection.html.j2"

FindingState = Literal["new", "persisting", "resolved"]


# ---------------------------------------------------------------------------------------------
# Scores


class _HasSeverity(Protocol):
    @property
    def severity(self) -> str | None: ...


def _severity_of(item: Mapping[str, Any] | _HasSeverity) -> str | None:
    value = item.get("severity") if isinstance(item, Mapping) else item.severity
    return None if value is None else str(value)


def host_score(
    measurements_or_findings: Iterable[Mapping[str, Any] | _HasSeverity], reachable: bool
) -> int:
    """A host's health, 0..100.

    100 minus 25 per critical, 10 per major and 3 per minor item (info and ok items cost
    nothing), never below 0. An unreachable host scores 0: nothing about it could be checked.
    Accepts measurement dicts (as stored on ``HostResult``), :class:`Measurement` or
    :class:`Finding` objects; an unknown severity costs nothing.
    """
    if not reachable:
        return 0
    penalty = 0
    for item in measurements_or_findings:
        severity = _severity_of(item)
        if severity is not None:
            penalty += SCORE_PENALTY.get(severity, 0)
    return max(0, 100 - penalty)


def overall_score(host_scores: Sequence[int]) -> int:
    """The mean of the host scores, rounded half up; 0 when no host was inspected."""
    if not host_scores:
        return 0
    return int(sum(host_scores) / len(host_scores) + 0.5)


def severity_counts(items: Iterable[Mapping[str, Any] | _HasSeverity]) -> dict[str, int]:
    """How many items of each severity, every severity present (worst first), ok items ignored."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for item in items:
        severity = _severity_of(item)
        if severity in counts:
            counts[severity] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# The report's data


@dataclass(frozen=True)
class CustomerInfo:
    code: str
    name: str


@dataclass(frozen=True)
class ContractInfo:
    code: str
    name: str
    timezone: str


@dataclass(frozen=True)
class RunInfo:
    id: int
    kind: str
    status: str
    window: str | None
    started_at: datetime
    finished_at: datetime | None
    requested_by: str | None
    flow_run_id: str | None


@dataclass(frozen=True)
class PlanApproval:
    approver: str | None
    decided_at: datetime | None
    comment: str | None


@dataclass(frozen=True)
class MeasurementRow:
    check: str
    subject: str
    value: str
    threshold: str
    severity: str | None
    message: str
    evidence: str
    recommendation: str


@dataclass(frozen=True)
class HostRow:
    name: str
    address: str
    port: int
    role: str | None
    system: str | None
    reachable: bool
    error: str | None
    error_kind: str | None
    score: int
    counts: dict[str, int]
    measurements: tuple[MeasurementRow, ...]
    skipped: dict[str, str]

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class FindingRow:
    host: str
    check: str
    subject: str
    severity: str
    message: str
    evidence: str
    recommendation: str
    first_seen_at: datetime
    last_seen_at: datetime
    state: FindingState
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class SeverityGroup:
    severity: str
    findings: tuple[FindingRow, ...]


@dataclass(frozen=True)
class PreviousRun:
    id: int
    kind: str
    started_at: datetime


@dataclass(frozen=True)
class Changes:
    """What changed since the previous inspection: as seen by this run's reconciliation."""

    previous: PreviousRun | None
    new: tuple[FindingRow, ...]
    persisting: tuple[FindingRow, ...]
    resolved: tuple[FindingRow, ...]


@dataclass(frozen=True)
class UnreachedHost:
    name: str
    endpoint: str
    reason: str
    error_kind: str | None


@dataclass(frozen=True)
class InspectionReport:
    """Everything one inspection report shows; pure data, times in the contract's timezone."""

    customer: CustomerInfo
    contract: ContractInfo
    run: RunInfo
    approval: PlanApproval | None
    hosts: tuple[HostRow, ...]
    findings: tuple[SeverityGroup, ...]
    """This run's open findings (new and persisting), worst first; no empty groups."""
    changes: Changes
    unreached: tuple[UnreachedHost, ...]
    overall_score: int
    generated_at: datetime
    score_formula: str = SCORE_FORMULA
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    """Findings of this run by severity."""

    @property
    def finding_count(self) -> int:
        return sum(len(g.findings) for g in self.findings)


# ---------------------------------------------------------------------------------------------
# Building it from the database


def contract_zone(name: str) -> tzinfo:
    """The contract's timezone; UTC (with a warning) when the name is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown timezone %r in the contract, showing times in UTC", name)
        return UTC


def _local(value: datetime, zone: tzinfo) -> datetime:
    return value.astimezone(zone)


def _local_opt(value: datetime | None, zone: tzinfo) -> datetime | None:
    return None if value is None else value.astimezone(zone)


def _measurement_row(raw: Mapping[str, Any]) -> MeasurementRow:
    severity = raw.get("severity")
    return MeasurementRow(
        check=str(raw.get("check", "")),
        subject=str(raw.get("subject", "") or ""),
        value=str(raw.get("value", "") or ""),
        threshold=str(raw.get("threshold", "") or ""),
        severity=None if severity is None else str(severity),
        message=str(raw.get("message", "") or ""),
        evidence=str(raw.get("evidence", "") or ""),
        recommendation=str(raw.get("recommendation", "") or ""),
    )


def _finding_row(finding: Finding, host: Host, state: FindingState, zone: tzinfo) -> FindingRow:
    return FindingRow(
        host=host.name,
        check=finding.check,
        subject=finding.subject,
        severity=finding.severity,
        message=finding.message,
        evidence=finding.evidence,
        recommendation=finding.recommendation,
        first_seen_at=_local(finding.first_seen_at, zone),
        last_seen_at=_local(finding.last_seen_at, zone),
        state=state,
        resolved_at=_local_opt(finding.resolved_at, zone),
    )


def _finding_sort_key(row: FindingRow) -> tuple[int, str, str, str]:
    return (severity_rank(row.severity), row.host, row.check, row.subject)


def _plan_approval(session: Session, run: InspectionRun, zone: tzinfo) -> PlanApproval | None:
    if not run.flow_run_id:
        return None
    approval = session.exec(
        select(Approval)
        .where(
            or_(
                Approval.flow_run_id == run.flow_run_id,
                Approval.parent_flow_run_id == run.flow_run_id,
            ),
            Approval.gate == PLAN_GATE,
            Approval.decision == "approve",
        )
        .order_by(col(Approval.decided_at).desc(), col(Approval.id).desc())
    ).first()
    if approval is None:
        return None
    return PlanApproval(
        approver=approval.approver,
        decided_at=_local_opt(approval.decided_at, zone),
        comment=approval.comment,
    )


def _previous_run(session: Session, run: InspectionRun, zone: tzinfo) -> PreviousRun | None:
    prev = session.exec(
        select(InspectionRun)
        .where(
            InspectionRun.contract_id == run.contract_id,
            (col(InspectionRun.started_at) < run.started_at)
            | (
                (col(InspectionRun.started_at) == run.started_at) & (col(InspectionRun.id) < run.id)
            ),
        )
        .order_by(col(InspectionRun.started_at).desc(), col(InspectionRun.id).desc())
    ).first()
    if prev is None or prev.id is None:
        return None
    return PreviousRun(id=prev.id, kind=prev.kind, started_at=_local(prev.started_at, zone))


def _run_findings(
    session: Session, run: InspectionRun, zone: tzinfo
) -> tuple[list[FindingRow], list[FindingRow], list[FindingRow]]:
    """(new, persisting, resolved) findings of the run, each sorted worst first."""
    rows = session.exec(
        select(Finding, Host)
        .join(Host, col(Host.id) == col(Finding.host_id))
        .where(
            (col(Finding.run_id) == run.id)
            | (col(Finding.last_seen_run_id) == run.id)
            | (col(Finding.resolved_by_run_id) == run.id)
        )
    ).all()
    new: list[FindingRow] = []
    persisting: list[FindingRow] = []
    resolved: list[FindingRow] = []
    for finding, host in rows:
        if finding.resolved_by_run_id == run.id:
            resolved.append(_finding_row(finding, host, "resolved", zone))
        elif finding.run_id == run.id:
            new.append(_finding_row(finding, host, "new", zone))
        elif finding.status == FindingStatus.OPEN and finding.last_seen_run_id == run.id:
            persisting.append(_finding_row(finding, host, "persisting", zone))
    for group in (new, persisting, resolved):
        group.sort(key=_finding_sort_key)
    return new, persisting, resolved


def _group_by_severity(rows: Iterable[FindingRow]) -> tuple[SeverityGroup, ...]:
    by_sev: dict[str, list[FindingRow]] = {}
    for row in rows:
        by_sev.setdefault(row.severity, []).append(row)
    ordered = sorted(by_sev, key=severity_rank)
    return tuple(
        SeverityGroup(sev, tuple(sorted(by_sev[sev], key=_finding_sort_key))) for sev in ordered
    )


def build_inspection_report(
    *, session: Session, run_id: int, generated_at: datetime | None = None
) -> InspectionReport:
    """Gather run ``run_id`` into an :class:`InspectionReport`; reads only, writes nothing.

    Findings of the run are those it found first (``new``) and those it saw again
    (``persisting``, still open); ``changes.resolved`` are those it resolved. Built right after
    the run this is exactly what the run saw; built later, a finding's text is its latest.
    Raises :class:`RecordNotFound` for an unknown run.
    """
    run = session.get(InspectionRun, run_id)
    if run is None or run.id is None:
        raise RecordNotFound(f"no inspection run {run_id}")
    contract = session.get(Contract, run.contract_id)
    assert contract is not None
    customer = session.get(Customer, contract.customer_id)
    assert customer is not None
    zone = contract_zone(contract.timezone)

    hosts: list[HostRow] = []
    unreached: list[UnreachedHost] = []
    for result, host in run_results(session=session, run_id=run.id):
        measurements = tuple(_measurement_row(m) for m in result.measurements)
        row = HostRow(
            name=host.name,
            address=host.address,
            port=host.port,
            role=host.role,
            system=host.system,
            reachable=result.reachable,
            error=result.error,
            error_kind=result.error_kind,
            score=host_score(result.measurements, result.reachable),
            counts=severity_counts(result.measurements),
            measurements=measurements,
            skipped=dict(result.skipped),
        )
        hosts.append(row)
        if not result.reachable:
            unreached.append(
                UnreachedHost(
                    name=host.name,
                    endpoint=row.endpoint,
                    reason=result.error or "not reached (no error recorded)",
                    error_kind=result.error_kind,
                )
            )

    new, persisting, resolved = _run_findings(session, run, zone)
    current = new + persisting
    return InspectionReport(
        customer=CustomerInfo(code=customer.code, name=customer.name),
        contract=ContractInfo(code=contract.code, name=contract.name, timezone=contract.timezone),
        run=RunInfo(
            id=run.id,
            kind=run.kind,
            status=str(run.status),
            window=run.window,
            started_at=_local(run.started_at, zone),
            finished_at=_local_opt(run.finished_at, zone),
            requested_by=run.requested_by,
            flow_run_id=run.flow_run_id,
        ),
        approval=_plan_approval(session, run, zone),
        hosts=tuple(hosts),
        findings=_group_by_severity(current),
        changes=Changes(
            previous=_previous_run(session, run, zone),
            new=tuple(new),
            persisting=tuple(persisting),
            resolved=tuple(resolved),
        ),
        unreached=tuple(unreached),
        overall_score=overall_score([h.score for h in hosts]),
        generated_at=_local(generated_at or utcnow(), zone),
        counts=severity_counts(current),
    )


# ---------------------------------------------------------------------------------------------
# Rendering


def format_dt(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """A report time as text; an em dash for none."""
    return "—" if value is None else value.strftime(fmt)


def format_date(value: datetime | None) -> str:
    return format_dt(value, "%Y-%m-%d")


def score_class(score: int) -> str:
    """CSS class for a score: good (>= 90), fair (>= 70), poor."""
    if score >= 90:
        return "good"
    if score >= 70:
        return "fair"
    return "poor"


@lru_cache(maxsize=16)
def template_env(templates_dir: Path, *, html: bool = True) -> Environment:
    """The Jinja2 environment for ``templates_dir``: the one way upkeep writes HTML.

    Always ``StrictUndefined`` (a missing value is an error, not an empty cell). Escaping
    follows the template's name, whichever environment renders it: ``*.txt.j2`` (plain-text
    mail, never HTML) is not escaped, every other template is autoescaped, because host
    output and inventory text end up in them. ``html`` only decides for ``from_string``.
    """
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=select_autoescape(
            enabled_extensions=("html", "html.j2", "htm", "xml"),
            disabled_extensions=("txt", "txt.j2"),
            default_for_string=html,
            default=True,
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["dt"] = format_dt
    env.filters["date"] = format_date
    env.filters["score_class"] = score_class
    env.globals["SEVERITIES"] = SEVERITIES
    return env


def render_inspection_html(
    report: InspectionReport, templates_dir: Path, *, prefect_ui_url: str | None = None
) -> str:
    """The report as one self-contained printable HTML page (inline CSS, no external assets).

    Rendered from ``report/inspection.html.j2`` with autoescaping and ``StrictUndefined``.
    With ``prefect_ui_url`` the footer links the flow run.
    """
    template = template_env(Path(templates_dir), html=True).get_template(REPORT_TEMPLATE)
    return template.render(
        report=report, flow_run_url=run_url(prefect_ui_url, report.run.flow_run_id)
    )


def link_target(report_url: str | Path) -> str:
    """A Markdown link target for a file path or URL that cannot break the link."""
    if isinstance(report_url, Path):
        return report_url.resolve().as_uri()
    # Angle brackets let a target contain spaces; it must not contain brackets or newlines.
    return "<" + re.sub(r"[<>\s]", lambda m: f"%{ord(m.group()):02X}", report_url) + ">"


def render_inspection_markdown(report: InspectionReport, report_url: str | Path) -> str:
    """A short Markdown summary for a Prefect artifact, linking the full report.

    Every value that comes from the inventory or a host is escaped, so output containing
    ``|`` or newlines cannot break the tables.
    """
    c = report.counts
    lines = [
        f"# Inspection {md_escape(report.contract.code)}: {md_escape(report.customer.name)}",
        "",
        f"**Overall health score: {report.overall_score}/100** · "
        f"{c['critical']} critical · {c['major']} major · {c['minor']} minor · {c['info']} info",
        "",
        f"- Contract: {md_escape(report.contract.name)} ({md_escape(report.contract.code)})",
        f"- Window: {md_escape(report.run.window or '—')}",
        f"- Run: {report.run.id} ({md_escape(report.run.kind)}), started "
        f"{format_dt(report.run.started_at)}",
    ]
    if report.approval is not None:
        lines.append(
            f"- Plan approved by {md_escape(report.approval.approver or 'unknown')} "
            f"at {format_dt(report.approval.decided_at)}"
        )
    ch = report.changes
    lines += [
        f"- Since the previous inspection: {len(ch.new)} new, {len(ch.persisting)} persisting, "
        f"{len(ch.resolved)} resolved",
        "",
        f"[Open the full report]({link_target(report_url)})",
        "",
        "| Host | Address | Score | Critical | Major | Minor | Info |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for h in report.hosts:
        score = str(h.score) if h.reachable else "0 (not reached)"
        lines.append(
            f"| {md_escape(h.name)} | {md_escape(h.endpoint)} | {score} | "
            + " | ".join(str(h.counts[s]) for s in SEVERITIES)
            + " |"
        )
    if report.unreached:
        lines += ["", "## Hosts not reached", ""]
        lines += [
            f"- {md_escape(u.name)} ({md_escape(u.endpoint)}): {md_escape(u.reason)}"
            for u in report.unreached
        ]
    if report.finding_count:
        lines += [
            "",
            "## Findings",
            "",
            "| Severity | Host | Check | Subject | Message | Status |",
            "|---|---|---|---|---|---|",
        ]
        for group in report.findings:
            for f in group.findings:
                lines.append(
                    f"| {f.severity} | {md_escape(f.host)} | {md_escape(f.check)} | "
                    f"{md_escape(f.subject)} | {md_escape(f.message)} | {f.state} |"
                )
    return "\n".join(lines) + "\n"


def findings_table(report: InspectionReport) -> list[dict[str, str]]:
    """This run's findings as rows for ``prefect.artifacts.create_table_artifact``, worst first."""
    return [
        {
            "severity": f.severity,
            "host": f.host,
            "check": f.check,
            "subject": f.subject,
            "message": f.message,
            "status": f.state,
            "first_seen": format_date(f.first_seen_at),
            "recommendation": f.recommendation,
        }
        for group in report.findings
        for f in group.findings
    ]


# ---------------------------------------------------------------------------------------------
# Saving

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(value: str) -> str:
    """``value`` made safe as one file-name component (no separators, no leading dots)."""
    name = _UNSAFE_NAME.sub("_", value).strip("._")
    if not name:
        raise ValueError(f"{value!r} cannot be used in a file name")
    return name


def write_atomic(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a temporary file renamed over it (mode 0640).

    A reader never sees half a file, and a rerun replaces the previous one whole.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # Reports describe a customer's infrastructure: owner and group only.
        os.chmod(tmp_name, 0o640)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def report_path(*, report_dir: Path, contract_code: str, run_id: int, started_at: datetime) -> Path:
    """Where :func:`save_report` puts a report: ``<dir>/<contract>/<YYYY>/inspection-...html``."""
    code = safe_name(contract_code)
    return (
        Path(report_dir)
        / code
        / f"{started_at:%Y}"
        / f"inspection-{code}-{run_id}-{started_at:%Y-%m-%d}.html"
    )


def save_report(
    html: str, *, report_dir: Path, contract_code: str, run_id: int, started_at: datetime
) -> Path:
    """Write ``html`` to :func:`report_path` atomically and return the path.

    The file is written to a temporary file in the same directory and renamed over the target,
    so a reader never sees half a report and a rerun replaces the previous file whole.
    """
    target = report_path(
        report_dir=report_dir, contract_code=contract_code, run_id=run_id, started_at=started_at
    )
    write_atomic(target, html)
    log.info("report written to %s", target)
    return target


PLAN_TEMPLATE = "plan/annual_plan.html.j2"


def render_annual_plan_html(plan: AnnualPlan, templates_dir: Path) -> str:
    """The plan as one self-contained printable HTML page (inline CSS, autoescaped)."""
    template = template_env(templates_dir, html=True).get_template(PLAN_TEMPLATE)
    return template.render(plan=plan, view=plan_view(plan))
