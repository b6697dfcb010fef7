"""The inspection's pure decisions: the window, who approves, how a revision changes the plan,
what a re-check targets and how its difference reads."""

from __future__ import annotations

from datetime import date

import pytest

from upkeep.domain.findings import REACHABILITY, severity_rank
from upkeep.domain.inspection import (
    HostTarget,
    InspectionPlan,
    PlanHost,
    apply_revision,
    default_window,
    plan_needs_approval,
    quarter_of,
    recheck_targets,
    render_recheck_markdown,
)
from upkeep.flows.inspection_gate import PlanRevision
from upkeep.models import Finding

WEB = PlanHost(id=1, name="web-1", address="10.0.0.5", port=22, role="web", tags=["prod"])
DB = PlanHost(id=2, name="db-1", address="10.0.0.6", port=2222, role="db", tags=["prod"])
MAIL = PlanHost(id=3, name="mail-1", address="10.0.0.7", port=22)
ALL = [DB, MAIL, WEB]


def plan(**changes: object) -> InspectionPlan:
    base = InspectionPlan(
        contract="ACME",
        contract_id=1,
        contract_name="ACME main",
        customer="ACME GmbH",
        timezone="Europe/Berlin",
        window="2026-Q4 (2026-10-01 – 2026-12-31)",
        hosts=list(ALL),
        checks=[("disk", "Disk use"), ("load", "Load")],
        thresholds={},
        approvers=[{"name": "Alice", "email": "alice@acme.example"}],
        requires_approval=True,
    )
    return base.model_copy(update=changes)


def revision(**fields: object) -> PlanRevision:
    return PlanRevision(**{"action": "resubmit", "engineer": "Paul", **fields})  # type: ignore[arg-type]


def finding(host_id: int | None, check: str, subject: str = "", severity: str = "major") -> Finding:
    return Finding(
        contract_id=1,
        host_id=host_id,
        run_id=7,
        check=check,
        subject=subject,
        severity=severity,
        message=f"{check} {subject}",
        last_seen_run_id=7,
    )


# --- window and approval -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "quarter", "window"),
    [
        (date(2026, 1, 1), "2026-Q1", "2026-Q1 (2026-01-01 – 2026-03-31)"),
        (date(2026, 5, 17), "2026-Q2", "2026-Q2 (2026-04-01 – 2026-06-30)"),
        (date(2026, 9, 30), "2026-Q3", "2026-Q3 (2026-07-01 – 2026-09-30)"),
        (date(2026, 12, 31), "2026-Q4", "2026-Q4 (2026-10-01 – 2026-12-31)"),
    ],
)
def test_quarter_and_default_window(day: date, quarter: str, window: str) -> None:
    assert quarter_of(day) == quarter
    assert default_window(day) == window


def test_the_run_overrides_the_contract_on_approval() -> None:
    assert plan_needs_approval(True, None) is True
    assert plan_needs_approval(False, None) is False
    assert plan_needs_approval(True, False) is False
    assert plan_needs_approval(False, True) is True


def test_plan_targets_every_host_with_the_whole_catalogue() -> None:
    assert plan(hosts=[WEB, DB]).targets() == [
        HostTarget(id=1, name="web-1"),
        HostTarget(id=2, name="db-1"),
    ]


# --- revision ------------------------------------------------------------------------------------


def test_revision_excludes_hosts_changes_window_and_counts_up() -> None:
    revised = apply_revision(
        plan(), revision(exclude_hosts=["mail-1"], window=" 2026-11-02 ", note=" mail moves "), ALL
    )
    assert revised.host_names() == ["db-1", "web-1"]
    assert revised.excluded == ["mail-1"]
    assert revised.window == "2026-11-02"
    assert revised.revision == 2
    assert revised.notes == ["rev 2 by Paul: mail moves"]


def test_exclusions_add_up_and_an_inclusion_brings_a_host_back_in_the_first_order() -> None:
    first = apply_revision(plan(), revision(exclude_hosts=["db-1"]), ALL)
    second = apply_revision(first, revision(exclude_hosts=["web-1"], include_hosts=["db-1"]), ALL)
    assert second.host_names() == ["db-1", "mail-1"]
    assert second.excluded == ["web-1"]
    assert second.window == plan().window
    assert second.notes == ["rev 2 by Paul: revised", "rev 3 by Paul: revised"]


def test_revision_naming_an_unknown_host_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown host\\(s\\): nope, zzz"):
        apply_revision(plan(), revision(exclude_hosts=["zzz"], include_hosts=["nope"]), ALL)


def test_revision_leaving_no_host_is_refused() -> None:
    with pytest.raises(ValueError, match="leaves no host"):
        apply_revision(plan(), revision(exclude_hosts=["web-1", "db-1", "mail-1"]), ALL)


def test_revision_replayed_from_its_record_gives_the_same_plan() -> None:
    answer = revision(exclude_hosts=["web-1"], note="web is frozen")
    recorded = PlanRevision.model_validate_json(answer.model_dump_json())
    assert apply_revision(plan(), recorded, ALL) == apply_revision(plan(), answer, ALL)


# --- re-check ------------------------------------------------------------------------------------


NAMES = {1: "web-1", 2: "db-1", 3: "mail-1"}


def test_recheck_targets_the_checks_with_open_findings_hosts_by_name() -> None:
    targets = recheck_targets(
        [
            finding(1, "disk", "/var"),
            finding(2, "load"),
            finding(1, "disk", "/"),
            finding(1, "ntp"),
        ],
        NAMES,
    )
    assert targets == [
        HostTarget(id=2, name="db-1", checks=["load"]),
        HostTarget(id=1, name="web-1", checks=["disk", "ntp"]),
    ]


def test_an_unreachable_host_is_rechecked_whole() -> None:
    targets = recheck_targets(
        [finding(3, REACHABILITY, severity="critical"), finding(3, "disk")], NAMES
    )
    assert targets == [HostTarget(id=3, name="mail-1", checks=None)]


def test_backup_findings_and_inactive_hosts_are_not_rechecked_here() -> None:
    assert recheck_targets([finding(None, "backup", "shop"), finding(9, "disk")], NAMES) == []
    assert recheck_targets([], NAMES) == []


def test_recheck_difference_escapes_and_names_hosts() -> None:
    resolved = [finding(1, "disk", "/var|tmp")]
    still = [finding(2, "load", severity="critical"), finding(None, "backup", "shop")]
    text = render_recheck_markdown("ACME_1", 12, resolved, still, NAMES)
    lines = text.splitlines()
    assert lines[0] == "## Re-check of ACME\\_1 (run 12)"
    assert lines[2] == "**Resolved:** 1 · **still open:** 2"
    assert lines[4].startswith("- resolved: web-1 disk /var")
    assert "|" not in lines[4].replace("\\|", "")
    assert lines[5] == "- open: db-1 load  (critical)"
    assert lines[6].startswith("- open: ") and "backup shop" in lines[6]


# --- severity ------------------------------------------------------------------------------------


def test_severity_rank_worst_first_unknown_last() -> None:
    ranked = sorted(["info", "bogus", "critical", "minor", None, "major"], key=severity_rank)
    assert ranked[:4] == ["critical", "major", "minor", "info"]
    assert set(ranked[4:]) == {"bogus", None}
