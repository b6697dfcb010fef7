"""What is decided before a run is created: is there anything to do, can anyone approve it, is
another run of the same contract already under way.

The CLI asks these before it starts a flow (so a refusal leaves no flow run and no record); the
flows ask them again at their start, for runs started from the UI or a schedule. The decisions
are pure functions; :func:`active_runs` is the one read from the Prefect API.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect.client.schemas.objects import StateType
from sqlmodel import Session

from models import Contract, Host
from tasks.gates import GatePolicy

ACTIVE_STATES = (StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING)
"""A flow run in one of these has started and not ended (a suspended gate is PAUSED).
Scheduled runs are not counted: a served deployment always has future ones waiting."""


class Refused(Exception):
    """The run must not start; the message names what is wrong and what to do."""


# --- scope -------------------------------------------------------------------------------------


def empty_scope_message(contract: str, tags: Sequence[str], known_tags: Iterable[str]) -> str:
    """Why a selection of hosts is empty. Pure."""
    if not tags:
        return f"contract {contract} has no active hosts: nothing to inspect"
    known = sorted(set(known_tags))
    return (
        f"no active host of {contract} has the tag {' or '.join(repr(t) for t in tags)}: "
        "nothing to inspect (tags in use: " + (", ".join(known) if known else "none") + ")"
    )


def hosts_for_run(*, session: Session, contract: Contract, tags: Sequence[str]) -> list[Host]:
    """The active hosts a run of ``contract`` limited to ``tags`` would inspect, or Refused."""
    from tasks.records import hosts_in_scope

    hosts = hosts_in_scope(session=session, contract=contract, tags=tags)
    if not hosts:
        active = hosts_in_scope(session=session, contract=contract)
        raise Refused(empty_scope_message(contract.code, tags, (t for h in active for t in h.tags)))
    return hosts


def backup_source_names(contract: Contract) -> list[str]:
    return [str(s.get("system")) for s in contract.backup_sources]


def check_backup_source(contract: Contract, source: str | None) -> None:
    """Refused when the contract has no backup sources, or none called ``source``."""
    names = backup_source_names(contract)
    if not names:
        raise Refused(f"contract {contract.code} has no backup sources in the inventory")
    if source is not None and source not in names:
        raise Refused(
            f"contract {contract.code} has no backup source {source!r} (known: {', '.join(names)})"
        )


# --- approvers ---------------------------------------------------------------------------------


def same_person(person: dict[str, Any], who: str | None) -> bool:
    """Whether ``who`` names ``person`` (by name or e-mail, any case), as the gate matches."""
    if not who:
        return False
    wanted = who.strip().casefold()
    return wanted in (
        str(person.get("name", "")).strip().casefold(),
        str(person.get("email", "")).strip().casefold(),
    )


def deciders(
    approvers: Sequence[dict[str, Any]], backup: dict[str, Any] | None, policy: GatePolicy
) -> list[dict[str, Any]]:
    """Everyone who may ever answer the gate: the approvers, and the backup approver when the
    gate escalates to them. One entry per person. Pure."""
    people = list(approvers)
    if backup is not None and policy.escalate_after_hours is not None:
        people.append(backup)
    distinct: list[dict[str, Any]] = []
    for p in people:
        if not any(
            same_person(q, str(p.get("name", ""))) or same_person(q, str(p.get("email", "")))
            for q in distinct
        ):
            distinct.append(p)
    return distinct


def unapprovable(
    approvers: Sequence[dict[str, Any]],
    backup: dict[str, Any] | None,
    policy: GatePolicy,
    requested_by: str | None,
) -> str | None:
    """Why a gate asked by ``requested_by`` could never be approved, or None. Pure."""
    people = deciders(approvers, backup, policy)
    need = policy.required_approvals
    if len(people) < need:
        return (
            f"the gate needs {need} approvals but only {len(people)} "
            f"{'person' if len(people) == 1 else 'people'} may give one "
            f"({', '.join(str(p.get('name')) for p in people)}): no run can be approved"
        )
    if policy.allow_self_approval:
        return None
    starter = [p for p in people if same_person(p, requested_by)]
    others = [p for p in people if p not in starter]
    if len(others) >= need:
        return None
    who = str(starter[0].get("name"))
    if not others:
        return (
            f"{who} started this run and is its only approver, and the contract does not allow "
            "self-approval: nobody could approve it. Start it under another name (--as), or "
            "add an approver to the contract"
        )
    return (
        f"{who} started this run and may not approve it; {need} approvals are needed but only "
        f"{len(others)} other approver{'s' if len(others) != 1 else ''} "
        f"({', '.join(str(p.get('name')) for p in others)}) could give one. Start it under "
        "another name (--as), or add an approver to the contract"
    )


def approver_warnings(
    approvers: Sequence[dict[str, Any]],
    backup: dict[str, Any] | None,
    policies: dict[str, GatePolicy],
) -> list[str]:
    """For ``inventory load``: gates these approvers could leave unapprovable. Pure.

    ``policies`` maps where the policy is written (``approval_policy``,
    ``gate_policies.inspection-plan``) to the policy in force there.
    """
    warnings: list[str] = []
    for where, policy in policies.items():
        never = unapprovable(approvers, backup, policy, None)
        if never is not None:
            warnings.append(f"{where}: {never}")
            continue
        people = deciders(approvers, backup, policy)
        if not policy.allow_self_approval and len(people) == policy.required_approvals:
            names = ", ".join(str(p.get("name")) for p in people)
            warnings.append(
                f"{where}: a run started by {'' if len(people) == 1 else 'one of '}{names} "
                f"could not be approved ({policy.required_approvals} approval"
                f"{'s' if policy.required_approvals != 1 else ''} needed and self-approval is "
                "not allowed): add an approver or a backup approver"
            )
    return warnings


# --- one run per contract ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    id: str
    name: str
    state: str
    """The state's name (Running, Suspended, ...)."""
    start_time: datetime | None


def blocking_run(me: RunInfo | None, others: Sequence[RunInfo]) -> RunInfo | None:
    """The active run that ``me`` must give way to, or None. Pure.

    Before a run exists (``me`` None, the CLI) any active run blocks. A run that is itself
    starting gives way to every run that started before it (a run at its gate started long
    ago); of two started in the same instant, the smaller id goes on.
    """
    others = [o for o in others if me is None or o.id != me.id]
    if me is None:
        return others[0] if others else None
    if me.start_time is None:
        return next((o for o in others if o.start_time is not None), None)
    mine = (me.start_time, me.id)
    earlier = [o for o in others if o.start_time is not None and (o.start_time, o.id) < mine]
    return min(earlier, key=lambda o: (o.start_time, o.id)) if earlier else None


def active_runs(flow_name: str, contract: str) -> list[RunInfo]:
    """The flow runs of ``flow_name`` for ``contract`` that have started and not ended."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(ACTIVE_STATES)))
            ),
            limit=200,
        )
    found = []
    for run in runs:
        params = run.parameters.get("params") or {}
        if isinstance(params, dict) and params.get("contract") == contract:
            found.append(
                RunInfo(
                    id=str(run.id),
                    name=run.name,
                    state=(run.state.name if run.state else None) or "?",
                    start_time=run.start_time,
                )
            )
    return sorted(found, key=lambda r: (r.start_time is None, r.start_time or datetime.min, r.id))


def this_run() -> RunInfo | None:
    """The flow run we are in, read fresh from the API (its start time is set by then)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(ctx.flow_run.id)
    return RunInfo(
        id=str(run.id),
        name=run.name,
        state=(run.state.name if run.state else None) or "?",
        start_time=run.start_time,
    )


def already_running_message(flow_name: str, contract: str, other: RunInfo) -> str:
    return (
        f"another {flow_name} run of {contract} is under way: {other.name} ({other.id}, "
        f"{other.state}). One at a time per contract, so there is one plan and one gate: "
        "finish, reject or cancel that run first (`prefect flow-run cancel "
        f"{other.id}`)"
    )


def check_not_running(flow_name: str, contract: str, me: RunInfo | None = None) -> None:
    """Refused when another active ``flow_name`` run of ``contract`` goes before ``me``."""
    other = blocking_run(me, active_runs(flow_name, contract))
    if other is not None:
        raise Refused(already_running_message(flow_name, contract, other))
