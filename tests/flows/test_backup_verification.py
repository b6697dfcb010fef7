"""Backup-restore verification as a flow: real tar archives, real PostgreSQL dumps, restic."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from tests.backup_fixtures import damage_gzip, make_shop, shop_source
from tests.flow_fixtures import inventory_text
from upkeep.demo.prefect_server import free_port
from upkeep.domain.backups import SourceOutcome
from upkeep.flows.backup_verification import BackupParams, backup_verification
from upkeep.inventory import apply_inventory, parse_inventory
from upkeep.models import BackupVersion, Finding
from upkeep.tasks.backups import files

pytestmark = pytest.mark.flows


@pytest.fixture
def shop(tmp_path: Path) -> dict[str, Path]:
    return make_shop(tmp_path, tmp_path / "scratch")


def load(engine, sources: list[dict]) -> None:
    with Session(engine) as s:
        apply_inventory(s, parse_inventory(inventory_text([], backup_sources=sources)))
        s.commit()


def files_source(shop: dict[str, Path], **extra) -> dict:
    return (
        shop_source(
            shop,
            importance="high",
            security_level="confidential",
            expected_files=["etc/app.conf"],
        )
        | extra
    )


def run(**params) -> object:
    return backup_verification(BackupParams(contract="ACME", **params))


def test_stale_backup_is_taken_anew_verified_archived_and_reported(
    engine, flow_env, shop, smtp_server
):
    load(engine, [files_source(shop)])
    outcome = run(email_report=True)
    (result,) = outcome.sources
    assert result.outcome == "good" and result.taken_by_upkeep  # none existed: taken
    with Session(engine) as s:
        (v,) = s.exec(select(BackupVersion)).all()
        assert v.outcome == "good" and v.security_level == "confidential"
        assert v.archive_path and Path(v.archive_path).exists()
        assert "/shop-files/confidential/high/" in v.archive_path
    assert not any(shop["scratch"].iterdir())  # the restore was removed
    html = Path(outcome.report_path).read_text()
    assert "shop-files" in html and "restored and verified" in html
    (mail,) = smtp_server.handler.wait_for(1)
    assert "all backups restored" in str(mail.message()["subject"])


def backup_at(shop: dict[str, Path], hours_ago: float) -> Path:
    """A new file backup of the shop, stamped ``hours_ago`` (distinct stamps, distinct
    backups: what a nightly backup job leaves)."""
    moment = datetime.now(UTC) - timedelta(hours=hours_ago)
    return files.take_backup(shop["source"], shop["backups"], "shop-files", now=moment)


def test_retention_keeps_n_good_and_never_the_last_good_one(engine, flow_env, shop):
    load(engine, [files_source(shop, keep_versions=2, validity_hours=100000)])
    for hours_ago in (3, 2, 1):
        backup_at(shop, hours_ago)
        assert run().sources[0].outcome == "good"
    with Session(engine) as s:
        kept = s.exec(select(BackupVersion).where(col(BackupVersion.pruned_at).is_(None))).all()
        gone = s.exec(select(BackupVersion).where(col(BackupVersion.pruned_at).is_not(None))).all()
        assert len(kept) == 2 and len(gone) == 1
        assert not Path(gone[0].archive_path).exists()
        last_good = max(kept, key=lambda v: v.verified_at)
    # Now the newest backup is damaged: it fails, and nothing good is pruned for it.
    damage_gzip(sorted(shop["backups"].glob("*.tar.gz"))[-1])
    load(engine, [files_source(shop, keep_versions=2, validity_hours=1000)])
    (bad,) = run().sources
    assert bad.outcome == "bad" and bad.fault == "backup"
    with Session(engine) as s:
        good = s.exec(
            select(BackupVersion).where(
                BackupVersion.outcome == "good", col(BackupVersion.pruned_at).is_(None)
            )
        ).all()
        assert len(good) == 2 and last_good.id in {g.id for g in good}
        assert Path(s.get(BackupVersion, last_good.id).archive_path).exists()


def test_retention_counts_distinct_backups_and_prunes_their_manifests(engine, flow_env, shop):
    load(engine, [files_source(shop, keep_versions=2, validity_hours=100000)])

    def verify() -> SourceOutcome:
        (result,) = run().sources
        assert result.outcome == "good" and not result.taken_by_upkeep, result
        return result

    def archived() -> dict[str, list[BackupVersion]]:
        with Session(engine) as s:
            by_backup: dict[str, list[BackupVersion]] = {}
            for v in s.exec(select(BackupVersion).where(col(BackupVersion.pruned_at).is_(None))):
                by_backup.setdefault(v.backup, []).append(v)
            return by_backup

    a = backup_at(shop, 3)
    verify()
    b = backup_at(shop, 2)
    for _ in range(4):  # B verified four times is still one backup: A stays
        assert verify().pruned == []
    kept = archived()
    assert sorted(kept) == [str(a), str(b)] and len(kept[str(b)]) == 4
    a_archive = Path(kept[str(a)][0].archive_path)
    a_manifest = files.manifest_for(a_archive)
    assert a_archive.is_file() and a_manifest.is_file()

    c = backup_at(shop, 1)
    assert verify().pruned == [str(a_archive)]  # C pushes A out, not B
    kept = archived()
    assert sorted(kept) == [str(b), str(c)]
    assert not a_archive.exists() and not a_manifest.exists()
    copies = {Path(v.archive_path) for vs in kept.values() for v in vs}
    expected = sorted(n for p in copies for n in (p.name, files.manifest_for(p).name))
    assert len(expected) == 4
    assert sorted(p.name for p in a_archive.parent.iterdir()) == expected


def test_a_failed_backup_is_a_finding_and_the_recipients_are_told(
    engine, flow_env, shop, smtp_server
):
    shop["backups"].mkdir(parents=True)
    (shop["backups"] / "shop-files-20261120T010000Z.tar.gz").write_bytes(b"\x1f\x8b\x08trunc")
    load(engine, [files_source(shop, validity_hours=100000)])
    (result,) = run().sources
    assert (result.outcome, result.fault) == ("bad", "backup")
    assert result.reason in ("truncated", "corrupt", "missing_manifest")
    with Session(engine) as s:
        f = s.exec(select(Finding).where(Finding.check == "backup")).one()
        assert f.subject == "shop-files" and f.severity == "critical" and f.host_id is None
    (mail,) = smtp_server.handler.wait_for(1)
    assert "FAILED" in str(mail.message()["subject"])
    # A new good backup resolves the finding.
    load(engine, [files_source(shop, validity_hours=0.0001)])
    assert run().sources[0].outcome == "good"
    with Session(engine) as s:
        assert s.exec(select(Finding).where(Finding.check == "backup")).one().status == "resolved"


def test_postgresql_dump_restores_into_a_scratch_database(
    engine, flow_env, postgres_server, postgres_url, tmp_path, monkeypatch
):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int primary key, total int)")
        conn.execute("INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 50) g")
    monkeypatch.setenv("UPKEEP_PG_SHOP", postgres_url)
    monkeypatch.setenv("UPKEEP_PG_SCRATCH", postgres_server)
    load(
        engine,
        [
            {
                "system": "shop-db",
                "kind": "postgresql",
                "location": str(tmp_path / "dumps"),
                "source_database_env": "UPKEEP_PG_SHOP",
                "scratch_database_env": "UPKEEP_PG_SCRATCH",
                "tables": {"orders": 50},
                "sql_checks": ["select sum(total) = 12750 from orders"],
            }
        ],
    )
    (result,) = run().sources
    assert result.outcome == "good", result
    with psycopg.connect(postgres_server) as conn:
        left = conn.execute(
            "select count(*) from pg_database where datname like 'upkeep_scratch%'"
        ).fetchone()
    assert left == (0,)  # the scratch database is gone
    with Session(engine) as s:
        v = s.exec(select(BackupVersion)).one()
        assert any(c["name"].startswith("table") or "orders" in c["name"] for c in v.checks)
        assert os.environ["UPKEEP_PG_SHOP"] not in str(v.model_dump())  # no secret stored


def test_restic_repository_drill(engine, flow_env, shop, tmp_path, monkeypatch):
    from upkeep.tasks.backups import restic

    repo = tmp_path / "restic-repo"
    monkeypatch.setenv("UPKEEP_RESTIC_SHOP", "correct horse battery staple")
    restic.init_repo(repo, password="correct horse battery staple")
    restic.take_backup(shop["source"], repo, password="correct horse battery staple")
    load(
        engine,
        [
            {
                "system": "shop-restic",
                "kind": "restic",
                "location": str(repo),
                "scratch": str(shop["scratch"]),
                "password_env": "UPKEEP_RESTIC_SHOP",
                "expected_files": ["etc/app.conf"],
            }
        ],
    )
    outcome = run(drill=True, source="shop-restic")
    (result,) = outcome.sources
    assert result.outcome == "good", result
    assert result.duration_s is not None
    with Session(engine) as s:
        v = s.exec(select(BackupVersion)).one()
        assert v.drill and v.run_kind == "drill"
        assert "correct horse" not in str(v.model_dump())


def test_the_next_run_removes_a_killed_runs_scratch(engine, flow_env, shop):
    from upkeep.tasks.backups.base import SCRATCH_PREFIX

    leftover = shop["scratch"] / f"{SCRATCH_PREFIX}killed-run"
    (leftover / "etc").mkdir(parents=True)
    (leftover / "etc" / "app.conf").write_text("half restored")
    three_hours_ago = leftover.stat().st_mtime - 3 * 3600
    os.utime(leftover, (three_hours_ago, three_hours_ago))
    load(engine, [files_source(shop)])
    assert run().sources[0].outcome == "good"
    assert not leftover.exists()


def test_a_wrong_restic_password_is_named_and_not_tried_again(
    engine, flow_env, shop, tmp_path, monkeypatch, caplog
):
    from upkeep.tasks.backups import restic

    repo = tmp_path / "restic-repo"
    restic.init_repo(repo, password="correct horse battery staple")
    restic.take_backup(shop["source"], repo, password="correct horse battery staple")
    monkeypatch.setenv("UPKEEP_RESTIC_SHOP", "not-the-password-7f3a")
    source = {
        "system": "shop-restic",
        "kind": "restic",
        "location": str(repo),
        "scratch": str(shop["scratch"]),
        "password_env": "UPKEEP_RESTIC_SHOP",
    }
    load(engine, [source])
    (result,) = run().sources
    assert (result.outcome, result.fault, result.reason) == (
        "bad",
        "system",
        "wrong_password",
    )
    assert result.message == f"wrong password for the restic repository {repo}"
    assert "trying again" not in caplog.text
    # A repository that cannot be reached right now is tried once more: the check above
    # would see it.
    load(engine, [{**source, "location": f"rest:http://127.0.0.1:{free_port()}/"}])
    (result,) = run().sources
    assert (result.fault, result.reason) == ("system", "source_unreadable")
    assert "shop-restic" in caplog.text and "trying again" in caplog.text
    assert "not-the-password-7f3a" not in caplog.text


@pytest.mark.parametrize("kind", ["files", "postgresql", "restic"])
def test_a_missing_backup_location_is_the_systems_fault_for_every_kind(
    engine, flow_env, shop, tmp_path, monkeypatch, postgres_server, kind
):
    missing = tmp_path / "no-such-place"
    monkeypatch.setenv("UPKEEP_PG_SCRATCH", postgres_server)
    monkeypatch.setenv("UPKEEP_RESTIC_SHOP", "correct horse battery staple")
    source = {
        "files": {"scratch": str(shop["scratch"])},
        "postgresql": {"scratch_database_env": "UPKEEP_PG_SCRATCH", "tables": {"orders": 1}},
        "restic": {"scratch": str(shop["scratch"]), "password_env": "UPKEEP_RESTIC_SHOP"},
    }[kind]
    load(engine, [{"system": "shop", "kind": kind, "location": str(missing), **source}])
    (result,) = run().sources
    assert (result.outcome, result.fault, result.reason) == (
        "bad",
        "system",
        "location_missing",
    ), result
    assert str(missing) in result.message and not missing.exists()
    with Session(engine) as s:
        finding = s.exec(select(Finding).where(Finding.check == "backup")).one()
        assert "system is at fault (location_missing)" in finding.message
