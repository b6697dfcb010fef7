"""Backups that live on another host: taken over SSH, fetched over SFTP, verified here.

The "remote" host is a real sshd on loopback; it shares this machine's filesystem, so the
tests can look at (and damage) what the catalogue commands wrote there. What goes over SSH is
counted in sshd's own log.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from sqlmodel import Session, select

from tests.backup_fixtures import damage_gzip, make_shop, shop_source
from tests.flow_fixtures import host_entry
from upkeep.demo.sshd import ThrowawaySshd
from upkeep.flows.backup_verification import BackupParams, backup_verification
from upkeep.models import BackupVersion

pytestmark = pytest.mark.flows

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def backup_sshd(client_key) -> ThrowawaySshd:
    """A host of its own, logging logins, so the tests can count what went over SSH."""
    with ThrowawaySshd(client_key=client_key, log_level="INFO") as server:
        yield server


@pytest.fixture
def shop(tmp_path: Path) -> dict[str, Path]:
    return make_shop(tmp_path / "remote", tmp_path / "scratch")


def files_source(shop: dict[str, Path], **extra) -> dict:
    return shop_source(shop, host="web1", expected_files=["etc/app.conf"]) | extra


@pytest.fixture
def on_host(load_inventory, backup_sshd):
    def load(*sources: dict, trust: bool = True) -> None:
        load_inventory(
            [host_entry("web1", backup_sshd)],
            trust=[backup_sshd] if trust else [],
            backup_sources=list(sources),
        )

    return load


def run(**params) -> object:
    return backup_verification(BackupParams(contract="ACME", **params))


def test_a_stale_remote_backup_is_taken_over_ssh_fetched_and_verified(
    engine, flow_env, on_host, shop, backup_sshd
):
    on_host(files_source(shop))
    before = backup_sshd.logins()
    (result,) = run().sources
    assert result.outcome == "good", result
    assert result.taken_by_upkeep
    assert backup_sshd.logins() > before  # it went over SSH
    (archive,) = shop["backups"].glob("shop-files-*.tar.gz")
    manifest = archive.with_name(archive.name.replace(".tar.gz", ".sha256"))
    # The manifest written on the host lists every file with its real checksum.
    lines = dict(
        reversed(line.split("  ", 1)) for line in manifest.read_text().splitlines() if line
    )
    conf = hashlib.sha256(b"listen = 8080\n").hexdigest()
    assert lines["./etc/app.conf"] == conf and "./data.csv" in lines
    assert not list(shop["backups"].glob("*.partial"))
    with Session(engine) as s:
        v = s.exec(select(BackupVersion)).one()
        assert v.backup == f"web1:{archive}"
        assert v.outcome == "good" and v.taken_by_upkeep
        assert v.archive_path and Path(v.archive_path).read_bytes() == archive.read_bytes()
    assert not any(shop["scratch"].iterdir())  # fetched copy and restore both removed


def test_a_damaged_remote_backup_is_the_backups_fault(engine, flow_env, on_host, shop):
    on_host(files_source(shop))
    assert run().sources[0].outcome == "good"
    (archive,) = shop["backups"].glob("*.tar.gz")
    damage_gzip(archive)
    on_host(files_source(shop, validity_hours=1000))
    (result,) = run().sources
    assert (result.outcome, result.fault) == ("bad", "backup")
    assert result.reason in ("corrupt", "checksum_mismatch", "truncated")
    assert not any(shop["scratch"].iterdir())


def test_a_missing_remote_manifest_is_the_backups_fault(engine, flow_env, on_host, shop):
    on_host(files_source(shop))
    assert run().sources[0].outcome == "good"
    (manifest,) = shop["backups"].glob("*.sha256")
    manifest.unlink()
    on_host(files_source(shop, validity_hours=1000))
    (result,) = run().sources
    assert (result.fault, result.reason) == ("backup", "missing_manifest")


def test_an_unreadable_remote_source_is_the_systems_fault(engine, flow_env, on_host, shop):
    on_host(files_source(shop, source=str(shop["source"].parent / "gone")))
    (result,) = run().sources
    assert (result.outcome, result.fault, result.reason) == (
        "bad",
        "system",
        "source_unreadable",
    )
    assert "gone" in result.evidence and "web1" in result.message
    assert not list(shop["backups"].glob("*"))  # nothing half-written left on the host


def test_a_missing_backup_location_on_the_host_is_the_systems_fault(
    engine, flow_env, on_host, shop
):
    missing = shop["backups"].parent / "nowhere"
    on_host(files_source(shop, location=str(missing), source=None))
    (result,) = run().sources
    assert (result.outcome, result.fault, result.reason) == (
        "bad",
        "system",
        "location_missing",
    )
    assert f"web1:{missing}" in result.message and not missing.exists()


def test_an_untrusted_backup_host_is_refused(engine, flow_env, on_host, shop):
    on_host(files_source(shop), trust=False)
    (result,) = run().sources
    assert (result.fault, result.reason) == ("system", "source_unreadable")
    assert "web1" in result.message and "host_key_unknown" in result.evidence
    assert not shop["backups"].exists()  # no command ran


def test_values_reach_the_host_quoted(engine, flow_env, on_host, shop, tmp_path):
    odd = tmp_path / "remote" / "it's $(touch pwned) ; `id`"
    odd.mkdir(parents=True)
    (odd / "a file").write_text("x\n")
    on_host(files_source(shop, source=str(odd), expected_files=["a file"]))
    (result,) = run().sources
    assert result.outcome == "good", result
    assert not list(tmp_path.rglob("pwned")) and not Path("pwned").exists()


def test_check_commands_run_in_the_restored_copy(engine, flow_env, on_host, shop, monkeypatch):
    monkeypatch.setenv("UPKEEP_SMTP_PASSWORD", "s3cret")
    on_host(
        files_source(
            shop,
            commands=[
                "grep -q 'listen = 8080' etc/app.conf",
                'sh -c \'test -z "$UPKEEP_SMTP_PASSWORD" && test "$PWD" = "$UPKEEP_RESTORE_DIR"\'',
            ],
        )
    )
    (result,) = run().sources
    assert result.outcome == "good", result
    on_host(
        files_source(shop, validity_hours=1000, commands=["grep -q 'listen = 9090' etc/app.conf"])
    )
    (result,) = run().sources
    assert (result.fault, result.reason) == ("backup", "check_failed")
    assert "grep" in result.message and "exit 1" in result.evidence
    on_host(files_source(shop, validity_hours=1000, commands=["no-such-tool --check"]))
    (result,) = run().sources
    assert (result.fault, result.reason) == ("system", "check_failed")
    assert "no-such-tool is not installed" in result.evidence


def test_remote_postgresql_dump_over_ssh(
    engine, flow_env, on_host, postgres_server, postgres_url, tmp_path, monkeypatch, backup_sshd
):
    import psycopg

    from upkeep.tasks.backups.postgresql import conninfo

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int primary key, total int)")
        conn.execute("INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 50) g")
    info = conninfo(postgres_url)
    assert "password" not in info  # the test cluster trusts loopback: the host's own login
    dsn = " ".join(f"{k}={v}" for k, v in info.items())
    monkeypatch.setenv("UPKEEP_PG_SCRATCH", postgres_server)
    source = {
        "system": "shop-db",
        "kind": "postgresql",
        "host": "web1",
        "location": str(tmp_path / "remote" / "dumps"),
        "dump_database": dsn,
        "scratch_database_env": "UPKEEP_PG_SCRATCH",
        "scratch": str(tmp_path / "scratch"),
        "tables": {"orders": 50},
        "sql_checks": ["select sum(total) = 12750 from orders"],
        "commands": ['sh -c \'test "$(psql -Atc "select count(*) from orders")" = 50\''],
    }
    on_host(source)
    (result,) = run().sources
    assert result.outcome == "good", result
    (dump,) = (tmp_path / "remote" / "dumps").glob("shop-db-*.dump")
    listed = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True)
    assert "TABLE DATA public orders" in listed.stdout
    with Session(engine) as s:
        v = s.exec(select(BackupVersion)).one()
        assert v.backup == f"web1:{dump}"
        names = [c["name"] for c in v.checks]
        assert any(n.startswith("command sh -c") for n in names)
    # A dump_database that does not exist is the system's fault, named.
    on_host(
        {
            **source,
            "dump_database": dsn.replace(info["dbname"], "no_such_db"),
            "validity_hours": 0.0001,
        }
    )
    (bad,) = run().sources
    assert (bad.fault, bad.reason) == ("system", "source_unreadable")
    assert "no_such_db" in bad.evidence


def test_remote_restic_backup_gets_the_password_on_stdin(
    engine, flow_env, on_host, shop, tmp_path, monkeypatch, backup_sshd
):
    from upkeep.tasks.backups import restic

    repo = tmp_path / "remote" / "restic-repo"
    restic.init_repo(repo, password=PASSWORD)
    monkeypatch.setenv("UPKEEP_RESTIC_SHOP", PASSWORD)
    on_host(
        {
            "system": "shop-restic",
            "kind": "restic",
            "host": "web1",
            "location": str(repo),
            "source": str(shop["source"]),
            "scratch": str(shop["scratch"]),
            "password_env": "UPKEEP_RESTIC_SHOP",
            "expected_files": ["etc/app.conf"],
            "commands": ["grep -q 8080 etc/app.conf"],
        }
    )
    (result,) = run().sources
    assert result.outcome == "good", result
    assert result.taken_by_upkeep
    snaps = restic.latest_snapshot(repo, password=PASSWORD)
    assert snaps is not None
    with Session(engine) as s:
        assert PASSWORD not in str(s.exec(select(BackupVersion)).one().model_dump())


# --- restoring on a scratch host --------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch_sshd(client_key) -> ThrowawaySshd:
    with ThrowawaySshd(client_key=client_key) as server:
        yield server


@pytest.fixture
def on_hosts(load_inventory, backup_sshd, scratch_sshd):
    """The backups on web1; a second host, scratch1, for restores."""

    def load(*sources: dict) -> None:
        load_inventory(
            [host_entry("web1", backup_sshd), host_entry("scratch1", scratch_sshd)],
            trust=[backup_sshd, scratch_sshd],
            backup_sources=list(sources),
        )

    return load


def remote_scratch(shop: dict[str, Path]) -> Path:
    return shop["scratch"].parent / "remote" / "scratch"


def on_host_source(shop: dict[str, Path], scratch_host: str = "web1", **extra) -> dict:
    return files_source(shop, scratch_host=scratch_host, scratch=str(remote_scratch(shop)), **extra)


@pytest.mark.parametrize("scratch_host", ["web1", "scratch1"])
def test_a_backup_restored_on_a_scratch_host(engine, flow_env, on_hosts, shop, scratch_host):
    on_hosts(on_host_source(shop, scratch_host))
    outcome = run()
    (result,) = outcome.sources
    assert result.outcome == "good", result
    restored = f"{scratch_host}:{remote_scratch(shop)}/upkeep-scratch-"
    assert result.restored_to.startswith(restored)
    assert restored in Path(outcome.report_path).read_text()  # the report says where
    (archive,) = shop["backups"].glob("*.tar.gz")
    with Session(engine) as s:
        v = s.exec(select(BackupVersion)).one()
        assert v.backup == f"web1:{archive}"
        assert v.checksum == hashlib.sha256(archive.read_bytes()).hexdigest()
        assert v.size_bytes == archive.stat().st_size
        checks = {c["name"]: c for c in v.checks}
        assert checks["manifest checksums"]["ok"] and checks["expected etc/app.conf"]["ok"]
        assert v.archive_path is None  # the verified version stays on its host
    assert list(remote_scratch(shop).iterdir()) == []  # restore and upload removed
    assert not shop["scratch"].exists()  # nothing came to the machine running upkeep


@pytest.mark.parametrize(
    ("damage", "fault", "reasons"),
    [
        ("flip", "backup", {"corrupt", "checksum_mismatch"}),
        ("truncate", "backup", {"truncated"}),
        ("manifest", "backup", {"missing_manifest"}),
        ("entry", "backup", {"missing_file"}),
        ("unlisted", "backup", {"unlisted_file"}),
    ],
)
def test_a_damaged_backup_restored_on_a_host_names_the_cause(
    engine, flow_env, on_hosts, shop, damage, fault, reasons
):
    on_hosts(on_host_source(shop))
    assert run().sources[0].outcome == "good"
    (archive,) = shop["backups"].glob("*.tar.gz")
    manifest = archive.with_name(archive.name.replace(".tar.gz", ".sha256"))
    data = archive.read_bytes()
    if damage == "flip":
        damage_gzip(archive)
    elif damage == "truncate":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "manifest":
        manifest.unlink()
    elif damage == "entry":
        manifest.write_text(manifest.read_text() + f"{'0' * 64}  ./etc/gone.conf\n")
    else:  # the archive holds data.csv, the manifest no longer vouches for it
        lines = manifest.read_text().splitlines(keepends=True)
        manifest.write_text("".join(x for x in lines if not x.endswith("./data.csv\n")))
    on_hosts(on_host_source(shop, validity_hours=1000))
    (result,) = run().sources
    assert (result.outcome, result.fault) == ("bad", fault), result
    assert result.reason in reasons, result
    if damage == "unlisted":
        assert "data.csv" in result.message and "not in the manifest" in result.message
    assert list(remote_scratch(shop).iterdir()) == []


def test_hard_links_are_listed_and_restore_on_the_host(engine, flow_env, on_hosts, shop):
    (shop["source"] / "data-link.csv").hardlink_to(shop["source"] / "data.csv")
    on_hosts(on_host_source(shop))
    (result,) = run().sources
    assert result.outcome == "good", result
    (manifest,) = shop["backups"].glob("*.sha256")
    listed = {line.split("  ", 1)[1] for line in manifest.read_text().splitlines()}
    assert {"./data.csv", "./data-link.csv"} <= listed


def test_a_killed_runs_scratch_on_the_host_is_removed_by_the_next_run(
    engine, flow_env, on_hosts, shop
):
    import os

    from upkeep.tasks.backups.base import SCRATCH_PREFIX

    leftover = remote_scratch(shop) / f"{SCRATCH_PREFIX}killed"
    recent = remote_scratch(shop) / f"{SCRATCH_PREFIX}running"
    for d in (leftover, recent):
        (d / "root").mkdir(parents=True)
    three_hours_ago = leftover.stat().st_mtime - 3 * 3600
    os.utime(leftover, (three_hours_ago, three_hours_ago))
    on_hosts(on_host_source(shop))
    assert run().sources[0].outcome == "good"
    assert not leftover.exists() and recent.exists()  # a running verification keeps its own


@pytest.mark.parametrize("fill", ["before", "during"])
def test_no_space_on_the_scratch_host_is_the_systems_fault(
    engine, flow_env, on_hosts, shop, mount_tmpfs, fill
):
    import os

    small = mount_tmpfs("size=512k")
    if fill == "before":  # the host's df says it cannot fit: refused before extracting
        (shop["source"] / "big.bin").write_bytes(os.urandom(1 << 20))
    else:  # 400 tiny files fit by bytes but not by pages: ENOSPC part-way through tar -x
        for i in range(400):
            (shop["source"] / f"f{i:03d}.txt").write_text(f"{i:03d}\n")
    on_hosts(files_source(shop, scratch_host="web1", scratch=str(small)))
    (result,) = run().sources
    assert (result.outcome, result.fault, result.reason) == ("bad", "system", "no_space")
    assert "no space" in result.evidence.lower()
    assert list(small.iterdir()) == []  # the half-restored scratch is gone


def test_a_drill_of_a_remote_backup_takes_nothing_and_times_the_restore(
    engine, flow_env, on_host, shop
):
    on_host(files_source(shop))
    assert run().sources[0].outcome == "good"
    (archive,) = shop["backups"].glob("*.tar.gz")
    on_host(files_source(shop, validity_hours=0.0001))  # stale, but a drill never takes one
    (result,) = run(drill=True, source="shop-files").sources
    assert result.outcome == "good" and not result.taken_by_upkeep
    assert result.duration_s is not None
    assert list(shop["backups"].glob("*.tar.gz")) == [archive]
    with Session(engine) as s:
        drill = s.exec(select(BackupVersion).where(BackupVersion.drill == True)).one()  # noqa: E712
        assert drill.backup == f"web1:{archive}" and drill.archive_path is None
