"""Every captured output under tests/fixtures/checks parses to its recorded facts."""

from __future__ import annotations

import pytest

from upkeep.domain.checks import CHECKS_BY_NAME
from upkeep.domain.checks.base import Severity

from ._support import Fixture, all_fixtures, run

FIXTURES = all_fixtures()
REQUIRED_KEYS = {"command", "os", "source", "exit_code", "stdout", "expected"}


def test_fixtures_exist_for_every_check() -> None:
    covered = {f.check for f in FIXTURES}
    assert covered == set(CHECKS_BY_NAME)


@pytest.mark.parametrize("check", sorted(CHECKS_BY_NAME))
def test_every_check_has_an_unparsable_fixture(check: str) -> None:
    assert any(f.data.get("expected_parse_error") for f in FIXTURES if f.check == check)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.id)
def test_fixture_is_well_formed(fixture: Fixture) -> None:
    assert set(fixture.data) >= REQUIRED_KEYS
    assert fixture.data["source"] and fixture.data["os"]


@pytest.mark.parametrize(
    "fixture", [f for f in FIXTURES if f.data["expected"] is not None], ids=lambda f: f.id
)
def test_parse_matches_expected(fixture: Fixture) -> None:
    facts = CHECKS_BY_NAME[fixture.check].parse(fixture.data["stdout"])
    assert facts.model_dump(mode="json") == fixture.data["expected"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.id)
def test_outcome_matches_fixture(fixture: Fixture) -> None:
    data = fixture.data
    outcome = run(fixture.check, data["stdout"], data["exit_code"], fixture.thresholds)
    if "expected_skip" in data:
        assert outcome.skipped == data["expected_skip"]
        assert outcome.findings == []
    elif data.get("expected_parse_error"):
        assert outcome.facts is None
        [finding] = outcome.findings
        assert finding.severity is Severity.INFO
        assert "could not parse" in finding.message
    else:
        assert outcome.skipped is None
        assert outcome.facts == data["expected"]
    if data["expected"] is not None:
        # A parsed fixture without expected_findings asserts that nothing is wrong.
        got = [
            {"subject": m.subject, "severity": m.severity.value}
            for m in outcome.findings
            if m.severity is not None
        ]
        assert got == data.get("expected_findings", [])


@pytest.mark.parametrize(
    "fixture", [f for f in FIXTURES if f.data["expected"] is not None], ids=lambda f: f.id
)
def test_findings_have_message_and_recommendation(fixture: Fixture) -> None:
    outcome = run(
        fixture.check, fixture.data["stdout"], fixture.data["exit_code"], fixture.thresholds
    )
    for m in outcome.findings:
        assert m.message
        if m.severity is not Severity.INFO:
            assert m.recommendation
