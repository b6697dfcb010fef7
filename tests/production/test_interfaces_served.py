"""The interface monitor as it runs for a customer: ``upkeep serve`` serves the contract's
``interface-monitor`` and ``interface-status`` deployments, the Prefect server's own scheduler
creates their runs, the monitor probes a real HTTP service, and when the service breaks the
customer hears of it from a scheduled run and in the scheduled status."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.http_service import Answer, HttpService, http_service_fixture  # noqa: F401
from tests.polling import wait_until
from tests.production.stack import Api, ServeUpkeep
from upkeep.models import InterfaceProbe, OutboxMessage

pytestmark = pytest.mark.production

SCHEDULER_BOUND = 300
EVERY_MINUTE = {"cron": "* * * * *"}


def completed_scheduled(api: Api, flow: str, name: str) -> list[dict[str, Any]]:
    """The runs of FLOW/NAME the server's scheduler created that completed; one that failed
    fails the test (a refusal while the previous minute's run is still going is allowed)."""
    try:
        dep = api.deployment(flow, name)
    except Exception:  # noqa: BLE001 - upkeep serve registers it a moment after the inspection
        return []
    done = []
    for run in api.runs_of(dep["id"]):
        state = run["state"] or {}
        if not run["auto_scheduled"]:
            continue
        if state.get("type") == "COMPLETED":
            done.append(run)
        elif state.get("type") in ("FAILED", "CRASHED"):
            raise AssertionError(f"scheduled run {run['name']} ended {state}")
    return done


def test_scheduled_probes_tell_the_customer_when_the_interface_breaks(
    serve_upkeep: ServeUpkeep, prod_api: Api, http_service: HttpService
) -> None:
    http_service.answer = Answer(status=503, body="down for maintenance")
    served = serve_upkeep(
        "IFACE",
        systems=[
            {
                "name": "shop",
                "smoke_checks": [{"name": "orders", "url": f"{http_service.url}/health"}],
            }
        ],
        cadences={"interface_monitor": EVERY_MINUTE, "interface_status": EVERY_MINUTE},
    )

    def alert() -> Any:
        return [
            m
            for m in served.mailbox.to("it@customer.example")
            if "Interfaces of IFACE: DOWN: shop/orders" in str(m["Subject"])
        ]

    mail = wait_until("the DOWN mail from a scheduled run", alert, SCHEDULER_BOUND)[0]
    assert "HTTP 503, expected 200" in mail.get_body(preferencelist=("plain",)).get_content()

    def status_says_down() -> Any:
        return [
            m
            for m in served.mailbox.to("it@customer.example")
            if "Interfaces of IFACE: DOWN now: shop/orders" in str(m["Subject"])
        ]

    wait_until("a scheduled status mail saying it is down", status_says_down, SCHEDULER_BOUND)
    # the alert is mailed before its run ends: wait for that run to complete
    (run, *_) = wait_until(
        "a scheduled interface-monitor run to complete",
        lambda: completed_scheduled(prod_api, "interface-monitor", "iface"),
        SCHEDULER_BOUND,
    )
    assert run["parameters"]["params"]["requested_by"] == "schedule"
    engine = sa.create_engine(f"sqlite:///{served.workdir / 'data' / 'upkeep.db'}")
    try:
        with Session(engine) as s:
            probes = s.exec(select(InterfaceProbe)).all()
            queued = [
                m.attempts
                for m in s.exec(select(OutboxMessage))
                if "Interfaces of IFACE: DOWN: shop/orders" in m.subject
            ]
    finally:
        engine.dispose()
    assert probes and all(p.status_code == 503 and not p.ok for p in probes)
    # One alert however many runs saw it down: queued once. The outbox delivers at least
    # once: a second copy in the mailbox only when that message took more than one attempt
    # (the SMTP server accepted it but its answer was lost, on a loaded machine).
    assert len(queued) == 1, queued
    assert len(alert()) == 1 or queued[0] >= len(alert()), (len(alert()), queued)
