"""Listening-port grading against the contract's allowed list."""

from __future__ import annotations

from upkeep.domain.checks import ports
from upkeep.domain.checks.base import EvalContext, Severity, Thresholds

FACTS = ports.PortFacts(
    tool="ss",
    listeners=[
        ports.Listener(address="0.0.0.0", port=22),
        ports.Listener(address="127.0.0.1", port=5432),
        ports.Listener(address="::", port=8080),
    ],
)


def test_no_allowed_list_means_no_findings() -> None:
    ms = ports.evaluate(FACTS, Thresholds(), EvalContext())
    assert [m.subject for m in ms] == ["tcp/22", "tcp/5432", "tcp/8080"]
    assert all(m.severity is None for m in ms)


def test_unexpected_exposed_port_is_minor_loopback_is_not() -> None:
    ms = ports.evaluate(FACTS, Thresholds(allowed_tcp_ports=[22]), EvalContext())
    assert {m.subject: m.severity for m in ms} == {
        "tcp/22": None,
        "tcp/5432": None,
        "tcp/8080": Severity.MINOR,
    }


def test_address_forms() -> None:
    facts = ports.parse(
        "@@ ss\nLISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*\nLISTEN 0 128 [::1]:631 [::]:*\n"
        "LISTEN 0 128 [fe80::1%eth0]:123 [::]:*\n"
    )
    assert [(lst.address, lst.port) for lst in facts.listeners] == [
        ("127.0.0.53", 53),
        ("fe80::1", 123),
        ("::1", 631),
    ]
