"""[disk] Space used per real filesystem (``df -P -k``; pseudo filesystems left out)."""

from __future__ import annotations

from pydantic import BaseModel

from upkeep.domain.checks._df import DfRow, parse_df
from upkeep.domain.checks.base import Check, EvalContext, Measurement, Severity, Thresholds, grade

COMMAND = (
    "echo '@@ df'; df -P -k 2>/dev/null; echo '@@ mounts'; cat /proc/mounts 2>/dev/null || true"
)


class DiskFacts(BaseModel):
    filesystems: list[DfRow]
    """Sizes in KiB blocks; ``used_pct`` is df's Capacity column."""
    ignored: list[str]
    """Mount points left out: tmpfs, overlay, squashfs snaps and other pseudo filesystems."""


def parse(stdout: str) -> DiskFacts:
    """Parse ``df -P -k`` joined with /proc/mounts for the filesystem types."""
    rows, ignored = parse_df(stdout)
    return DiskFacts(filesystems=rows, ignored=ignored)


def _gib(kb: int) -> str:
    return f"{kb / 1048576:.1f} GiB"


def _measure(fs: DfRow, thresholds: Thresholds) -> Measurement:
    major, critical = thresholds.disk_used_pct_major, thresholds.disk_used_pct_critical
    severity = grade(fs.used_pct, major, critical)
    value = f"{fs.used_pct}% used ({_gib(fs.used)} of {_gib(fs.total)}, {_gib(fs.free)} free)"
    threshold = f"major at {major:g}%, critical at {critical:g}%"
    if severity is None:
        return Measurement(subject=fs.mountpoint, value=value, threshold=threshold)
    limit = critical if severity is Severity.CRITICAL else major
    return Measurement(
        subject=fs.mountpoint,
        value=value,
        threshold=threshold,
        severity=severity,
        message=f"{fs.mountpoint} is {fs.used_pct}% full ({severity.value} at {limit:g}%)",
        evidence=(
            f"{fs.device} ({fs.fstype or 'type unknown'}) on {fs.mountpoint}: "
            f"{fs.used} KiB used, {fs.free} KiB available of {fs.total} KiB"
        ),
        recommendation=(
            f"Free space on {fs.mountpoint} (old logs, caches, package archives, core dumps; "
            "du -xh --max-depth=2) or grow the filesystem."
        ),
    )


def evaluate(facts: DiskFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """One line per filesystem, graded with disk_used_pct_major/critical."""
    if not facts.filesystems:
        return [
            Measurement(
                subject="filesystems",
                value="none",
                severity=Severity.INFO,
                message="df reported no real filesystem (only pseudo filesystems)",
            )
        ]
    return [_measure(fs, thresholds) for fs in facts.filesystems]


CHECK = Check(
    name="disk",
    title="Disk space",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    timeout=60,  # df blocks on a hung NFS server; the sweep must not wait forever
)
