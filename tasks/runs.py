"""The current Prefect run, read the same way by every flow: its id and its run name.

Every flow takes its parameters as one model under ``params`` and names its runs
``<what> · <contract> · <detail>``; :func:`run_namer` builds that ``flow_run_name`` callable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from prefect.client.schemas.objects import FlowRun
from prefect.context import get_run_context
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from pydantic import BaseModel

from upkeep.domain.processes import deployment_name, deployment_tags


def current_flow_run_id() -> str | None:
    """The id of the flow run this code runs in (also from inside one of its tasks), or None
    outside a flow run."""
    try:
        ctx: Any = get_run_context()
    except RuntimeError:
        return None
    run = getattr(ctx, "flow_run", None)
    if run is not None:
        return str(run.id)
    # inside a task: the flow run the task run belongs to
    task_run = getattr(ctx, "task_run", None)
    flow_run_id = getattr(task_run, "flow_run_id", None)
    return str(flow_run_id) if flow_run_id is not None else None


def run_params() -> dict[str, Any]:
    """The current flow run's ``params`` as a dict ({} outside a run or without params)."""
    params = flow_run.parameters.get("params") or {}
    if isinstance(params, BaseModel):
        return params.model_dump()
    return dict(params) if isinstance(params, Mapping) else {}


def run_name(what: str, params: Mapping[str, Any], detail: str | None = None) -> str:
    """``what · CONTRACT · detail`` (``?`` when the contract is missing). Pure."""
    name = f"{what} · {params.get('contract') or '?'}"
    return f"{name} · {detail}" if detail else name


def run_namer(
    what: str, detail: Callable[[Mapping[str, Any]], str | None] | None = None
) -> Callable[[], str]:
    """A ``flow_run_name`` callable: ``what · CONTRACT`` and ``detail(params)`` if given."""

    def name() -> str:
        params = run_params()
        return run_name(what, params, detail(params) if detail else None)

    name.__name__ = f"{what.replace(' ', '_').replace('-', '_')}_run_name"
    return name


def schedule_deployment_run(
    flow: str, contract_code: str, process: str, parameters: Mapping[str, Any], at: datetime
) -> str | None:
    """A flow run of the contract's deployment of ``flow`` (``FLOW/<contract>``, tagged like
    the deployment) that Prefect's server starts at ``at`` (kept in the server's database, so
    it survives restarts of upkeep serve and of the server); its id, or None when the server
    has no such deployment (nothing served it: the caller says how to start the work by
    hand). Never a subflow of the calling run."""
    try:
        run = cast(
            FlowRun,
            run_deployment(
                name=f"{flow}/{deployment_name(contract_code)}",
                parameters=dict(parameters),
                scheduled_time=at,
                timeout=0,
                as_subflow=False,
                tags=deployment_tags(contract_code, process),
            ),
        )  # called from sync code: the FlowRun itself, never a coroutine
    except ObjectNotFound:
        return None
    return str(run.id)
