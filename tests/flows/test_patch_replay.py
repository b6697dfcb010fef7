"""The patch flows' gates replay correctly in deployment runs, however often the run was
suspended (the rule in ``upkeep.flows``: every step before a gate is persisted or idempotent by
a database key).

Like tests/flows/test_gate_replay.py for the inspection: each execution is a fresh
``python -m prefect.engine`` process, every answer goes through the UI's REST resume call, the
host is this machine over real sshd with the test package from a real local apt repository.
Counted after each re-run: the records, the customer's mails, the approvers' codes and what
was installed (the staging test of ``patch-fix`` runs once, not once per re-run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from tests.apt_repo import (  # noqa: F401 (fixtures)
    CANARY,
    LocalAptRepo,
    canary_fixture,
    canary_store_fixture,
    local_apt_repo_fixture,
)
from tests.flow_fixtures import codes_sent, host_entry, wait_for_code
from tests.inspection_helpers import ALICE, pending
from upkeep.domain.patching import PLAN_GATE, RESPONSIVE_GATE, REVISION_GATE
from upkeep.flows.patch_advisory import patch_advisory, patch_fix
from upkeep.models import (
    Approval,
    ApprovalCode,
    InspectionRun,
    OutboxMessage,
    PatchPlan,
    PatchStep,
    RunClaim,
)

pytestmark = pytest.mark.flows

if "ID=debian" not in Path("/etc/os-release").read_text():
    pytest.skip(
        "the canary's record names Debian:12, this host's ecosystem", allow_module_level=True
    )


def records(engine: sa.Engine) -> dict[str, int]:
    """Rows per table of record the patch flows write."""
    with Session(engine) as s:
        return {
            model.__name__: len(s.exec(select(model)).all())
            for model in (
                Approval,
                ApprovalCode,
                InspectionRun,
                RunClaim,
                OutboxMessage,
                PatchPlan,
                PatchStep,
            )
        }


def steps(engine: sa.Engine) -> list[tuple[int, str, bool]]:
    with Session(engine) as s:
        return [
            (st.plan_id, st.step, st.ok)
            for st in s.exec(select(PatchStep).order_by(col(PatchStep.id)))
        ]


def customer_subjects(smtp_server: Any) -> list[str]:
    return [
        str(m.message()["Subject"])
        for m in list(smtp_server.handler.received)
        if "it@acme.example" in m.rcpt_tos
    ]


def test_a_patch_plan_rejected_revised_and_approved_over_five_processes(
    engine, canary: LocalAptRepo, canary_store, load_inventory, sshd_servers, smtp_server, deploy
) -> None:
    web, db = sshd_servers[0], sshd_servers[1]
    load_inventory(
        [host_entry("web1", web), host_entry("db1", db)],
        trust=[web, db],
        patching={"mode": "apply"},
    )
    run = deploy(patch_advisory, {"params": {"contract": "ACME", "requested_by": "tester"}})
    assert run.execute().name == "Suspended"
    first = pending(engine, PLAN_GATE)
    alice1 = wait_for_code(smtp_server, ALICE)
    before, mails = records(engine), customer_subjects(smtp_server)
    assert sum("Patch plan for your review: ACME" in s for s in mails) == 1

    # A wrong code: the run re-runs from the top in a new process up to the same gate.
    assert run.answer(decision="approve", approver="Alice Owner", code="ABCDE-FGHJK").name == (
        "Suspended"
    )
    assert records(engine) == before
    assert customer_subjects(smtp_server) == mails
    assert canary.installed_version() == canary.old

    state = run.answer(decision="reject", approver="Alice Owner", code=alice1, comment="no db1")
    assert state.name == "Suspended", state
    revision = pending(engine, REVISION_GATE)
    assert run.answer(action="resubmit", engineer="Eve", drop_hosts=["db1"]).name == "Suspended"
    second = pending(engine, PLAN_GATE, after=first.id)
    alice2 = wait_for_code(smtp_server, ALICE, nth=2)
    state = run.answer(decision="approve", approver="Alice Owner", code=alice2)
    assert state.is_completed(), state
    assert canary.installed_version() == canary.new

    with Session(engine) as s:
        plans = list(s.exec(select(PatchPlan).order_by(col(PatchPlan.id))))
        (patch_run,) = s.exec(select(InspectionRun).where(InspectionRun.kind == "patch")).all()
    assert [(p.revision, p.status) for p in plans] == [(1, "rejected"), (2, "applied")]
    assert plans[-1].approved_hash == plans[-1].plan_hash
    assert [h["host"] for h in plans[-1].plan["hosts"]] == ["web1"]
    assert patch_run.status == "completed"
    assert patch_run.flow_run_id == str(run.id)  # written by a task: its flow run's id
    with Session(engine) as s:
        decided = [s.get(Approval, g.id) for g in (first, revision, second)]
    assert [(g.decision if g else None) for g in decided] == ["reject", "resubmit", "approve"]
    # one decision per plan over five executions, then the rollout once, on web1
    assert steps(engine) == [
        (plans[0].id, "decision", False),
        *[
            (plans[1].id, step, True)
            for step in (
                "decision",
                "health-before",
                "inventory-before",
                "install",
                "inventory-after",
                "closure",
                "health-after",
            )
        ],
    ]
    subjects = customer_subjects(smtp_server)
    assert sum("Patch plan for your review: ACME" in s for s in subjects) == 1
    assert sum("Patch rollout done: ACME" in s for s in subjects) == 1
    assert len(codes_sent(smtp_server, ALICE)) == 2  # one per plan shown


def test_patch_fix_tests_on_staging_once_however_often_it_re_runs(
    engine, canary: LocalAptRepo, canary_store, load_inventory, sshd_servers, smtp_server, deploy
) -> None:
    """The staging test installs before the gate: a re-run must take its result from the run,
    not install (or mail the test report) again. Both hosts are this machine, so the customer
    rejects and the engineer cancels; nothing is applied to web1."""
    stage, prod = sshd_servers[0], sshd_servers[1]
    load_inventory(
        [host_entry("stage1", stage, tags=["staging"]), host_entry("web1", prod)],
        trust=[stage, prod],
        patching={"mode": "apply"},
    )
    params = {
        "contract": "ACME",
        "requested_by": "tester",
        "hosts": ["web1"],
        "packages": [CANARY],
        "symptom": "canary crashes",
    }
    run = deploy(patch_fix, {"params": params})
    assert run.execute().name == "Suspended"
    gate = pending(engine, RESPONSIVE_GATE)
    assert "stage1: passed" in gate.evidence
    alice = wait_for_code(smtp_server, ALICE)
    before, mails = records(engine), customer_subjects(smtp_server)
    installs = [s for _, s, _ in steps(engine)].count("install")
    assert installs == 1

    assert run.answer(decision="approve", approver="Alice Owner", code="ABCDE-FGHJK").name == (
        "Suspended"
    )
    assert records(engine) == before
    assert customer_subjects(smtp_server) == mails
    state = run.answer(decision="reject", approver="Alice Owner", code=alice, comment="not now")
    assert state.name == "Suspended", state
    pending(engine, REVISION_GATE)
    state = run.answer(action="cancel", engineer="Eve", note="next window")
    assert state.is_cancelled(), state
    assert [s for _, s, _ in steps(engine)].count("install") == 1
    assert (
        sum("Patch test report for your review: ACME" in s for s in customer_subjects(smtp_server))
        == 1
    )
    assert len(codes_sent(smtp_server, ALICE)) == 1
