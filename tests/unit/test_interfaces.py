"""The interface monitor's pure parts: the smoke check as the inventory writes it, what one
probe means, and the figures over many probes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from upkeep.domain.interfaces import (
    CommandProbe,
    Probe,
    Sample,
    SmokeCheck,
    SystemSpec,
    figures,
    judge,
    percentile,
    status_headline,
    subject,
)

COMMAND_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "smoke_commands"

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


def test_a_command_check_is_split_and_quoted_never_filled_in() -> None:
    check = SmokeCheck(
        name="queue", command="sh -c 'test -s /srv/shop/queue.ok && echo ready' {version} $HOME"
    )
    assert check.runs_on_hosts and check.url is None
    assert (
        check.command_line == "sh -c 'test -s /srv/shop/queue.ok && echo ready' '{version}' '$HOME'"
    )
    assert check.target == check.command_line
    http = SmokeCheck(name="orders", url="https://api.example.com/health")
    assert not http.runs_on_hosts and http.target == "https://api.example.com/health"
    with pytest.raises(ValueError, match="HTTP check, not a command"):
        http.command_line  # noqa: B018 (the property raises)


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        (
            {"command": "pg_isready", "method": "HEAD"},
            ("method",),
            "method is for an HTTP check (url), not a command check: a command check takes "
            "expect_output, expect_exit",
        ),
        ({"command": "pg_isready", "expect_status": 200}, ("expect_status",), "HTTP check"),
        ({"command": "pg_isready", "body_contains": "ok"}, ("body_contains",), "HTTP check"),
        ({"command": "pg_isready", "max_latency_ms": 50}, ("max_latency_ms",), "HTTP check"),
        (
            {"url": "https://a.example/", "expect_output": "ok"},
            ("expect_output",),
            "expect_output is for a command check (command), not an HTTP check",
        ),
        ({"url": "https://a.example/", "expect_exit": 0}, ("expect_exit",), "command check"),
        ({"url": "https://a.example/", "command": "true"}, (), "either url (an HTTP endpoint"),
        ({}, (), "neither is set"),
        ({"command": "psql -c 'select 1"}, ("command",), "cannot be split like a shell line"),
        ({"command": "   "}, ("command",), "at least 1 character"),
        (
            {"command": "env PGPASSWORD=hunter2 psql -Atc 'select 1'"},
            ("command",),
            "must not carry a secret (PGPASSWORD=...)",
        ),
        ({"command": "check --api-key=abc"}, ("command",), "secret (--api-key=...)"),
        (
            {"command": "curl -fsS https://ops:pw@shop.example/health"},
            ("command",),
            "URL with a user or password",
        ),
        ({"command": "true", "expect_exit": 256}, ("expect_exit",), "less than or equal to 255"),
    ],
)
def test_a_check_of_one_kind_refuses_the_other_kinds_fields(
    fields: dict[str, Any], where: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SmokeCheck(name="x", **fields)
    errors = [(e["loc"], e["msg"]) for e in caught.value.errors()]
    assert any(loc == where and message in msg for loc, msg in errors), errors


def test_stored_checks_validate_again_without_the_other_kinds_defaults() -> None:
    shop = SystemSpec(
        name="shop",
        smoke_checks=[
            SmokeCheck(name="db", command="pg_isready -q", expect_exit=0),
            SmokeCheck(name="orders", url="https://shop.example/health"),
        ],
    )
    stored = shop.model_dump(mode="json", exclude_none=True)
    assert set(stored["smoke_checks"][0]) == {
        "name",
        "command",
        "expect_exit",
        "timeout_seconds",
        "severity",
    }
    assert "expect_exit" not in stored["smoke_checks"][1]
    assert stored["smoke_checks"][1]["method"] == "GET"
    assert SystemSpec.model_validate(stored) == shop
    old = {"name": "orders", "url": "https://a.example/", "method": "GET", "expect_status": 200}
    assert SmokeCheck.model_validate(old).expect_status == 200  # stored before command checks


def _command_cases() -> list[Any]:
    cases = []
    for path in sorted(COMMAND_FIXTURES.glob("*.json")):
        data = json.loads(path.read_text())
        for i, expect in enumerate(data["checks"]):
            cases.append(pytest.param(data, expect, id=f"{path.stem}-{i}"))
    return cases


@pytest.mark.parametrize(("fixture", "expect"), _command_cases())
def test_a_command_result_is_judged_on_captured_output(
    fixture: dict[str, Any], expect: dict[str, Any]
) -> None:
    fields = {k: expect[k] for k in ("expect_output", "expect_exit") if k in expect}
    check = SmokeCheck(name="t", command=fixture["command"], **fields)
    stdout = fixture.get("stdout")
    if stdout is None:  # raw bytes, decoded as the SSH layer decodes them
        stdout = bytes.fromhex(fixture["stdout_hex"]).decode("utf-8", errors="replace")
    probed = CommandProbe(
        host="app1",
        exit_code=fixture["exit_code"],
        stdout=stdout,
        stderr=fixture["stderr"],
        latency_ms=None if fixture.get("error") else 12.3,
        error=fixture.get("error"),
        error_kind=fixture.get("error_kind"),
    )
    verdict = judge(check, probed)
    assert verdict.ok is expect["ok"], verdict.reason
    for part in expect["reason"]:
        assert part in verdict.reason, verdict.reason
    assert "app1" in verdict.reason
    assert "\n" not in verdict.reason and "\x1b" not in verdict.reason


def test_a_long_output_is_quoted_short() -> None:
    check = SmokeCheck(name="t", command="journalctl -u shop -n 500", expect_output="Started")
    verdict = judge(check, CommandProbe("app1", 0, "x" * 10_000, "e" * 5000 + "FATAL: disk full"))
    assert not verdict.ok and len(verdict.reason) < 600
    assert "x" * 160 + "…'" in verdict.reason
    assert "'…" in verdict.reason and "FATAL: disk full'" in verdict.reason  # stderr: its end


def test_a_command_subject_names_the_host() -> None:
    assert subject("shop", "queue", "app1") == "shop/queue@app1"
    assert subject("shop", "orders") == "shop/orders"


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
