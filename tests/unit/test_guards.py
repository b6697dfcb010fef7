"""What is decided before a run is created: empty scopes, unapprovable gates, one run at a time."""

from __future__ import annotations

from upkeep.domain.approvals import Person, approver_warnings, deciders, unapprovable
from upkeep.domain.contract import GatePolicy
from upkeep.tasks.guards import (
    RunInfo,
    claim_decision,
    empty_scope_message,
)

ALICE = Person(name="Alice Owner", email="alice@acme.example")
PAUL = Person(name="Paul Lead", email="paul@provider.example")
BACKUP = Person(name="Bea Backup", email="bea@acme.example")


def test_an_empty_tag_selection_names_the_tag_and_the_tags_in_use() -> None:
    message = empty_scope_message("ACME", ["nosuchtag"], ["web", "db", "web"])
    assert "'nosuchtag'" in message and "ACME" in message
    assert "tags in use: db, web" in message


def test_a_contract_without_hosts_says_so() -> None:
    assert "has no active hosts" in empty_scope_message("ACME", [], [])
    assert "tags in use: none" in empty_scope_message("ACME", ["x"], [])


def test_a_starter_who_is_the_only_approver_makes_the_gate_unapprovable() -> None:
    for starter in ("Alice Owner", "alice owner", " ALICE@acme.example "):
        why = unapprovable([ALICE], None, GatePolicy(), starter)
        assert why is not None and "only approver" in why and "Alice Owner" in why


def test_someone_else_may_start_a_run_of_a_single_approver() -> None:
    assert unapprovable([ALICE], None, GatePolicy(), "ops-engineer") is None
    assert unapprovable([ALICE], None, GatePolicy(), None) is None


def test_self_approval_allowed_by_the_contract_is_no_obstacle() -> None:
    assert unapprovable([ALICE], None, GatePolicy(allow_self_approval=True), "Alice Owner") is None


def test_the_backup_approver_counts_only_when_the_gate_escalates() -> None:
    assert unapprovable([ALICE], BACKUP, GatePolicy(), "Alice Owner") is None
    never = GatePolicy(escalate_after_hours=None)
    assert unapprovable([ALICE], BACKUP, never, "Alice Owner") is not None
    assert [p.name for p in deciders([ALICE], BACKUP, with_backup=False)] == ["Alice Owner"]
    assert [p.name for p in deciders([ALICE], BACKUP, with_backup=True)] == [
        "Alice Owner",
        "Bea Backup",
    ]


def test_m_of_n_with_the_starter_among_too_few_names_who_is_left() -> None:
    why = unapprovable([ALICE, PAUL], None, GatePolicy(required_approvals=2), "alice@acme.example")
    assert why is not None and "Paul Lead" in why and "2 approvals" in why


def test_more_approvals_than_people_can_never_be_approved() -> None:
    why = unapprovable([ALICE, PAUL], None, GatePolicy(required_approvals=3), "someone")
    assert why is not None and "no run can be approved" in why


def test_a_person_listed_twice_counts_once() -> None:
    twice = [ALICE, Person(name="alice owner", email="other@acme.example")]
    assert len(deciders(twice, ALICE, with_backup=True)) == 1
    # the gate is judged the same: two entries of one person are one approver
    assert unapprovable(twice, None, GatePolicy(required_approvals=2), None) is not None


def test_load_warnings_name_where_the_policy_is_written() -> None:
    policies = {
        "approval_policy": GatePolicy(),
        "gate_policies.inspection-plan": GatePolicy(required_approvals=3),
    }
    warnings = approver_warnings([ALICE, PAUL], None, policies)
    assert len(warnings) == 1 and warnings[0].startswith("gate_policies.inspection-plan:")
    single = approver_warnings([ALICE], None, {"approval_policy": GatePolicy()})
    assert len(single) == 1 and "a run started by Alice Owner could not be approved" in single[0]
    assert approver_warnings([ALICE], BACKUP, {"approval_policy": GatePolicy()}) == []
    # as an inventory spec dumps them (dicts): the same warnings
    as_dicts = [ALICE.model_dump(), PAUL.model_dump()]
    assert approver_warnings(as_dicts, None, policies) == warnings
    two = GatePolicy(required_approvals=2)
    assert approver_warnings([ALICE], BACKUP, {"approval_policy": two}) == [
        "approval_policy: a run started by one of Alice Owner, Bea Backup could not be approved "
        "(2 approvals needed and self-approval is not allowed): add an approver or a backup "
        "approver"
    ]


def _run(run_id: str, active: bool, state: str = "Suspended") -> RunInfo:
    return RunInfo(id=run_id, name=f"inspection · ACME · {run_id}", state=state, active=active)


def test_a_contract_without_a_claim_is_taken() -> None:
    assert claim_decision(None, "me", None) == "take"
    assert claim_decision(None, None, None) == "take"


def test_a_run_resuming_after_its_gate_keeps_its_claim() -> None:
    assert claim_decision("me", "me", _run("me", True)) == "mine"


def test_a_claim_held_by_a_run_under_way_blocks_the_cli_and_other_runs() -> None:
    holder = _run("a", True)
    assert claim_decision("a", "b", holder) == "blocked"
    assert claim_decision("a", None, holder) == "blocked"
    assert claim_decision("a", None, _run("a", True, "Scheduled")) == "blocked"  # resuming


def test_a_claim_of_a_run_that_ended_or_that_prefect_forgot_is_taken_over() -> None:
    assert claim_decision("a", "b", _run("a", False, "Completed")) == "take"
    assert claim_decision("a", "b", None) == "take"
