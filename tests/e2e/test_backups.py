"""Backups restored for real: tar.gz + manifest, pg_dump into a scratch database, restic.

Every damaged backup is damaged on disk (bytes flipped, files cut) and verified with the real
tools; the assertions are on fault/reason and on what is left behind (nothing).
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.backup_fixtures import (
    RESTIC_PASSWORD,
    damage_gzip,
    flip_byte,
    scratch_databases,
    truncate,
)
from upkeep.tasks.backups import files, postgresql, restic
from upkeep.tasks.backups.base import (
    SCRATCH_PREFIX,
    Scratch,
    UnsafeTarget,
    VerificationError,
    cleanup_stale,
    free_space_ok,
)

pytestmark = pytest.mark.e2e


def _verify_fails(fn, *args, **kwargs) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        fn(*args, **kwargs)
    return info.value


# --- files -------------------------------------------------------------------------------


def test_good_archive_with_manifest_passes(files_backup: Path, scratch_parent: Path) -> None:
    manifest = files.manifest_for(files_backup)
    assert files.parse_manifest(manifest.read_text()).keys() == {
        "etc/app/app.conf",
        "etc/hostname",
        "var/data/blob.bin",
        "var/data/empty",
    }
    result = files.verify(
        files_backup, scratch_parent, expected=["etc/hostname", "etc/app/current"]
    )
    assert result.kind == "files" and result.size_bytes == files_backup.stat().st_size
    assert result.taken_at.tzinfo is not None and not result.warnings
    assert {c.name for c in result.checks} >= {"manifest checksums", "expected etc/hostname"}
    assert list(scratch_parent.iterdir()) == []
    assert files.latest_backup(files_backup.parent) == (files_backup, result.taken_at)


def test_plain_tar_passes_and_sha256sum_agrees(source_tree: Path, tmp_path: Path) -> None:
    import subprocess
    import tarfile

    archive = files.take_backup(source_tree, tmp_path / "b", "plain", compress=False)
    files.verify(archive, tmp_path / "scratch")
    out = tmp_path / "x"
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    manifest = files.manifest_for(archive)
    subprocess.run(["sha256sum", "--check", "--quiet", str(manifest)], cwd=out, check=True)


def test_flipped_byte_is_a_backup_fault(files_backup: Path, scratch_parent: Path) -> None:
    damage_gzip(files_backup)
    err = _verify_fails(files.verify, files_backup, scratch_parent)
    assert (err.fault, err.reason) in {("backup", "corrupt"), ("backup", "checksum_mismatch")}
    assert files_backup.name in err.evidence
    assert list(scratch_parent.iterdir()) == []


def test_flipped_byte_in_plain_tar_data_is_a_checksum_mismatch(
    source_tree: Path, tmp_path: Path
) -> None:
    archive = files.take_backup(source_tree, tmp_path / "b", "plain", compress=False)
    data = archive.read_bytes()
    flip_byte(archive, data.index(bytes(range(256))) + 1000)  # inside blob.bin's content
    err = _verify_fails(files.verify, archive, tmp_path / "scratch")
    assert (err.fault, err.reason) == ("backup", "checksum_mismatch")
    assert "var/data/blob.bin" in err.evidence


def test_truncated_archive(files_backup: Path, scratch_parent: Path) -> None:
    truncate(files_backup, 0.5)
    err = _verify_fails(files.verify, files_backup, scratch_parent)
    assert (err.fault, err.reason) == ("backup", "truncated")


def test_manifest_entry_missing_from_archive(files_backup: Path, scratch_parent: Path) -> None:
    manifest = files.manifest_for(files_backup)
    manifest.write_text(manifest.read_text() + f"{'0' * 64}  etc/shadow\n")
    err = _verify_fails(files.verify, files_backup, scratch_parent)
    assert (err.fault, err.reason) == ("backup", "missing_file")
    assert "etc/shadow" in err.evidence


def test_a_file_the_manifest_does_not_list_is_a_backup_fault(
    source_tree: Path, tmp_path: Path
) -> None:
    import io
    import tarfile

    archive = files.take_backup(source_tree, tmp_path / "b", "plain", compress=False)
    with tarfile.open(archive, "a") as tar:  # slipped in after the manifest was written
        extra = b"#!/bin/sh\necho surprise\n"
        info = tarfile.TarInfo("etc/cron.d/extra")
        info.size = len(extra)
        tar.addfile(info, io.BytesIO(extra))
    scratch = tmp_path / "scratch"
    err = _verify_fails(files.verify, archive, scratch)
    assert (err.fault, err.reason) == ("backup", "unlisted_file")
    assert "etc/cron.d/extra" in err.message and "etc/cron.d/extra" in err.evidence
    assert any(c.name == "files not in manifest" and not c.ok for c in err.checks)
    assert list(scratch.iterdir()) == []


def test_hard_linked_files_are_backed_up_with_their_bytes(
    source_tree: Path, tmp_path: Path
) -> None:
    (source_tree / "etc" / "hostname.bak").hardlink_to(source_tree / "etc" / "hostname")
    archive = files.take_backup(source_tree, tmp_path / "b", "linked")
    manifest = files.parse_manifest(files.manifest_for(archive).read_text())
    assert manifest["etc/hostname.bak"] == manifest["etc/hostname"]
    result = files.verify(archive, tmp_path / "scratch", expected=["etc/hostname.bak"])
    assert all(c.ok for c in result.checks)


def test_expected_file_missing(files_backup: Path, scratch_parent: Path) -> None:
    err = _verify_fails(files.verify, files_backup, scratch_parent, expected=["etc/passwd"])
    assert (err.fault, err.reason) == ("backup", "missing_file")
    assert any(c.name == "expected etc/passwd" and not c.ok for c in err.checks)


def test_missing_manifest(files_backup: Path, scratch_parent: Path) -> None:
    files.manifest_for(files_backup).unlink()
    err = _verify_fails(files.verify, files_backup, scratch_parent)
    assert (err.fault, err.reason) == ("backup", "missing_manifest")


def test_empty_archive(tmp_path: Path, scratch_parent: Path) -> None:
    empty = tmp_path / "empty-src"
    (empty / "only-a-dir").mkdir(parents=True)
    archive = files.take_backup(empty, tmp_path / "b", "empty")
    err = _verify_fails(files.verify, archive, scratch_parent)
    assert (err.fault, err.reason) == ("backup", "empty")


def test_no_space_is_refused_before_restoring(files_backup: Path, scratch_parent: Path) -> None:
    free = shutil.disk_usage(scratch_parent).free
    err = _verify_fails(free_space_ok, scratch_parent, free + 1)
    assert (err.fault, err.reason) == ("system", "no_space")
    assert free_space_ok(scratch_parent, 1024) == pytest.approx(free, rel=0.01)


# --- scratch directories -------------------------------------------------------------------


def test_scratch_is_removed_on_error_and_refuses_the_source(
    source_tree: Path, tmp_path: Path
) -> None:
    parent = tmp_path / "scratch"
    with pytest.raises(KeyboardInterrupt), Scratch(parent) as root:
        (root / "sub").mkdir()
        (root / "sub" / "f").write_text("x")
        (root / "sub").chmod(0o500)
        raise KeyboardInterrupt
    assert list(parent.iterdir()) == []
    with pytest.raises(UnsafeTarget):
        Scratch(source_tree / "var", source=source_tree)
    with pytest.raises(UnsafeTarget):
        Scratch(source_tree, source=source_tree / "etc")


def test_cleanup_stale_removes_leftovers_of_killed_runs(tmp_path: Path) -> None:
    parent = tmp_path / "scratch"
    old = parent / f"{SCRATCH_PREFIX}deadbeef0000"
    (old / "restored").mkdir(parents=True)
    (old / "restored" / "file").write_text("left behind")
    young = parent / f"{SCRATCH_PREFIX}running00000"
    young.mkdir()
    unrelated = parent / "keep-me"
    unrelated.mkdir()
    past = time.time() - 2 * 86400
    os.utime(old, (past, past))
    os.utime(unrelated, (past, past))
    removed = cleanup_stale(parent, older_than=timedelta(hours=6))
    assert removed == [old]
    assert sorted(p.name for p in parent.iterdir()) == ["keep-me", young.name]


# --- PostgreSQL ----------------------------------------------------------------------------

TABLES = {"customers": 3, "public.orders": 5}
SQL_CHECKS = [
    "SELECT count(*) = 3 FROM customers",
    "SELECT NOT EXISTS (SELECT 1 FROM orders o LEFT JOIN customers c ON c.id = o.customer"
    " WHERE c.id IS NULL)",
]


def test_pg_dump_restores_and_passes_checks(
    pg_source: str, postgres_server: str, tmp_path: Path
) -> None:
    dump = postgresql.take_backup(pg_source, tmp_path / "b", "crm")
    assert postgresql.latest_backup(tmp_path / "b") is not None
    result = postgresql.verify(
        dump, postgres_server, tables=TABLES, sql_checks=SQL_CHECKS, source_url=pg_source
    )
    by_name = {c.name: c for c in result.checks}
    assert by_name["table customers"].ok and by_name["table customers"].detail == "3 rows"
    assert by_name["source public.orders"].detail == "restored 5, equal"
    assert all(c.ok for c in result.checks)
    assert result.restored_to.split("/")[-1].startswith("upkeep_scratch_")
    assert scratch_databases(postgres_server) == []


def test_pg_checks_fail_and_scratch_db_is_dropped(
    pg_source: str, postgres_server: str, tmp_path: Path
) -> None:
    dump = postgresql.take_backup(pg_source, tmp_path / "b", "crm")
    err = _verify_fails(
        postgresql.verify,
        dump,
        postgres_server,
        tables={"customers": 10, "invoices": 1},
        sql_checks=["SELECT false", "DELETE FROM customers RETURNING true"],
    )
    assert (err.fault, err.reason) == ("backup", "check_failed")
    failed = {c.name: c.detail for c in err.checks if not c.ok}
    assert failed["table customers"] == "3 rows < 10"
    assert failed["table invoices"] == "missing"
    assert failed["sql SELECT false"] == "false"
    assert "read-only transaction" in failed["sql DELETE FROM customers RETURNING true"]
    assert scratch_databases(postgres_server) == []


def test_pg_check_commands_see_only_the_scratch_database(
    pg_source: str, postgres_server: str, tmp_path: Path
) -> None:
    from upkeep.tasks.backups.base import CheckCommands

    dump = postgresql.take_backup(pg_source, tmp_path / "b", "crm")
    count = 'sh -c \'test "$(psql -Atc "select count(*) from customers")" = {}\''
    good = postgresql.verify(
        dump, postgres_server, tables=TABLES, commands=CheckCommands.from_lines([count.format(3)])
    )
    assert any(c.name.startswith("command sh -c") and c.ok for c in good.checks)
    wrong = _verify_fails(
        postgresql.verify,
        dump,
        postgres_server,
        tables=TABLES,
        commands=CheckCommands.from_lines([count.format(4)]),
    )
    assert (wrong.fault, wrong.reason) == ("backup", "check_failed")
    absent = _verify_fails(
        postgresql.verify,
        dump,
        postgres_server,
        tables=TABLES,
        commands=CheckCommands.from_lines(["no-such-tool --check"]),
    )
    # a check tool that is not installed is the system's fault, as for files and restic
    assert (absent.fault, absent.reason) == ("system", "check_failed")
    assert scratch_databases(postgres_server) == []


def test_empty_dump(postgres_server: str, tmp_path: Path) -> None:
    dump = tmp_path / "crm-20250101T000000Z.dump"
    dump.write_bytes(b"")
    err = _verify_fails(postgresql.verify, dump, postgres_server, tables=TABLES)
    assert (err.fault, err.reason) in {("backup", "empty"), ("backup", "corrupt")}


def test_truncated_dump_is_a_backup_fault(
    pg_source: str, postgres_server: str, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(pg_source, autocommit=True) as conn:  # enough data to cut into
        conn.execute(
            "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS v"
            " FROM generate_series(1, 20000) g"
        )
    dump = postgresql.take_backup(pg_source, tmp_path / "b", "crm")
    truncate(dump, 0.6)
    err = _verify_fails(postgresql.verify, dump, postgres_server, tables=TABLES)
    assert (err.fault, err.reason) == ("backup", "truncated")
    assert "end of file" in err.evidence
    assert scratch_databases(postgres_server) == []


def test_garbage_dump_is_corrupt(postgres_server: str, tmp_path: Path) -> None:
    dump = tmp_path / "crm-20250101T000000Z.dump"
    dump.write_bytes(b"this is not a dump\n" * 100)
    err = _verify_fails(postgresql.verify, dump, postgres_server, tables=TABLES)
    assert (err.fault, err.reason) == ("backup", "corrupt")


def test_unreadable_source_is_a_system_fault(postgres_server: str, tmp_path: Path) -> None:
    missing = postgres_server.rsplit("/", 1)[0] + "/no_such_database"
    err = _verify_fails(postgresql.take_backup, missing, tmp_path / "b", "crm")
    assert (err.fault, err.reason) == ("system", "source_unreadable")
    assert list((tmp_path / "b").iterdir()) == []


def test_pg_refuses_the_source_as_scratch_and_cleans_stale(
    pg_source: str, postgres_server: str, tmp_path: Path
) -> None:
    import psycopg

    dump = postgresql.take_backup(pg_source, tmp_path / "b", "crm")
    with pytest.raises(UnsafeTarget):
        postgresql.verify(dump, pg_source, tables=TABLES, source_url=pg_source)
    stale = postgresql.scratch_db_name(now=time.time() - 86400)
    young = postgresql.scratch_db_name()
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{stale}"')
        conn.execute(f'CREATE DATABASE "{young}"')
    try:
        assert postgresql.cleanup_stale_databases(postgres_server) == [stale]
        assert scratch_databases(postgres_server) == [young]
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{young}"')


def test_password_goes_to_the_environment_not_argv() -> None:
    env = postgresql.libpq_env("postgresql+psycopg://u:s3cret@db.example:6543/crm?sslmode=require")
    assert env["PGPASSWORD"] == "s3cret" and env["PGHOST"] == "db.example"
    assert env["PGPORT"] == "6543" and env["PGDATABASE"] == "crm" and env["PGSSLMODE"] == "require"
    assert not any("s3cret" in a for a in postgresql.dump_argv("/tmp/x.dump"))


# --- restic --------------------------------------------------------------------------------


def test_restic_snapshot_passes(restic_repo: tuple[Path, Path], scratch_parent: Path) -> None:
    repo, source_tree = restic_repo
    snapshot = restic.take_backup(source_tree, repo, password=RESTIC_PASSWORD)
    latest = restic.latest_snapshot(repo, password=RESTIC_PASSWORD)
    assert latest is not None and latest[0].startswith(snapshot)
    result = restic.verify(
        repo,
        scratch_parent,
        password=RESTIC_PASSWORD,
        expected=["etc/hostname", str(source_tree / "var/data/blob.bin")],
    )
    assert result.kind == "restic" and result.checksum == latest[0]
    assert result.taken_at == latest[1]
    assert result.size_bytes > 65536 and not result.warnings
    assert list(scratch_parent.iterdir()) == []


def test_restic_flipped_pack_bit_is_corrupt(
    restic_repo: tuple[Path, Path], scratch_parent: Path
) -> None:
    repo, _ = restic_repo
    packs = sorted(
        (p for p in (repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    flip_byte(packs[-1])  # the largest pack holds blob.bin's data
    err = _verify_fails(restic.verify, repo, scratch_parent, password=RESTIC_PASSWORD)
    assert (err.fault, err.reason) == ("backup", "corrupt")
    assert "does not match" in err.evidence or "error" in err.evidence.lower()
    assert RESTIC_PASSWORD not in err.evidence
    assert list(scratch_parent.iterdir()) == []


def test_restic_missing_expected_file_leaves_no_scratch(
    restic_repo: tuple[Path, Path], scratch_parent: Path
) -> None:
    repo, _ = restic_repo
    err = _verify_fails(
        restic.verify,
        repo,
        scratch_parent,
        password=RESTIC_PASSWORD,
        expected=["etc/shadow"],
        read_data_subset="1/2",
    )
    assert (err.fault, err.reason) == ("backup", "missing_file")
    assert list(scratch_parent.iterdir()) == []


def test_restic_wrong_password_and_missing_repo(
    restic_repo: tuple[Path, Path], scratch_parent: Path, tmp_path: Path
) -> None:
    repo, source = restic_repo
    bad = "not-the-password-7f3a"
    for wrong in (
        lambda: restic.verify(repo, scratch_parent, password=bad),
        lambda: restic.latest_snapshot(repo, password=bad),
        lambda: restic.take_backup(source, repo, password=bad),
    ):
        err = _verify_fails(wrong)
        assert (err.fault, err.reason) == ("system", "wrong_password"), err
        assert err.message == f"wrong password for the restic repository {repo}"
        assert bad not in str(err) + err.evidence
    nowhere = tmp_path / "nowhere"
    for missing in (
        lambda: restic.verify(nowhere, scratch_parent, password=RESTIC_PASSWORD),
        lambda: restic.latest_snapshot(nowhere, password=RESTIC_PASSWORD),
        lambda: restic.take_backup(source, nowhere, password=RESTIC_PASSWORD),
    ):
        err = _verify_fails(missing)
        assert (err.fault, err.reason) == ("system", "location_missing"), err
        assert "repository missing" in err.message and str(nowhere) in err.message
    assert not nowhere.exists() and list(scratch_parent.iterdir()) == []


def test_restic_missing_source_is_unreadable_not_a_missing_repository(
    restic_repo: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, _ = restic_repo
    err = _verify_fails(restic.take_backup, tmp_path / "gone", repo, password=RESTIC_PASSWORD)
    assert (err.fault, err.reason) == ("system", "source_unreadable")
