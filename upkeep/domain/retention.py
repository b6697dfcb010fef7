"""Which backup versions may go, and where verified copies are archived. Pure functions.

Retention rules of :func:`plan_retention` (conservative: when in doubt, keep):

* A version is one verification of one backup. Verifying the same backup again (same
  ``key``: the backup and its checksum) adds a version but not a backup: retention counts
  DISTINCT backups, and keeps or deletes every version of a backup together.
* The ``keep`` newest GOOD backups stay. Good backups older than those may be deleted.
* BAD versions older than the oldest kept good backup may be deleted; bad versions newer
  than it stay (recent evidence for the failure report, and possibly partly usable).
* While fewer than ``keep`` good backups exist, NOTHING is deleted, not even bad ones:
  backups are failing, and what exists is all there is to restore from.
* Versions not verified yet (``outcome`` None) are never deleted.
* Hence the latest good backup is never deleted, also when every newer version failed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from upkeep.models.enums import Outcome

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_COMPONENT = 100


@dataclass(frozen=True)
class Version:
    """One stored backup: ``id`` (path or snapshot id), when it was taken and verified."""

    id: str
    taken_at: datetime
    verified_at: datetime | None = None
    outcome: Outcome | Literal["good", "bad"] | None = None
    """None: not verified yet."""
    key: str | None = None
    """Which backup this is a verification of (see :func:`backup_key`); None: a backup of
    its own."""

    @property
    def backup(self) -> str:
        return self.key if self.key is not None else f"version:{self.id}"


def backup_key(backup: str, checksum: str | None) -> str | None:
    """The identity of a verified backup: its file (or snapshot id) and its checksum. None
    without a checksum (a failed verification names no backup it could vouch for)."""
    return f"{backup}\0{checksum}" if checksum else None


def plan_retention(versions: list[Version], keep: int) -> list[Version]:
    """The versions that may be deleted, oldest first, by the rules in the module docstring.

    Raises ValueError for ``keep`` < 1 (keeping no good backup is never a plan) and for
    naive ``taken_at`` values (ordering across time zones would be a guess).
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    for v in versions:
        if v.taken_at.tzinfo is None:
            raise ValueError(f"version {v.id!r} has a naive taken_at")

    def order(v: Version) -> tuple[datetime, str]:
        return (v.taken_at, v.id)

    newest_of: dict[str, tuple[datetime, str]] = {}
    for v in versions:
        if v.outcome == "good":
            newest_of[v.backup] = max(newest_of.get(v.backup, order(v)), order(v))
    good = sorted(newest_of, key=newest_of.__getitem__, reverse=True)
    if len(good) < keep:
        return []
    kept = set(good[:keep])
    oldest_kept = min(order(v) for v in versions if v.outcome == "good" and v.backup in kept)
    doomed = [
        v
        for v in versions
        if v.backup not in kept
        and (v.outcome == "good" or (v.outcome == "bad" and order(v) < oldest_kept))
    ]
    return sorted(doomed, key=order)


def safe_component(text: str, *, fallback: str = "_") -> str:
    """``text`` as one safe file-name component: ASCII letters, digits, ``.``, ``_``, ``-``;
    other runs become ``_``; no leading dots (no ``.``/``..``/hidden names); at most 100
    characters; never empty."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_text).lstrip(".")
    cleaned = cleaned[:MAX_COMPONENT].strip()
    return cleaned or fallback


def archive_path(
    root: Path,
    system: str,
    security_level: str,
    importance: str,
    taken_at: datetime,
    filename: str,
) -> Path:
    """``<root>/<system>/<security>/<importance>/<YYYY>/<YYYYmmddTHHMMSSZ>-<filename>``.

    Every component is made safe with :func:`safe_component`, so the result is always a
    path below ``root``. ``taken_at`` must be aware; it is written in UTC.
    """
    if taken_at.tzinfo is None:
        raise ValueError("taken_at must be timezone-aware")
    utc = taken_at.astimezone(UTC)
    stamp = utc.strftime("%Y%m%dT%H%M%SZ")
    name = safe_component(filename, fallback="backup")
    return (
        root
        / safe_component(system)
        / safe_component(security_level)
        / safe_component(importance)
        / f"{utc.year:04d}"
        / f"{stamp}-{name}"[: MAX_COMPONENT + 17]
    )
