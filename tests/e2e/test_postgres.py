"""upkeep on a real PostgreSQL server: migrations, inventory, a sweep's records."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from upkeep.db import current_revision, head_revision, make_engine, upgrade
from upkeep.inventory import apply_inventory, load_inventory_file
from upkeep.models import Finding, Host, HostResult

pytestmark = pytest.mark.e2e

GOOD = Path(__file__).parent.parent / "fixtures" / "inventory" / "good.yaml"


def test_migrations_build_the_schema_on_postgresql(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    assert upgrade(engine) == (None, head_revision())
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []


def test_inventory_loads_idempotently_on_postgresql(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    upgrade(engine)
    for expected_change in (True, False):
        with Session(engine) as s:
            report = apply_inventory(s, load_inventory_file(GOOD))
            s.commit()
        assert report.changed is expected_change
    with Session(engine) as s:
        host = s.exec(select(Host).where(Host.name == "db1")).one()
        assert host.tags == ["db", "prod"] and host.port == 2222
        assert host.created_at.tzinfo is not None
        assert host.created_at.utcoffset() == UTC.utcoffset(None)


def test_sweep_records_on_postgresql(
    postgres_url: str, load_inventory_on, sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.flow_fixtures import host_entry
    from upkeep.flows.sweep import SweepParams, run_sweep

    engine = load_inventory_on(
        postgres_url, [host_entry("web1", sshd), host_entry("down", None)], trust=[sshd]
    )
    result = run_sweep(SweepParams(contract="ACME"))
    assert result.unreachable == ["down"]
    with Session(engine) as s:
        rows = s.exec(select(HostResult)).all()
        assert len(rows) == 2
        assert any(r.facts.get("cpu", {}).get("count", 0) >= 1 for r in rows)
        (f,) = s.exec(select(Finding).where(Finding.check == "reachability")).all()
        assert f.severity == "critical" and f.first_seen_at.tzinfo is not None
