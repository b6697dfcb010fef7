"""Pending-update grading and the package-manager parsers' edge cases."""

from __future__ import annotations

import pytest

from upkeep.domain.checks import updates
from upkeep.domain.checks.base import EvalContext, ParseError, Severity, Thresholds
from upkeep.domain.checks.os import OsFacts


def _facts(pending: int, security: int, manager: str = "apt") -> updates.UpdateFacts:
    items = [
        updates.PendingUpdate(name=f"p{i}", version="1", origin="x", security=i < security)
        for i in range(pending)
    ]
    return updates.UpdateFacts(manager=manager, pending=items, security_known=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pending", "expected"), [(0, None), (2, None), (3, Severity.MINOR), (4, Severity.MINOR)]
)
def test_pending_boundaries(pending: int, expected: Severity | None) -> None:
    t = Thresholds(pending_updates_minor=3)
    p, _ = updates.evaluate(_facts(pending, 0), t, EvalContext())
    assert p.severity is expected


@pytest.mark.parametrize(
    ("security", "expected"), [(0, None), (1, None), (2, Severity.MAJOR), (3, Severity.MAJOR)]
)
def test_security_boundaries(security: int, expected: Severity | None) -> None:
    t = Thresholds(security_updates_major=2)
    _, s = updates.evaluate(_facts(5, security), t, EvalContext())
    assert s.severity is expected


def test_release_from_os_facts_in_message() -> None:
    os_facts = OsFacts(
        kernel_name="Linux",
        kernel_release="6.1",
        machine="x86_64",
        id="debian",
        pretty_name="Debian GNU/Linux 12 (bookworm)",
    )
    _, s = updates.evaluate(_facts(2, 1), Thresholds(), EvalContext(facts={"os": os_facts}))
    assert s.message == "1 security update pending on Debian GNU/Linux 12 (bookworm) (major at 1)"
    assert "apt-get upgrade" in s.recommendation


def test_apk_security_unknown_is_not_a_finding() -> None:
    facts = updates.UpdateFacts(
        manager="apk",
        pending=[updates.PendingUpdate(name="musl", version="1", origin="", security=None)],
        security_known=False,
    )
    p, s = updates.evaluate(facts, Thresholds(), EvalContext())
    assert p.severity is Severity.MINOR
    assert s.severity is None and s.value.startswith("unknown")


def test_failed_updateinfo_leaves_security_unknown() -> None:
    facts = updates.parse("@@ security\n@@ security-rc 1\n@@ dnf\n\nbash.x86_64 5.2-1 baseos\n")
    assert not facts.security_known and facts.pending[0].security is None


def test_dnf_exit_100_is_ok() -> None:
    assert 100 in updates.CHECK.ok_exit_codes


def test_dnf_section_without_security_listing_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        updates.parse("@@ dnf\nbash.x86_64 5.2-1 baseos\n")
