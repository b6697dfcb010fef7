"""Deployments built from the inventory: per active contract, its inspection and re-check;
and the approval watchdog on an interval.

``upkeep serve`` serves them in one process (the single-machine way). Runs started from a
deployment send the report by e-mail: that is where sending is switched on.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from models import Contract


def deployment_name(contract_code: str) -> str:
    return contract_code.lower()


def build_deployments(session: Session) -> list[Any]:
    """One inspection and one re-check deployment per active contract (no schedule yet)."""
    from flows.inspection import quarterly_health_inspection, recheck_findings

    processes: list[tuple[Any, str]] = [
        (quarterly_health_inspection, "Quarterly health inspection of {}"),
        (recheck_findings, "Re-check of open findings of {}"),
    ]
    deps: list[Any] = []
    contracts = session.exec(
        select(Contract).where(Contract.active == True).order_by(Contract.code)  # noqa: E712
    ).all()
    for contract in contracts:
        params = {"contract": contract.code, "email_report": True, "requested_by": "deployment"}
        for flow_obj, description in processes:
            deps.append(
                flow_obj.to_deployment(
                    name=deployment_name(contract.code),
                    parameters={"params": params},
                    tags=["upkeep", f"contract:{contract.code}"],
                    description=description.format(contract.name),
                )
            )
    from flows.watchdog import approval_watchdog
    from upkeep.settings import get_settings

    deps.append(
        approval_watchdog.to_deployment(
            name="upkeep",
            interval=get_settings().watchdog_minutes * 60,
            tags=["upkeep"],
            description="Escalates and expires approval gates that wait too long",
        )
    )
    return deps


def serve_all(deps: list[Any]) -> None:
    from prefect import serve

    serve(*deps)
