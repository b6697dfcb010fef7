"""Schema, migrations and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel

import upkeep.models
from upkeep.db import SchemaOutOfDate, current_revision, ensure_schema, head_revision, make_engine
from upkeep.models import Customer


def test_migrations_match_the_models(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []
    assert current_revision(engine) == head_revision()


def test_sqlite_runs_in_wal_with_busy_timeout(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_timestamps_come_back_aware_utc(engine: sa.Engine) -> None:
    berlin = timezone(timedelta(hours=1))
    with Session(engine) as s:
        c = Customer(code="x", name="X", created_at=datetime(2026, 1, 1, 12, tzinfo=berlin))
        s.add(c)
        s.commit()
        cid = c.id
    with Session(engine) as s:
        back = s.get(Customer, cid)
        assert back is not None
        assert back.created_at == datetime(2026, 1, 1, 11, tzinfo=UTC)
        assert back.created_at.tzinfo is not None


def test_naive_timestamps_are_refused(engine: sa.Engine) -> None:
    with Session(engine) as s:
        s.add(Customer(code="y", name="Y", created_at=datetime(2026, 1, 1)))
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            s.commit()


def test_out_of_date_schema_refused_when_not_upgrading(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaOutOfDate, match="upkeep db upgrade"):
        ensure_schema(engine, auto_upgrade=False)
    ensure_schema(engine)
    assert current_revision(engine) == head_revision()


def test_every_table_registered() -> None:
    assert {
        "customer",
        "contract",
        "host",
        "inspectionrun",
        "hostresult",
        "finding",
        "approval",
    } <= set(SQLModel.metadata.tables)
    assert upkeep.models.Finding.__tablename__ == "finding"
