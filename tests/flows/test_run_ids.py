"""Records name the flow run they belong to, also when a task writes them (a task's context
has no ``flow_run``: the id comes from the task run)."""

from __future__ import annotations

import pytest
from prefect import flow, task

from upkeep.tasks.runs import current_flow_run_id

pytestmark = pytest.mark.flows


@task
def _in_task() -> str | None:
    return current_flow_run_id()


@flow
def _in_flow() -> tuple[str | None, str | None]:
    return current_flow_run_id(), _in_task()


def test_the_flow_run_id_is_known_in_the_flow_and_in_its_tasks(flow_env) -> None:
    in_flow, in_task = _in_flow()
    assert in_flow is not None and in_task == in_flow
    assert current_flow_run_id() is None  # outside any run
