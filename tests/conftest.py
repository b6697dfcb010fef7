"""Fixtures shared by every layer of tests.

One Prefect test server for the whole session (started on a free port by Prefect's own
harness), and a fresh upkeep data directory (SQLite database, known_hosts, reports) per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from upkeep.settings import Settings, get_settings, reset_settings

pytest_plugins = [
    "tests.sshd_fixtures",
    "tests.smtp_fixtures",
    "tests.flow_fixtures",
    "tests.pg_fixtures",
    "tests.backup_fixtures",
    "tests.page_fixtures",
    "tests.deployed_run",
]


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """The session's Prefect API URL. Flow heartbeats are off: they cost ~1 s per sync run."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOGGING_TO_API_BATCH_INTERVAL,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    with (
        temporary_settings(
            updates={
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                PREFECT_LOGGING_TO_API_BATCH_INTERVAL: 0.3,
            }
        ),
        prefect_test_harness(server_startup_timeout=90),
    ):
        yield PREFECT_API_URL.value()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh UPKEEP_DATA_DIR with nothing else configured from the environment."""
    import os

    for name in list(os.environ):
        if name.startswith("UPKEEP_"):
            monkeypatch.delenv(name)
    d = tmp_path / "data"
    monkeypatch.setenv("UPKEEP_DATA_DIR", str(d))
    reset_settings()
    yield d
    reset_settings()


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return get_settings()


@pytest.fixture
def engine(settings: Settings) -> sa.Engine:
    from upkeep.db import engine_for, upgrade

    eng = engine_for(settings.db_url)
    upgrade(eng)
    return eng
