"""A release's effect report: the records of the periods before and after read back, compared
(``upkeep.domain.release_effect``), written as an HTML page under the report directory, a
Markdown artifact and the customer's mail; and the report's own run scheduled on Prefect's
server for ``effect_report_days`` after the release finished.

Every figure comes from upkeep's records: the interface monitor's probes
(``interfaceprobe``), the findings, and the syslog check's results of the inspections made in
each period. The system log is not read over SSH for this: the catalogue's syslog command
counts back from the moment it runs (and a plain syslog file has no time filter), so it cannot
count a period that is over; a period without an inspection reads "not measured".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from sqlmodel import Session, col, select

from upkeep.db import open_session
from upkeep.domain.contract import ContractView
from upkeep.domain.interfaces import INTERFACE_CHECK, Sample, SystemSpec, subject
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import artifact_key
from upkeep.domain.processes import deployment_name
from upkeep.domain.release_effect import (
    EffectReport,
    OpenedFinding,
    Periods,
    SyslogReading,
    assess,
    effect_periods,
)
from upkeep.models import Finding, Host, HostResult, InterfaceProbe, Release
from upkeep.settings import get_settings
from upkeep.tasks.guards import Refused
from upkeep.tasks.notify import Mail, _one_line, _render_pair, mail_recipients
from upkeep.tasks.release_run import load_release, log_step, report_file
from upkeep.tasks.render import link_target, template_env, write_atomic
from upkeep.tasks.runs import current_flow_run_id, schedule_deployment_run

EFFECT_FLOW = "release-effect"
"""The flow's name, and the first half of its deployments' names."""
EFFECT_STEP = "effect-report"
SCHEDULED_STEP = "effect-scheduled"
REPORT_TEMPLATE = "report/release_effect.html.j2"
RELEASED = ("released", "rolled-back", "rollback-failed")
"""The statuses of a release that ran: something was released (and maybe rolled back)."""
SYSLOG_CHECK = "syslog"
_TIME = "%Y-%m-%d %H:%M %Z"


def finished_release(release_id: int) -> Release:
    """The release, finished; LookupError when there is none, Refused when it has not
    finished (no after period to report on) or ended before releasing anything."""
    row = load_release(release_id)[0]
    if row.finished_at is None:
        raise Refused(
            f"release {release_id} is {row.status} and has not finished: the effect report "
            "compares the days before the release with the days after it ended"
        )
    if row.status not in RELEASED:
        raise Refused(
            f"release {release_id} ended {row.status} without releasing anything: there is no "
            "effect to report"
        )
    return row


def _in(column: Any, start: datetime, end: datetime) -> Any:
    return (col(column) >= start) & (col(column) < end)


def _samples(
    db: Session, row: Release, system: SystemSpec, periods: Periods
) -> dict[str, tuple[list[Sample], list[Sample]]]:
    """Per interface, its probes before and after: each smoke check of the inventory (a
    command check once per release host), then any other probed in the periods."""
    probes = db.exec(
        select(InterfaceProbe).where(
            InterfaceProbe.contract_id == row.contract_id,
            InterfaceProbe.system == row.system,
            _in(InterfaceProbe.probed_at, periods.before_start, periods.before_end)
            | _in(InterfaceProbe.probed_at, periods.after_start, periods.after_end),
        )
    ).all()
    names = [
        subject(row.system, c.name, host)
        for c in system.smoke_checks
        for host in (sorted(row.hosts) if c.runs_on_hosts else [""])
    ]
    names += sorted({subject(row.system, p.check, p.host) for p in probes} - set(names))
    out: dict[str, tuple[list[Sample], list[Sample]]] = {n: ([], []) for n in names}
    for p in probes:
        before, after = out[subject(row.system, p.check, p.host)]
        (before if p.probed_at < periods.before_end else after).append(
            Sample(p.probed_at, p.ok, p.latency_ms)
        )
    return out


def _findings(
    db: Session, row: Release, periods: Periods
) -> tuple[list[OpenedFinding], list[OpenedFinding]]:
    """The findings opened in each period on the release's hosts, and about the system's
    interfaces."""
    rows = db.exec(
        select(Finding, Host)
        .join(Host, col(Host.id) == col(Finding.host_id), isouter=True)
        .where(
            Finding.contract_id == row.contract_id,
            _in(Finding.first_seen_at, periods.before_start, periods.before_end)
            | _in(Finding.first_seen_at, periods.after_start, periods.after_end),
        )
    ).all()
    before: list[OpenedFinding] = []
    after: list[OpenedFinding] = []
    for finding, host in rows:
        if host is not None:
            if host.name not in row.hosts:
                continue
            where = host.name
        elif finding.check == INTERFACE_CHECK and finding.subject.startswith(f"{row.system}/"):
            where = finding.subject
        else:
            continue
        item = OpenedFinding(
            where=where,
            check=finding.check,
            subject=finding.subject,
            severity=finding.severity,
            message=finding.message,
            first_seen_at=finding.first_seen_at,
        )
        (before if finding.first_seen_at < periods.before_end else after).append(item)
    return before, after


def _syslog(
    db: Session, row: Release, view: ContractView, periods: Periods
) -> tuple[list[SyslogReading], list[SyslogReading]]:
    """The syslog check's counts that inspections of the release's hosts recorded in each
    period."""
    results = db.exec(
        select(HostResult, Host)
        .join(Host, col(Host.id) == col(HostResult.host_id))
        .where(
            Host.contract_id == row.contract_id,
            col(Host.name).in_(row.hosts),
            _in(HostResult.started_at, periods.before_start, periods.before_end)
            | _in(HostResult.started_at, periods.after_start, periods.after_end),
        )
    ).all()
    before: list[SyslogReading] = []
    after: list[SyslogReading] = []
    for result, host in results:
        facts = (result.facts or {}).get(SYSLOG_CHECK)
        if not isinstance(facts, dict) or not isinstance(facts.get("count"), int):
            continue  # the check did not run there, was skipped or could not be parsed
        source = str(facts.get("source", "journal"))
        reading = SyslogReading(
            host=host.name,
            at=result.started_at,
            count=facts["count"],
            source=source,
            path=facts.get("path"),
            window_hours=view.thresholds.syslog_window_hours if source == "journal" else None,
        )
        (before if result.started_at < periods.before_end else after).append(reading)
    return before, after


@task(name="release-effect-figures")
def effect_figures(release_id: int, now: datetime) -> EffectReport:
    """The before/after comparison from the records, as of ``now`` (part of the task's inputs:
    a later report reads the records anew)."""
    row, view, system, spec = load_release(release_id)
    assert row.finished_at is not None, "finished_release() is checked at the start"
    periods = effect_periods(row.window_at, row.finished_at, spec.effect_report_days, now)
    with open_session() as db:
        samples = _samples(db, row, system, periods)
        found_before, found_after = _findings(db, row, periods)
        logs_before, logs_after = _syslog(db, row, view, periods)
    return assess(
        contract=view.code,
        system=row.system,
        version=row.version,
        status=row.status,
        periods=periods,
        samples=samples,
        findings_before=found_before,
        findings_after=found_after,
        syslog_before=logs_before,
        syslog_after=logs_after,
    )


def _local(tz: ZoneInfo) -> Callable[[datetime | None], str]:
    def when(value: datetime | None) -> str:
        return "—" if value is None else value.astimezone(tz).strftime(_TIME)

    return when


def comparison_rows(effect: EffectReport) -> list[dict[str, str]]:
    """Every compared figure as one row (interface, figure, before, after, verdict, text):
    what the report, the artifact and the mail list."""
    rows = [
        {
            "interface": c.interface,
            "figure": comp.figure,
            "before": comp.before,
            "after": comp.after,
            "verdict": comp.verdict,
            "text": comp.text,
        }
        for c in effect.checks
        for comp in c.comparisons
    ]
    for where, comp in (
        (f"{effect.system}: hosts and interfaces", effect.findings.comparison),
        (f"{effect.system}: hosts", effect.syslog.comparison),
    ):
        rows.append(
            {
                "interface": where,
                "figure": comp.figure,
                "before": comp.before,
                "after": comp.after,
                "verdict": comp.verdict,
                "text": comp.text,
            }
        )
    return rows


def _context(release_id: int, effect: EffectReport) -> dict[str, Any]:
    row, view, _, _ = load_release(release_id)
    tz = ZoneInfo(view.timezone)
    when = _local(tz)
    p = effect.periods
    return {
        "effect": effect,
        "rows": comparison_rows(effect),
        "release_id": release_id,
        "contract_code": view.code,
        "contract_name": view.name,
        "timezone": view.timezone,
        "hosts": list(row.hosts),
        "window": when(row.window_at),
        "finished": when(row.finished_at),
        "before_period": f"{when(p.before_start)} to {when(p.before_end)}",
        "after_period": f"{when(p.after_start)} to {when(p.after_end)}",
        "generated": datetime.now(tz).strftime(_TIME),
        "when": when,
        "flow_run_id": current_flow_run_id() or "",
    }


@task(name="write-effect-report")
def write_effect_report(release_id: int, effect: EffectReport) -> str:
    """Render the report (autoescaped) to a new file under the report directory; its path."""
    settings = get_settings()
    context = _context(release_id, effect)
    html = (
        template_env(settings.templates_dir, html=True)
        .get_template(REPORT_TEMPLATE)
        .render(**context)
    )
    path = report_file("release-effect", effect.contract, release_id, ZoneInfo(context["timezone"]))
    write_atomic(path, html)
    return str(path)


def effect_markdown(effect: EffectReport, report_path: str | Path) -> str:
    """The artifact: the headline, the periods' figures as a table, the link to the page."""
    lines = [
        f"## {md_escape(effect.headline)}",
        "",
        *[f"- {md_escape(note)}" for note in effect.notes],
        "",
        "| Interface | Figure | Before | After | Verdict |",
        "|---|---|---|---|---|",
        *[
            f"| {md_escape(r['interface'])} | {md_escape(r['figure'])} | {md_escape(r['before'])} "
            f"| {md_escape(r['after'])} | {md_escape(r['verdict'])} |"
            for r in comparison_rows(effect)
        ],
        "",
        f"System-log errors: {md_escape(effect.syslog.source)}.",
        "",
        f"[Open the full report]({link_target(Path(report_path))})",
    ]
    return "\n".join(lines) + "\n"


@task(name="publish-effect-report")
def publish_effect_report(effect: EffectReport, report_path: str) -> None:
    create_markdown_artifact(
        markdown=effect_markdown(effect, report_path),
        key=artifact_key("release-effect", effect.contract),
        description=md_escape(f"effect of {effect.system} {effect.version} ({effect.contract})"),
    )


@task(name="mail-effect-report")
def mail_effect_report(release_id: int, effect: EffectReport, report_path: str) -> dict[str, Any]:
    """The report to the contract's recipients (queued in the outbox first), the page
    attached."""
    settings = get_settings()

    def compose() -> Mail:
        context = _context(release_id, effect) | {"report_name": Path(report_path).name}
        text, html = _render_pair(
            settings.templates_dir,
            "email/release_effect.txt.j2",
            "email/release_effect.html.j2",
            context,
        )
        return Mail(_one_line(f"[upkeep] {effect.headline}"), text, html, (report_path,))

    return mail_recipients(effect.contract, "release_effect", compose, smtp=settings.smtp)


@task(name="record-effect-report")
def record_effect_report(release_id: int, effect: EffectReport, report_path: str) -> None:
    """The ``effect-report`` step: the headline, the verdict, where the page is."""
    p = effect.periods
    log_step(
        release_id,
        EFFECT_STEP,
        True,
        f"{effect.headline} (report {Path(report_path).name})",
        detail={
            "verdict": effect.verdict,
            "report_path": report_path,
            "flow_run_id": current_flow_run_id(),
            "before": [p.before_start.isoformat(), p.before_end.isoformat()],
            "after": [p.after_start.isoformat(), p.after_end.isoformat()],
            "after_complete": p.after_complete,
        },
    )


def effect_due(release_id: int) -> datetime:
    """When the effect report is due: ``effect_report_days`` after the release finished
    (Refused as :func:`finished_release`)."""
    row = finished_release(release_id)
    spec = load_release(release_id)[3]
    assert row.finished_at is not None
    return row.finished_at + timedelta(days=spec.effect_report_days)


@task(name="schedule-effect-report")
def schedule_effect_report(release_id: int) -> str | None:
    """A run of the contract's ``release-effect`` deployment that Prefect's server starts
    ``effect_report_days`` after the release finished (kept by the server: it survives
    restarts of upkeep and of the server), recorded as the ``effect-scheduled`` step; the flow
    run's id. None, with a warning and the step saying so, when nothing serves that deployment:
    then run ``upkeep releases effect ID`` by hand. Refused for a release that has not finished
    or released nothing (:func:`finished_release`)."""
    _, view, _, _ = load_release(release_id)
    at = effect_due(release_id)
    deployment = f"{EFFECT_FLOW}/{deployment_name(view.code)}"
    scheduled = schedule_deployment_run(
        EFFECT_FLOW,
        view.code,
        "release_effect",
        {"params": {"release_id": release_id}},
        at,
    )
    when = at.astimezone(ZoneInfo(view.timezone)).strftime(_TIME)
    if scheduled:
        summary = f"the effect report (run {scheduled}) starts at {when}"
    else:
        summary = (
            f"no deployment {deployment} serves the effect report: run `upkeep releases effect "
            f"{release_id}` by hand at or after {when}"
        )
        get_run_logger().warning("%s", summary)
    log_step(
        release_id,
        SCHEDULED_STEP,
        scheduled is not None,
        summary,
        detail={"flow_run_id": scheduled, "at": at.isoformat(), "deployment": deployment},
    )
    return scheduled


def release_contract(release_id: int) -> str:
    """The code of the release's contract (for the run's name); LookupError without one."""
    return load_release(release_id)[1].code


__all__ = [
    "EFFECT_FLOW",
    "EFFECT_STEP",
    "SCHEDULED_STEP",
    "comparison_rows",
    "effect_due",
    "effect_figures",
    "effect_markdown",
    "finished_release",
    "mail_effect_report",
    "publish_effect_report",
    "record_effect_report",
    "release_contract",
    "schedule_effect_report",
    "write_effect_report",
]
