"""The processes a contract runs and what each deployment of them is, as pure data.

``upkeep.deployments`` turns these specs into Prefect deployments; flows read the titles and
what a contract schedules from here (so no flow imports the deployment layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from upkeep.domain.contract import ContractView
from upkeep.domain.markup import md_escape

ANNUAL_PLAN_DEFAULT = "yearly, January, first Monday, 09:00"
INTERFACE_STATUS_DEFAULT = "daily, 08:00"
"""When a contract that monitors its interfaces gets the daily status, unless it says."""
NO_FLOW_YET: tuple[str, ...] = ()
"""Processes contracts may already schedule whose flows come with later work."""


@dataclass(frozen=True)
class DeploymentSpec:
    """What one deployment is, before Prefect objects are built. Pure data, easy to test."""

    process: str
    flow: str
    """``module:function`` of the flow."""
    name: str
    contract: str
    timezone: str
    parameters: dict[str, Any]
    cadence: Any = None
    """As written in the inventory; None: started by hand only."""
    tags: list[str] = field(default_factory=list)
    description: str = ""


FLOWS = {
    "inspection": "upkeep.flows.inspection:quarterly_health_inspection",
    "recheck": "upkeep.flows.inspection:recheck_findings",
    "service_report": "upkeep.flows.service_report:service_report",
    "annual_plan": "upkeep.flows.annual_plan:send_annual_plan",
    "backup_verification": "upkeep.flows.backup_verification:backup_verification",
    "drill": "upkeep.flows.backup_verification:backup_verification",
    "patch_advisory": "upkeep.flows.patch_advisory:patch_advisory",
    "patch_fix": "upkeep.flows.patch_advisory:patch_fix",
    "interface_monitor": "upkeep.flows.interfaces:interface_monitor",
    "interface_status": "upkeep.flows.interfaces:interface_status",
    "release": "upkeep.flows.release:release",
    "release_declare": "upkeep.flows.release:declare",
    "release_effect": "upkeep.flows.release_effect:release_effect",
}
TITLES = {
    "inspection": "Health inspection",
    "recheck": "Re-check of open findings",
    "service_report": "Service report",
    "annual_plan": "Annual service plan",
    "backup_verification": "Backup-restore verification",
    "drill": "Disaster-recovery drill",
    "patch_advisory": "Patch advisory",
    "patch_fix": "Patch after a fault (started by hand: hosts, packages, symptom)",
    "interface_monitor": "Interface monitor",
    "interface_status": "Daily interface status",
    "release": "Release (started by hand: the declared release's id)",
    "release_declare": "Declare a release (the form: system, version, changes, window, test "
    "report; starts its review)",
    "release_effect": "Release effect report (scheduled by the release, or by hand: its id)",
}


def deployment_name(contract_code: str) -> str:
    return contract_code.lower()


def deployment_tags(contract_code: str, process: str) -> list[str]:
    """The tags of a contract's deployment of ``process`` and of every run it makes."""
    return ["upkeep", f"contract:{contract_code}", f"process:{process}"]


def report_period(cadence: Any) -> str:
    """The period a service report covers, from how often it runs."""
    text = str(cadence).lower()
    if text.startswith(("quarterly",)) or "bymonth=1,4,7,10" in text:
        return "quarter"
    if text.startswith(("yearly", "annually")) or "freq=yearly" in text:
        return "year"
    return "month"


def specs_for(contract: ContractView) -> list[DeploymentSpec]:
    """The deployments one active contract needs."""
    cadences = dict(contract.cadences)
    cadences.setdefault("annual_plan", ANNUAL_PLAN_DEFAULT)
    monitors = contract.smoke_checked and "interface_monitor" in cadences
    if monitors:
        cadences.setdefault("interface_status", INTERFACE_STATUS_DEFAULT)
    out = []
    has_backups = bool(contract.backup_sources)
    for process in (
        "inspection",
        "recheck",
        "service_report",
        "annual_plan",
        "backup_verification",
        "drill",
        "patch_advisory",
        "patch_fix",
        "interface_monitor",
        "interface_status",
        "release",
        "release_declare",
        "release_effect",
    ):
        cadence = cadences.get(process)
        if cadence is None and process == "service_report":
            continue
        if process in ("backup_verification", "drill") and not has_backups:
            continue
        if process.startswith("interface_") and not (monitors and cadence):
            continue
        if process in ("release", "release_declare", "release_effect") and not any(
            s.release for s in contract.systems
        ):
            continue
        params: dict[str, Any] = {"contract": contract.code, "requested_by": "schedule"}
        if process == "patch_fix":  # the engineer fills in hosts, packages and the symptom
            params = {"contract": contract.code}
        elif process in ("release", "release_effect"):  # the release's id, given per run
            params = {}
        elif process == "release_declare":  # the engineer fills in the form
            params = {"contract": contract.code}
        elif process == "interface_monitor":
            params["email_alerts"] = True
        elif process != "annual_plan":
            params["email_report"] = True
        if process == "service_report":
            params["period"] = report_period(cadence)
        if process == "drill":
            params["drill"] = True
        out.append(
            DeploymentSpec(
                process=process,
                flow=FLOWS[process],
                name=deployment_name(contract.code) + ("-drill" if process == "drill" else ""),
                contract=contract.code,
                timezone=contract.timezone,
                parameters={"params": params},
                cadence=cadence,
                tags=deployment_tags(contract.code, process),
                # The UI renders a deployment's description as Markdown.
                description=f"{TITLES[process]} of {md_escape(contract.name)}"
                + (f" ({md_escape(cadence)})" if isinstance(cadence, str) else ""),
            )
        )
    return out


def unsupported(contract: ContractView) -> list[str]:
    """Cadences upkeep will not schedule (said, not silently dropped): processes without a
    flow yet, backup cadences of a contract that lists no backup sources, interface cadences
    of one without smoke checks (and a status without a monitor)."""
    backup_only = () if contract.backup_sources else ("backup_verification", "drill")
    if not contract.smoke_checked:
        monitor_only: tuple[str, ...] = ("interface_monitor", "interface_status")
    else:
        monitor_only = () if "interface_monitor" in contract.cadences else ("interface_status",)
    return [
        p for p in contract.cadences if p in NO_FLOW_YET or p in backup_only or p in monitor_only
    ]
