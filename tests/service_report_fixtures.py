"""Records of a bad month for service report tests, written by the functions the flows use.

February 2027 of ACME (Europe/Berlin), planted through ``tasks.records`` and
``tasks.backup_records`` exactly as the inspection and backup flows write them, then dated into
the month: an inspection that found a critical fault and could not reach one host, a backup
run that completed although one backup failed verification (truncated) with its backup
finding, a failed re-check, a sweep whose process died (no end), and one gate. The contract's
cadences and blackouts put a blackout and the spring-forward day into March 2027.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from upkeep.domain.checks.base import Severity
from upkeep.domain.findings import REACHABILITY, Observed
from upkeep.models import Approval, Contract, Customer, Host, InspectionRun, RunStatus
from upkeep.tasks.backup_records import backup_finding, record_version
from upkeep.tasks.records import HostInspection, finish_run, start_run, store_host_inspection

FEBRUARY = (date(2027, 2, 1), date(2027, 3, 1))
REFERENCE = date(2027, 3, 3)
"""A report run on this day covers February 2027; the next period is March 2027."""
CADENCES: dict[str, Any] = {
    "inspection": "monthly, first Tuesday, 02:00",
    "backup_verification": {"cron": "30 2 * * 0"},
}
BLACKOUTS = [{"from": "2027-03-07", "reason": "Trade fair"}]
# As the inventory stores them (valid BackupSourceSpec: a files source needs its scratch).
BACKUP_SOURCES = [
    {
        "system": "erp-db",
        "kind": "files",
        "location": "/backups/erp",
        "scratch": "/var/tmp/restore",
        "importance": "high",
    },
    {"system": "fileserver", "kind": "files", "location": "/backups/fs", "scratch": "/var/tmp/r"},
    {"system": "mail", "kind": "files", "location": "/backups/mail", "scratch": "/var/tmp/r"},
]
TRUNCATED = "erp-db-20270207T010000Z.tar.gz ends early: unexpected end of file"
UNREACHABLE = "timed out after 10 s waiting for the SSH banner"


def utc(month: int, day: int, hour: int = 8, minute: int = 0) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=UTC)


@dataclass(frozen=True)
class Planted:
    inspection_run: int
    backup_run: int
    failed_run: int
    crashed_run: int
    failed_verification: int
    good_verification: int
    backup_finding: int
    disk_finding: int
    gate: int


def _dated(s: Session, run_id: int, started: datetime, minutes: int | None) -> None:
    run = s.get(InspectionRun, run_id)
    assert run is not None
    run.started_at = started
    run.finished_at = None if minutes is None else started + timedelta(minutes=minutes)
    s.add(run)


def acme(s: Session, *, customer_name: str = "ACME Retail", **fields: Any) -> Contract:
    """ACME's customer and its contract (Europe/Berlin) with ``fields``, added and flushed."""
    customer = Customer(code="acme", name=customer_name)
    s.add(customer)
    s.flush()
    assert customer.id is not None
    contract = Contract(
        customer_id=customer.id,
        code="ACME",
        name="ACME managed operations",
        timezone="Europe/Berlin",
        **fields,
    )
    s.add(contract)
    s.flush()
    assert contract.id is not None
    return contract


def plant_bad_month(engine: sa.Engine, recipients: list[str] | None = None) -> Planted:
    """ACME with February 2027's failures recorded; returns the ids to look for."""
    with Session(engine) as s:
        contract = acme(
            s,
            report_recipients=recipients or ["it@acme.example"],
            cadences=CADENCES,
            blackouts=BLACKOUTS,
            blackout_policy="next_allowed_day",
            backup_sources=BACKUP_SOURCES,
        )
        assert contract.id is not None
        web, db = (
            Host(contract_id=contract.id, name="web1", address="10.0.0.1"),
            Host(contract_id=contract.id, name="db1", address="10.0.0.2"),
        )
        s.add_all([web, db])
        s.flush()
        assert web.id is not None and db.id is not None

        # An inspection: a critical fault on web1, db1 not reachable; the run completes.
        inspection = start_run(session=s, contract=contract, kind="inspection")
        assert inspection.id is not None
        at = utc(2, 2, 1)
        store_host_inspection(
            session=s,
            run_id=inspection.id,
            result=HostInspection(
                host_id=web.id,
                reachable=True,
                started_at=at,
                finished_at=at + timedelta(minutes=3),
                facts={"disk": {}},
                measurements=[],
                skipped={},
                observed=[
                    Observed("disk", "/var", Severity.CRITICAL, "/var is 97% full", "", "grow /var")
                ],
                evaluated_checks=[REACHABILITY, "disk"],
            ),
        )
        store_host_inspection(
            session=s,
            run_id=inspection.id,
            result=HostInspection(
                host_id=db.id,
                reachable=False,
                started_at=at,
                finished_at=at + timedelta(minutes=1),
                facts={},
                measurements=[],
                skipped={},
                observed=[
                    Observed(
                        REACHABILITY,
                        "",
                        Severity.CRITICAL,
                        f"db1 could not be inspected: {UNREACHABLE}",
                    )
                ],
                evaluated_checks=[REACHABILITY],
                error=UNREACHABLE,
                error_kind="timeout",
            ),
        )
        finish_run(session=s, run_id=inspection.id, status=RunStatus.COMPLETED)
        _dated(s, inspection.id, at, 20)

        # A backup run: erp-db's backup is truncated, fileserver's is good; the run completes.
        backup = start_run(session=s, contract=contract, kind="backup", flow_run_id="fr-feb")
        assert backup.id is not None
        at = utc(2, 7, 1, 30)
        common: dict[str, Any] = {
            "contract_id": contract.id,
            "kind": "files",
            "security_level": "internal",
            "flow_run_id": "fr-feb",
        }
        bad = record_version(
            session=s,
            system="erp-db",
            importance="high",
            backup=TRUNCATED,
            outcome="bad",
            fault="backup",
            reason="truncated",
            evidence="gzip: stdin: unexpected end of file",
            verified_at=at + timedelta(minutes=2),
            **common,
        )
        good = record_version(
            session=s,
            system="fileserver",
            importance="medium",
            backup="/backups/fs/fileserver-20270207T000000Z.tar.gz",
            taken_at=at - timedelta(hours=1),
            outcome="good",
            verified_at=at + timedelta(minutes=4),
            **common,
        )
        finding = backup_finding(
            session=s,
            run=backup,
            system="erp-db",
            importance="high",
            message=f"backup of erp-db failed verification: the backup is at fault "
            f"(truncated): {TRUNCATED}",
            evidence="gzip: stdin: unexpected end of file",
            recommendation="Take a new full backup of erp-db and find out why it was cut short.",
        )
        finding.first_seen_at = finding.last_seen_at = at + timedelta(minutes=2)
        s.add(finding)
        finish_run(session=s, run_id=backup.id, status=RunStatus.COMPLETED)
        _dated(s, backup.id, at, 5)

        failed = start_run(session=s, contract=contract, kind="recheck")
        assert failed.id is not None
        finish_run(session=s, run_id=failed.id, status=RunStatus.FAILED)
        _dated(s, failed.id, utc(2, 10, 9), 1)

        crashed = start_run(session=s, contract=contract, kind="sweep")
        assert crashed.id is not None
        _dated(s, crashed.id, utc(2, 20, 13), None)

        gate = Approval(
            flow_run_id="fr-gate",
            contract_id=contract.id,
            gate="inspection-plan",
            subject="plan of 2027-02-02",
            requested_at=utc(2, 1, 9),
            decided_at=utc(2, 1, 11),
            decision="approve",
            approver="Alice Owner",
        )
        s.add(gate)
        s.flush()
        s.commit()
        ids = (bad.id, good.id, finding.id, gate.id)
        assert all(i is not None for i in ids)
        disk = _finding_id(s, web.id, "disk")
        return Planted(
            inspection_run=inspection.id,
            backup_run=backup.id,
            failed_run=failed.id,
            crashed_run=crashed.id,
            failed_verification=bad.id or 0,
            good_verification=good.id or 0,
            backup_finding=finding.id or 0,
            disk_finding=disk,
            gate=gate.id or 0,
        )


def _finding_id(s: Session, host_id: int, check: str) -> int:
    from sqlmodel import select

    from upkeep.models import Finding

    found = s.exec(select(Finding).where(Finding.host_id == host_id, Finding.check == check)).one()
    assert found.id is not None
    return found.id
