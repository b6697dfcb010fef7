"""Rendering reports: the one Jinja environment, the inspection report's page, Markdown
artifact and table, the annual plan's page, and saving a page atomically.

Everything a host printed (messages, evidence) is untrusted text: the HTML templates are
autoescaped and the Markdown goes through :func:`upkeep.domain.markup.md_escape`, the one
escaper. The service report's renderings are in :mod:`upkeep.tasks.service_report_render`.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from upkeep.domain.calendar import AnnualPlan, plan_view
from upkeep.domain.inspection_report import SEVERITIES, InspectionReport
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import run_url
from upkeep.domain.report_time import format_date, format_dt

log = logging.getLogger(__name__)

REPORT_TEMPLATE = "report/inspection.html.j2"
PLAN_TEMPLATE = "plan/annual_plan.html.j2"


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


def render_annual_plan_html(plan: AnnualPlan, templates_dir: Path) -> str:
    """The plan as one self-contained printable HTML page (inline CSS, autoescaped)."""
    template = template_env(templates_dir, html=True).get_template(PLAN_TEMPLATE)
    return template.render(plan=plan, view=plan_view(plan))


# ---------------------------------------------------------------------------------------------
# Saving

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(value: str) -> str:
    """``value`` made safe as one file-name component (no separators, no leading dots)."""
    name = _UNSAFE_NAME.sub("_", value).strip("._")
    if not name:
        raise ValueError(f"{value!r} cannot be used in a file name")
    return name


def write_atomic(target: Path, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8, or bytes as they are) to ``target`` through a
    temporary file renamed over it (mode 0640).

    A reader never sees half a file, and a rerun replaces the previous one whole.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content.encode("utf-8") if isinstance(content, str) else content)
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
