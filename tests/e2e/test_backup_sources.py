"""Several backup sources of one contract verified at once, as production runs them.

``upkeep run backups`` in a fresh process (nothing imported beforehand, as under
``upkeep serve``), against the session's Prefect server and real PostgreSQL: every source is
its own task in its own thread, so the tasks start together and import nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from sqlmodel import Session, select

from tests.backup_fixtures import scratch_databases
from tests.flow_fixtures import inventory_text
from tests.polling import wait_until
from upkeep.inventory import apply_inventory, parse_inventory
from upkeep.models import BackupVersion, InspectionRun

pytestmark = pytest.mark.e2e

SOURCES = 3


def _database(server_url: str, name: str, rows: int) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total int NOT NULL)")
        conn.execute("INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, %s) g", (rows,))
    return url


def test_several_postgresql_sources_of_one_contract_verify_at_once(
    engine: sa.Engine, data_dir: Path, prefect_server: str, postgres_server: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPKEEP_", "PREFECT_"))}
    env.update(UPKEEP_DATA_DIR=str(data_dir), PREFECT_API_URL=prefect_server, COLUMNS="200")
    env["UPKEEP_PG_SCRATCH"] = postgres_server
    sources = []
    for i in range(1, SOURCES + 1):
        env[f"UPKEEP_PG_SHOP{i}"] = _database(postgres_server, f"shop{i}", rows=10 * i)
        sources.append(
            {
                "system": f"shop{i}-db",
                "kind": "postgresql",
                "location": str(tmp_path / "dumps"),
                "source_database_env": f"UPKEEP_PG_SHOP{i}",
                "scratch_database_env": "UPKEEP_PG_SCRATCH",
                "tables": {"orders": 10 * i},
                "sql_checks": [f"SELECT count(*) = {10 * i} FROM orders"],
            }
        )
    with Session(engine) as s:
        apply_inventory(s, parse_inventory(inventory_text([], backup_sources=sources)))
        s.commit()

    done = subprocess.run(
        [sys.executable, "-m", "upkeep.cli", "run", "backups", "--contract", "ACME"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "ImportError" not in said and "Traceback" not in said
    for i in range(1, SOURCES + 1):
        assert f"shop{i}-db (postgresql): good" in done.stdout, said
    assert scratch_databases(postgres_server) == []

    with Session(engine) as s:
        versions = s.exec(select(BackupVersion)).all()
        assert sorted(v.system for v in versions if v.outcome == "good") == [
            f"shop{i}-db" for i in range(1, SOURCES + 1)
        ]
        assert len({v.checksum for v in versions}) == SOURCES
        (run,) = s.exec(select(InspectionRun)).all()
        flow_run_id = uuid.UUID(run.flow_run_id)

    def finished_task_runs() -> list | None:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        verify = [r for r in runs if r.name.startswith("verify ")]
        ended = len(verify) == SOURCES and all(r.start_time and r.end_time for r in verify)
        return verify if ended else None

    verify = wait_until("the verify task runs to be recorded", finished_task_runs, timeout=60)
    # at once: every verification started before the first one ended
    assert max(r.start_time for r in verify) < min(r.end_time for r in verify)
