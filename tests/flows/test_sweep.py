"""The host sweep against real sshd hosts and the session's Prefect server."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.flow_fixtures import host_entry
from upkeep.flows.sweep import SweepParams, host_sweep, run_sweep
from upkeep.models import Finding, HostResult, InspectionRun, RunStatus

pytestmark = pytest.mark.flows


def findings(engine: sa.Engine) -> dict[tuple[str, str], Finding]:
    with Session(engine) as s:
        from upkeep.models import Host

        names = {h.id: h.name for h in s.exec(select(Host))}
        return {(names[f.host_id], f.check): f for f in s.exec(select(Finding))}


def test_one_bad_host_never_stops_the_sweep(engine, load_inventory, sshd_servers):
    good, untrusted = sshd_servers[0], sshd_servers[1]
    load_inventory(
        [host_entry("good", good), host_entry("closed", None), host_entry("untrusted", untrusted)],
        trust=[good],
    )
    result = run_sweep(SweepParams(contract="ACME"), concurrency=3)
    assert sorted(result.unreachable) == ["closed", "untrusted"]
    with Session(engine) as s:
        run = s.get(InspectionRun, result.run_id)
        assert run is not None and run.status == RunStatus.COMPLETED
        rows = {r.host_id: r for r in s.exec(select(HostResult))}
        assert len(rows) == 3
    found = findings(engine)
    assert found[("closed", "reachability")].severity == "critical"
    assert "refused" in found[("closed", "reachability")].message
    assert found[("untrusted", "reachability")].severity == "critical"
    assert "upkeep hosts trust" in found[("untrusted", "reachability")].evidence
    assert not any(host == "good" and check == "reachability" for host, check in found)


def test_reachable_host_gets_every_check_stored(engine, load_inventory, sshd):
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    result = run_sweep(SweepParams(contract="ACME"))
    assert result.unreachable == []
    with Session(engine) as s:
        (row,) = s.exec(select(HostResult)).all()
    from upkeep.domain.checks import CATALOGUE

    checked = {m["check"] for m in row.measurements}
    assert checked == {c.name for c in CATALOGUE}
    # Every check ran and parsed on this machine (or says why it does not apply here).
    broken = [
        m
        for m in row.measurements
        if "could not parse" in m["message"] or "command failed" in m["message"]
    ]
    assert broken == []
    assert set(row.facts) | set(row.skipped) == {c.name for c in CATALOGUE}
    assert row.facts["cpu"]["count"] >= 1
    assert row.reachable and row.error is None


def test_tags_scope_the_sweep(engine, load_inventory, sshd, other_sshd):
    load_inventory(
        [host_entry("web1", sshd, tags=["web"]), host_entry("db1", other_sshd, tags=["db"])],
        trust=[sshd, other_sshd],
    )
    result = run_sweep(SweepParams(contract="ACME", tags=["db"]))
    assert [h.host for h in result.hosts] == ["db1"]


def test_host_fixed_between_runs_resolves_its_finding(engine, load_inventory, sshd):
    load_inventory([host_entry("web1", sshd)])  # key not trusted yet
    first = run_sweep(SweepParams(contract="ACME"))
    assert first.unreachable == ["web1"]
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    second = run_sweep(SweepParams(contract="ACME"))
    assert second.unreachable == []
    f = findings(engine)[("web1", "reachability")]
    assert f.status == "resolved"
    assert f.resolved_by_run_id == second.run_id


def test_host_tasks_carry_the_contract_tag_when_a_limit_exists(engine, load_inventory, sshd):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    load_inventory([host_entry("web1", sshd)], trust=[sshd], code="LIMITED")
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="contract:LIMITED", concurrency_limit=2)
    state = host_sweep(SweepParams(contract="LIMITED"), return_state=True)
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
        client.delete_concurrency_limit_by_tag("contract:LIMITED")
    inspected = [r for r in runs if r.name.startswith("inspect ")]
    assert inspected and all("contract:LIMITED" in r.tags for r in inspected)
