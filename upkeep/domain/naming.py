"""Names and addresses built the same way by every process: Prefect artifact keys, the
Prefect UI's address of a flow run, and names that must be unique. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable


def artifact_key(*parts: object) -> str:
    """A Prefect artifact key from ``parts``: lowercase letters, digits and single dashes only
    (what Prefect accepts), e.g. ``artifact_key("inspection", "ACME_1.b")`` is
    ``inspection-acme-1-b``."""
    text = "-".join(str(p) for p in parts if p is not None and str(p) != "")
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def run_url(ui_url: str | None, flow_run_id: object | None) -> str | None:
    """The Prefect UI's page of flow run ``flow_run_id`` (None without a UI or a run)."""
    if not ui_url or not flow_run_id:
        return None
    return f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"


def repeated(names: Iterable[str]) -> list[str]:
    """The names that occur more than once, sorted (empty: all unique)."""
    seen: set[str] = set()
    twice: set[str] = set()
    for name in names:
        (twice if name in seen else seen).add(name)
    return sorted(twice)
