"""The release flow's gates replay correctly in deployment runs (the rule in
``upkeep.flows``): each execution a fresh ``python -m prefect.engine`` process, every answer
through the UI's REST resume call. The checklist form, a refused approval and the approval
re-run the flow from the top: the pre-checks, the confirmation, the test report's review and
the decision are recorded once, the release runs once, each approver got one code."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from tests.flow_fixtures import codes_sent, wait_for_code
from tests.inspection_helpers import ALICE
from tests.release_app import (  # noqa: F401 (fixture)
    CORA,
    ReleaseApp,
    declare_now,
    load_shop,
    release_app_fixture,
)
from upkeep.flows.release import release
from upkeep.models import InterfaceProbe, ReleaseStep

pytestmark = pytest.mark.flows


def _steps(engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return [
            (st.step, st.host) for st in s.exec(select(ReleaseStep).order_by(col(ReleaseStep.id)))
        ]


def _probes(engine) -> int:
    with Session(engine) as s:
        return len(s.exec(select(InterfaceProbe)).all())


def test_a_release_confirmed_reviewed_refused_and_approved_over_five_processes(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, deploy,
    tmp_path: Path,
) -> None:  # fmt: skip
    load_shop(load_inventory, sshd_servers, release_app)
    rid = declare_now(engine, tmp_path, "2.0")
    run = deploy(release, {"params": {"release_id": rid, "requested_by": "Eve", "soak_seconds": 0}})
    assert run.execute().name == "Suspended"  # at the checklist form
    assert _steps(engine) == [("check:smoke", "")]
    probes = _probes(engine)

    state = run.answer(action="confirm", engineer="Eve Engineer", confirmed=["db-migration"])
    assert state.name == "Suspended", state  # at the test report's review
    review_code = wait_for_code(smtp_server, CORA)
    state = run.answer(decision="approve", approver="Cora Customer", code=review_code)
    assert state.name == "Suspended", state  # at the release gate
    code = wait_for_code(smtp_server, ALICE)
    assert run.answer(decision="approve", approver="Alice Owner", code="ABCDE-FGHJK").name == (
        "Suspended"
    )
    steps = _steps(engine)
    assert steps[:2] == [("check:smoke", ""), ("confirmed", "")] and len(steps) == 3
    assert steps[2][0].startswith("report-review:")
    assert _probes(engine) == probes  # the pre-checks did not run again
    assert release_app.current() == "1.0"

    state = run.answer(decision="approve", approver="Alice Owner", code=code)
    assert state.is_completed(), state
    assert release_app.current() == "2.0"
    assert _steps(engine) == [
        ("check:smoke", ""),
        ("confirmed", ""),
        steps[2],
        ("decision", ""),
        ("release", "app1"),
        ("smoke-canary", ""),
        ("soak", ""),
        ("release", "app2"),
        ("verify", ""),
        ("report", ""),
        ("effect-scheduled", ""),  # no release-effect deployment here: says how, by hand
    ]
    assert codes_sent(smtp_server, ALICE) == [code]
    assert codes_sent(smtp_server, CORA) == [review_code]
