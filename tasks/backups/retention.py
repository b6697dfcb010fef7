"""Which backup versions may go, and where verified copies are archived. Pure functions.

Retention rules of :func:`plan_retention` (conservative: when in doubt, keep):

* The ``keep`` newest GOOD versions stay. Good versions older than those may be deleted.
* BAD versions older than the oldest kept good version may be deleted; bad versions newer
  than it stay (recent evidence for the failure report, and possibly partly usable).
* While fewer than ``keep`` good versions exist, NOTHING is deleted, not even bad ones:
  backups are failing, and what exists is all there is to restore from.
* Versions not verified yet (``outcome`` None) are never deleted.
* Hence the latest good version is never deleted, also when every newer version failed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Outcome = Literal["good", "bad"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_COMPONENT = 100


@dataclass(frozen=True)
class Version:
    """One stored backup: ``id`` (path or snapshot id), when it was taken and verified."""

    id: str
    taken_at: datetime
    verified_at: datetime | None = None
    outcome: Outcome | None = None
    """None: not verified yet."""


def plan_retention(versions: list[Version], keep: int) -> list[Version]:
    """The versions that may be deleted, oldest first, by the rules in the module docstring.

    Raises ValueError for ``keep`` < 1 (keeping no good version is never a plan) and for
    naive ``taken_at`` values (ordering across time zones would be a guess).
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    for v in versions:
        if v.taken_at.tzinfo is None:
            raise ValueError(f"version {v.id!r} has a naive taken_at")

    def order(v: Version) -> tuple[datetime, str]:
        return (v.taken_at, v.id)

    good = sorted((v for v in versions if v.outcome == "good"), key=order, reverse=True)
    if len(good) < keep:
        return []
    kept = good[:keep]
    oldest_kept = order(kept[-1])
    doomed = [v for v in good[keep:]]
    doomed += [v for v in versions if v.outcome == "bad" and order(v) < oldest_kept]
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
