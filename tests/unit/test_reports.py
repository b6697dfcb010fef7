"""Inspection reports: scores, gathering a run's records, rendering, saving."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from upkeep.domain.checks.base import Measurement, Severity
from upkeep.domain.findings import REACHABILITY, Observed
from upkeep.domain.inspection_report import InspectionReport, host_score, overall_score
from upkeep.models import Approval, Contract, Customer, Finding, Host, RunStatus
from upkeep.settings import TEMPLATES_DIR
from upkeep.tasks.notify import render_report_email
from upkeep.tasks.records import (
    HostInspection,
    RecordNotFound,
    finish_run,
    start_run,
    store_host_inspection,
)
from upkeep.tasks.render import (
    findings_table,
    render_inspection_html,
    render_inspection_markdown,
    report_path,
    save_report,
    template_env,
)
from upkeep.tasks.reports import build_inspection_report

TEMPLATES = TEMPLATES_DIR
XSS = "<script>alert(1)</script>"
T1 = datetime(2025, 1, 15, 8, 0, tzinfo=UTC)
T2 = datetime(2025, 4, 15, 8, 0, tzinfo=UTC)


# --- scores ---------------------------------------------------------------------------------


def test_host_score_subtracts_per_severity() -> None:
    items = [{"severity": s} for s in ("critical", "major", "minor", "info", None)]
    assert host_score(items, reachable=True) == 100 - 25 - 10 - 3
    assert host_score([], reachable=True) == 100


def test_host_score_floors_at_zero_and_unreachable_is_zero() -> None:
    assert host_score([{"severity": "critical"}] * 5, reachable=True) == 0
    assert host_score([], reachable=False) == 0


def test_host_score_takes_measurements_and_findings() -> None:
    m = Measurement(subject="/", value="95%", severity=Severity.MAJOR)
    f = Finding(
        contract_id=1,
        host_id=1,
        run_id=1,
        last_seen_run_id=1,
        check="c",
        severity="minor",
        message="m",
    )
    assert host_score([m, f, Measurement(subject="", value="ok")], reachable=True) == 87


def test_overall_score_is_the_rounded_mean() -> None:
    assert overall_score([100, 0]) == 50
    assert overall_score([100, 99, 99]) == 99
    assert overall_score([100, 87]) == 94  # 93.5 rounds half up
    assert overall_score([]) == 0


# --- records --------------------------------------------------------------------------------


@dataclass
class Seeded:
    previous_run: int
    run: int


def _m(check: str, subject: str, severity: Severity | None, message: str, evidence: str = ""):  # type: ignore[no-untyped-def]
    return {
        "check": check,
        "subject": subject,
        "value": "x",
        "threshold": "y",
        "severity": severity.value if severity else None,
        "message": message,
        "evidence": evidence,
        "recommendation": f"fix {check}" if severity else "",
    }


def _inspection(
    host: Host,
    at: datetime,
    measurements: list[dict[str, Any]],
    evaluated: list[str],
    reachable: bool = True,
    error: str | None = None,
) -> HostInspection:
    assert host.id is not None
    observed = [
        Observed(
            m["check"],
            m["subject"],
            Severity(m["severity"]),
            m["message"],
            m["evidence"],
            m["recommendation"],
        )
        for m in measurements
        if m["severity"]
    ]
    return HostInspection(
        host_id=host.id,
        reachable=reachable,
        started_at=at,
        finished_at=at + timedelta(minutes=1),
        facts={},
        measurements=measurements,
        skipped={"updates": "no package manager"} if reachable else {},
        observed=observed,
        evaluated_checks=evaluated,
        error=error,
        error_kind="refused" if error else None,
    )


def seed(engine: sa.Engine) -> Seeded:
    """Two runs: web1's disk persists, db1's memory is resolved, the rest is new in run 2."""
    with Session(engine) as s:
        customer = Customer(code="acme", name="ACME & Söhne <GmbH>")
        s.add(customer)
        s.flush()
        assert customer.id is not None
        contract = Contract(
            customer_id=customer.id, code="ACME-01", name="ACME servers", timezone="Europe/Berlin"
        )
        s.add(contract)
        s.flush()
        assert contract.id is not None
        web, db, old = (
            Host(contract_id=contract.id, name=n, address=a, port=p, role=r, system="Debian 12")
            for n, a, p, r in (
                ("web1", "10.0.0.1", 22, "web"),
                ("db1", "10.0.0.2", 2222, "db"),
                ("old1", "fe80::1", 22, None),
            )
        )
        s.add_all([web, db, old])
        s.flush()

        run1 = start_run(session=s, contract=contract, kind="inspection", flow_run_id="fr-1")
        run1.started_at = T1
        assert run1.id is not None
        disk1 = _m("disk", "/", Severity.MAJOR, "/ is 85% full")
        store_host_inspection(
            session=s,
            run_id=run1.id,
            result=_inspection(web, T1, [disk1], [REACHABILITY, "disk"]),
        )
        mem = _m("memory", "", Severity.MINOR, "memory 91% used")
        store_host_inspection(
            session=s,
            run_id=run1.id,
            result=_inspection(db, T1, [mem], [REACHABILITY, "memory"]),
        )
        store_host_inspection(
            session=s, run_id=run1.id, result=_inspection(old, T1, [], [REACHABILITY])
        )
        finish_run(session=s, run_id=run1.id, status=RunStatus.COMPLETED)

        run2 = start_run(
            session=s,
            contract=contract,
            kind="inspection",
            flow_run_id="fr-2",
            requested_by="bob",
            window="Q2 2025",
        )
        run2.started_at = T2
        assert run2.id is not None
        disk2 = _m("disk", "/", Severity.MAJOR, "/ is 88% full", evidence="/dev/sda1 88%")
        syslog = _m(
            "syslog",
            "",
            Severity.CRITICAL,
            f"kernel says {XSS} | oops\nnext line",
            evidence=f"Apr 15 {XSS}\nline two",
        )
        store_host_inspection(
            session=s,
            run_id=run2.id,
            result=_inspection(
                web,
                T2,
                [disk2, syslog, _m("cpu", "", None, "load fine")],
                [REACHABILITY, "disk", "syslog", "cpu"],
            ),
        )
        store_host_inspection(
            session=s,
            run_id=run2.id,
            result=_inspection(db, T2, [_m("memory", "", None, "ok")], [REACHABILITY, "memory"]),
        )
        unreach = _m(REACHABILITY, "", Severity.CRITICAL, "old1 could not be inspected")
        store_host_inspection(
            session=s,
            run_id=run2.id,
            result=_inspection(
                old, T2, [unreach], [], reachable=False, error="connection refused on port 22"
            ),
        )
        finish_run(session=s, run_id=run2.id, status=RunStatus.COMPLETED)

        s.add_all(
            [
                Approval(
                    flow_run_id="fr-2",
                    contract_id=contract.id,
                    gate="inspection-plan",
                    subject="plan",
                    decision="approve",
                    approver="Alice",
                    decided_at=T2 - timedelta(hours=2),
                    comment="go ahead",
                ),
                Approval(
                    flow_run_id="fr-2",
                    contract_id=contract.id,
                    gate="inspection-plan",
                    subject="plan",
                    decision="refused",
                    approver="Mallory",
                    decided_at=T2 - timedelta(hours=1),
                ),
                Approval(
                    flow_run_id="fr-2",
                    contract_id=contract.id,
                    gate="release",
                    subject="other gate",
                    decision="approve",
                    approver="Carol",
                    decided_at=T2 - timedelta(minutes=30),
                ),
            ]
        )
        s.commit()
        return Seeded(previous_run=run1.id, run=run2.id)


@pytest.fixture
def report(engine: sa.Engine) -> InspectionReport:
    ids = seed(engine)
    with Session(engine) as session:
        return build_inspection_report(
            session=session, run_id=ids.run, generated_at=T2 + timedelta(hours=1)
        )


def _keys(rows: Any) -> list[tuple[str, str, str]]:
    return [(f.host, f.check, f.subject) for f in rows]


def test_report_new_persisting_and_resolved(report: InspectionReport) -> None:
    ch = report.changes
    assert _keys(ch.new) == [("old1", REACHABILITY, ""), ("web1", "syslog", "")]
    assert _keys(ch.persisting) == [("web1", "disk", "/")]
    assert ch.persisting[0].first_seen_at.date().isoformat() == "2025-01-15"
    assert ch.persisting[0].message == "/ is 88% full"
    assert _keys(ch.resolved) == [("db1", "memory", "")]
    assert ch.previous is not None and ch.previous.started_at.year == 2025


def test_report_findings_grouped_worst_first(report: InspectionReport) -> None:
    assert [g.severity for g in report.findings] == ["critical", "major"]
    assert [(f.host, f.state) for f in report.findings[0].findings] == [
        ("old1", "new"),
        ("web1", "new"),
    ]
    assert [(f.check, f.state) for f in report.findings[1].findings] == [("disk", "persisting")]
    assert report.counts == {"critical": 2, "major": 1, "minor": 0, "info": 0}
    assert report.finding_count == 3


def test_report_hosts_scores_and_unreached(report: InspectionReport) -> None:
    hosts = {h.name: h for h in report.hosts}
    assert [h.name for h in report.hosts] == ["db1", "old1", "web1"]
    assert hosts["web1"].score == 100 - 25 - 10
    assert hosts["web1"].counts == {"critical": 1, "major": 1, "minor": 0, "info": 0}
    assert hosts["db1"].score == 100 and hosts["db1"].endpoint == "10.0.0.2:2222"
    assert hosts["old1"].score == 0 and not hosts["old1"].reachable
    assert report.overall_score == round((65 + 100 + 0) / 3)
    (unreached,) = report.unreached
    assert (unreached.name, unreached.endpoint) == ("old1", "[fe80::1]:22")
    assert unreached.reason == "connection refused on port 22"


def test_report_approval_run_and_timezone(report: InspectionReport) -> None:
    assert report.customer.name == "ACME & Söhne <GmbH>"
    assert report.contract.code == "ACME-01" and report.contract.timezone == "Europe/Berlin"
    assert report.approval is not None
    assert (report.approval.approver, report.approval.comment) == ("Alice", "go ahead")
    assert report.approval.decided_at is not None
    assert report.approval.decided_at.strftime("%H:%M %Z") == "08:00 CEST"
    assert report.run.started_at.strftime("%Y-%m-%d %H:%M %Z") == "2025-04-15 10:00 CEST"
    assert (report.run.window, report.run.requested_by, report.run.flow_run_id) == (
        "Q2 2025",
        "bob",
        "fr-2",
    )


def test_report_of_an_unknown_run(engine: sa.Engine) -> None:
    with Session(engine) as session, pytest.raises(RecordNotFound):
        build_inspection_report(session=session, run_id=999)


def test_report_without_approval_or_previous_run(engine: sa.Engine) -> None:
    ids = seed(engine)
    with Session(engine) as session:
        first = build_inspection_report(session=session, run_id=ids.previous_run)
    assert first.approval is None
    assert first.changes.previous is None
    # Worst first: the major disk finding before the minor memory one.
    assert _keys(first.changes.new) == [("web1", "disk", "/"), ("db1", "memory", "")]
    assert first.changes.resolved == ()


# --- HTML -----------------------------------------------------------------------------------


def test_html_escapes_host_output(report: InspectionReport) -> None:
    html = render_inspection_html(report, TEMPLATES)
    assert XSS not in html
    assert "<script" not in html
    assert "Apr 15 &lt;script&gt;alert(1)&lt;/script&gt;\nline two</pre>" in html
    assert "kernel says &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "ACME &amp; Söhne &lt;GmbH&gt;" in html


def test_html_has_every_section(report: InspectionReport) -> None:
    html = render_inspection_html(report, TEMPLATES, prefect_ui_url="http://ui:4200/")
    for needle in (
        "<style>",
        "@media print",
        "Q2 2025",
        "by Alice at 2025-04-15 08:00 CEST",
        'id="health"',
        "Findings by severity",
        "Recommended action:</strong> fix syslog",
        "What changed since the previous inspection",
        "Resolved in this inspection (1)",
        "Hosts not reached",
        "connection refused on port 22",
        "Host score = 100 − 25 per critical",
        f"Inspection run {report.run.id}",
        '<a href="http://ui:4200/runs/flow-run/fr-2">fr-2</a>',
        "generated 2025-04-15 11:00 CEST",
    ):
        assert needle in html, needle
    assert "Mallory" not in html and "Carol" not in html
    # Self-contained: no external stylesheet, script or image.
    assert not re.search(r"<(link|script|img)\b", html)


def test_templates_are_strict_and_html_autoescaped(tmp_path: Path) -> None:
    env = template_env(TEMPLATES)
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()
    with pytest.raises(jinja2.UndefinedError):
        template_env(TEMPLATES, html=False).from_string("{{ missing }}").render()


def test_escaping_follows_the_template_not_the_caller(tmp_path: Path) -> None:
    """An HTML template is escaped even through the plain-text environment; only *.txt.j2
    is not, and a template of any other kind is escaped."""
    for name in ("page.html.j2", "mail.txt.j2", "other.j2"):
        (tmp_path / name).write_text("{{ value }}")
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for html in (True, False):
        env = template_env(tmp_path, html=html)
        assert env.get_template("page.html.j2").render(value=XSS) == escaped
        assert env.get_template("other.j2").render(value=XSS) == escaped
        assert env.get_template("mail.txt.j2").render(value=XSS) == XSS
    assert template_env(tmp_path, html=True).from_string("{{ v }}").render(v="<b>") == "&lt;b&gt;"
    assert template_env(tmp_path, html=False).from_string("{{ v }}").render(v="<b>") == "<b>"
    for path in TEMPLATES.rglob("*.j2"):  # every shipped template is one of the two kinds
        assert path.name.endswith((".html.j2", ".txt.j2")), path


def test_render_fails_on_a_missing_value(report: InspectionReport, tmp_path: Path) -> None:
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "inspection.html.j2").write_text("{{ report.no_such_field }}")
    with pytest.raises(jinja2.UndefinedError):
        render_inspection_html(report, tmp_path)


# --- Markdown and table artifact -------------------------------------------------------------


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_keeps_tables_intact(report: InspectionReport) -> None:
    md = render_inspection_markdown(report, "http://reports.example/ACME 01.html")
    assert "[Open the full report](<http://reports.example/ACME%2001.html>)" in md
    rows = [line for line in md.splitlines() if line.startswith("| critical | web1")]
    assert len(rows) == 1
    assert _unescaped_pipes(rows[0]) == 7
    assert r"kernel says &lt;script&gt;alert(1)&lt;/script&gt; \| oops next line" in rows[0]
    assert "next line" not in md.replace(rows[0], "")
    assert "**Overall health score: 55/100**" in md


def test_markdown_links_a_file(report: InspectionReport, tmp_path: Path) -> None:
    md = render_inspection_markdown(report, tmp_path / "r.html")
    assert f"]({(tmp_path / 'r.html').as_uri()})" in md


def test_findings_table(report: InspectionReport) -> None:
    rows = findings_table(report)
    assert [(r["severity"], r["host"], r["check"], r["status"]) for r in rows] == [
        ("critical", "old1", REACHABILITY, "new"),
        ("critical", "web1", "syslog", "new"),
        ("major", "web1", "disk", "persisting"),
    ]
    assert rows[2]["first_seen"] == "2025-01-15"
    assert all(isinstance(v, str) for r in rows for v in r.values())


# --- saving -----------------------------------------------------------------------------------


def test_save_report_under_the_contract_folder(tmp_path: Path, report: InspectionReport) -> None:
    path = save_report(
        "<html>one</html>",
        report_dir=tmp_path / "reports",
        contract_code="ACME-01",
        run_id=7,
        started_at=report.run.started_at,
    )
    assert (
        path == tmp_path / "reports" / "ACME-01" / "2025" / "inspection-ACME-01-7-2025-04-15.html"
    )
    assert path.read_text() == "<html>one</html>"

    again = save_report(
        "<html>two</html>",
        report_dir=tmp_path / "reports",
        contract_code="ACME-01",
        run_id=7,
        started_at=report.run.started_at,
    )
    assert again == path and path.read_text() == "<html>two</html>"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_report_path_keeps_the_contract_code_inside_the_dir(tmp_path: Path) -> None:
    path = report_path(report_dir=tmp_path, contract_code="../../etc", run_id=1, started_at=T1)
    assert path.parent.parent.parent == tmp_path
    assert ".." not in path.parts


# --- report mail ------------------------------------------------------------------------------


def test_report_email_subject_text_and_html(report: InspectionReport, tmp_path: Path) -> None:
    subject, text, html = render_report_email(report, tmp_path / "r.html", TEMPLATES)
    assert subject.startswith("[upkeep] Inspection ACME-01 (ACME & Söhne <GmbH>): score 55/100")
    assert subject.endswith(f" · {report.run.window} · run {report.run.id}")  # which run
    assert "\n" not in subject
    assert "ACME & Söhne <GmbH>" in text and XSS in text  # plain text is not escaped
    assert "The full report is attached (r.html)." in text
    assert "Plan approved: by Alice" in text
    assert XSS not in html and "&lt;script&gt;" in html
    assert "ACME &amp; Söhne &lt;GmbH&gt;" in html

    _, text_url, html_url = render_report_email(report, "https://r.example/x.html", TEMPLATES)
    assert "The full report: https://r.example/x.html" in text_url
    assert 'href="https://r.example/x.html"' in html_url
