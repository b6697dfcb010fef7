"""Running an inspection in the background and answering its gates, for the flow and e2e
tests (a plain module, not a test module: tests import it, never each other)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run
from sqlmodel import Session, col, select

from tests.polling import wait_until
from upkeep.flows.inspection import InspectionParams, quarterly_health_inspection
from upkeep.models import Approval, ApprovalEvent

WAIT = 90.0


class Background:
    """A flow run in a thread; ``state()`` waits for its final state."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.box: dict[str, Any] = {}
        ctx = contextvars.copy_context()

        def target() -> None:
            try:
                self.box["state"] = ctx.run(fn)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                self.box["error"] = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def state(self, timeout: float = WAIT) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow did not finish in time"
        if "error" in self.box:
            raise self.box["error"]
        return self.box["state"]


def run_inspection(**params: Any) -> Background:
    params.setdefault("requested_by", "tester")
    p = InspectionParams(contract="ACME", **params)
    return Background(lambda: quarterly_health_inspection(p, return_state=True))


def pending(engine: sa.Engine, gate: str, after: int = 0) -> Approval:
    def find() -> Approval | None:
        with Session(engine) as s:
            return s.exec(
                select(Approval).where(
                    Approval.gate == gate,
                    col(Approval.decision).is_(None),
                    col(Approval.id) > after,
                )
            ).first()

    return wait_until(f"a pending {gate} approval", find)


def paused(flow_run_id: str) -> bool:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    return bool(state and state.is_paused())


RESUME_BOUND = 240.0
"""How long an answer waits for the run's new form: a run that just left its previous pause
may take long on a loaded machine to open the next one (CI saw more than 90 s)."""


def answer(gate: Approval, **run_input: Any) -> None:
    """Resume the gate's run with ``run_input`` once its form is up (as a person would)."""
    wait_until("the gate to pause", lambda: paused(gate.flow_run_id))

    def resumed() -> bool:
        try:
            resume_flow_run(UUID(gate.flow_run_id), run_input=run_input)
        except RuntimeError as exc:  # the pause is on record a moment before its form
            if "schema not found" in str(exc):
                return False
            raise
        return True

    wait_until("the resume form", resumed, timeout=RESUME_BOUND)


def events(engine: sa.Engine, gate_id: int) -> list[tuple[str, str | None]]:
    """The gate's event log, oldest first: (kind, actor)."""
    with Session(engine) as s:
        return [
            (e.kind, e.actor)
            for e in s.exec(
                select(ApprovalEvent)
                .where(ApprovalEvent.approval_id == gate_id)
                .order_by(col(ApprovalEvent.id))
            )
        ]


def refusals(engine: sa.Engine) -> list[ApprovalEvent]:
    with Session(engine) as s:
        return list(s.exec(select(ApprovalEvent).where(ApprovalEvent.kind == "refused")))


ALICE, PAUL = "alice@acme.example", "paul@provider.example"
BOB = "bob@provider.example"
BACKUP = {"name": "Bob Backup", "email": BOB}
