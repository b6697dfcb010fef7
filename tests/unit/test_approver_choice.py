"""The resume form offers the people who may answer as a choice (pure parts)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from upkeep.domain.approvals import ApprovalRequest, Person, answerable_names
from upkeep.domain.contract import GatePolicy
from upkeep.tasks.pause import ApprovalInput, approval_form

ALICE = Person(name="Alice Owner", email="alice@acme.example")
PAUL = Person(name="Paul Lead", email="paul@provider.example")
BOB = Person(name="Bob Backup", email="bob@provider.example")


def request(**overrides: object) -> ApprovalRequest:
    fields: dict[str, object] = {
        "gate": "inspection-plan",
        "key": "inspection-plan-r1",
        "contract": "ACME",
        "subject": "plan",
        "evidence": "plan",
        "approvers": [ALICE, PAUL],
        "backup_approver": BOB,
    }
    fields.update(overrides)
    return ApprovalRequest(**fields)  # type: ignore[arg-type]


def test_approvers_and_the_backup_approver_of_an_escalating_gate_are_offered() -> None:
    assert answerable_names(request()) == ["Alice Owner", "Paul Lead", "Bob Backup"]


def test_the_backup_approver_is_not_offered_when_the_gate_never_escalates() -> None:
    policy = GatePolicy(escalate_after_hours=None)
    assert answerable_names(request(policy=policy)) == ["Alice Owner", "Paul Lead"]


def test_whoever_approved_already_is_no_longer_offered() -> None:
    assert answerable_names(request(), approved_by=["Alice Owner"]) == ["Paul Lead", "Bob Backup"]


def test_the_starter_is_offered_only_when_self_approval_is_allowed() -> None:
    by_mail = request(requested_by="ALICE@acme.example")
    assert answerable_names(by_mail) == ["Paul Lead", "Bob Backup"]
    allowed = request(requested_by="Alice Owner", policy=GatePolicy(allow_self_approval=True))
    assert answerable_names(allowed)[0] == "Alice Owner"


def test_the_form_accepts_only_the_offered_names_and_says_so_in_its_schema() -> None:
    form = approval_form(["Alice Owner", "Paul <b>Lead</b>"])
    schema = form.model_json_schema()["properties"]["approver"]
    assert schema["enum"] == ["Alice Owner", "Paul <b>Lead</b>"]  # the UI shows a list
    answer = form.model_validate({"decision": "approve", "approver": "Alice Owner", "code": "x"})
    assert isinstance(answer, ApprovalInput) and answer.approver == "Alice Owner"
    with pytest.raises(ValidationError):
        form.model_validate({"decision": "approve", "approver": "Mallory", "code": "x"})


def test_with_no_names_known_the_form_stays_free_text() -> None:
    assert approval_form([]) is ApprovalInput
