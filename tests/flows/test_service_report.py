"""The service report flow against the session's Prefect server, with real SMTP.

Records are written straight into the database: no host is contacted.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.service_report_fixtures import (
    REFERENCE,
    TRUNCATED,
    UNREACHABLE,
    acme,
    plant_bad_month,
)
from tests.smtp_fixtures import SmtpServer
from upkeep.flows.service_report import ServiceReportParams, service_report
from upkeep.models import (
    Approval,
    ApprovalEvent,
    Finding,
    Host,
    InspectionRun,
    OutboxMessage,
    RunStatus,
)
from upkeep.tasks.service_report_render import NO_PLAN

pytestmark = pytest.mark.flows

RECIPIENTS = ["it@acme.example", "paul@provider.example"]
DECEMBER_3 = date(2026, 12, 3)


def seed(engine: sa.Engine) -> None:
    """ACME in Berlin: two runs, two findings and one approval in November 2026."""
    at = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
    with Session(engine) as s:
        contract = acme(
            s,
            report_recipients=RECIPIENTS,
            cadences={"inspection": "quarterly, first Tuesday, 02:00"},
        )
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
    assert outcome.planned == 0 and NO_PLAN in html

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
    # "quarterly, first Tuesday, 02:00": 6 October 2026 in Q4.
    assert outcome.planned == 1
    html = Path(outcome.report_path).read_text()
    assert "2026-10-06 02:00 CEST" in html and "quarterly, first Tuesday at 02:00" in html
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


def test_a_bad_month_is_reported_as_it_was(
    engine: sa.Engine, flow_env, smtp_server: SmtpServer
) -> None:
    """Failures planted as the flows record them come out of the flow's page, artifact and
    mail; the plan is the deployments' cadences after the blackout, with the DST move."""
    planted = plant_bad_month(engine, recipients=["it@acme.example"])
    state = service_report(
        ServiceReportParams(contract="ACME", reference_date=REFERENCE, email_report=True),
        return_state=True,
    )
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.label == "2027-02"
    assert (outcome.runs, outcome.failed_runs) == (4, 4)
    assert (outcome.backups_verified, outcome.backups_failed) == (2, 1)
    assert outcome.findings_opened == 3 and outcome.planned == 5
    # February 2027 is still ahead of the real clock: its planned runs are not due, so none
    # is called missed (the unit tests date the report after the month).
    assert outcome.missed_runs == 0

    html = Path(outcome.report_path).read_text()
    assert "Every run of the period completed" not in html
    assert "No backup verification recorded" not in html
    assert (
        f"backup of erp-db failed verification {planted.failed_verification}: "
        "the backup is at fault (truncated)"
    ) in html
    assert TRUNCATED in html and "backups of erp-db" in html
    assert f"host db1 could not be inspected: {UNREACHABLE}" in html
    assert f"<td>{planted.failed_run}</td><td>Re-check of open findings</td>" in html
    assert f"<td>{planted.crashed_run}</td><td>Ad-hoc sweep</td>" in html
    assert "/var is 97% full" in html
    assert "moved from 2027-03-07 02:30: blackout day (Trade fair)" in html
    assert "2027-03-28 01:30 CET" in html and "when the clocks go forward" in html
    assert "every Sunday at 02:30" in html and "30 2 * * 0" not in html
    assert "The cadences planned no inspection or backup test for the period." in html

    from prefect.artifacts import Artifact

    artifact = Artifact.get("service-report-acme")
    assert artifact is not None
    assert f"Failed backup verifications: 1 (verification {planted.failed_verification})" in str(
        artifact.data
    )

    (mail,) = smtp_server.handler.wait_for(1)
    assert "1 failed backup verification(s)" in str(mail.message()["Subject"])
    body = mail.message().get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Backups verified:  2 (1 failed)" in text
    assert "the backup is at fault (truncated)" in text


def test_a_truncated_backup_verified_by_the_backup_flow_shows_in_the_report(
    engine: sa.Engine, flow_env, tmp_path: Path
) -> None:
    """The production path: the backup flow finds a truncated archive (its run completes),
    and the month's service report says that backup failed and the run did not go well."""
    from zoneinfo import ZoneInfo

    from tests.backup_fixtures import make_shop, shop_source
    from tests.flow_fixtures import inventory_text
    from upkeep.flows.backup_verification import BackupParams, backup_verification
    from upkeep.inventory import apply_inventory, parse_inventory

    shop = make_shop(tmp_path, tmp_path / "scratch")
    shop["backups"].mkdir(parents=True)
    (shop["backups"] / "shop-files-20261120T010000Z.tar.gz").write_bytes(b"\x1f\x8b\x08trunc")
    source = shop_source(shop, importance="high", validity_hours=100000)
    with Session(engine) as s:
        apply_inventory(s, parse_inventory(inventory_text([], backup_sources=[source])))
        s.commit()
    backup = backup_verification(BackupParams(contract="ACME"))
    assert backup.sources[0].outcome == "bad"

    # Report on the month the backup run started in (Berlin time).
    with Session(engine) as s:
        run = s.get(InspectionRun, backup.run_id)
        assert run is not None
        started = run.started_at.astimezone(ZoneInfo("Europe/Berlin")).date()
    next_month = (started.replace(day=1) + timedelta(days=32)).replace(day=1)
    outcome = service_report(ServiceReportParams(contract="ACME", reference_date=next_month))
    assert (outcome.backups_verified, outcome.backups_failed) == (1, 1)
    assert outcome.failed_runs == 1
    html = Path(outcome.report_path).read_text()
    assert "No backup verification recorded" not in html
    assert "Every run of the period completed" not in html
    assert f"<td>{backup.run_id}</td><td>Backup-restore verification</td>" in html
    assert "completed with failures" in html
    assert "backup of shop-files failed verification" in html
    assert "backups of shop-files" in html  # the backup finding, which has no host
