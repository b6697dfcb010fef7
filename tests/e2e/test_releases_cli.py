"""``upkeep releases declare|show`` as an engineer runs them: the release validated against the
inventory, stored with a copy of its test report, every problem named with exit 1 and nothing
stored."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from tests.e2e.test_cli import upkeep
from tests.flow_fixtures import host_entry
from upkeep.models import OutboxMessage, Release

pytestmark = pytest.mark.e2e

SHOP: dict[str, Any] = {
    "name": "shop",
    "smoke_checks": [{"name": "orders", "url": "https://shop.acme.example/health"}],
    "release": {
        "release_command": "/opt/shop/bin/switch --to {version}",
        "rollback_command": "/opt/shop/bin/switch --previous",
        "canary_share": 0.5,
        "checklist": [
            {"name": "smoke", "kind": "automatic", "check": "smoke_checks"},
            {"name": "db-migration", "kind": "manual", "description": "migration rehearsed"},
        ],
    },
}


def test_declare_a_release_then_show_it(
    prefect_server: str, engine, load_inventory, data_dir: Path, tmp_path: Path
) -> None:
    hosts = [host_entry(f"app{i}", None, system="shop") for i in (1, 2, 3)]
    load_inventory(
        [*hosts, host_entry("db1", None)],
        systems=[SHOP],
        blackouts=[{"from": "2099-12-24", "to": "2099-12-26", "reason": "holidays"}],
    )
    changes = tmp_path / "changes.txt"
    changes.write_text("- faster order search\n- fixed VAT rounding\n")
    report = tmp_path / "report.html"
    report.write_text("<h1>Test report 2.4.1</h1><p>312 tests passed</p>")
    common = ["--contract", "ACME", "--system", "shop", "--changes", str(changes)]

    bad = upkeep(
        "releases", "declare", *common, "--version", "2.4.1", "--window", "2099-12-25 22:00",
        "--test-report", str(report), "--canary", "db1", data_dir=data_dir,
    )  # fmt: skip
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "2099-12-25 is a blackout day of the contract (holidays)" in bad.stderr
    assert "canary host(s) db1 are not hosts of system shop" in bad.stderr
    assert "Traceback" not in bad.stderr
    with Session(engine) as s:
        assert s.exec(select(Release)).all() == []

    ok = upkeep(
        "releases", "declare", *common, "--version", "2.4.1", "--window", "2099-12-10 22:00",
        "--test-report", str(report), "--as", "Eve Engineer", data_dir=data_dir,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "shop 2.4.1 at 2099-12-10 22:00 CET on app1, app2, app3 (canary: app1, app2)" in (
        ok.stdout
    )
    assert "notice to it@acme.example queued in the outbox, due 2099-12-09 22:00 CET" in ok.stdout
    with Session(engine) as s:
        (row,) = s.exec(select(Release)).all()
        (notice,) = s.exec(select(OutboxMessage)).all()
    assert notice.kind == "release_notice" and notice.status == "pending"
    kept = Path(row.test_report_path)
    assert kept.read_bytes() == report.read_bytes() and kept.is_relative_to(data_dir)
    assert row.test_report_sha256 == hashlib.sha256(report.read_bytes()).hexdigest()
    assert row.declared_by == "Eve Engineer" and row.status == "declared"
    assert "fixed VAT rounding" in row.changes

    shown = upkeep("releases", "show", "--contract", "ACME", data_dir=data_dir)
    assert shown.returncode == 0, shown.stderr
    assert "shop 2.4.1  2099-12-10 22:00 CET  declared" in shown.stdout

    assert f"release {row.id} not started: " in ok.stderr  # nothing serves the contract here
    assert f"start it with `upkeep releases run {row.id}`" in ok.stderr

    env = {"PREFECT_API_URL": prefect_server}
    with Session(engine) as s:  # as if reviewed and approved: only the window part is left
        stored = s.get(Release, row.id)
        assert stored is not None
        stored.status = "approved"
        s.add(stored)
        s.commit()
    early = upkeep("releases", "run", str(row.id), data_dir=data_dir, env=env)
    assert early.returncode == 1, early.stdout + early.stderr
    assert "window opens at 2099-12-10" in early.stderr and "at most 1:00:00 before" in early.stderr
    missing = upkeep("releases", "run", "999", data_dir=data_dir, env=env)
    assert missing.returncode == 1 and "no release 999" in missing.stderr

    no_release = upkeep(
        "releases", "declare", "--contract", "ACME", "--system", "crm", "--changes", str(changes),
        "--version", "1", "--window", "2099-12-10 22:00", "--test-report", str(report),
        data_dir=data_dir,
    )  # fmt: skip
    assert no_release.returncode == 1
    assert "has no system 'crm' (it has: shop)" in no_release.stderr
