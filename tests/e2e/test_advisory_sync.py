"""``upkeep advisories sync`` as an operator runs it: the real Debian security tracker export
(tests/fixtures/advisories/exports, 517 records) from disk and from a real HTTP server on
loopback, synced again, a newer and an older copy of one record, a missing URL and a broken
export refused naming them with the store left as it was; then ``advisories match`` from the
store gives what it gives from the export. The store on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.e2e.test_advisories_cli import old_openssl_host
from tests.e2e.test_cli import upkeep
from upkeep.db import make_engine, upgrade
from upkeep.models.advisory import AdvisoryRecord
from upkeep.tasks.advisory_store import load_store, sync

pytestmark = pytest.mark.e2e

EXPORTS = Path(__file__).parents[1] / "fixtures" / "advisories" / "exports"
DEBIAN = EXPORTS / "debian-tracker.zip"
ALMA = EXPORTS / "almalinux.zip"
RECORDS = 517
NO_PROXY = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


def export_records(export: Path) -> dict[str, dict[str, Any]]:
    """id -> record, as the export has them."""
    with zipfile.ZipFile(export) as z:
        records = [json.loads(z.read(n)) for n in z.namelist() if n.endswith(".json")]
    return {r["id"]: r for r in records}


def counts(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def stored(engine: sa.Engine) -> dict[str, tuple[Any, ...]]:
    with Session(engine) as session:
        return {
            r.id: (r.modified, r.ecosystems, r.data, r.source)
            for r in session.exec(select(AdvisoryRecord))
        }


def openssl_record() -> dict[str, Any]:
    """A Debian 12 openssl record of the export."""
    for record in export_records(DEBIAN).values():
        if any(
            (a["package"]["ecosystem"], a["package"]["name"]) == ("Debian:12", "openssl")
            for a in record["affected"]
        ):
            return record
    raise AssertionError("the export has no Debian 12 openssl record")


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on loopback, and its base URL."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    # Port 0: the kernel picks a free port as the socket binds, so nothing can take it between.
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_sync_adds_once_then_updates_only_newer_records(
    data_dir: Path, tmp_path: Path, engine: sa.Engine
) -> None:
    assert counts(upkeep("advisories", "sync", str(DEBIAN), data_dir=data_dir)) == (
        f"added {RECORDS}, updated 0, unchanged 0 from 1 source(s)"
    )
    first = stored(engine)
    assert len(first) == RECORDS
    modified, ecosystems, data, source = first["DLA-3859-1"]
    assert ecosystems == ["Debian:11"] and data["summary"] == "systemd - security update"
    assert source == f"{DEBIAN}!DLA-3859-1.json"

    assert counts(upkeep("advisories", "sync", str(DEBIAN), data_dir=data_dir)) == (
        f"added 0, updated 0, unchanged {RECORDS} from 1 source(s)"
    )
    assert stored(engine) == first

    record = openssl_record()
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / f"{record['id']}.json").write_text(
        json.dumps({**record, "modified": "2099-01-01T00:00:00Z", "summary": "revised"})
    )
    assert counts(upkeep("advisories", "sync", str(newer), data_dir=data_dir)) == (
        "added 0, updated 1, unchanged 0 from 1 source(s)"
    )
    after = stored(engine)
    assert after[record["id"]][2]["summary"] == "revised"
    assert after[record["id"]][3] == str(newer / f"{record['id']}.json")
    assert {k: v for k, v in after.items() if k != record["id"]} == {
        k: v for k, v in first.items() if k != record["id"]
    }

    older = tmp_path / "older"
    older.mkdir()
    (older / f"{record['id']}.json").write_text(
        json.dumps({**record, "modified": "2000-01-01T00:00:00Z", "summary": "stale"})
    )
    assert counts(upkeep("advisories", "sync", str(older), data_dir=data_dir)) == (
        "added 0, updated 0, unchanged 1 from 1 source(s)"
    )
    assert stored(engine) == after


def test_sync_from_a_url_counts_as_from_disk_and_a_missing_url_is_named(
    data_dir: Path, http_dir: tuple[Path, str], engine: sa.Engine
) -> None:
    root, base = http_dir
    (root / "Debian").mkdir()
    (root / "Debian" / "all.zip").write_bytes(DEBIAN.read_bytes())
    url = f"{base}/Debian/all.zip"
    first = upkeep("advisories", "sync", url, data_dir=data_dir, env=NO_PROXY)
    assert counts(first) == f"added {RECORDS}, updated 0, unchanged 0 from 1 source(s)"
    assert stored(engine)["DLA-3859-1"][3] == f"{url}!DLA-3859-1.json"

    missing = f"{base}/Ubuntu/all.zip"
    again = upkeep("advisories", "sync", url, missing, data_dir=data_dir, env=NO_PROXY)
    assert again.returncode == 1
    assert f"{missing}: HTTP 404" in again.stderr
    assert f"added 0, updated 0, unchanged {RECORDS}" in again.stdout


def test_a_broken_record_stores_nothing_of_its_source(
    data_dir: Path, tmp_path: Path, engine: sa.Engine
) -> None:
    record = openssl_record()
    one = tmp_path / "one"
    one.mkdir()
    (one / f"{record['id']}.json").write_text(json.dumps(record))
    with Session(engine) as session:
        assert sync(session, [str(one)]).added == 1
    before = stored(engine)

    # the real export, one record newer (it would be an update), and one record broken
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as z:
        for rid, data in export_records(DEBIAN).items():
            if rid == record["id"]:
                data = {**data, "modified": "2099-01-01T00:00:00Z"}
            z.writestr(f"{rid}.json", json.dumps(data))
        z.writestr("DSA-0000-1.json", '{"id": "DSA-0000-1", "affected": [')
    done = upkeep("advisories", "sync", str(broken), data_dir=data_dir)
    assert done.returncode == 1, done.stdout
    assert f"{broken}!DSA-0000-1.json" in done.stderr
    assert stored(engine) == before


def test_match_from_the_store_equals_match_from_the_export(
    data_dir: Path, tmp_path: Path, engine: sa.Engine
) -> None:
    status, os_release = old_openssl_host(tmp_path)
    args = ["advisories", "match", "--dpkg-status", str(status), "--os-release", str(os_release)]

    with Session(engine) as session:
        sync(session, [str(ALMA)])
    no_debian = upkeep(*args, "--json", data_dir=data_dir)
    assert no_debian.returncode == 1
    assert "no advisory records for Debian:12 in the store" in no_debian.stderr
    assert "upkeep advisories sync" in no_debian.stderr

    with Session(engine) as session:
        sync(session, [str(DEBIAN)])
    from_store = upkeep(*args, "--json", data_dir=data_dir)
    from_export = upkeep(*args, "--json", "--advisories", str(DEBIAN), data_dir=data_dir)
    assert from_store.returncode == 0, from_store.stderr
    found = [json.loads(line) for line in from_store.stdout.splitlines()]
    assert {m["package"] for m in found} == {"libssl3", "openssl"}
    assert from_store.stdout == from_export.stdout


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_store_loads_one_ecosystem_on_sqlite_and_postgresql(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'upkeep.db'}"
        if database == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        report = sync(session, [str(DEBIAN), str(ALMA)])
        alma = export_records(ALMA)
        assert report.added == RECORDS + len(alma) and report.sources == [str(DEBIAN), str(ALMA)]
        for ecosystem in ("Debian:12", "Debian:11", "AlmaLinux:9", "Alpine:v3.19"):
            expected = sorted(
                rid
                for rid, data in {**export_records(DEBIAN), **alma}.items()
                if any(a["package"]["ecosystem"] == ecosystem for a in data["affected"])
            )
            assert [a.id for a in load_store(session, ecosystem)] == expected, ecosystem
        assert load_store(session, "Debian:12") and load_store(session, "AlmaLinux:9")
    engine.dispose()
