"""Disk and inode grading at the threshold boundaries."""

from __future__ import annotations

import pytest

from upkeep.domain.checks import disk, inodes
from upkeep.domain.checks._df import DfRow
from upkeep.domain.checks.base import EvalContext, Severity, Thresholds


def _row(pct: int, mountpoint: str = "/var") -> DfRow:
    return DfRow(
        device="/dev/sda3",
        fstype="ext4",
        mountpoint=mountpoint,
        total=1000,
        used=pct * 10,
        free=1000 - pct * 10,
        used_pct=pct,
    )


@pytest.mark.parametrize(
    ("pct", "expected"),
    [
        (79, None),
        (80, Severity.MAJOR),
        (81, Severity.MAJOR),
        (89, Severity.MAJOR),
        (90, Severity.CRITICAL),
        (91, Severity.CRITICAL),
        (100, Severity.CRITICAL),
    ],
)
def test_disk_boundaries(pct: int, expected: Severity | None) -> None:
    [m] = disk.evaluate(
        disk.DiskFacts(filesystems=[_row(pct)], ignored=[]), Thresholds(), EvalContext()
    )
    assert m.severity is expected
    assert m.subject == "/var"


def test_disk_message_names_mount_and_limit() -> None:
    [m] = disk.evaluate(
        disk.DiskFacts(filesystems=[_row(93)], ignored=[]), Thresholds(), EvalContext()
    )
    assert m.message == "/var is 93% full (critical at 90%)"
    assert m.recommendation


def test_disk_contract_override() -> None:
    t = Thresholds(disk_used_pct_major=95, disk_used_pct_critical=98)
    [m] = disk.evaluate(disk.DiskFacts(filesystems=[_row(93)], ignored=[]), t, EvalContext())
    assert m.severity is None


def test_disk_without_real_filesystems_is_info() -> None:
    [m] = disk.evaluate(
        disk.DiskFacts(filesystems=[], ignored=["/dev"]), Thresholds(), EvalContext()
    )
    assert m.severity is Severity.INFO


@pytest.mark.parametrize(
    ("pct", "expected"),
    [
        (79, None),
        (80, Severity.MAJOR),
        (89, Severity.MAJOR),
        (90, Severity.CRITICAL),
        (91, Severity.CRITICAL),
    ],
)
def test_inode_boundaries(pct: int, expected: Severity | None) -> None:
    facts = inodes.InodeFacts(filesystems=[_row(pct)], ignored=[])
    [m] = inodes.evaluate(facts, Thresholds(), EvalContext())
    assert m.severity is expected


def test_inodes_all_without_counts_is_fine() -> None:
    facts = inodes.parse(
        "@@ df\nFilesystem Inodes IUsed IFree IUse% Mounted on\n/dev/sda2 0 0 0 - /\n@@ mounts\n"
    )
    assert facts.filesystems == [] and facts.ignored == ["/"]
    [m] = inodes.evaluate(facts, Thresholds(), EvalContext())
    assert m.severity is None


def test_mountpoint_with_space_and_escaped_proc_mounts() -> None:
    facts = disk.parse(
        "@@ df\nFilesystem 1024-blocks Used Available Capacity Mounted on\n"
        "/dev/sdb1 1000 500 500 50% /mnt/my disk\n"
        "@@ mounts\n/dev/sdb1 /mnt/my\\040disk xfs rw 0 0\n"
    )
    assert [(f.mountpoint, f.fstype) for f in facts.filesystems] == [("/mnt/my disk", "xfs")]
