"""The pure decisions of a backup verification (upkeep.domain.backups), on realistic rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from upkeep.domain.backups import (
    SourceOutcome,
    Verdict,
    failure_finding,
    human_size,
    judge,
    report_source,
    retry,
    stale,
    to_prune,
)
from upkeep.domain.checks.base import Severity
from upkeep.domain.contract import BackupSourceSpec
from upkeep.models import BackupVersion, Fault, Outcome

NOW = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)
SHOP = BackupSourceSpec(
    system="shop-files",
    kind="files",
    location="/srv/backups/shop",
    source="/srv/shop",
    scratch="/var/tmp/upkeep",
    importance="high",
    keep_versions=2,
)


def test_a_backup_is_stale_after_its_validity() -> None:
    assert stale(None, 26, NOW)
    assert not stale(NOW - timedelta(hours=25), 26, NOW)
    assert stale(NOW - timedelta(hours=27), 26, NOW)


def test_only_a_transient_system_fault_is_tried_again_once() -> None:
    assert retry(Fault.SYSTEM, "restore_failed", 1, 2)
    assert not retry(Fault.SYSTEM, "restore_failed", 2, 2)
    assert not retry(Fault.SYSTEM, "no_space", 1, 2)
    assert not retry(Fault.BACKUP, "truncated", 1, 2)


def test_judge_a_restored_backup_and_a_failure() -> None:
    assert judge(None) == Verdict(outcome=Outcome.GOOD)
    bad = judge(("backup", "truncated", "gzip: unexpected end of file", "tail"))
    assert (bad.outcome, bad.fault, bad.reason, bad.good) == (
        "bad",
        Fault.BACKUP,
        "truncated",
        False,
    )


def test_the_finding_is_as_severe_as_the_system_is_important() -> None:
    bad = judge(("system", "no_space", "no space left on /var/tmp", "ENOSPC"))
    finding = failure_finding("shop-files", "high", bad)
    assert finding.severity is Severity.CRITICAL
    assert finding.message == (
        "backup of shop-files failed verification: the system is at fault (no_space): "
        "no space left on /var/tmp"
    )
    assert finding.recommendation.startswith("The system that makes or holds the backups")
    assert failure_finding("x", "low", bad).severity is Severity.MINOR
    assert failure_finding("x", "unheard-of", bad).severity is Severity.MAJOR
    with pytest.raises(ValueError):
        failure_finding("x", "low", judge(None))


def _version(n: int, outcome: str, checksum: str | None = None) -> BackupVersion:
    at = NOW - timedelta(days=10 - n)
    return BackupVersion(
        id=n,
        contract_id=1,
        system="shop-files",
        kind="files",
        security_level="internal",
        importance="high",
        backup=f"/srv/backups/shop/shop-files-{n}.tar.gz",
        taken_at=at,
        verified_at=at + timedelta(minutes=5),
        outcome=outcome,
        checksum=checksum if checksum is not None else (f"sum{n}" if outcome == "good" else None),
    )


def test_retention_keeps_the_newest_good_and_never_the_last_good() -> None:
    stored = [_version(n, o) for n, o in [(1, "good"), (2, "bad"), (3, "good"), (4, "good")]]
    assert [v.id for v in to_prune(stored, 2)] == [1, 2]
    assert to_prune(stored, 3) == []  # three good backups, all kept; the bad one is newer
    # every newer version failed: the one good backup stays
    failing = [_version(1, "good"), _version(2, "bad"), _version(3, "bad")]
    assert to_prune(failing, 1) == []


def test_a_crashed_source_is_the_systems_fault_and_survives_json() -> None:
    crashed = SourceOutcome.crashed("shop-files", "worker killed")
    assert (crashed.outcome, crashed.fault, crashed.reason) == (
        Outcome.BAD,
        Fault.SYSTEM,
        "crashed",
    )
    assert not crashed.good and crashed.message == "worker killed"
    dumped = SourceOutcome.model_validate_json(crashed.model_dump_json())
    assert dumped == crashed and dumped.outcome is Outcome.BAD


def test_report_section_of_a_verified_source() -> None:
    version = _version(4, "good")
    version.size_bytes = 3 * 1024 * 1024
    version.checks = [{"name": "expected files", "ok": True, "detail": "3 of 3"}]
    outcome = SourceOutcome(
        system="shop-files", kind="files", outcome="good", version_id=4, duration_s=2.25
    )
    row = report_source(outcome, SHOP, version, [version], NOW, ZoneInfo("Europe/Berlin"))
    assert row["age"] == "144.0 h"
    assert (row["importance"], row["keep"], row["duration"]) == ("high", 2, "2.2 s")
    assert row["versions"] == [
        {
            "verified": "2026-03-01 03:05",
            "taken": "2026-03-01 03:00",
            "outcome": "good",
            "size": "3.0 MiB",
            "archive": None,
        }
    ]
    gone = report_source(outcome, None, None, [], NOW, ZoneInfo("UTC"))
    assert (gone["importance"], gone["security_level"], gone["keep"], gone["backup"]) == (
        "medium",
        "internal",
        5,
        "—",
    )


def test_human_size() -> None:
    assert [human_size(n) for n in (None, 512, 1536, 5 * 1024**3, 5000 * 1024**3)] == [
        "—",
        "512 B",
        "1.5 KiB",
        "5.0 GiB",
        "5000.0 GiB",
    ]
