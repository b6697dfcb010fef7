"""Pure backup decisions: retention, archive layout, and the parsers of tool output.

The restic parsers run on output captured from restic 0.14 (tests/fixtures/backups/restic,
first line of each file: the command that produced it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from upkeep.domain.retention import (
    Version,
    archive_path,
    backup_key,
    plan_retention,
    safe_component,
)
from upkeep.tasks.backups import files, postgresql, restic

if TYPE_CHECKING:
    from sqlmodel import Session

    from upkeep.models import BackupVersion

RESTIC_FIXTURES = Path(__file__).parent.parent / "fixtures" / "backups" / "restic"
T0 = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)


def _versions(outcomes: str) -> list[Version]:
    """One version per day, oldest first: 'g' good, 'b' bad, '?' not verified."""
    kind = {"g": "good", "b": "bad", "?": None}
    return [
        Version(id=f"v{i}", taken_at=T0 + timedelta(days=i), outcome=kind[c])  # type: ignore[arg-type]
        for i, c in enumerate(outcomes)
    ]


def _ids(versions: list[Version]) -> list[str]:
    return [v.id for v in versions]


# --- retention -----------------------------------------------------------------------------


def test_keeps_exactly_n_good_versions() -> None:
    versions = _versions("gggggg")
    doomed = plan_retention(versions, keep=3)
    assert _ids(doomed) == ["v0", "v1", "v2"]
    kept = [v for v in versions if v not in doomed]
    assert _ids(kept) == ["v3", "v4", "v5"]


def test_never_prunes_the_last_good_one_when_newer_ones_failed() -> None:
    versions = _versions("gggbbbb")
    assert _ids(plan_retention(versions, keep=1)) == ["v0", "v1"]
    assert "v2" not in _ids(plan_retention(versions, keep=2))
    assert _ids(plan_retention(versions, keep=3)) == []


def test_bad_versions_older_than_the_oldest_kept_good_one_go() -> None:
    versions = _versions("bgbgbgb")
    assert _ids(plan_retention(versions, keep=2)) == ["v0", "v1", "v2"]


def test_nothing_is_pruned_while_fewer_than_n_good_exist() -> None:
    assert plan_retention(_versions("bbgbbgbb"), keep=3) == []
    assert plan_retention(_versions("bbbb"), keep=1) == []
    assert plan_retention([], keep=1) == []


def test_unverified_versions_are_never_pruned() -> None:
    versions = _versions("?gg?g")
    assert _ids(plan_retention(versions, keep=1)) == ["v1", "v2"]


def test_order_is_by_time_not_by_list_position() -> None:
    versions = list(reversed(_versions("ggg")))
    assert _ids(plan_retention(versions, keep=1)) == ["v0", "v1"]


def test_retention_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        plan_retention(_versions("g"), keep=0)
    with pytest.raises(ValueError):
        plan_retention([Version("x", datetime(2025, 1, 1), outcome="good")], keep=1)


def _verified(*backups: tuple[str, int]) -> list[Version]:
    """One version per verification, in order: ``(backup, times verified)``; backup ``x``
    was taken on day ``ord(x) - ord("a")`` and each verification is an hour later."""
    out = []
    for name, times in backups:
        taken = T0 + timedelta(days=ord(name) - ord("a"))
        for n in range(times):
            out.append(
                Version(
                    id=f"{name}{n}",
                    taken_at=taken,
                    verified_at=taken + timedelta(hours=n + 1),
                    outcome="good",
                    key=backup_key(f"/b/{name}.tar.gz", f"sha-{name}"),
                )
            )
    return out


def test_re_verifying_one_backup_does_not_push_the_others_out() -> None:
    versions = _verified(("a", 1), ("b", 1), ("c", 5))
    assert plan_retention(versions, keep=3) == []
    assert _ids(plan_retention(versions, keep=2)) == ["a0"]


def test_a_backup_is_pruned_with_every_verification_of_it() -> None:
    versions = _verified(("a", 3), ("b", 2), ("c", 1))
    assert _ids(plan_retention(versions, keep=2)) == ["a0", "a1", "a2"]
    assert _ids(plan_retention(versions, keep=1)) == ["a0", "a1", "a2", "b0", "b1"]


def test_nothing_is_pruned_while_fewer_than_n_distinct_good_backups_exist() -> None:
    assert plan_retention(_verified(("a", 4), ("b", 4)), keep=3) == []


def test_a_bad_verification_between_good_ones_of_a_kept_backup_stays() -> None:
    versions = _verified(("a", 1), ("b", 1), ("c", 2))
    failed = Version("x", T0 + timedelta(days=1, hours=12), outcome="bad")
    assert _ids(plan_retention([*versions, failed], keep=2)) == ["a0"]
    assert _ids(plan_retention([*versions, failed], keep=1)) == ["a0", "b0", "x"]


def test_backup_key_needs_a_checksum() -> None:
    assert backup_key("/b/a.tar.gz", None) is None
    assert backup_key("/b/a.tar.gz", "") is None
    assert backup_key("/b/a.tar.gz", "1") != backup_key("/b/a.tar.gz", "2")
    assert backup_key("/b/a.tar.gz", "1") != backup_key("/b/b.tar.gz", "1")


# --- archive layout ------------------------------------------------------------------------


def test_archive_path_layout() -> None:
    taken = datetime(2025, 3, 1, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    path = archive_path(Path("/arch"), "web1", "confidential", "high", taken, "web1.tar.gz")
    assert path == Path("/arch/web1/confidential/high/2025/20250301T020405Z-web1.tar.gz")


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc", "_.._etc"),
        ("..", "_"),
        ("", "_"),
        ("a/b\\c", "a_b_c"),
        ("Müller GmbH", "Muller_GmbH"),
        (".hidden", "hidden"),
        ("x\0y\nz", "x_y_z"),
        ("ok-name_1.2", "ok-name_1.2"),
    ],
)
def test_safe_component(raw: str, safe: str) -> None:
    assert safe_component(raw) == safe


def test_archive_path_stays_below_root() -> None:
    root = Path("/arch")
    path = archive_path(root, "../..", "/etc", "..", T0, "../../passwd")
    assert root in path.parents and ".." not in path.parts
    assert len(path.name) <= 120
    long = archive_path(root, "s" * 500, "x", "y", T0, "f" * 500)
    assert all(len(part) <= 120 for part in long.parts)
    with pytest.raises(ValueError):
        archive_path(root, "s", "x", "y", datetime(2025, 1, 1), "f")


# --- file backup names and manifests --------------------------------------------------------


def test_backup_names() -> None:
    assert files.parse_backup_name("web1-20250301T020000Z.tar.gz") == (
        "web1",
        datetime(2025, 3, 1, 2, 0, tzinfo=UTC),
    )
    assert files.parse_backup_name("a-b-20250301T020000Z.tar") is not None
    assert files.parse_backup_name("web1-20250301T020000Z.tar.gz.partial") is None
    assert files.parse_backup_name("web1-20251301T020000Z.tar") is None
    assert files.manifest_for(Path("/b/web1-20250301T020000Z.tar.gz")) == Path(
        "/b/web1-20250301T020000Z.sha256"
    )


def test_manifest_round_trip_and_sha256sum_forms() -> None:
    entries = {"etc/a b": "a" * 64, "weird\\name\nx": "b" * 64}
    assert files.parse_manifest(files.format_manifest(entries)) == entries
    assert files.parse_manifest(f"{'C' * 64} *bin/file\n\n") == {"bin/file": "c" * 64}
    for bad in (f"{'a' * 64}  ../etc/passwd", f"{'a' * 64}  /etc/passwd", "nonsense"):
        with pytest.raises(ValueError):
            files.parse_manifest(bad)


# --- pg_restore ----------------------------------------------------------------------------

TOC = """;
; Archive created at 2025-03-01 02:00:00 UTC
;     dbname: crm
;     TOC Entries: 9
;
215; 1259 16385 TABLE public customers upkeep
216; 1259 16390 TABLE public orders upkeep
3327; 0 16385 TABLE DATA public customers upkeep
3328; 0 16390 TABLE DATA public orders upkeep
3176; 2606 16389 CONSTRAINT public customers customers_pkey upkeep
3180; 2606 16400 FK CONSTRAINT public orders orders_customer_fkey upkeep
"""


def test_parse_toc() -> None:
    entries = postgresql.parse_toc(TOC)
    assert [e.kind for e in entries] == [
        "TABLE",
        "TABLE",
        "TABLE DATA",
        "TABLE DATA",
        "CONSTRAINT",
        "FK CONSTRAINT",
    ]
    assert entries[2].rest == "public customers upkeep"


@pytest.mark.parametrize(
    ("stderr", "size", "expected"),
    [
        ("pg_restore: error: input file is too short (read 0, expected 5)", 0, "empty"),
        ("pg_restore: error: input file is too short (read 3, expected 5)", 3, "truncated"),
        ("pg_restore: error: could not read from input file: end of file", 9, "truncated"),
        ("pg_restore: error: input file does not appear to be a valid archive", 9, "corrupt"),
        (
            'pg_restore: error: could not execute query: ERROR:  type "x" does not exist',
            9,
            "restore_failed",
        ),
    ],
)
def test_pg_restore_errors_are_the_backups(stderr: str, size: int, expected: str) -> None:
    assert postgresql.classify_pg_restore_error(stderr, size=size) == ("backup", expected)


def test_pg_restore_server_trouble_is_the_systems() -> None:
    refused = 'pg_restore: error: connection to server at "db" (10.0.0.1), port 5432 failed'
    assert postgresql.classify_pg_restore_error(refused, size=9) == ("system", "restore_failed")
    full = "ERROR:  could not extend file: No space left on device"
    assert postgresql.classify_pg_restore_error(full, size=9) == ("system", "no_space")


def test_libpq_env_rejects_unknown_parameters() -> None:
    with pytest.raises(ValueError):
        postgresql.libpq_env("postgresql://u@h/db?keepalives=1")


# --- restic (captured output) ----------------------------------------------------------------


def _captured(name: str) -> str:
    text = (RESTIC_FIXTURES / name).read_text()
    first, _, rest = text.partition("\n")
    assert first.startswith("# restic 0.14.0")
    return rest


def test_parse_backup_summary() -> None:
    summary = restic.parse_backup_summary(_captured("backup.jsonl"))
    assert summary.snapshot_id == "de1f421f"
    assert (summary.files_new, summary.files_unmodified) == (1, 2)
    assert summary.total_bytes_processed == 17
    with pytest.raises(ValueError):
        restic.parse_backup_summary('{"message_type":"status","percent_done":0}')


def test_parse_snapshots() -> None:
    snaps = restic.parse_snapshots(_captured("snapshots.json"))
    assert [s.short_id for s in snaps] == ["f5d1e876", "de1f421f"]
    assert snaps[-1].time == datetime(2026, 11, 21, 23, 33, 55, 644692, tzinfo=UTC)
    assert snaps[-1].paths == ("/tmp/rr/src",)
    latest = restic.parse_snapshots(_captured("snapshots_latest.json"))
    assert [s.id for s in latest] == [snaps[-1].id]
    assert restic.parse_snapshots(_captured("snapshots_empty.json")) == []


def test_parse_restic_time_offsets() -> None:
    assert restic.parse_restic_time("2025-03-01T03:00:00.1+01:00") == datetime(
        2025, 3, 1, 2, 0, 0, 100000, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        restic.parse_restic_time("yesterday")


def test_parse_restore_size() -> None:
    assert restic.parse_restore_size(_captured("stats_restore_size.json")) == (17, 7)


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            "Pack ID does not match, want 3094, got 831b\nFatal: repository contains errors",
            ("backup", "corrupt"),
        ),
        (_captured("stderr_wrong_password.txt"), ("system", "wrong_password")),
        (_captured("stderr_backup_wrong_password.txt"), ("system", "wrong_password")),
        (_captured("stderr_no_repository.txt"), ("system", "location_missing")),
        # an unreachable REST server also asks "Is there a repository…?": it is not missing
        (_captured("stderr_rest_refused.txt"), ("system", "source_unreadable")),
        (
            "Fatal: unable to create lock in backend: repository is already locked by PID 1",
            ("system", "source_unreadable"),
        ),
        ("write /t/f: no space left on device", ("system", "no_space")),
    ],
)
def test_classify_restic_errors(stderr: str, expected: tuple[str, str]) -> None:
    assert restic.classify_restic_error(stderr, "corrupt") == expected


def test_restic_failures_say_what_is_wrong() -> None:
    assert restic.failure_message("snapshots", "wrong_password", "/r") == (
        "wrong password for the restic repository /r"
    )
    assert "repository missing" in restic.failure_message("check", "location_missing", "/r")
    assert restic.failure_message("check", "corrupt", "/r") == "restic check failed"
    assert restic.repo_label("rest:https://u:pw@h:8000/r") == "rest:https://h:8000/r"


def test_restic_source_missing_is_told_apart_from_a_missing_repository() -> None:
    assert restic.source_unread(1, _captured("stderr_backup_no_source.txt"))
    assert restic.source_unread(3, "")
    assert not restic.source_unread(1, _captured("stderr_no_repository.txt"))
    assert not restic.source_unread(1, _captured("stderr_backup_wrong_password.txt"))


def test_restic_argv_never_holds_secrets() -> None:
    assert restic.check_argv() == ["restic", "check", "--read-data"]
    assert restic.check_argv("1/10") == ["restic", "check", "--read-data-subset=1/10"]
    with pytest.raises(ValueError):
        restic.check_argv("1/10; rm -rf /")
    assert restic.backup_argv(["/srv/-x"]) == ["restic", "backup", "--json", "--", "/srv/-x"]


def _shop_file_backups(session: Session, *versions: dict[str, Any]) -> list[BackupVersion]:
    """A new contract's good file backups of "shop", one per dict of the fields that set it
    apart, added and flushed."""
    from upkeep.models import BackupVersion, Contract, Customer

    customer = Customer(code="c", name="C")
    session.add(customer)
    session.flush()
    assert customer.id is not None
    contract = Contract(code="C", name="C", customer_id=customer.id)
    session.add(contract)
    session.flush()
    assert contract.id is not None
    rows = [
        BackupVersion(
            contract_id=contract.id,
            system="shop",
            kind="files",
            security_level="internal",
            importance="high",
            outcome="good",
            **fields,
        )
        for fields in versions
    ]
    session.add_all(rows)
    session.flush()
    return rows


def test_pruning_keeps_a_file_a_kept_version_shares(engine, tmp_path) -> None:
    """Two backups taken within one second share an archive name: pruning the older one
    must not delete the copy the newer, kept one points at."""
    from sqlmodel import Session

    from upkeep.models import utcnow
    from upkeep.tasks.backup_records import prune

    shared = tmp_path / "shop-20261122T002046Z.tar.gz"
    shared.write_bytes(b"archive")
    with Session(engine) as s:
        same = {"backup": str(shared), "archive_path": str(shared)}
        old, new = _shop_file_backups(
            s, {"verified_at": utcnow() - timedelta(seconds=1), **same}, same
        )
        prune(session=s, doomed=[old])
        s.commit()
        assert old.pruned_at is not None and new.pruned_at is None
    assert shared.exists()


def test_pruning_removes_the_manifest_with_the_archive(engine, tmp_path) -> None:
    """A pruned file backup's manifest goes with it, and so do manifests that earlier prunes
    left behind; a kept archive keeps its manifest."""
    from sqlmodel import Session

    from upkeep.models import utcnow
    from upkeep.tasks.backup_records import prune

    archive = tmp_path / "archive" / "2026"
    archive.mkdir(parents=True)
    old, kept = (archive / f"20261{n}01T000000Z-shop.tar.gz" for n in (0, 1))
    left_behind = archive / "20260901T000000Z-shop.sha256"
    for path in (old, kept):
        path.write_bytes(b"archive")
        files.manifest_for(path).write_text(f"{'0' * 64}  a\n")
    left_behind.write_text(f"{'0' * 64}  a\n")
    with Session(engine) as s:
        first, _ = _shop_file_backups(
            s,
            {
                "verified_at": utcnow() - timedelta(days=31),
                "backup": "/b/old.tar.gz",
                "archive_path": str(old),
            },
            {"backup": "/b/new.tar.gz", "archive_path": str(kept)},
        )
        assert prune(session=s, doomed=[first]) == [str(old)]
        s.commit()
    assert sorted(p.name for p in archive.iterdir()) == sorted(
        [kept.name, files.manifest_for(kept).name]
    )


def test_two_backups_in_one_second_get_distinct_names(tmp_path) -> None:
    from datetime import UTC, datetime

    from upkeep.tasks.backups import files

    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a")
    moment = datetime(2026, 11, 22, 0, 20, 46, tzinfo=UTC)
    first = files.take_backup(source, tmp_path / "b", "shop", now=moment)
    second = files.take_backup(source, tmp_path / "b", "shop", now=moment)
    assert first != second and first.exists() and second.exists()
    assert files.latest_backup(tmp_path / "b", "shop")[0] == second
