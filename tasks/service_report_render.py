"""A service report as a printable page, a Prefect Markdown artifact and a mail; saving it.

:func:`render_service_report_html`, :func:`render_service_report_markdown` and
:func:`render_service_report_email` turn a :class:`ServiceReport` (pure data, gathered by
:mod:`upkeep.tasks.service_report`) into text; :func:`save_service_report` writes the page
under the report directory, atomically. The HTML templates are autoescaped and every value
from the inventory or a host goes through ``md_escape`` in the Markdown.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from upkeep.domain.markup import md_escape
from upkeep.domain.naming import run_url
from upkeep.domain.report_time import format_dt
from upkeep.domain.service_report import PlannedRun, ServiceReport
from upkeep.tasks.render import link_target, safe_name, template_env, write_atomic

log = logging.getLogger(__name__)

REPORT_TEMPLATE = "report/service_report.html.j2"
EMAIL_TEXT_TEMPLATE = "email/service_report.txt.j2"
EMAIL_HTML_TEMPLATE = "email/service_report.html.j2"

NO_BACKUPS = "no backup verification recorded"
NO_PLAN = "Nothing is scheduled for the next period."


_KIND_TITLE = {"month": "Monthly", "quarter": "Quarterly", "year": "Annual"}


def report_title(report: ServiceReport) -> str:
    """``Monthly service report 2026-11``."""
    return f"{_KIND_TITLE.get(report.kind, '')} service report {report.label}".strip()


def render_service_report_html(
    report: ServiceReport, templates_dir: Path, prefect_ui_url: str | None = None
) -> str:
    """The report as one self-contained printable HTML page (inline CSS, no external assets).

    Rendered from ``report/service_report.html.j2`` with autoescaping and ``StrictUndefined``.
    With ``prefect_ui_url`` and a flow run id the footer links the flow run.
    """
    template = template_env(Path(templates_dir), html=True).get_template(REPORT_TEMPLATE)
    return template.render(
        report=report,
        title=report_title(report),
        no_backups=NO_BACKUPS,
        no_plan=NO_PLAN,
        flow_run_url=run_url(prefect_ui_url, report.flow_run_id),
    )


def _refs(refs: Sequence[str]) -> str:
    return ", ".join(refs) if refs else "none"


def plan_when(run: PlannedRun) -> str:
    """``2026-12-08 02:00 CET``."""
    return format_dt(run.at)


def render_service_report_markdown(
    report: ServiceReport, report_url: str | Path | None = None
) -> str:
    """A Markdown summary for a Prefect artifact, linking the full report when given.

    Every figure names the records it counts. Every value from the inventory or a host goes
    through ``md_escape``, so ``|`` or a line break in a finding cannot break the tables.
    """
    a = report.approvals
    lines = [
        f"# {report_title(report)}: {md_escape(report.contract.code)} · "
        f"{md_escape(report.customer.name)}",
        "",
        f"- Period: {report.period_text} ({md_escape(report.contract.timezone)})",
    ]
    lines += [f"- {f.label.capitalize()}: {f.count} ({_refs(f.refs)})" for f in report.figures]
    lines.append(
        f"- Of the approval gates: {a.escalations} escalated, {a.expiries} expired, "
        f"{a.pending} pending"
    )
    if not report.backups:
        lines.append(f"- Backups: {NO_BACKUPS}")
    if report.unverified_sources:
        lines.append(
            "- Backup sources with no verification in the period: "
            + ", ".join(md_escape(s) for s in report.unverified_sources)
        )
    lines.append(f"- Planned next period ({report.next_period_text}): {len(report.planned)} run(s)")
    if report_url is not None:
        lines += ["", f"[Open the full report]({link_target(report_url)})"]
    if report.runs:
        lines += [
            "",
            "## Runs",
            "",
            "| Run | Process | Started | Outcome | What went wrong |",
            "|---:|---|---|---|---|",
        ]
        lines += [
            f"| {r.id} | {md_escape(r.process)} | {format_dt(r.started_at)} | "
            f"{md_escape(r.verdict)} | {md_escape('; '.join(r.problems))} |"
            for r in report.runs
        ]
    if report.missed:
        lines += ["", "## Planned but not run", ""]
        lines += [
            f"- {md_escape(p.label)} ({md_escape(p.cadence)}): no run recorded"
            for p in report.missed
        ]
    if report.backups:
        lines += [
            "",
            "## Backup verifications",
            "",
            "| Verification | System | Verified | Outcome | Run |",
            "|---:|---|---|---|---:|",
        ]
        lines += [
            f"| {b.id} | {md_escape(b.system)}{' (drill)' if b.drill else ''} | "
            f"{format_dt(b.verified_at)} | {md_escape(b.verdict)} | {b.run_id or '—'} |"
            for b in report.backups
        ]
    lines += [
        "",
        "## Findings by severity",
        "",
        "| Severity | Opened | Resolved | Open at end |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {md_escape(t.severity)} | {t.opened} | {t.resolved} | {t.open_at_end} |"
        for t in report.by_severity
    ]
    if report.open_at_end:
        lines += [
            "",
            "## Open at the end of the period",
            "",
            "| Finding | Severity | Where | Check | Subject | Message | Open for |",
            "|---:|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {f.id} | {md_escape(f.severity)} | {md_escape(f.where)} | {md_escape(f.check)} | "
            f"{md_escape(f.subject)} | {md_escape(f.message)} | {f.age_text} |"
            for f in report.open_at_end
        ]
    if a.times:
        lines += [
            "",
            "## Approval response times",
            "",
            "| Approver | Decisions | Median | 90th percentile | Longest |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {md_escape(t.approver)} | {t.decisions} | {t.median_text} | {t.p90_text} | "
            f"{t.longest_text} |"
            for t in a.times
        ]
    lines += ["", "## Planned next period", ""]
    if report.plan.runs:
        lines += ["| When | Process | Cadence | Note |", "|---|---|---|---|"]
        lines += [
            f"| {'~~' + plan_when(p) + '~~' if p.skipped else plan_when(p)} | "
            f"{md_escape(p.process)} | {md_escape(p.cadence)} | "
            f"{md_escape('; '.join(p.notes))} |"
            for p in report.plan.runs
        ]
    else:
        lines.append(NO_PLAN)
    if report.plan.blackouts:
        lines += ["", "Blackout days: " + md_escape("; ".join(report.plan.blackouts))]
        if report.plan.policy:
            lines += ["", md_escape(report.plan.policy)]
    if report.plan_note:
        lines += ["", f"_{md_escape(report.plan_note)}_"]
    return "\n".join(lines) + "\n"


def service_report_subject(report: ServiceReport) -> str:
    """One-line subject: contract, customer, period and the headline figures."""
    subject = (
        f"[upkeep] {report_title(report)} {report.contract.code} ({report.customer.name}): "
        f"{report.runs_total} run(s) ({report.runs_failed} not clean), "
        f"{len(report.backups_failed)} failed backup verification(s), "
        f"{len(report.opened)} finding(s) opened, "
        f"{len(report.resolved)} resolved, {len(report.open_at_end)} open"
    )
    # Inventory text goes into a header: no line breaks, whatever the inventory holds.
    return " ".join(subject.split())


def render_service_report_email(
    report: ServiceReport, report_path: str | Path, templates_dir: Path
) -> tuple[str, str, str]:
    """(subject, text, html) of the mail that carries the report as an attachment.

    From ``email/service_report.txt.j2`` and ``.html.j2``; the HTML is autoescaped, both use
    ``StrictUndefined``.
    """
    context: dict[str, Any] = {
        "report": report,
        "title": report_title(report),
        "report_name": Path(report_path).name,
        "no_backups": NO_BACKUPS,
    }
    text = template_env(Path(templates_dir), html=False).get_template(EMAIL_TEXT_TEMPLATE)
    html = template_env(Path(templates_dir), html=True).get_template(EMAIL_HTML_TEMPLATE)
    return service_report_subject(report), text.render(**context), html.render(**context)


# ---------------------------------------------------------------------------------------------
# Saving


def service_report_path(*, report_dir: Path, contract_code: str, label: str) -> Path:
    """``<report_dir>/<contract>/<year>/service-report-<contract>-<label>.html``."""
    code, safe_label = safe_name(contract_code), safe_name(label)
    return Path(report_dir) / code / label[:4] / f"service-report-{code}-{safe_label}.html"


def save_service_report(html: str, *, report_dir: Path, contract_code: str, label: str) -> Path:
    """Write ``html`` to :func:`service_report_path` atomically and return the path.

    Written to a temporary file in the same directory and renamed over the target, so a
    reader never sees half a report and a rerun for the same period replaces it whole.
    """
    target = service_report_path(report_dir=report_dir, contract_code=contract_code, label=label)
    write_atomic(target, html)
    log.info("service report written to %s", target)
    return target
