"""Declaring a release from the Prefect UI's form (the ``release-declare`` deployment's flow):
the same checks as the CLI, a test report only from the report inbox, and the review run
started on the contract's ``release`` deployment."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Cancelled
from sqlmodel import Session, select

from tests.release_app import (  # noqa: F401 (fixture)
    TZ,
    ReleaseApp,
    load_shop,
    release_app_fixture,
)
from upkeep.flows.release import DeclareParams, declare, release
from upkeep.models import OutboxMessage, Release
from upkeep.settings import get_settings

pytestmark = pytest.mark.flows


def _params(**changes: object) -> DeclareParams:
    window = (datetime.now(ZoneInfo(TZ)) + timedelta(days=2)).strftime("%Y-%m-%d %H:%M")
    fields: dict[str, object] = {
        "contract": "ACME",
        "system": "shop",
        "version": "2.0",
        "changes": "- faster search",
        "window": window,
        "test_report": "report-2.0.md",
        "declared_by": "Eve Engineer",
    }
    return DeclareParams.model_validate(fields | changes)


def test_the_form_declares_from_the_inbox_and_starts_the_review_run(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, tmp_path: Path
) -> None:
    load_shop(load_inventory, sshd_servers, release_app)
    inbox = get_settings().inbox
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "report-2.0.md").write_text("# Test report\nall green\n")
    release.to_deployment(name="acme", parameters={}).apply()  # as upkeep serve does
    state = declare(_params(), return_state=True)
    assert state.is_completed(), state.message
    done = state.result()
    with Session(engine) as s:
        row = s.get(Release, done.release_id)
        assert row is not None
        (notice,) = s.exec(select(OutboxMessage)).all()
    assert row.status == "declared" and row.declared_by == "Eve Engineer"
    assert Path(row.test_report_path).read_text() == "# Test report\nall green\n"
    assert notice.kind == "release_notice" and done.notice_due is not None
    assert done.review_run is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(done.review_run))
        assert run.parameters == {
            "params": {"release_id": done.release_id, "requested_by": "Eve Engineer"}
        }
        assert client.read_deployment(run.deployment_id).name == "acme"
        client.set_flow_run_state(run.id, Cancelled(), force=True)  # no runner here


def test_the_form_refuses_a_report_outside_the_inbox_and_every_problem_at_once(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, tmp_path: Path
) -> None:
    load_shop(load_inventory, sshd_servers, release_app)
    secret = tmp_path / "notes.md"
    secret.write_text("not for the customer")
    outside = declare(_params(test_report=str(secret)), return_state=True)
    assert outside.is_failed()
    assert f"test report {str(secret)!r} is not in the report inbox" in (outside.message or "")
    climbing = declare(_params(test_report="../../notes.md"), return_state=True)
    assert climbing.is_failed() and "is not in the report inbox" in (climbing.message or "")
    inbox = get_settings().inbox
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "r.md").write_text("ok")
    bad = declare(
        _params(test_report="r.md", version="2.0; rm -rf /", canary=["db9"]), return_state=True
    )
    assert bad.is_failed()
    assert "version '2.0; rm -rf /'" in (bad.message or "")
    assert "canary host(s) db9 are not hosts of system shop" in (bad.message or "")
    with Session(engine) as s:
        assert s.exec(select(Release)).all() == []
        assert s.exec(select(OutboxMessage)).all() == []
