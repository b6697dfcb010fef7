"""Runs started outside the CLI (the UI, a schedule) refuse at their start, with the reason:
nothing to inspect, a plan nobody could approve. Ad-hoc sweeps are recorded as sweeps."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.flow_fixtures import host_entry
from upkeep.flows.inspection import InspectionParams, quarterly_health_inspection
from upkeep.flows.sweep import SweepParams, host_sweep, run_sweep
from upkeep.models import Approval, InspectionRun

pytestmark = pytest.mark.flows

ALICE_ONLY = [{"name": "Alice Owner", "email": "alice@acme.example"}]


def records(engine: sa.Engine) -> tuple[int, int]:
    with Session(engine) as s:
        return len(s.exec(select(Approval)).all()), len(s.exec(select(InspectionRun)).all())


def test_an_inspection_started_by_its_only_approver_fails_at_once_saying_why(
    engine, load_inventory
):
    load_inventory([host_entry("web1", None)], approvers=ALICE_ONLY)
    state = quarterly_health_inspection(
        InspectionParams(contract="ACME", requested_by="Alice Owner"), return_state=True
    )
    assert state.is_failed()
    assert "Alice Owner started this run and is its only approver" in (state.message or "")
    assert records(engine) == (0, 0)


def test_an_inspection_of_an_unknown_contract_or_tag_fails_at_once_saying_why(
    engine, load_inventory
):
    load_inventory([host_entry("web1", None, tags=["web"])])
    unknown = quarterly_health_inspection(InspectionParams(contract="NOPE"), return_state=True)
    assert unknown.is_failed() and "no contract 'NOPE'" in (unknown.message or "")
    no_host = quarterly_health_inspection(
        InspectionParams(contract="ACME", tags=["db"]), return_state=True
    )
    assert no_host.is_failed()
    assert "'db'" in (no_host.message or "") and "tags in use: web" in (no_host.message or "")
    assert records(engine) == (0, 0)


def test_a_sweep_of_a_tag_no_host_has_creates_no_run_record(engine, load_inventory):
    load_inventory([host_entry("web1", None, tags=["web"])])
    state = host_sweep(SweepParams(contract="ACME", tags=["db"]), return_state=True)
    assert state.is_failed() and "tags in use: web" in (state.message or "")
    assert records(engine) == (0, 0)


def test_an_ad_hoc_sweep_is_recorded_as_a_sweep(engine, load_inventory):
    load_inventory([host_entry("closed", None)])
    result = run_sweep(SweepParams(contract="ACME"))
    with Session(engine) as s:
        run = s.get(InspectionRun, result.run_id)
        assert run is not None and run.kind == "sweep"


def test_a_claim_held_by_a_run_prefect_does_not_know_is_taken_over(engine, load_inventory):
    import uuid

    from upkeep.models import RunClaim
    from upkeep.tasks.guards import claim, holder_of

    load_inventory([host_entry("web1", None)])
    with Session(engine) as s:
        s.add(RunClaim(process="inspection", contract_id=1, flow_run_id=str(uuid.uuid4())))
        s.commit()
    assert holder_of("inspection", 1) is None
    me = str(uuid.uuid4())
    assert claim("inspection", 1, me) is None
    assert claim("inspection", 1, me) is None  # resuming: still mine
    with Session(engine) as s:
        (row,) = s.exec(select(RunClaim)).all()
    assert row.flow_run_id == me


def test_a_sweep_cannot_be_recorded_as_an_inspection():
    from pydantic import ValidationError

    assert SweepParams(contract="ACME").kind == "sweep"
    assert SweepParams(contract="ACME", kind="bench").kind == "bench"
    with pytest.raises(ValidationError, match="kind"):
        SweepParams(contract="ACME", kind="inspection")
