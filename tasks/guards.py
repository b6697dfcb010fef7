"""What is decided before a run is created: is there anything to do, can anyone approve it, is
another run of the same contract already under way.

The CLI asks these before it starts a flow (so a refusal leaves no flow run and no record); the
flows ask them again at their start, for runs started from the UI or a schedule. The decisions
are pure functions; which run holds a contract's claim is recorded in the database, and whether
that run is still under way is asked of the Prefect API.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from sqlmodel import Session, col, select

from upkeep.db import open_session
from upkeep.domain.contract import ContractView
from upkeep.models import Contract, Host, RunClaim, utcnow
from upkeep.tasks.records import hosts_in_scope


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
    hosts = hosts_in_scope(session=session, contract=contract, tags=tags)
    if not hosts:
        active = hosts_in_scope(session=session, contract=contract)
        raise Refused(empty_scope_message(contract.code, tags, (t for h in active for t in h.tags)))
    return hosts


def backup_source_names(contract: Contract) -> list[str]:
    return [s.system for s in ContractView.of(contract).backup_sources]


def check_backup_source(contract: Contract, source: str | None) -> None:
    """Refused when the contract has no backup sources, or none called ``source``."""
    names = backup_source_names(contract)
    if not names:
        raise Refused(f"contract {contract.code} has no backup sources in the inventory")
    if source is not None and source not in names:
        raise Refused(
            f"contract {contract.code} has no backup source {source!r} (known: {', '.join(names)})"
        )


# --- one run per contract ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    id: str
    name: str
    state: str
    """The state's name (Running, Suspended, ...)."""
    active: bool
    """Started and not ended (suspended at a gate, resuming or awaiting a retry included)."""


ACTIVE_STATES = (
    StateType.SCHEDULED,  # a suspended run being resumed, or awaiting a retry
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CANCELLING,
)


def claim_decision(claimed_by: str | None, me: str | None, holder: RunInfo | None) -> str:
    """What a run (``me``; None before it exists) does about the contract's claim. Pure.

    ``"take"`` it (no claim, or the holder has ended or is unknown to Prefect), ``"mine"``
    (a run resuming after its gate), or ``"blocked"`` by the holder, which is still under way.
    """
    if claimed_by is None:
        return "take"
    if me is not None and claimed_by == me:
        return "mine"
    return "blocked" if holder is not None and holder.active else "take"


def run_info(flow_run_id: str) -> RunInfo | None:
    """The flow run as Prefect sees it now, or None when Prefect does not know it."""
    try:
        run_uuid = UUID(flow_run_id)
    except ValueError:
        return None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_uuid)
        except ObjectNotFound:
            return None
    return RunInfo(
        id=str(run.id),
        name=run.name,
        state=(run.state.name if run.state else None) or "?",
        active=run.state is not None and run.state.type in ACTIVE_STATES,
    )


class AlreadyRunning(Refused):
    """Another run of the process is under way for the contract (one at a time)."""


def refuse_if_running(process: str, contract: str, contract_id: int, me: str | None) -> None:
    """AlreadyRunning (naming the other run) when another ``process`` run of the contract is
    under way. The run ``me`` takes the contract's claim; None (the CLI, before it starts a
    run) only asks."""
    other = claim(process, contract_id, me) if me else holder_of(process, contract_id)
    if other is not None:
        raise AlreadyRunning(already_running_message(process, contract, other))


def already_running_message(process: str, contract: str, other: RunInfo) -> str:
    return (
        f"another {process} run of {contract} is under way: {other.name} ({other.id}, "
        f"{other.state}). One at a time per contract, so there is one plan and one gate: "
        f"finish, reject or cancel that run first (`prefect flow-run cancel {other.id}`)"
    )


def _claim(db: Session, process: str, contract_id: int) -> RunClaim | None:
    return db.exec(
        select(RunClaim).where(RunClaim.process == process, RunClaim.contract_id == contract_id)
    ).first()


def holder_of(process: str, contract_id: int) -> RunInfo | None:
    """The run that holds the contract's claim and is still under way, or None (the CLI's
    question before it starts a run; the flow's own :func:`claim` settles it)."""
    with open_session() as db:
        existing = _claim(db, process, contract_id)
        claimed_by = existing.flow_run_id if existing else None
    holder = run_info(claimed_by) if claimed_by else None
    return holder if claim_decision(claimed_by, None, holder) == "blocked" else None


def claim(process: str, contract_id: int, flow_run_id: str) -> RunInfo | None:
    """Take the contract's claim for ``flow_run_id``; the run that keeps it from us, or None.

    Safe against runs starting at once: the insert is guarded by the unique key, the takeover
    of a stale claim by a compare-and-set on its holder. Each attempt is a transaction of its
    own (not the caller's session): the claim must be committed, so other runs see it, before
    the run goes on, and an attempt that lost the race is rolled back and tried again afresh.
    """
    for _ in range(5):
        try:
            with open_session() as db:
                existing = _claim(db, process, contract_id)
                claimed_by = existing.flow_run_id if existing else None
                holder = run_info(claimed_by) if claimed_by else None
                decision = claim_decision(claimed_by, flow_run_id, holder)
                if decision == "mine":
                    return None
                if decision == "blocked":
                    return holder
                if existing is None:
                    db.add(
                        RunClaim(process=process, contract_id=contract_id, flow_run_id=flow_run_id)
                    )
                    return None  # committed as the block ends (or IntegrityError: lost)
                taken = db.execute(
                    sa.update(RunClaim)
                    .where(
                        col(RunClaim.id) == existing.id,
                        col(RunClaim.flow_run_id) == claimed_by,
                    )
                    .values(flow_run_id=flow_run_id, claimed_at=utcnow())
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    return None
        except sa.exc.IntegrityError:
            pass  # another run inserted the claim meanwhile: look again
    raise RuntimeError(f"could not settle the {process} claim of contract {contract_id}")
