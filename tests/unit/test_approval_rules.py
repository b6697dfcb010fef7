"""Every approval rule on plain values (upkeep.domain.approvals): who may decide, self-approval,
codes, wrong codes and their replacement, M of N, one rejection, escalation and expiry.

The gate's records are built as the rows the flow writes (ApprovalEvent, ApprovalCode),
without a database; codes are real codes and real scrypt hashes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from upkeep.domain.approvals import (
    WRONG_CODE,
    ApprovalRequest,
    Decision,
    Person,
    Verdict,
    approved_by,
    closed_reason,
    code_recipients,
    deciders,
    due,
    ended_state,
    escalation_due,
    expiry_due,
    expiry_reason,
    match_person,
    may_still_answer,
    notice_recipients,
    refusals,
    roles,
    same_person,
    still_deciding,
    verdict,
)
from upkeep.domain.codes import hash_code, new_code
from upkeep.domain.contract import GatePolicy
from upkeep.models import Approval, ApprovalCode, ApprovalEvent

ALICE = Person(name="Alice Owner", email="alice@acme.example")
PAUL = Person(name="Paul Lead", email="paul@provider.example")
BOB = Person(name="Bob Backup", email="bob@provider.example")
OPENED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ALICE_CODE = new_code()
PAUL_CODE = new_code()
BOB_CODE = new_code()


def request(**overrides: object) -> ApprovalRequest:
    fields: dict[str, object] = {
        "gate": "inspection-plan",
        "key": "inspection-plan-r1",
        "contract": "ACME",
        "subject": "plan ACME 2026-Q4",
        "evidence": "the plan",
        "approvers": [ALICE, PAUL],
        "backup_approver": BOB,
        "requested_by": "ops@provider.example",
    }
    fields.update(overrides)
    return ApprovalRequest.model_validate(fields)


@dataclass
class Answer:
    decision: Decision
    approver: str
    code: str
    comment: str = ""


def code_rows(used: Collection[str] = ()) -> list[ApprovalCode]:
    return [
        ApprovalCode(
            approval_id=1,
            person=p.name,
            email=str(p.email),
            code_hash=hash_code(code),
            used_at=OPENED if p.name in used else None,
        )
        for p, code in ((ALICE, ALICE_CODE), (PAUL, PAUL_CODE), (BOB, BOB_CODE))
    ]


CODES = code_rows()


def event(kind: str, actor: str | None = None, detail: str = "") -> ApprovalEvent:
    return ApprovalEvent(approval_id=1, kind=kind, actor=actor, detail=detail)


def judge(
    answer: Answer,
    *,
    events: Sequence[ApprovalEvent] = (),
    codes: Sequence[ApprovalCode] = CODES,
    **req: object,
) -> Verdict:
    return verdict(request(**req), answer, closed=None, events=list(events), codes=codes)


# --- who may decide -------------------------------------------------------------------------


def test_a_person_is_named_by_name_or_email_in_any_case() -> None:
    assert same_person(ALICE, " alice owner ")
    assert same_person(ALICE, "ALICE@acme.example")
    assert not same_person(ALICE, "Alice")
    assert not same_person(ALICE, None) and not same_person(ALICE, "")
    assert match_person("PAUL@provider.example", [ALICE, PAUL]) is PAUL
    assert match_person("Mallory", [ALICE, PAUL]) is None


def test_deciders_are_the_approvers_and_the_backup_only_when_asked_each_once() -> None:
    assert deciders([ALICE, PAUL], BOB, with_backup=False) == [ALICE, PAUL]
    assert deciders([ALICE, PAUL], BOB, with_backup=True) == [ALICE, PAUL, BOB]
    again = Person(name="alice owner", email="other@acme.example")
    assert deciders([ALICE, again], ALICE, with_backup=True) == [ALICE]


def test_codes_go_to_the_approvers_and_after_escalation_to_the_backup_approver() -> None:
    assert roles(request(), escalated=False) == [(ALICE, "approver"), (PAUL, "approver")]
    assert roles(request(), escalated=True)[-1] == (BOB, "backup approver")
    assert roles(request(backup_approver=None), escalated=True) == [
        (ALICE, "approver"),
        (PAUL, "approver"),
    ]


def test_someone_not_named_by_the_gate_is_refused_with_who_may() -> None:
    v = judge(Answer(Decision.APPROVE, "Mallory", ALICE_CODE))
    assert not v.accepted and v.person == "Mallory"
    assert v.reason == "'Mallory' may not decide this gate (allowed: Alice Owner, Paul Lead)"


def test_the_backup_approver_decides_only_after_escalation() -> None:
    early = judge(Answer(Decision.APPROVE, "Bob Backup", BOB_CODE))
    assert not early.accepted and "may not decide" in early.reason
    late = judge(
        Answer(Decision.APPROVE, "bob@provider.example", BOB_CODE),
        events=[event("escalated", "Bob Backup")],
    )
    assert late.accepted and late.final is Decision.APPROVE and late.decided_by == "Bob Backup"


def test_a_closed_gate_takes_no_answer() -> None:
    v = verdict(
        request(),
        Answer(Decision.APPROVE, "Alice Owner", ALICE_CODE),
        closed="expired",
        events=[],
        codes=CODES,
    )
    assert not v.accepted and v.reason == "the gate is already closed (expired)"


# --- self-approval --------------------------------------------------------------------------


def test_the_starter_may_not_approve_unless_the_policy_allows_it() -> None:
    v = judge(
        Answer(Decision.APPROVE, "Alice Owner", ALICE_CODE), requested_by="ALICE@acme.example"
    )
    assert not v.accepted and v.reason == "Alice Owner started this run and may not approve it"
    allowed = judge(
        Answer(Decision.APPROVE, "Alice Owner", ALICE_CODE),
        requested_by="Alice Owner",
        policy=GatePolicy(allow_self_approval=True),
    )
    assert allowed.accepted and allowed.final is Decision.APPROVE


def test_who_may_still_answer_leaves_out_who_approved_and_the_starter() -> None:
    args: dict[str, Any] = {
        "answered": ["Paul Lead"],
        "requested_by": "alice owner",
        "allow_self_approval": False,
    }
    assert not may_still_answer(ALICE, **args)
    assert not may_still_answer(PAUL, **args)
    assert may_still_answer(BOB, **args)
    assert may_still_answer(ALICE, **{**args, "allow_self_approval": True})
    req = request(requested_by="Alice Owner")
    assert still_deciding(req, ["Paul Lead"], with_backup=False) == []
    assert still_deciding(req, [], with_backup=True) == [PAUL, BOB]


# --- codes ----------------------------------------------------------------------------------


def test_a_code_goes_once_per_gate_to_who_may_still_answer() -> None:
    def names(**kw: object) -> list[str]:
        args: dict = {"coded": set(), "answered": set(), "requested_by": None}
        args.update(kw)
        args.setdefault("allow_self_approval", False)
        return [p.name for p in code_recipients([ALICE, PAUL, BOB], **args)]

    assert names() == ["Alice Owner", "Paul Lead", "Bob Backup"]
    assert names(coded={"Alice Owner"}) == ["Paul Lead", "Bob Backup"]
    assert names(answered={"Paul Lead"}) == ["Alice Owner", "Bob Backup"]
    assert names(requested_by="bob@provider.example") == ["Alice Owner", "Paul Lead"]


def test_an_answer_needs_the_persons_own_unused_code() -> None:
    someone_elses = judge(Answer(Decision.APPROVE, "Alice Owner", PAUL_CODE))
    assert not someone_elses.accepted and someone_elses.reason == WRONG_CODE
    garbage = judge(Answer(Decision.APPROVE, "Alice Owner", "not a code"))
    assert not garbage.accepted and garbage.reason == WRONG_CODE
    used = judge(
        Answer(Decision.APPROVE, "Alice Owner", ALICE_CODE), codes=code_rows({"Alice Owner"})
    )
    assert not used.accepted and used.reason == "that code was already used"
    typed_loosely = judge(
        Answer(Decision.APPROVE, "Alice Owner", ALICE_CODE.lower().replace("-", " "))
    )
    assert typed_loosely.accepted
    assert typed_loosely.code_used == next(c.code_hash for c in CODES if c.person == "Alice Owner")


# --- wrong codes and rotation ---------------------------------------------------------------


def test_the_third_wrong_code_under_one_name_replaces_that_persons_code() -> None:
    wrong = Answer(Decision.APPROVE, "Paul Lead", "AAAAA-AAAAA")
    first = judge(wrong)
    assert not first.accepted and first.reason == WRONG_CODE and first.rotate is None
    log = [event("refused", "Paul Lead", WRONG_CODE), event("refused", "Paul Lead", WRONG_CODE)]
    third = judge(wrong, events=log)
    assert not third.accepted and third.person == "Paul Lead"
    assert third.reason.startswith(WRONG_CODE) and "Paul Lead's code was replaced" in third.reason
    assert third.rotate == "3 wrong codes were typed under Paul Lead's name"
    # after a replacement the count starts again; other people's wrong codes do not count
    after = [*log, event("refused", "Paul Lead", third.reason), event("rotated", "Paul Lead")]
    assert judge(wrong, events=[*after, event("refused", "Alice Owner", WRONG_CODE)]).rotate is None
    assert judge(wrong, events=log, policy=GatePolicy(max_failed_attempts=5)).rotate is None


# --- M of N and rejection -------------------------------------------------------------------


def test_one_approval_decides_a_one_of_n_gate() -> None:
    v = judge(Answer(Decision.APPROVE, "Alice Owner", ALICE_CODE, " fine "))
    assert v.accepted and v.final is Decision.APPROVE
    assert (v.person, v.note, v.decided_by, v.decision_comment) == (
        "Alice Owner",
        "fine",
        "Alice Owner",
        "fine",
    )


def test_m_of_n_waits_for_m_distinct_approvers_and_joins_their_comments() -> None:
    two = GatePolicy(required_approvals=2)
    first = judge(Answer(Decision.APPROVE, "Alice Owner", ALICE_CODE, "ok"), policy=two)
    assert first.accepted and first.final is None and first.note == "ok"
    log = [event("approved", "Alice Owner", "ok")]
    second = judge(Answer(Decision.APPROVE, "Paul Lead", PAUL_CODE), policy=two, events=log)
    assert second.final is Decision.APPROVE
    assert second.decided_by == "Alice Owner, Paul Lead" and second.decision_comment == "ok"
    assert approved_by(log) == ["Alice Owner"]


def test_one_rejection_sends_it_back_and_must_say_why() -> None:
    bare = judge(Answer(Decision.REJECT, "Paul Lead", PAUL_CODE, "  "))
    assert (
        not bare.accepted and bare.reason == "a rejection needs a comment saying what must change"
    )
    log = [event("approved", "Alice Owner", "ok")]
    v = judge(
        Answer(Decision.REJECT, "Paul Lead", PAUL_CODE, " no db1 "),
        policy=GatePolicy(required_approvals=2),
        events=log,
    )
    assert v.accepted and v.final is Decision.REJECT
    assert (v.decided_by, v.decision_comment, v.note) == ("Paul Lead", "no db1", "")


def test_refusals_are_read_back_oldest_first() -> None:
    log = [
        event("refused", "x", "first"),
        event("approved", "Alice Owner"),
        event("refused", "y", "second"),
    ]
    assert refusals(log) == ["first", "second"]


# --- escalation and expiry ------------------------------------------------------------------


def test_a_deadline_is_due_once_its_hours_passed_and_never_without_hours() -> None:
    assert not due(OPENED, 4, OPENED + timedelta(hours=3, minutes=59))
    assert due(OPENED, 4, OPENED + timedelta(hours=4))
    assert not due(OPENED, None, OPENED + timedelta(days=365))


def test_escalation_is_due_once_with_a_backup_approver() -> None:
    late = OPENED + timedelta(hours=5)
    assert escalation_due(request(), OPENED, late, already=False)
    assert not escalation_due(request(), OPENED, late, already=True)
    assert not escalation_due(request(), OPENED, OPENED + timedelta(hours=1), already=False)
    assert not escalation_due(request(backup_approver=None), OPENED, late, already=False)
    never = GatePolicy(escalate_after_hours=None)
    assert not escalation_due(
        request(policy=never), OPENED, late + timedelta(days=2), already=False
    )


def test_expiry_is_due_after_the_policys_hours_and_says_when_it_opened() -> None:
    policy = GatePolicy(expire_after_hours=24)
    assert not expiry_due(policy, OPENED, OPENED + timedelta(hours=23))
    assert expiry_due(policy, OPENED, OPENED + timedelta(hours=24))
    assert expiry_reason(policy, OPENED) == (
        "approval gate expired: no decision 24 h after it opened (2026-12-01 08:00 UTC)"
    )


def test_an_expired_gate_is_announced_to_approvers_backup_after_escalation_and_the_starter() -> (
    None
):
    assert notice_recipients(request(), escalated=False) == [
        "alice@acme.example",
        "paul@provider.example",
        "ops@provider.example",
    ]
    assert "bob@provider.example" in notice_recipients(request(), escalated=True)
    assert notice_recipients(request(requested_by="ops"), escalated=False) == [
        "alice@acme.example",
        "paul@provider.example",
    ]


def test_how_a_closed_gate_and_an_ended_run_read() -> None:
    gate = Approval(flow_run_id="r", gate="inspection-plan", subject="s", decision="expired")
    assert closed_reason(gate) == "the gate 'inspection-plan' is closed (expired: no reason)"
    state = SimpleNamespace(name="Cancelled", message=None)
    assert ended_state(state) == "Cancelled: no message"


@pytest.mark.parametrize("decision", list(Decision))
def test_decisions_are_the_approvers_two(decision: Decision) -> None:
    assert Decision(decision.value) is decision
    assert {d.value for d in Decision} == {"approve", "reject"}
