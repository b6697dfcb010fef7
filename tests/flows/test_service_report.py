"""The service report flow against the session's Prefect server, with real SMTP.

Records are written straight into the database: no host is contacted.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from flows.service_report import ServiceReportParams, service_report
from models import (
    Approval,
    ApprovalEvent,
    Contract,
    Customer,
    Finding,
    Host,
    InspectionRun,
    OutboxMessage,
    RunStatus,
)
from tasks.service_report import NO_CADENCE_ENGINE, _cadence_engine
from tests.smtp_fixtures import SmtpServer

pytestmark = pytest.mark.flows

RECIPIENTS = ["it@acme.example", "paul@provider.example"]
DECEMBER_3 = date(2026, 12, 3)


def seed(engine: sa.Engine) -> None:
    """ACME in Berlin: two runs, two findings and one approval in November 2026."""
    at = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
    with Session(engine) as s:
        customer = Customer(code="acme", name="ACME Retail")
        s.add(customer)
        s.flush()
        assert customer.id is not None
        contract = Contract(
            customer_id=customer.id,
            code="ACME",
            name="ACME managed operations",
            timezone="Europe/Berlin",
            report_recipients=RECIPIENTS,
            cadences={"inspection": "quarterly, first Tuesday, 02:00"},
        )
        s.add(contract)
        s.flush()
        assert contract.id is not None
        host = Host(contract_id=contract.id, name="web1", address="10.0.0.1")
        s.add(host)
        s.flush()
        assert host.id is not None
        runs = [
            InspectionRun(contract_id=contract.id, status=status, started_at=at + timedelta(days=i))
            for i, status in enumerate((RunStatus.COMPLETED, RunStatus.FAILED))
        ]
        s.add_all(runs)
        s.flush()
        run_id = runs[0].id
        assert run_id is not None
        for check, severity in (("disk", "major"), ("syslog", "critical")):
            s.add(
                Finding(
                    contract_id=contract.id,
                    host_id=host.id,
                    run_id=run_id,
                    last_seen_run_id=run_id,
                    check=check,
                    severity=severity,
                    message=f"{check} | is <bad>",
                    recommendation=f"fix {check}",
                    first_seen_at=at,
                    last_seen_at=at,
                )
            )
        gate = Approval(
            flow_run_id="fr-1",
            contract_id=contract.id,
            gate="inspection-plan",
            subject="plan",
            requested_at=at,
            decided_at=at + timedelta(hours=3),
            decision="approve",
            approver="Alice Owner",
        )
        s.add(gate)
        s.flush()
        assert gate.id is not None
        s.add(ApprovalEvent(approval_id=gate.id, kind="escalated", at=at + timedelta(hours=2)))
        s.commit()


def test_monthly_report_is_saved_published_and_mailed(
    engine: sa.Engine, flow_env, smtp_server: SmtpServer
) -> None:
    seed(engine)
    state = service_report(
        ServiceReportParams(
            contract="ACME", period="month", reference_date=DECEMBER_3, email_report=True
        ),
        return_state=True,
    )
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.label == "2026-11"
    assert (outcome.period_start, outcome.period_end) == (date(2026, 11, 1), date(2026, 12, 1))
    assert (outcome.runs, outcome.failed_runs) == (2, 1)
    assert (outcome.findings_opened, outcome.open_at_end, outcome.gates) == (2, 2, 1)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == "service report · ACME · 2026-11"

    path = Path(outcome.report_path)
    assert path == flow_env.reports / "ACME" / "2026" / "service-report-ACME-2026-11.html"
    html = path.read_text()
    for section in ("runs", "findings", "advice", "backups", "approvals", "plan"):
        assert f'<section id="{section}">' in html
    assert "Monthly service report 2026-11" in html
    assert "disk | is &lt;bad&gt;" in html
    assert "No backup verification recorded" in html
    # The quarterly inspection runs in January: nothing is planned for December.
    assert outcome.planned == 0 and "Nothing is scheduled for the next period." in html
    if _cadence_engine() is None:
        assert NO_CADENCE_ENGINE in html

    from prefect.artifacts import Artifact

    artifact = Artifact.get("service-report-acme")
    assert artifact is not None
    assert "Monthly service report 2026-11" in str(artifact.data)
    assert path.as_uri() in str(artifact.data)
    assert "disk \\| is &lt;bad&gt;" in str(artifact.data)

    (mail,) = smtp_server.handler.wait_for(1)
    assert sorted(mail.rcpt_tos) == sorted(RECIPIENTS)
    message = mail.message()
    assert "Monthly service report 2026-11 ACME" in str(message["Subject"])
    attached = [p for p in message.iter_attachments() if p.get_filename() == path.name]
    assert len(attached) == 1
    assert "Monthly service report 2026-11" in attached[0].get_content()
    assert outcome.email is not None and outcome.email["sent"] and not outcome.email["failed"]
    with Session(engine) as s:
        (row,) = s.exec(select(OutboxMessage)).all()
        assert (row.kind, row.status, row.recipients) == ("service_report", "sent", RECIPIENTS)
        assert row.attachments == [str(path)]


def test_mail_server_down_keeps_the_mail_and_completes(
    engine: sa.Engine, flow_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.smtp_fixtures import free_port
    from upkeep.settings import reset_settings

    seed(engine)
    monkeypatch.setenv("UPKEEP_SMTP_PORT", str(free_port()))
    reset_settings()
    state = service_report(
        ServiceReportParams(
            contract="ACME", period="quarter", reference_date=DECEMBER_3, email_report=True
        ),
        return_state=True,
    )
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.label == "2026-Q3" and outcome.runs == 0
    assert Path(outcome.report_path).name == "service-report-ACME-2026-Q3.html"
    if _cadence_engine() is not None:
        # "quarterly, first Tuesday, 02:00": 6 October 2026 in Q4.
        assert outcome.planned == 1
        assert "2026-10-06 02:00 CEST" in Path(outcome.report_path).read_text()
    assert outcome.email is not None and outcome.email["failed"]
    with Session(engine) as s:
        (row,) = s.exec(select(OutboxMessage)).all()
        assert row.status == "pending" and row.last_error


def test_without_a_reference_date_reports_the_previous_month(engine: sa.Engine, flow_env) -> None:
    seed(engine)
    outcome = service_report(ServiceReportParams(contract="ACME"))
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    first = today.replace(day=1)
    previous = (first - timedelta(days=1)).replace(day=1)
    assert (outcome.period_start, outcome.period_end) == (previous, first)
    assert outcome.email is None
