"""The host sweep: inspect hosts, one Prefect task per host, with bounded concurrency.

:func:`sweep_hosts` runs inside any flow (the quarterly inspection, the re-check); the
``host-sweep`` flow is the bare version behind ``upkeep run sweep`` and the demo. One failed
host never stops the sweep: the host task records it as a finding; a task that crashes anyway
is reported here and fails the run's record, never silently.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field

from upkeep.db import open_session
from upkeep.domain.inspection import HostOutcome, HostTarget
from upkeep.models import RunStatus
from upkeep.settings import get_settings
from upkeep.tasks.guards import hosts_for_run
from upkeep.tasks.inspect import inspect_host
from upkeep.tasks.records import finish_run, get_contract, start_run
from upkeep.tasks.runs import current_flow_run_id, run_namer
from upkeep.tasks.ssh import session_group


class SweepResult(BaseModel):
    run_id: int
    contract: str
    hosts: list[HostOutcome]
    crashed: list[str] = []

    @property
    def unreachable(self) -> list[str]:
        return [h.host for h in self.hosts if not h.reachable]


def tag_limited(tag: str) -> bool:
    """Whether the Prefect API has a concurrency limit for ``tag``."""
    with get_client(sync_client=True) as client:
        try:
            client.read_concurrency_limit_by_tag(tag)
        except ObjectNotFound:
            return False
    return True


def sweep_hosts(
    run_id: int, contract: str, targets: list[HostTarget], limit: int | None = None
) -> SweepResult:
    """Inspect ``targets``, at most ``limit`` at once (UPKEEP_SWEEP_CONCURRENCY), and wait.

    The bound is kept here rather than in the task runner, so it holds however the flow is
    started (a served deployment runs the flow as its module defines it).

    Each host task ends within its SSH bounds (README, "Host keys and SSH"). If the wait here
    is interrupted (SIGTERM raises Prefect's TerminationSignal in this thread), the SSH sessions
    of the hosts in flight are aborted, so the task runner's shutdown does not wait for their
    timeouts; hosts already done stay recorded and the in-flight ones record nothing.
    """
    logger = get_run_logger()
    limit = limit or get_settings().sweep_concurrency
    # A Prefect tag concurrency limit (`upkeep deploy --contract-limit`) caps one contract's
    # host tasks across every worker, so one big sweep cannot starve the others. A tagged task
    # takes a concurrency lease through the API, so tag only when such a limit exists.
    tag = f"contract:{contract}"
    per_contract = inspect_host.with_options(tags={tag}) if tag_limited(tag) else inspect_host
    futures: list[Any] = []
    with session_group():
        for target in targets:
            in_flight = [f.wrapped_future for f in futures if not f.wrapped_future.done()]
            if len(in_flight) >= limit:
                concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
            futures.append(
                per_contract.submit(
                    host_id=target.id,
                    host_name=target.name,
                    run_id=run_id,
                    check_names=target.checks,
                )
            )
        for fut in futures:
            fut.wait()
    results: list[HostOutcome] = []
    crashed: list[str] = []
    for fut, target in zip(futures, targets, strict=True):
        state = fut.state
        if state.is_completed():
            results.append(fut.result())
        else:
            crashed.append(target.name)
            logger.error(
                "inspection of %s ended %s: %s", target.name, state.type.value, state.message
            )
            results.append(HostOutcome(host=target.name, reachable=False, error_kind="crashed"))
    return SweepResult(run_id=run_id, contract=contract, hosts=results, crashed=crashed)


class SweepParams(BaseModel):
    """Which hosts of which contract to inspect."""

    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    tags: list[str] = Field(default_factory=list, description="Only hosts with any of these tags")
    kind: Literal["sweep", "bench"] = Field(
        "sweep", description="What the run is recorded as: an ad-hoc sweep, or a benchmark"
    )
    requested_by: str | None = Field(None, description="Who started the run")
    concurrency: int | None = Field(
        None, ge=1, le=500, description="Hosts at once (default: UPKEEP_SWEEP_CONCURRENCY)"
    )


sweep_run_name = run_namer("sweep")
"""``sweep · ACME``."""


def sweep_and_finish(
    run_id: int, contract: str, targets: list[HostTarget], limit: int | None = None
) -> SweepResult:
    """:func:`sweep_hosts`, then the run's record ends: completed, failed (a host task
    crashed, or the sweep raised) or cancelled (SIGTERM, Ctrl-C)."""
    status = RunStatus.FAILED
    try:
        result = sweep_hosts(run_id, contract, targets, limit=limit)
        status = RunStatus.FAILED if result.crashed else RunStatus.COMPLETED
    except BaseException as exc:
        if not isinstance(exc, Exception):  # SIGTERM (TerminationSignal), Ctrl-C: stopped
            status = RunStatus.CANCELLED
        raise
    finally:
        with open_session() as db:
            finish_run(session=db, run_id=run_id, status=status)
    return result


@flow(name="host-sweep", flow_run_name=sweep_run_name)
def host_sweep(params: SweepParams) -> SweepResult:
    """Inspect the contract's hosts in scope now (no plan, no approval) and store everything."""
    with open_session() as db:
        contract = get_contract(session=db, code=params.contract)
        targets = [
            HostTarget(id=h.id, name=h.name)
            for h in hosts_for_run(session=db, contract=contract, tags=params.tags)
            if h.id is not None
        ]
        run = start_run(
            session=db,
            contract=contract,
            kind=params.kind,
            flow_run_id=current_flow_run_id(),
            requested_by=params.requested_by,
        )
        assert run.id is not None
        run_id = run.id
    get_run_logger().info(
        "inspecting %d host(s) of %s (run %s)", len(targets), params.contract, run_id
    )
    return sweep_and_finish(run_id, params.contract, targets, limit=params.concurrency)


def run_sweep(params: SweepParams, concurrency: int | None = None) -> SweepResult:
    """Run the sweep now; ``concurrency`` overrides UPKEEP_SWEEP_CONCURRENCY for this run."""
    if concurrency is not None:
        params = params.model_copy(update={"concurrency": concurrency})
    result: SweepResult = host_sweep(params)
    return result
