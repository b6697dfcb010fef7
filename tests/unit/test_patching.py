"""The patch cycle's pure decisions: the analysis, the plan's hash, revisions, closure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from upkeep.domain.advisories import Installed, Match
from upkeep.domain.patching import (
    HostPlan,
    PatchPlan,
    PlanItem,
    apply_revision,
    closures,
    fault_statistics,
    plan_host,
    plan_updates,
    predict_restart,
    render_plan_markdown,
    worst_severity,
)


def m(
    package: str,
    advisory: str,
    fixed: str | None,
    installed: str = "1.0-1",
    source: str = "",
    severity: str | None = None,
) -> Match:
    return Match(
        advisory=advisory,
        ecosystem="Debian:12",
        package=package,
        installed_version=installed,
        source=source or package,
        compared_name=source or package,
        compared_version=installed,
        fixed_version=fixed,
        severity=severity,
    )


def host(matches, candidates, stage="production"):
    return plan_host("web1", 1, stage, "Debian:12", "dpkg", matches, candidates)


def test_the_target_is_the_candidate_when_it_fixes_every_advisory():
    planned, missing = host(
        [
            m("libssl3", "DSA-1", "3.0.2-1", "3.0.1-1", "openssl", "low"),
            m("libssl3", "DSA-2", "3.0.3-1", "3.0.1-1", "openssl", "high"),
        ],
        {"libssl3": "3.0.3-1"},
    )
    (item,) = planned.items
    assert (item.installed, item.target, item.fixed) == ("3.0.1-1", "3.0.3-1", "3.0.3-1")
    assert item.advisories == ["DSA-1", "DSA-2"] and item.severity == "high"
    assert item.restart == "services" and missing == []


@pytest.mark.parametrize(
    ("candidate", "fixed", "why"),
    [
        (None, "1.1-1", "offer no version"),
        ("1.0-5", "1.1-1", "below the fix 1.1-1"),
        ("1.2-1", None, "no fix published yet for DSA-1"),
        # dpkg order, not strings: 1.10 is above 1.9, so the candidate 1.9 is below the fix.
        ("1.9-1", "1.10-1", "below the fix 1.10-1"),
    ],
)
def test_an_advisory_without_an_installable_fix_is_told_not_planned(candidate, fixed, why):
    planned, (missing,) = host([m("pkg", "DSA-1", fixed)], {"pkg": candidate})
    assert planned.items == [] and why in missing.why


def test_epochs_count_in_the_candidate_check():
    planned, missing = host([m("pkg", "DSA-1", "1:1.0-1", "1:0.9-1")], {"pkg": "2.0-1"})
    assert planned.items == [] and "below the fix" in missing[0].why


@pytest.mark.parametrize(
    ("package", "source", "restart"),
    [
        ("linux-image-6.1.0-18-amd64", "linux-signed-amd64", "reboot"),
        ("libc6", "glibc", "reboot"),
        ("systemd", "systemd", "reboot"),
        ("kernel-core", "kernel", "reboot"),
        ("linux-lts", "linux-lts", "reboot"),  # Alpine's kernels and C library
        ("musl", "musl", "reboot"),
        ("libssl3", "openssl", "services"),
        ("openssl", "openssl", "services"),
        ("nginx-core", "nginx", "package"),
    ],
)
def test_restart_or_reboot_is_predicted_from_the_package(package, source, restart):
    assert predict_restart(package, source)[0] == restart


def test_worst_severity_prefers_words_over_vectors():
    assert worst_severity(["low", "CVSS_V3 AV:N", "high"]) == "high"
    assert worst_severity([None, "CVSS_V3 AV:N"]) == "CVSS_V3 AV:N"
    assert worst_severity([None]) is None


def _plan(*hosts: HostPlan) -> PatchPlan:
    return PatchPlan(
        contract="ACME",
        contract_id=1,
        contract_name="ACME ops",
        customer="ACME",
        timezone="UTC",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        hosts=list(hosts),
    )


def item(package: str, installed: str = "1.0-1", target: str = "1.1-1", restart="package"):
    return PlanItem(
        package=package,
        installed=installed,
        target=target,
        fixed=target,
        advisories=["DSA-1"],
        restart=restart,
    )


def hp(name: str, *items: PlanItem, stage="production") -> HostPlan:
    return HostPlan(
        host=name,
        host_id=hash(name) % 1000,
        stage=stage,
        ecosystem="Debian:12",
        family="dpkg",
        items=list(items),
    )


def test_the_hash_covers_exactly_what_would_change():
    a = _plan(hp("web1", item("curl"), item("bash")), hp("db1", item("curl")))
    same = _plan(hp("db1", item("curl")), hp("web1", item("bash"), item("curl")))
    assert a.digest() == same.digest() and a.digest().startswith("sha256:")
    other_target = _plan(
        hp("web1", item("curl", target="1.2-1"), item("bash")), hp("db1", item("curl"))
    )
    assert other_target.digest() != a.digest()
    # Notes and revision numbers are not what is installed: they do not change the hash.
    assert a.model_copy(update={"notes": ["x"], "revision": 3}).digest() == a.digest()


def test_staging_hosts_come_first():
    plan = _plan(hp("a-prod", item("x")), hp("z-stage", item("x"), stage="staging"), hp("empty"))
    assert [h.host for h in plan.ordered_hosts()] == ["z-stage", "a-prod"]


@dataclass
class Rev:
    engineer: str = "Eve"
    drop_hosts: list[str] = None  # type: ignore[assignment]
    drop_packages: list[str] = None  # type: ignore[assignment]
    defer: list[str] = None  # type: ignore[assignment]
    note: str = ""

    def __post_init__(self):
        self.drop_hosts = self.drop_hosts or []
        self.drop_packages = self.drop_packages or []
        self.defer = self.defer or []


def test_a_revision_drops_and_defers_and_gets_a_new_hash():
    plan = _plan(hp("web1", item("curl"), item("bash")), hp("db1", item("curl")))
    revised = apply_revision(plan, Rev(drop_hosts=["db1"], defer=["web1:bash"], note="after sale"))
    assert [(h.host, [i.package for i in h.items]) for h in revised.hosts] == [("web1", ["curl"])]
    assert [(d.host, d.package, d.reason) for d in revised.deferred] == [
        ("web1", "bash", "after sale")
    ]
    assert revised.revision == 2 and revised.digest() != plan.digest()
    assert "dropped hosts db1" in revised.notes[-1]


@pytest.mark.parametrize(
    ("rev", "error"),
    [
        (Rev(drop_hosts=["nope"]), "not in the plan: nope"),
        (Rev(drop_packages=["db1:bash"]), "not in the plan: db1:bash"),
        (Rev(), "changes nothing"),
    ],
)
def test_a_revision_naming_what_is_not_in_the_plan_is_refused(rev, error):
    plan = _plan(hp("web1", item("curl"), item("bash")), hp("db1", item("curl")))
    with pytest.raises(ValueError, match=error):
        apply_revision(plan, rev)


def test_closure_needs_the_target_and_no_remaining_match():
    h = hp("web1", item("curl"), item("bash"), item("zsh"))
    proof = closures(
        h, {"curl": "1.1-1", "bash": "1.0-1", "zsh": "1.1-1"}, [m("zsh", "DSA-1", "1.2-1", "1.1-1")]
    )
    assert [(c.package, c.closed) for c in proof] == [
        ("curl", True),
        ("bash", False),
        ("zsh", False),
    ]
    assert "below 1.1-1" in proof[1].detail and "still affected" in proof[2].detail


def test_responsive_updates_need_no_advisory():
    installed = [Installed("nginx", "1.22-1", source="nginx"), Installed("curl", "7.88-1")]
    planned = plan_updates(
        "web1",
        1,
        "production",
        "Debian:12",
        "dpkg",
        installed,
        {"nginx": "1.22-2", "curl": "7.88-1"},
        [m("nginx", "DSA-9", "1.22-2", "1.22-1")],
    )
    assert [(i.package, i.target, i.advisories) for i in planned.items] == [
        ("nginx", "1.22-2", ["DSA-9"])
    ]


def test_fault_statistics_rank_hosts_and_recurring_problems():
    @dataclass
    class F:
        host_id: int | None
        check: str
        severity: str = "major"

    stats = fault_statistics(
        [F(1, "disk"), F(1, "disk"), F(2, "load"), F(1, "ntp"), F(9, "disk")],
        {1: "web1", 2: "db1"},
    )
    assert stats.findings == 5
    assert stats.by_host[0] == ("web1", 3)
    assert stats.recurring == [("web1", "disk", 2)]
    assert ("host #9", 1) in stats.by_host


def test_the_plan_for_the_approver_escapes_inventory_text():
    plan = _plan(hp("web1", item("<b>x</b>"))).model_copy(update={"customer": "*ACME*"})
    text = render_plan_markdown(plan)
    assert "<b>" not in text and "\\*ACME\\*" in text
    assert plan.digest() in text
