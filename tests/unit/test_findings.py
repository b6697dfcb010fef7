"""The pure decision of what one inspection means for a host's open findings."""

from upkeep.domain.checks.base import Severity
from upkeep.domain.findings import REACHABILITY, Observed, reconcile


def obs(check: str, subject: str = "", sev: Severity = Severity.MAJOR) -> Observed:
    return Observed(check, subject, sev, f"{check} {subject}")


def test_new_persisting_and_resolved() -> None:
    open_keys = [("disk", "/"), ("disk", "/var"), ("memory", "")]
    plan = reconcile(open_keys, [obs("disk", "/"), obs("swap")], ["disk", "memory", "swap"])
    assert [o.key for o in plan.new] == [("swap", "")]
    assert list(plan.persisting) == [("disk", "/")]
    assert plan.resolved == [("disk", "/var"), ("memory", "")]


def test_checks_not_evaluated_resolve_nothing() -> None:
    # Host unreachable: only the reachability finding is observed, nothing else was looked at.
    plan = reconcile([("disk", "/")], [obs(REACHABILITY, sev=Severity.CRITICAL)], [])
    assert plan.resolved == []
    assert [o.key for o in plan.new] == [(REACHABILITY, "")]


def test_reachable_again_resolves_reachability() -> None:
    plan = reconcile([(REACHABILITY, "")], [], [REACHABILITY, "disk"])
    assert plan.resolved == [(REACHABILITY, "")]


def test_duplicate_observations_count_once() -> None:
    plan = reconcile([], [obs("disk", "/"), obs("disk", "/")], ["disk"])
    assert len(plan.new) == 1
