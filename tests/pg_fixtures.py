"""A throwaway PostgreSQL server for the tests that name PostgreSQL (a pytest plugin).

initdb into a temporary directory, ``postgres`` on a free loopback port, polled until it
accepts connections, stopped at the end of the session. PostgreSQL refuses to run as root, so
as root the server runs as the ``postgres`` user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.polling import wait_until
from upkeep.demo.prefect_server import free_port


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run ./scripts/setup (apt-get install postgresql)")
    return Path(found[-1]).parent


def _as_db_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A SQLAlchemy URL of a superuser on a fresh cluster; create databases per test."""
    import psycopg

    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="upkeep-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_db_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "upkeep",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        _as_db_user(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={root}",
                "-c",
                "fsync=off",
            ]
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"postgresql://upkeep@127.0.0.1:{port}/postgres"

    def accepting() -> bool:
        if proc.poll() is not None:
            raise AssertionError("PostgreSQL exited: " + (root / "server.log").read_text()[-2000:])
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    try:
        wait_until("PostgreSQL to accept connections", accepting, timeout=60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A new, empty database on the session's server."""
    import psycopg

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.rsplit("/", 1)[0] + "/" + name
