"""[inodes] Inode use per filesystem (``df -P -i``); filesystems without inode counts skip."""

from __future__ import annotations

from pydantic import BaseModel

from upkeep.domain.checks._df import DfRow, parse_df
from upkeep.domain.checks.base import Check, EvalContext, Measurement, Severity, Thresholds, grade

# A busybox df built without inode support prints only usage text on stderr: that is a skip.
COMMAND = (
    'out=$(df -P -i 2>/dev/null); if [ -z "$out" ]; then '
    "echo 'UPKEEP-SKIP: df cannot report inodes on this host'; else "
    "echo '@@ df'; printf '%s\\n' \"$out\"; "
    "echo '@@ mounts'; cat /proc/mounts 2>/dev/null || true; fi"
)


class InodeFacts(BaseModel):
    filesystems: list[DfRow]
    """Counts are inodes; ``used_pct`` is df's IUse% column."""
    ignored: list[str]
    """Pseudo filesystems and those reporting no inode counts (btrfs, vfat, ...)."""


def parse(stdout: str) -> InodeFacts:
    """Parse ``df -P -i`` joined with /proc/mounts for the filesystem types."""
    rows, ignored = parse_df(stdout)
    return InodeFacts(filesystems=rows, ignored=ignored)


def _measure(fs: DfRow, thresholds: Thresholds) -> Measurement:
    major, critical = thresholds.inode_used_pct_major, thresholds.inode_used_pct_critical
    severity = grade(fs.used_pct, major, critical)
    value = f"{fs.used_pct}% of inodes used ({fs.used} of {fs.total})"
    threshold = f"major at {major:g}%, critical at {critical:g}%"
    if severity is None:
        return Measurement(subject=fs.mountpoint, value=value, threshold=threshold)
    limit = critical if severity is Severity.CRITICAL else major
    return Measurement(
        subject=fs.mountpoint,
        value=value,
        threshold=threshold,
        severity=severity,
        message=(
            f"{fs.mountpoint} has {fs.used_pct}% of its inodes in use "
            f"({severity.value} at {limit:g}%)"
        ),
        evidence=f"{fs.device} on {fs.mountpoint}: {fs.used} of {fs.total} inodes used",
        recommendation=(
            f"Find directories with many small files on {fs.mountpoint} (session files, mail "
            "queues, caches) and clean them up; new files fail when inodes run out."
        ),
    )


def evaluate(facts: InodeFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """One line per filesystem with inode counts, graded with inode_used_pct_major/critical."""
    if not facts.filesystems:
        return [Measurement(subject="filesystems", value="no inode counts reported")]
    return [_measure(fs, thresholds) for fs in facts.filesystems]


CHECK = Check(
    name="inodes",
    title="Inode use",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    timeout=60,
)
