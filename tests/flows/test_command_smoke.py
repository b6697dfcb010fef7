"""Smoke checks that run a command on the system's hosts, against real sshd hosts on loopback
(this machine): each host's run recorded and judged on its own, a host that cannot be reached
or whose key is not trusted a failed probe naming it, one finding per failing host resolved
when it passes again, the figures per host; and the release's smoke checks on its own target
hosts only."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from tests.flow_fixtures import host_entry
from tests.http_service import HttpService, http_service_fixture  # noqa: F401 (fixture)
from tests.release_app import declare_now
from upkeep.demo.sshd import ThrowawaySshd
from upkeep.domain.interfaces import INTERFACE_CHECK
from upkeep.flows.interfaces import (
    MonitorOutcome,
    MonitorParams,
    StatusOutcome,
    StatusParams,
    interface_monitor,
    interface_status,
)
from upkeep.models import Contract, Finding, InterfaceProbe, ReleaseStep
from upkeep.tasks.records import start_run
from upkeep.tasks.release_run import smoke

pytestmark = pytest.mark.flows

STATUS = """#!/bin/sh
# app-status --brief: what the shop instance behind this sshd says about itself (one state
# file per sshd port: every test host is this machine, each answers for itself)
exec cat "$(dirname "$0")/state-${SSH_CONNECTION##* }"
"""


@pytest.fixture
def app_status(tmp_path: Path) -> Callable[[ThrowawaySshd, str], None]:
    """The status command's script; ``say(server, text)`` sets what it prints on that host."""
    (tmp_path / "app-status").write_text(STATUS)
    (tmp_path / "app-status").chmod(0o755)

    def say(server: ThrowawaySshd, text: str) -> None:
        (tmp_path / f"state-{server.port}").write_text(text)

    return say


def _status_check(tmp_path: Path) -> dict[str, Any]:
    return {
        "name": "status",
        "command": f"{tmp_path / 'app-status'} --brief",
        "expect_output": "healthy",
        "severity": "major",
    }


def _load(
    load_inventory,
    sshd_servers: list[ThrowawaySshd],
    checks: list[dict[str, Any]],
    with_app3: bool = False,
) -> None:
    """app1 and app2 trusted, ``gone`` a closed port, ``untrusted`` a host whose key is not
    trusted (all of system shop); ``db1`` of another system; ``app3`` (trusted) on request."""
    a, b, c = sshd_servers
    hosts = [
        host_entry("app1", a, system="shop"),
        host_entry("app2", b, system="shop"),
        host_entry("gone", None, system="shop"),
        host_entry("untrusted", c, system="shop"),
        host_entry("db1", a, system="crm", address="localhost"),  # never probed here
    ]
    if with_app3:
        hosts.append(host_entry("app3", c, system="shop"))
        hosts = [h for h in hosts if h["name"] != "untrusted"]
    load_inventory(
        hosts,
        trust=[a, b, c] if with_app3 else [a, b],
        systems=[
            {
                "name": "shop",
                "smoke_checks": checks,
                "release": {
                    "release_command": "true {version}",
                    "rollback_command": "true",
                    "checklist": [{"name": "smoke", "kind": "automatic", "check": "smoke_checks"}],
                },
            },
            {"name": "crm", "smoke_checks": [{"name": "up", "command": "true"}]},
        ],
    )


def _monitor(**params: Any) -> MonitorOutcome:
    state = interface_monitor(
        MonitorParams(contract="ACME", requested_by="tester", **params), return_state=True
    )
    assert state.is_completed(), state.message
    outcome = state.result()
    assert isinstance(outcome, MonitorOutcome)
    return outcome


def _findings(engine) -> dict[str, Finding]:
    with Session(engine) as s:
        rows = s.exec(
            select(Finding).where(Finding.check == INTERFACE_CHECK).order_by(col(Finding.id))
        )
        return {f.subject: f for f in rows}


def _subjects(smtp_server: Any) -> list[str]:
    return [
        str(m.message()["Subject"])
        for m in list(smtp_server.handler.received)
        if "it@acme.example" in m.rcpt_tos
    ]


def test_a_command_check_runs_on_every_host_each_judged_recorded_and_resolved(
    engine,
    load_inventory,
    sshd_servers: list[ThrowawaySshd],
    app_status,
    http_service: HttpService,
    smtp_server,
    tmp_path: Path,
) -> None:
    a, b, _ = sshd_servers
    app_status(a, "shop: healthy (3 workers)\n")
    app_status(b, "shop: degraded (queue stalled)\n")
    orders = {"name": "orders", "url": f"{http_service.url}/health", "body_contains": '"ok"'}
    _load(load_inventory, sshd_servers, [orders, _status_check(tmp_path)])

    down = _monitor(systems=["shop"])
    seen = {r.interface: r for r in down.results}
    assert list(seen) == [
        "shop/orders",
        "shop/status@app1",
        "shop/status@app2",
        "shop/status@gone",
        "shop/status@untrusted",
    ]
    assert seen["shop/orders"].ok and seen["shop/status@app1"].ok
    assert seen["shop/status@app1"].reason.startswith("exit 0 on app1 in ")
    wrong = seen["shop/status@app2"]
    assert not wrong.ok and wrong.change == "down"
    assert "on app2 but the output lacks 'healthy'" in wrong.reason
    assert "output 'shop: degraded (queue stalled)'" in wrong.reason
    gone = seen["shop/status@gone"]
    assert not gone.ok and gone.reason.startswith("could not run on gone: gone (127.0.0.1:")
    assert "connection refused" in gone.reason
    untrusted = seen["shop/status@untrusted"]
    assert "could not run on untrusted" in untrusted.reason
    assert "host key is not trusted" in untrusted.reason
    command_line = shlex.join([str(tmp_path / "app-status"), "--brief"])
    assert all(r.url == command_line for r in down.results[1:])

    findings = _findings(engine)
    assert set(findings) == {"shop/status@app2", "shop/status@gone", "shop/status@untrusted"}
    app2 = findings["shop/status@app2"]
    assert app2.severity == "major" and app2.host_id is None and app2.status == "open"
    assert f"`{command_line}` on app2 at " in app2.evidence
    assert "upkeep hosts trust" in findings["shop/status@untrusted"].recommendation
    assert _subjects(smtp_server) == [
        "[upkeep] Interfaces of ACME: DOWN: shop/status@app2, shop/status@gone, "
        "shop/status@untrusted"
    ]

    with Session(engine) as s:
        probes = s.exec(select(InterfaceProbe).order_by(col(InterfaceProbe.id))).all()
    assert [(p.host, p.ok, p.status_code) for p in probes] == [
        ("", True, 200),
        ("app1", True, None),
        ("app2", False, None),
        ("gone", False, None),
        ("untrusted", False, None),
    ]
    assert probes[1].latency_ms is not None and probes[3].latency_ms is None

    app_status(b, "shop: healthy (2 workers)\n")
    up = _monitor(systems=["shop"])
    assert [(r.interface, r.ok, r.change) for r in up.results[1:]] == [
        ("shop/status@app1", True, None),
        ("shop/status@app2", True, "up"),
        ("shop/status@gone", False, "still down"),
        ("shop/status@untrusted", False, "still down"),
    ]
    findings = _findings(engine)
    assert findings["shop/status@app2"].status == "resolved"
    assert findings["shop/status@app2"].resolved_by_run_id == up.run_id
    assert findings["shop/status@gone"].status == "open"
    assert _subjects(smtp_server)[-1] == "[upkeep] Interfaces of ACME: back up: shop/status@app2"

    state = interface_status(
        StatusParams(contract="ACME", requested_by="tester", email_report=False),
        return_state=True,
    )
    status = state.result()
    assert isinstance(status, StatusOutcome)
    rows = {r.interface: r for r in status.rows}
    assert (rows["shop/status@app1"].probes, rows["shop/status@app1"].availability) == (2, 100.0)
    assert rows["shop/status@app1"].p50_ms is not None  # the command's run time
    app2_row = rows["shop/status@app2"]
    assert (app2_row.probes, app2_row.availability, app2_row.failing_now) == (2, 50.0, False)
    assert len(app2_row.outages) == 1
    assert rows["shop/status@gone"].failing_now and rows["shop/status@gone"].p50_ms is None
    assert rows["crm/up@db1"].probes == 0  # crm was not probed: each host of it is listed
    assert status.headline.startswith(
        "Interfaces of ACME: DOWN now: shop/status@gone, shop/status@untrusted"
    )


def test_a_command_check_without_hosts_fails_saying_so(
    engine, load_inventory, sshd_servers: list[ThrowawaySshd], tmp_path: Path
) -> None:
    load_inventory(
        [host_entry("app1", sshd_servers[0], system="shop")],
        trust=[sshd_servers[0]],
        systems=[{"name": "crm", "smoke_checks": [_status_check(tmp_path)]}],
    )
    (result,) = _monitor(email_alerts=False).results
    assert not result.ok and result.interface == "crm/status"
    assert result.reason == "could not run on no host: the system has no active host to run it on"


def test_the_release_runs_command_checks_on_its_target_hosts_only(
    engine,
    load_inventory,
    sshd_servers: list[ThrowawaySshd],
    app_status,
    smtp_server,
    tmp_path: Path,
) -> None:
    a, b, c = sshd_servers
    app_status(a, "shop: healthy\n")
    app_status(b, "shop: degraded\n")
    app_status(c, "shop: healthy\n")
    _load(load_inventory, sshd_servers, [_status_check(tmp_path)])
    rid = declare_now(engine, tmp_path, "2.0")  # targets app1, app2, gone, untrusted
    _load(load_inventory, sshd_servers, [_status_check(tmp_path)], with_app3=True)
    with Session(engine) as s:
        contract = s.exec(select(Contract)).one()
        run = start_run(session=s, contract=contract, kind="release", requested_by="tester")
        s.commit()
        run_id = run.id
    assert run_id is not None

    ok, summary = smoke(rid, run_id, "smoke-canary")
    assert not ok
    assert summary.startswith("status@app1: ok (exit 0 on app1 in ")
    assert "status@app2: FAILED (exit 0 on app2 but the output lacks 'healthy'" in summary
    assert "status@gone: FAILED (could not run on gone:" in summary
    assert "app3" not in summary and "untrusted" not in summary  # not a target / deactivated
    with Session(engine) as s:
        probes = s.exec(select(InterfaceProbe).where(InterfaceProbe.run_id == run_id)).all()
        (step,) = s.exec(select(ReleaseStep).where(ReleaseStep.release_id == rid)).all()
    assert sorted(p.host for p in probes) == ["app1", "app2", "gone"]
    assert step.step == "smoke-canary" and not step.ok
