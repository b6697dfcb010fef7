"""The interface monitor against a real HTTP service on loopback: probes recorded, one finding
per failing check however often it is probed, resolved when it passes, the customer told of
each change (real SMTP), the daily status computed from the records; TLS verified."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, col, select

from tests.http_service import (  # noqa: F401 (fixtures)
    Answer,
    HttpService,
    http_service_fixture,
    tls_service_fixture,
)
from upkeep.domain.interfaces import INTERFACE_CHECK
from upkeep.flows.interfaces import (
    MonitorOutcome,
    MonitorParams,
    StatusOutcome,
    StatusParams,
    interface_monitor,
    interface_status,
)
from upkeep.models import Finding, InterfaceProbe

pytestmark = pytest.mark.flows


def _systems(url: str, **check: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "shop",
            "smoke_checks": [
                {"name": "orders", "url": f"{url}/health", "body_contains": '"ok"', **check}
            ],
        }
    ]


def _monitor(**params: Any) -> MonitorOutcome:
    state = interface_monitor(
        MonitorParams(contract="ACME", requested_by="tester", **params), return_state=True
    )
    assert state.is_completed(), state.message
    outcome = state.result()
    assert isinstance(outcome, MonitorOutcome)
    return outcome


def _subjects(smtp_server: Any) -> list[str]:
    return [
        str(m.message()["Subject"])
        for m in list(smtp_server.handler.received)
        if "it@acme.example" in m.rcpt_tos
    ]


def _findings(engine) -> list[Finding]:
    with Session(engine) as s:
        return list(
            s.exec(
                select(Finding).where(Finding.check == INTERFACE_CHECK).order_by(col(Finding.id))
            )
        )


def test_down_then_up_one_finding_two_mails_and_the_status_from_the_records(
    engine, load_inventory, http_service: HttpService, smtp_server
) -> None:
    load_inventory([], systems=_systems(http_service.url))

    first = _monitor()
    assert [(r.ok, r.change) for r in first.results] == [(True, None)]
    assert _findings(engine) == [] and _subjects(smtp_server) == []

    http_service.answer = Answer(status=503, body="maintenance")
    down = _monitor()
    assert [(r.ok, r.change, r.status_code) for r in down.results] == [(False, "down", 503)]
    assert "HTTP 503, expected 200" in down.results[0].reason
    again = _monitor()
    assert [r.change for r in again.results] == ["still down"]
    (finding,) = _findings(engine)
    assert finding.status == "open" and finding.severity == "critical"
    assert finding.subject == "shop/orders" and finding.host_id is None
    assert finding.last_seen_run_id == again.run_id and finding.run_id == down.run_id
    assert _subjects(smtp_server) == ["[upkeep] Interfaces of ACME: DOWN: shop/orders"]

    http_service.answer = Answer()
    up = _monitor()
    assert [(r.ok, r.change) for r in up.results] == [(True, "up")]
    (finding,) = _findings(engine)
    assert finding.status == "resolved" and finding.resolved_by_run_id == up.run_id
    assert _subjects(smtp_server)[-1] == "[upkeep] Interfaces of ACME: back up: shop/orders"
    assert http_service.requests == 4

    with Session(engine) as s:
        probes = s.exec(select(InterfaceProbe).order_by(col(InterfaceProbe.id))).all()
    assert [p.ok for p in probes] == [True, False, False, True]
    assert all(p.url == f"{http_service.url}/health" for p in probes)

    state = interface_status(
        StatusParams(contract="ACME", requested_by="tester"), return_state=True
    )
    status = state.result()
    assert isinstance(status, StatusOutcome)
    assert status.headline == "Interfaces of ACME: up now, had outages: shop/orders"
    (row,) = status.rows
    assert (row.probes, row.availability, row.failing_now) == (4, 50.0, False)
    assert len(row.outages) == 1 and "(2 failed probes)" in row.outages[0]
    mail = [m for m in smtp_server.handler.received if "had outages" in m.message()["Subject"]]
    assert len(mail) == 1
    text = mail[0].message().get_body(preferencelist=("plain",)).get_content()
    assert "shop/orders: 50.0% of 4 probes passed" in text


def test_a_slow_answer_and_a_missing_body_text_fail(
    engine, load_inventory, http_service: HttpService, smtp_server
) -> None:
    load_inventory([], systems=_systems(http_service.url, max_latency_ms=50))
    http_service.answer = Answer(delay=0.3)
    (slow,) = _monitor().results
    assert not slow.ok and "slower than 50 ms" in slow.reason
    http_service.answer = Answer(body='{"status":"degraded"}')
    (wrong,) = _monitor().results
    assert not wrong.ok and "the body lacks" in wrong.reason
    assert len(_findings(engine)) == 1  # the same check: one finding


def test_a_self_signed_certificate_is_refused(
    engine, load_inventory, tls_service: HttpService, smtp_server
) -> None:
    load_inventory([], systems=_systems(tls_service.url))
    (result,) = _monitor(email_alerts=False).results
    assert not result.ok and "CERTIFICATE_VERIFY_FAILED" in result.reason, result.reason
    assert tls_service.requests == 0  # nothing was sent over the unverified connection
    assert _subjects(smtp_server) == []


def test_nothing_to_probe_or_an_unknown_system_is_named(
    engine, load_inventory, http_service: HttpService
) -> None:
    load_inventory([])
    state = interface_monitor(MonitorParams(contract="ACME"), return_state=True)
    assert state.is_failed() and "lists no system with smoke checks" in state.message
    load_inventory([], systems=_systems(http_service.url))
    state = interface_monitor(MonitorParams(contract="ACME", systems=["crm"]), return_state=True)
    assert state.is_failed() and "has no system 'crm' (it has: shop)" in state.message
    state = interface_monitor(MonitorParams(contract="NOPE"), return_state=True)
    assert state.is_failed() and "NOPE" in state.message
    assert http_service.requests == 0
