"""Gates of served inspections, answered through the REST call the Prefect UI's form makes.

``upkeep serve`` runs the deployments; each answer resumes the suspended run, the runner
re-runs the flow from the top and every gate replays from its records. The paths of issue 10:
reject → revise → approve, and M of N over several resumes, with codes mailed once per person
who may still answer.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from tests.polling import wait_until
from tests.production.stack import Api, Served, ServeUpkeep
from upkeep.models import Approval, ApprovalEvent

pytestmark = pytest.mark.production

ALICE = {"name": "Alice Owner", "email": "alice@customer.example"}
PAUL = {"name": "Paul Lead", "email": "paul@provider.example"}
RUN = 240.0


def gates(served: Served) -> list[tuple[Approval, list[str]]]:
    """The served instance's gates, oldest first, each with its event kinds."""
    engine = sa.create_engine(f"sqlite:///{served.workdir / 'data' / 'upkeep.db'}")
    try:
        with Session(engine) as s:
            out = []
            for gate in s.exec(select(Approval).order_by(col(Approval.id))):
                kinds = [
                    e.kind
                    for e in s.exec(
                        select(ApprovalEvent)
                        .where(ApprovalEvent.approval_id == gate.id)
                        .order_by(col(ApprovalEvent.id))
                    )
                ]
                out.append((gate, kinds))
            return out
    finally:
        engine.dispose()


def codes(served: Served, address: str) -> list[str]:
    """The distinct codes mailed to ``address``, oldest first (a mail shows its code twice)."""
    return list(dict.fromkeys(served.mailbox.codes_for(address)))


def nth_code(served: Served, address: str, nth: int = 1) -> str:
    found = wait_until(
        f"code #{nth} mailed to {address}",
        lambda: c if len(c := codes(served, address)) >= nth else None,
        RUN,
    )
    return str(found[nth - 1])


def start(api: Api, name: str) -> str:
    """A run of the inspection deployment ``name``, as the UI's Run button creates it."""
    return api.start("inspection", name)


def answer(api: Api, run_id: str, **run_input: Any) -> None:
    """Resume the suspended run as the UI does, once its form is up; accepted."""
    result = api.answer(run_id, run_input, timeout=RUN)
    assert result["status"] == "ACCEPT", result


def judged(kinds: list[str]) -> list[str]:
    return [k for k in kinds if k in ("approved", "refused", "decided")]


def test_reject_revise_approve_on_a_served_deployment(
    serve_upkeep: ServeUpkeep, prod_api: Api
) -> None:
    served = serve_upkeep("GATEREV", approvers=[ALICE, PAUL])
    run_id = start(prod_api, "gaterev")
    alice = nth_code(served, ALICE["email"])
    answer(
        prod_api,
        run_id,
        decision="reject",
        approver="Alice Owner",
        code=alice,
        comment="do it next week",
    )
    answer(
        prod_api,
        run_id,
        action="resubmit",
        engineer="Eve",
        window="next week",
        note="moved as asked",
    )
    paul = nth_code(served, PAUL["email"], 2)
    answer(prod_api, run_id, decision="approve", approver="Paul Lead", code=paul)
    prod_api.wait_state(run_id, "COMPLETED", timeout=RUN)
    (first, first_log), (revision, revision_log), (second, second_log) = gates(served)
    assert (first.gate, first.decision, first.approver) == (
        "inspection-plan",
        "reject",
        "Alice Owner",
    )
    assert (revision.decision, revision.approver) == ("resubmit", "Eve")
    assert (second.decision, second.approver) == ("approve", "Paul Lead")
    assert "next week" in second.evidence
    # each answer judged once, however many times the flow re-ran
    assert judged(first_log) == ["decided"]
    assert judged(revision_log) == ["decided"]
    assert judged(second_log) == ["approved", "decided"]
    # one code per person per plan: nobody was mailed again for the rejected plan
    assert len(codes(served, ALICE["email"])) == 2
    assert len(codes(served, PAUL["email"])) == 2


def test_m_of_n_over_several_resumes_on_a_served_deployment(
    serve_upkeep: ServeUpkeep, prod_api: Api
) -> None:
    served = serve_upkeep(
        "GATEMN", approvers=[ALICE, PAUL], approval_policy={"required_approvals": 2}
    )
    run_id = start(prod_api, "gatemn")
    alice = nth_code(served, ALICE["email"])
    paul = nth_code(served, PAUL["email"])
    answer(prod_api, run_id, decision="approve", approver="Alice Owner", code=alice)
    answer(prod_api, run_id, decision="approve", approver="Paul Lead", code="ABCDE-FGHJK")
    answer(prod_api, run_id, decision="approve", approver="Paul Lead", code=paul)
    prod_api.wait_state(run_id, "COMPLETED", timeout=RUN)
    ((gate, log),) = gates(served)
    assert (gate.decision, gate.approver) == ("approve", "Alice Owner, Paul Lead")
    assert judged(log) == ["approved", "refused", "approved", "decided"]
    assert codes(served, ALICE["email"]) == [alice]  # once, though the flow re-ran 3 times
    assert codes(served, PAUL["email"]) == [paul]


def test_a_planted_answer_is_removed_by_the_served_watchdog(
    serve_upkeep: ServeUpkeep, prod_api: Api
) -> None:
    """An outsider creates the open form's response key (POST /flow_runs/{id}/input): the
    genuine answer fails with 409 only until the served watchdog's next run removes it."""
    served = serve_upkeep("GATEPLANT")
    run_id = start(prod_api, "gateplant")
    alice = nth_code(served, ALICE["email"])
    run = prod_api.wait_paused(run_id, timeout=RUN)
    keyset = run["state"]["state_details"]["run_input_keyset"]
    response_key = keyset["response"]
    wait_until("the form's schema", lambda: keyset["schema"] in prod_api.input_keys(run_id), 30)
    planted = prod_api.http.post(
        f"/flow_runs/{run_id}/input", json={"key": response_key, "value": "{}"}
    )
    assert planted.status_code == 201, planted.text
    genuine = {"decision": "approve", "approver": "Alice Owner", "code": alice}
    blocked = prod_api.http.post(f"/flow_runs/{run_id}/resume", json={"run_input": genuine})
    assert blocked.status_code == 409, blocked.text

    wait_until(
        "the served watchdog to remove the planted answer",
        lambda: response_key not in prod_api.input_keys(run_id),
        timeout=RUN,
    )
    assert prod_api.answer(run_id, genuine)["status"] == "ACCEPT"
    prod_api.wait_state(run_id, "COMPLETED", timeout=RUN)
    ((gate, log),) = gates(served)
    assert (gate.decision, gate.approver) == ("approve", "Alice Owner")
    assert "planted" in log and judged(log) == ["approved", "decided"]


def test_escalation_by_the_served_watchdog_and_the_backup_decides(
    serve_upkeep: ServeUpkeep, prod_api: Api
) -> None:
    served = serve_upkeep(
        "GATEESC", approval_policy={"escalate_after_hours": 0.005, "expire_after_hours": 1}
    )
    run_id = start(prod_api, "gateesc")
    alice = nth_code(served, ALICE["email"])
    answer(prod_api, run_id, decision="approve", approver="Bob Backup", code=alice)
    bob = nth_code(served, "bob@provider.example")  # the served watchdog escalated
    answer(prod_api, run_id, decision="approve", approver="Bob Backup", code=bob)
    prod_api.wait_state(run_id, "COMPLETED", timeout=RUN)
    ((gate, log),) = gates(served)
    assert (gate.decision, gate.approver) == ("approve", "Bob Backup")
    assert log.count("escalated") == 1
    assert judged(log)[-2:] == ["approved", "decided"]
    assert codes(served, "bob@provider.example") == [bob]
    assert codes(served, ALICE["email"]) == [alice]


def test_expiry_by_the_served_watchdog_and_retry_ends_with_the_reason(
    serve_upkeep: ServeUpkeep, prod_api: Api
) -> None:
    served = serve_upkeep(
        "GATEEXP", approval_policy={"escalate_after_hours": None, "expire_after_hours": 0.005}
    )
    run_id = start(prod_api, "gateexp")
    nth_code(served, ALICE["email"])
    ended = prod_api.wait_state(run_id, "CANCELLED", timeout=RUN)
    assert "expired" in ended["state"]["message"]
    # the UI's Retry: back to Scheduled; the re-run finds its gate closed and ends at once
    retried = prod_api.http.post(
        f"/flow_runs/{run_id}/set_state",
        json={"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}},
    ).raise_for_status()
    assert retried.json()["status"] == "ACCEPT", retried.text
    failed = prod_api.wait_state(run_id, "FAILED", timeout=RUN)
    assert "expired" in failed["state"]["message"], failed["state"]
    ((gate, log),) = gates(served)
    assert gate.decision == "expired" and "waiting" in log
    assert len(codes(served, ALICE["email"])) == 1  # nobody was mailed again by the retry
