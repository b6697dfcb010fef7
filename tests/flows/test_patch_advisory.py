"""The patch-advisory cycle end to end on a real host: a local apt repository offers the test
package ``upkeep-canary`` at 1.0-1 (installed) and 1.1-1 (the fix an OSV record names); the
sshd test host is this machine, so its real dpkg database is what the flow scans.

Detect → plan → the customer approves at the gate with the mailed code → apply over SSH →
re-scan proves the advisory closed; a rejected plan installs nothing; a plan whose hash is not
the approved one is refused; a fix that does not close its advisory is rolled back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect import flow
from sqlmodel import Session, col, select

from tests.apt_repo import (  # noqa: F401 (fixtures)
    CANARY,
    LocalAptRepo,
    canary_advisory,
    canary_fixture,
    canary_store_fixture,
    local_apt_repo_fixture,
)
from tests.flow_fixtures import host_entry, wait_for_code
from tests.inspection_helpers import ALICE, Background, answer, pending
from tests.polling import wait_until
from upkeep.db import open_session
from upkeep.domain.patching import (
    PLAN_GATE,
    RESPONSIVE_GATE,
    REVISION_GATE,
    HostPlan,
    PatchPlan,
    PlanItem,
)
from upkeep.flows.patch_advisory import PatchFixParams, PatchParams, patch_advisory, patch_fix
from upkeep.models import Approval, Finding, Host, InspectionRun, PatchStep
from upkeep.models import PatchPlan as PlanRow
from upkeep.tasks.advisory_store import sync
from upkeep.tasks.patch_apply import HostRollout, NotApproved, apply_host, check_approved
from upkeep.tasks.patch_survey import record_plan, start_patch_run

pytestmark = pytest.mark.flows

ECOSYSTEM = "Debian:12"


def _debian_12() -> bool:
    text = Path("/etc/os-release").read_text()
    return "ID=debian" in text and 'VERSION_ID="12"' in text


if not _debian_12():  # the records name Debian:12, the host's ecosystem
    pytest.skip("the sshd test host must be Debian 12", allow_module_level=True)


@pytest.fixture
def patched_host(canary: LocalAptRepo, load_inventory, sshd, canary_store):
    """One host (this machine over sshd), tagged staging, contract set to apply."""
    load_inventory(
        [host_entry("web1", sshd, tags=["staging"])],
        trust=[sshd],
        patching={"mode": "apply"},
    )
    return canary


def _run(**params) -> Background:
    p = PatchParams(contract="ACME", requested_by="tester", **params)
    return Background(lambda: patch_advisory(p, return_state=True))


def _steps(engine, plan_id: int) -> list[tuple[str, bool, str]]:
    with Session(engine) as s:
        return [
            (st.step, st.ok, st.summary)
            for st in s.exec(
                select(PatchStep).where(PatchStep.plan_id == plan_id).order_by(col(PatchStep.id))
            )
        ]


def _plans(engine) -> list[PlanRow]:
    with Session(engine) as s:
        return list(s.exec(select(PlanRow).order_by(col(PlanRow.id))))


def test_an_approved_plan_is_applied_and_the_rescan_proves_the_advisory_closed(
    engine, patched_host, smtp_server
):
    run = _run()
    gate = pending(engine, PLAN_GATE)
    # The approver sees the exact plan with its hash before deciding.
    (row,) = _plans(engine)
    assert row.status == "proposed"
    plan = PatchPlan.model_validate(row.plan)
    assert [
        (h.host, [(i.package, i.installed, i.target) for i in h.items]) for h in plan.hosts
    ] == [("web1", [(CANARY, patched_host.old, patched_host.new)])]
    assert plan.hosts[0].items[0].advisories == ["UPKEEP-TEST-0001"]
    assert plan.hosts[0].items[0].severity == "high"
    assert row.plan_hash == plan.digest() and plan.digest() in gate.evidence
    # Nothing installed before the approval.
    assert patched_host.installed_version() == patched_host.old

    answer(gate, decision="approve", approver="Alice Owner", code=wait_for_code(smtp_server, ALICE))
    state = run.state(timeout=300)
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.status == "applied"
    assert patched_host.installed_version() == patched_host.new
    # The report at the end is the rollout's, written anew (not the cached proposal).
    final = Path(outcome.report_path)
    assert "-applied-" in final.name, final
    assert "inventory-after" in final.read_text() and "closure" in final.read_text()

    (row,) = _plans(engine)
    assert row.status == "applied" and row.approved_hash == row.plan_hash
    assert row.approved_by == "Alice Owner" and row.approval_id == gate.id
    steps = _steps(engine, row.id)
    names = [s[0] for s in steps]
    for expected in (
        "decision",
        "health-before",
        "inventory-before",
        "install",
        "inventory-after",
        "closure",
        "health-after",
    ):
        assert expected in names, (expected, steps)
    assert all(ok for _, ok, _ in steps), steps
    closure = next(s for s in steps if s[0] == "closure")
    assert "UPKEEP-TEST-0001 on upkeep-canary: closed" in closure[2]
    # The customer heard of the plan and of the result, with the report attached.
    subjects = [
        m.message()["Subject"]
        for m in smtp_server.handler.received
        if "it@acme.example" in m.rcpt_tos
    ]
    assert any("Patch plan for your review: ACME" in s for s in subjects), subjects
    assert any("Patch rollout done: ACME" in s for s in subjects), subjects

    # The apply task refuses a plan that is not the one approved (one version changed).
    changed = plan.model_copy(
        update={
            "hosts": [
                plan.hosts[0].model_copy(
                    update={
                        "items": [plan.hosts[0].items[0].model_copy(update={"target": "9.9-9"})]
                    }
                )
            ]
        }
    )
    with pytest.raises(NotApproved, match="is not the plan approved"):
        check_approved(row.id, changed)
    assert _steps(engine, row.id)[-1][:2] == ("refused", False)


def test_a_rejected_plan_installs_nothing_and_the_revision_is_checked(
    engine, patched_host, smtp_server
):
    run = _run()
    gate = pending(engine, PLAN_GATE)
    answer(
        gate,
        decision="reject",
        approver="Alice Owner",
        code=wait_for_code(smtp_server, ALICE),
        comment="not before the sale ends",
    )
    revision = pending(engine, REVISION_GATE)
    # A revision naming a package that is not in the plan is refused, the gate waits again.
    answer(revision, action="resubmit", engineer="Eve Engineer", drop_packages=["no-such-pkg"])
    wait_until(
        "the refused revision",
        lambda: (
            any(s[0] == "decision" for s in _steps(engine, _plans(engine)[0].id))
            and _refused(engine, revision.id)
        ),
    )
    answer(revision, action="cancel", engineer="Eve Engineer", note="next month")
    state = run.state(timeout=120)
    assert state.is_cancelled(), state.message
    (row,) = _plans(engine)
    assert row.status == "cancelled" and row.approved_hash is None
    assert patched_host.installed_version() == patched_host.old
    # Without an approval on record the apply task refuses the plan.
    with pytest.raises(NotApproved, match="no approval on record|was not given"):
        check_approved(row.id, PatchPlan.model_validate(row.plan))


def _refused(engine, approval_id: int) -> bool:
    from upkeep.models import ApprovalEvent

    with Session(engine) as s:
        return (
            s.exec(
                select(ApprovalEvent).where(
                    ApprovalEvent.approval_id == approval_id, ApprovalEvent.kind == "refused"
                )
            ).first()
            is not None
        )


def _hand_made_plan(engine, patched_host, fixed: str, advisory: str) -> tuple[int, int, HostPlan]:
    """(run id, plan id, host plan): a one-host plan stored as the flow stores one."""
    with Session(engine) as s:
        host = s.exec(select(Host).where(Host.name == "web1")).one()
    run_id = start_patch_run.fn("ACME", "tester", "preventive")
    host_plan = HostPlan(
        host="web1",
        host_id=host.id,
        stage="staging",
        ecosystem=ECOSYSTEM,
        family="dpkg",
        items=[
            PlanItem(
                package=CANARY,
                installed=patched_host.old,
                target=patched_host.new,
                fixed=fixed,
                advisories=[advisory],
            )
        ],
    )
    with open_session() as db:
        run = db.get(InspectionRun, run_id)
        assert run is not None
        started = run.started_at
    plan = PatchPlan(
        contract="ACME",
        contract_id=host.contract_id,
        contract_name="x",
        customer="x",
        timezone="UTC",
        created_at=started,
        hosts=[host_plan],
    )
    return run_id, record_plan(plan, run_id), host_plan


def _approve_on_record(engine, plan_id: int) -> None:
    """What the gate writes when the customer approves: the approval, its evidence with the
    plan's hash, and the decision on the plan's row."""
    with Session(engine) as s:
        row = s.get(PlanRow, plan_id)
        gate = Approval(
            flow_run_id="test",
            contract_id=row.contract_id,
            gate=PLAN_GATE,
            subject="plan",
            evidence=f"Plan hash: `{row.plan_hash}`",
            decision="approve",
            approver="Alice Owner",
        )
        s.add(gate)
        s.flush()
        row.approval_id, row.approved_hash, row.status = gate.id, row.plan_hash, "approved"
        s.add(row)
        s.commit()


def _apply_one(plan_id: int, run_id: int, host_plan: HostPlan) -> HostRollout:
    @flow
    def rollout_one() -> HostRollout:
        return apply_host(plan_id, run_id, host_plan, "web1")

    return rollout_one()


def test_the_apply_task_itself_refuses_what_was_not_approved(engine, patched_host, flow_env):
    run_id, plan_id, host_plan = _hand_made_plan(engine, patched_host, "1.1-1", "UPKEEP-TEST-0001")
    with pytest.raises(NotApproved, match="no approval on record"):
        _apply_one(plan_id, run_id, host_plan)
    _approve_on_record(engine, plan_id)
    other = host_plan.model_copy(
        update={"items": [host_plan.items[0].model_copy(update={"target": "1.0-1"})]}
    )
    with pytest.raises(NotApproved, match="not those of patch plan"):
        _apply_one(plan_id, run_id, other)
    assert patched_host.installed_version() == patched_host.old
    assert [st[:2] for st in _steps(engine, plan_id)] == [("refused", False), ("refused", False)]


def test_a_fix_that_does_not_close_its_advisory_is_rolled_back(
    engine, patched_host, tmp_path, flow_env
):
    """The repository's 1.1-1 does not fix a second advisory (fixed only in 1.2-1): the
    re-scan shows it still open, so the previous version is installed again and a critical
    finding is raised."""
    record = canary_advisory(ECOSYSTEM)
    record["id"] = "UPKEEP-TEST-0002"
    record["affected"][0]["ranges"][0]["events"][1]["fixed"] = "1.2-1"
    path = tmp_path / "second.json"
    path.write_text(json.dumps(record))
    with Session(engine) as s:
        sync(s, [str(path)])
    run_id, plan_id, host_plan = _hand_made_plan(engine, patched_host, "1.2-1", "UPKEEP-TEST-0002")
    _approve_on_record(engine, plan_id)
    result = _apply_one(plan_id, run_id, host_plan)
    assert not result.ok and result.rolled_back, result
    assert "still open" in result.summary
    assert patched_host.installed_version() == patched_host.old
    steps = _steps(engine, plan_id)
    assert ("install", True) in [s[:2] for s in steps]
    assert ("rollback", True) in [s[:2] for s in steps]
    assert ("rollback-verified", True) in [s[:2] for s in steps]
    with Session(engine) as s:
        finding = s.exec(select(Finding).where(Finding.check == "patch-rollout")).one()
        assert finding.severity == "critical" and "web1" in finding.message


def _finding(engine, host_name: str) -> int:
    """An open finding on the host, as an inspection would have raised it."""
    from upkeep.tasks.records import start_run

    with Session(engine) as s:
        host = s.exec(select(Host).where(Host.name == host_name)).one()
        from upkeep.models import Contract

        contract = s.get(Contract, host.contract_id)
        run = start_run(session=s, contract=contract, kind="inspection")
        finding = Finding(
            contract_id=host.contract_id,
            host_id=host.id,
            run_id=run.id,
            check="services",
            subject="canary",
            severity="major",
            message="canary crashes on start",
            last_seen_run_id=run.id,
        )
        s.add(finding)
        s.commit()
        return finding.id


def _text(mail) -> str:
    body = mail.message().get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""


def _fix(**params) -> Background:
    p = PatchFixParams(contract="ACME", requested_by="tester", **params)
    return Background(lambda: patch_fix(p, return_state=True))


def test_the_responsive_path_applies_the_approved_fix_and_resolves_the_finding(
    engine, canary, load_inventory, sshd, canary_store, smtp_server
):
    load_inventory([host_entry("web1", sshd)], trust=[sshd], patching={"mode": "apply"})
    finding_id = _finding(engine, "web1")
    run = _fix(hosts=["web1"], packages=[CANARY], symptom="canary crashes", finding_id=finding_id)
    gate = pending(engine, RESPONSIVE_GATE)
    # No staging host: the customer is told plainly that the patch was not tested.
    assert "NOT TESTED" in gate.evidence and CANARY in gate.evidence
    assert any(
        "NOT TESTED" in _text(m)
        for m in smtp_server.handler.received
        if "it@acme.example" in m.rcpt_tos
    )
    answer(gate, decision="approve", approver="Alice Owner", code=wait_for_code(smtp_server, ALICE))
    state = run.state(timeout=300)
    assert state.is_completed(), state.message
    assert state.result().status == "applied"
    assert canary.installed_version() == canary.new
    with Session(engine) as s:
        finding = s.get(Finding, finding_id)
        assert finding.status == "resolved" and "resolved by patch plan" in finding.evidence
    (row,) = _plans(engine)
    assert ("finding-resolved", True) in [st[:2] for st in _steps(engine, row.id)]


def test_the_responsive_path_tests_on_staging_before_asking(
    engine, canary, load_inventory, sshd_servers, canary_store, smtp_server
):
    """The staging host gets the update first; its result is in the test report the customer
    reviews. (Both test hosts are this machine, so the affected host is not patched after:
    the customer rejects and the engineer cancels.)"""
    stage, prod = sshd_servers[0], sshd_servers[1]
    load_inventory(
        [host_entry("stage1", stage, tags=["staging"]), host_entry("web1", prod)],
        trust=[stage, prod],
        patching={"mode": "apply"},
    )
    run = _fix(hosts=["web1"], packages=[CANARY], symptom="canary crashes")
    gate = pending(engine, RESPONSIVE_GATE)
    assert "Tested on staging:** stage1: passed" in gate.evidence, gate.evidence
    assert any(
        "Tested on staging: stage1: passed" in _text(m)
        for m in smtp_server.handler.received
        if "it@acme.example" in m.rcpt_tos
    )
    assert canary.installed_version() == canary.new  # on stage1
    rows = _plans(engine)
    trial = next(r for r in rows if r.revision == 0)
    assert trial.status == "tested"
    assert ("install", True) in [st[:2] for st in _steps(engine, trial.id)]
    answer(
        gate,
        decision="reject",
        approver="Alice Owner",
        code=wait_for_code(smtp_server, ALICE),
        comment="not now",
    )
    answer(pending(engine, REVISION_GATE), action="cancel", engineer="Eve Engineer")
    assert run.state(timeout=120).is_cancelled()
