"""The interface monitor's pure parts: the smoke check as the inventory writes it, what one
probe means, and the figures over many probes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from upkeep.domain.interfaces import (
    Probe,
    Sample,
    SmokeCheck,
    SystemSpec,
    figures,
    judge,
    percentile,
    status_headline,
)

CHECK = SmokeCheck(
    name="orders", url="https://api.example.com/health", body_contains='"status":"ok"'
)
T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def test_a_passing_probe_says_status_and_time() -> None:
    verdict = judge(CHECK, Probe(200, 41.7, '{"status":"ok","db":"up"}'))
    assert verdict.ok and verdict.reason == "HTTP 200 in 42 ms"


@pytest.mark.parametrize(
    ("probe", "reason"),
    [
        (Probe(None, None, error="ConnectError: [Errno 111] Connection refused"), "no answer"),
        (Probe(503, 12.0, "upstream down"), "HTTP 503, expected 200"),
        (Probe(200, 12.0, '{"status":"degraded"}'), "the body lacks"),
        (Probe(200, 2500.0, '{"status":"ok"}'), "slower than 2000 ms"),
    ],
)
def test_each_way_to_fail_is_named(probe: Probe, reason: str) -> None:
    verdict = judge(CHECK, probe)
    assert not verdict.ok and reason in verdict.reason


def test_a_wrong_status_is_reported_before_a_slow_one() -> None:
    assert "expected 200" in judge(CHECK, Probe(500, 9000.0, "")).reason


def test_a_url_with_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="must not carry a user or password"):
        SmokeCheck(name="x", url="https://user:secret@api.example.com/")
    with pytest.raises(ValidationError, match=r"secret in its query \(api_key, X-Auth\)"):
        SmokeCheck(name="x", url="https://api.example.com/health?api_key=abc&X-Auth=1&v=2")
    assert SmokeCheck(name="x", url="https://api.example.com/health?verbose=1&region=eu")


def test_head_with_body_text_is_refused_and_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="HEAD request has no body"):
        SmokeCheck(name="x", url="https://a.example/", method="HEAD", body_contains="ok")
    with pytest.raises(ValidationError, match="unique in a system: a"):
        SystemSpec(
            name="shop",
            smoke_checks=[
                SmokeCheck(name="a", url="https://a.example/"),
                SmokeCheck(name="a", url="https://b.example/"),
            ],
        )
    with pytest.raises(ValidationError, match="url"):
        SmokeCheck(name="x", url="ftp://a.example/")


def test_percentile_is_a_measured_value() -> None:
    assert percentile([], 50) is None
    assert percentile([30.0, 10.0, 20.0], 50) == 20.0
    assert percentile([float(v) for v in range(1, 101)], 95) == 95.0
    assert percentile([5.0], 95) == 5.0


def _samples(pattern: str) -> list[Sample]:
    """One sample a minute: ``.`` passed (latency 10 + i ms), ``x`` failed."""
    return [
        Sample(T0 + timedelta(minutes=i), c == ".", 10.0 + i if c == "." else None)
        for i, c in enumerate(pattern)
    ]


def test_figures_count_outages_from_first_failure_to_recovery() -> None:
    f = figures(list(reversed(_samples("..xx..x.."))))  # order of the records does not matter
    assert (f.probes, f.passed, f.availability) == (9, 6, 66.67)
    assert [(o.start, o.end, o.probes) for o in f.outages] == [
        (T0 + timedelta(minutes=2), T0 + timedelta(minutes=4), 2),
        (T0 + timedelta(minutes=6), T0 + timedelta(minutes=7), 1),
    ]
    assert not f.failing_now
    assert f.max_ms == 18.0 and f.p50_ms == 14.0  # of the passing probes only


def test_a_check_failing_at_the_end_is_down_now() -> None:
    f = figures(_samples("..xx"))
    assert f.failing_now and f.outages[-1].end is None
    empty = figures([])
    assert empty.availability is None and empty.p50_ms is None and not empty.failing_now


def test_the_headline_puts_the_worst_first() -> None:
    assert status_headline("ACME", [], [], []) == "Interfaces of ACME: all working"
    assert "DOWN now: shop/orders" in status_headline("ACME", ["shop/orders"], ["b/c"], ["d/e"])
    assert "NOT PROBED: d/e" in status_headline("ACME", [], ["b/c"], ["d/e"])
    assert "up now, had outages: b/c" in status_headline("ACME", [], ["b/c"], [])


def _contract(systems: tuple[SystemSpec, ...], cadences: dict[str, Any]) -> Any:
    from upkeep.domain.contract import ContractView

    return ContractView(
        id=1, code="ACME", name="ACME ops", customer_id=1, systems=systems, cadences=cadences
    )


SHOP = SystemSpec(name="shop", smoke_checks=[CHECK])
EVERY_5 = {"cron": "*/5 * * * *"}


def test_a_monitored_contract_gets_the_monitor_and_a_daily_status() -> None:
    from upkeep.deployments import to_runner_deployment
    from upkeep.domain.processes import specs_for, unsupported

    contract = _contract((SHOP,), {"interface_monitor": EVERY_5})
    specs = {s.process: s for s in specs_for(contract)}
    assert specs["interface_monitor"].cadence == EVERY_5
    assert specs["interface_monitor"].parameters == {
        "params": {"contract": "ACME", "requested_by": "schedule", "email_alerts": True}
    }
    assert specs["interface_status"].cadence == "daily, 08:00"
    assert unsupported(contract) == []
    monitor = to_runner_deployment(specs["interface_monitor"])
    assert monitor.flow_name == "interface-monitor" and monitor.schedules
    assert to_runner_deployment(specs["interface_status"]).flow_name == "interface-status"


def test_interface_cadences_without_checks_or_monitor_are_named_not_dropped() -> None:
    from upkeep.domain.processes import specs_for, unsupported

    bare = _contract((), {"interface_monitor": EVERY_5})
    assert "interface_monitor" not in {s.process for s in specs_for(bare)}
    assert unsupported(bare) == ["interface_monitor"]
    status_only = _contract((SHOP,), {"interface_status": "daily, 07:00"})
    assert not {"interface_monitor", "interface_status"} & {
        s.process for s in specs_for(status_only)
    }
    assert unsupported(status_only) == ["interface_status"]


def test_repeated_names_are_found_once_each() -> None:
    from upkeep.domain.naming import repeated

    assert repeated(["b", "a", "b", "c", "a", "b"]) == ["a", "b"]
    assert repeated([]) == [] and repeated(["x", "y"]) == []
