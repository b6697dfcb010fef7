"""Backups to verify (a pytest plugin): a source tree, a tar.gz with manifest, a restic
repository with one snapshot, a small PostgreSQL database; and helpers that damage them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

RESTIC_PASSWORD = "correct horse battery staple"


def flip_byte(path: Path, offset: int | None = None) -> int:
    """Flip the lowest bit of one byte (default: the middle one); return its offset."""
    data = bytearray(path.read_bytes())
    pos = len(data) // 2 if offset is None else offset
    data[pos] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(data))
    return pos


def damage_gzip(path: Path) -> int:
    """Flip one bit of a .tar.gz's compressed data so that its content really changes; return
    the offset.

    Not every bit of a gzip file matters: the header's time stamp and some bits of a deflate
    block header (code lengths of unused symbols) can flip without changing one byte of the
    decompressed data, and then the backup *is* intact. Starting in the middle, this looks for
    the first flip that does break the data (decompression fails or yields other bytes).
    """
    import gzip
    import zlib

    data = path.read_bytes()
    plain = gzip.decompress(data)
    for pos in range(len(data) // 2, len(data)):
        damaged = bytearray(data)
        damaged[pos] ^= 0x01
        try:
            if gzip.decompress(bytes(damaged)) == plain:
                continue
        except (OSError, EOFError, zlib.error):
            pass
        path.chmod(0o600)
        path.write_bytes(bytes(damaged))
        return pos
    raise AssertionError(f"no bit of the second half of {path} matters")


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture(scope="session")
def restic_bin() -> str:
    found = shutil.which("restic")
    if found is None:
        pytest.fail("restic is not installed: run ./scripts/setup (apt-get install restic)")
    return found


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    """A small directory: text files, a nested 64 KiB binary, an empty file, a symlink."""
    return _make_source_tree(tmp_path / "source")


def _make_source_tree(src: Path) -> Path:
    (src / "etc" / "app").mkdir(parents=True)
    (src / "var" / "data").mkdir(parents=True)
    (src / "etc" / "app" / "app.conf").write_text("listen = 8080\nworkers = 4\n")
    (src / "etc" / "hostname").write_text("web1\n")
    (src / "var" / "data" / "blob.bin").write_bytes(bytes(range(256)) * 256)
    (src / "var" / "data" / "empty").write_bytes(b"")
    (src / "etc" / "app" / "current").symlink_to("app.conf")
    return src


def make_shop(root: Path, scratch: Path) -> dict[str, Path]:
    """A small shop's files below ``root`` ("source"), where its backups go ("backups") and
    a scratch parent for restores ("scratch")."""
    source = root / "srv" / "shop"
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "app.conf").write_text("listen = 8080\n")
    (source / "data.csv").write_text("id,total\n1,10\n2,20\n")
    return {"source": source, "backups": root / "backups" / "shop", "scratch": scratch}


def shop_source(shop: dict[str, Path], **fields: Any) -> dict[str, Any]:
    """The shop's files (``make_shop``) as the inventory's backup source "shop-files", with
    ``fields``."""
    return {
        "system": "shop-files",
        "kind": "files",
        "location": str(shop["backups"]),
        "source": str(shop["source"]),
        "scratch": str(shop["scratch"]),
        **fields,
    }


@pytest.fixture
def scratch_parent(tmp_path: Path) -> Path:
    d = tmp_path / "scratch"
    d.mkdir()
    return d


@pytest.fixture
def files_backup(source_tree: Path, tmp_path: Path) -> Path:
    from upkeep.tasks.backups import files

    return files.take_backup(source_tree, tmp_path / "backups", "web1")


@pytest.fixture(scope="session")
def restic_template(restic_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository for the session (``restic init`` costs seconds of key derivation)."""
    from upkeep.tasks.backups import restic

    root = tmp_path_factory.mktemp("restic")
    src = _make_source_tree(root / "source")
    restic.init_repo(root / "repo", password=RESTIC_PASSWORD)
    restic.take_backup(src, root / "repo", password=RESTIC_PASSWORD)
    return root


@pytest.fixture
def restic_repo(restic_template: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(repository, backed-up source directory): a private copy of the session repository
    holding one snapshot of a tree like ``source_tree``."""
    repo = tmp_path / "restic-repo"
    shutil.copytree(restic_template / "repo", repo)
    return repo, restic_template / "source"


@pytest.fixture
def pg_source(postgres_url: str) -> str:
    """``postgres_url`` with two tables: customers (3 rows), orders (5 rows)."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute(
            "CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers,"
            " total numeric NOT NULL)"
        )
        conn.execute("INSERT INTO customers VALUES (1, 'ACME'), (2, 'Globex'), (3, 'Initech')")
        conn.execute(
            "INSERT INTO orders VALUES (1, 1, 10), (2, 1, 20), (3, 2, 5), (4, 3, 7), (5, 3, 1)"
        )
    return postgres_url


def scratch_databases(server_url: str) -> list[str]:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'upkeep\\_scratch\\_%'"
        ).fetchall()
    return [r[0] for r in rows]


MountTmpfs = Callable[[str], Path]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[MountTmpfs]:
    """``mount_tmpfs(options)`` mounts a fresh tmpfs below ``tmp_path`` and returns its path;
    every mount is unmounted at teardown (lazily if it is still busy)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("mount/umount are not installed")
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        done = _run("mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(point))
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({options}): {done.stderr.strip()}")
        mounted.append(point)
        assert os.path.ismount(point)
        return point

    try:
        yield mount
    finally:
        for point in reversed(mounted):
            if _run("umount", str(point)).returncode != 0:
                lazy = _run("umount", "-l", str(point))
                assert lazy.returncode == 0, f"could not unmount {point}: {lazy.stderr}"
