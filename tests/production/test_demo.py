"""The README's first command: ``./scripts/demo`` runs the main job on the embedded defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.production

UPKEEP = str(Path(sys.executable).with_name("upkeep"))


def test_the_demo_inspects_this_machine_end_to_end(tmp_path: Path) -> None:
    """``upkeep demo`` (what ./scripts/demo runs after set-up) in a fresh directory, with none
    of the test session's Prefect or upkeep settings: it starts its own servers on free ports,
    gets the plan approved through the approval page with the mailed link, inspects, reports
    and mails."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "UPKEEP_")) and k != "PYTHONPATH"
    }
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    done = subprocess.run(
        [UPKEEP, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    reports = list((tmp_path / "data" / "reports" / "DEMO").rglob("inspection-DEMO-*.html"))
    assert len(reports) == 1 and "<html" in reports[0].read_text().lower(), said
    mails = sorted((tmp_path / "data" / "demo" / "mail").glob("*.eml"))
    assert len(mails) >= 2, said  # the approver's link and code, then the report
    assert "the page says: Accepted: the request is approved" in said, said
    assert f"report: {reports[0]}" in " ".join(done.stdout.split()), said
