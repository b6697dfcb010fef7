"""The OS check reports, it does not judge."""

from __future__ import annotations

from upkeep.domain.checks import os as os_check
from upkeep.domain.checks.base import EvalContext, Thresholds


def test_known_release_has_no_finding() -> None:
    facts = os_check.parse(
        '@@ uname\nLinux 6.1.0-18-amd64 x86_64\n@@ os-release\nID=debian\nVERSION_ID="12"\n'
    )
    ms = os_check.evaluate(facts, Thresholds(), EvalContext())
    assert [m.severity for m in ms] == [None, None]
    assert ms[0].value == "debian 12"
    assert ms[1].value == "Linux 6.1.0-18-amd64 x86_64"


def test_single_quoted_and_commented_os_release() -> None:
    facts = os_check.parse(
        "@@ uname\nLinux 5.15.0 aarch64\n@@ os-release\n"
        "# comment\nPRETTY_NAME='Foo Linux 1'\nID=foo\n"
    )
    assert facts.pretty_name == "Foo Linux 1" and facts.id == "foo"
