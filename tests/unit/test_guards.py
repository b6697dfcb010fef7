"""What is decided before a run is created: empty scopes, unapprovable gates, one run at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tasks.gates import GatePolicy
from tasks.guards import (
    RunInfo,
    approver_warnings,
    blocking_run,
    deciders,
    empty_scope_message,
    unapprovable,
)

ALICE = {"name": "Alice Owner", "email": "alice@acme.example"}
PAUL = {"name": "Paul Lead", "email": "paul@provider.example"}
BACKUP = {"name": "Bea Backup", "email": "bea@acme.example"}
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


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
    assert [p["name"] for p in deciders([ALICE], BACKUP, never)] == ["Alice Owner"]


def test_m_of_n_with_the_starter_among_too_few_names_who_is_left() -> None:
    why = unapprovable([ALICE, PAUL], None, GatePolicy(required_approvals=2), "alice@acme.example")
    assert why is not None and "Paul Lead" in why and "2 approvals" in why


def test_more_approvals_than_people_can_never_be_approved() -> None:
    why = unapprovable([ALICE, PAUL], None, GatePolicy(required_approvals=3), "someone")
    assert why is not None and "no run can be approved" in why


def test_a_person_listed_twice_counts_once() -> None:
    twice = [ALICE, {"name": "alice owner", "email": "other@acme.example"}]
    assert len(deciders(twice, ALICE, GatePolicy())) == 1


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
    two = GatePolicy(required_approvals=2)
    assert approver_warnings([ALICE], BACKUP, {"approval_policy": two}) == [
        "approval_policy: a run started by one of Alice Owner, Bea Backup could not be approved "
        "(2 approvals needed and self-approval is not allowed): add an approver or a backup "
        "approver"
    ]


def _run(run_id: str, started: datetime | None, state: str = "Running") -> RunInfo:
    return RunInfo(id=run_id, name=f"inspection · ACME · {run_id}", state=state, start_time=started)


def test_before_a_run_exists_any_active_run_blocks() -> None:
    other = _run("b", T0, "Suspended")
    assert blocking_run(None, [other]) == other
    assert blocking_run(None, []) is None


def test_a_starting_run_gives_way_to_one_that_started_before() -> None:
    gate = _run("b", T0, "Suspended")
    me = _run("a", T0 + timedelta(minutes=5))
    assert blocking_run(me, [gate, me]) == gate


def test_a_run_resuming_from_its_gate_is_not_blocked_by_a_newcomer() -> None:
    me = _run("a", T0)
    newcomer = _run("b", T0 + timedelta(seconds=1))
    assert blocking_run(me, [me, newcomer]) is None
    assert blocking_run(me, [_run("c", None, "Pending")]) is None


def test_two_runs_started_in_the_same_instant_let_exactly_one_go_on() -> None:
    a, b = _run("a", T0), _run("b", T0)
    assert blocking_run(a, [a, b]) is None
    assert blocking_run(b, [a, b]) == a
