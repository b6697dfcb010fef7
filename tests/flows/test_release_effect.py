"""A release's effect report from the records: probes before and after (slower and failing
after), findings and system-log counts planted as the monitor and inspections record them;
the HTML report, the artifact, the customer's mail through a real SMTP server, the release's
step; a release not finished is refused; the report's run scheduled on the session's Prefect
server (and the way it says so when nothing serves it)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlmodel import Session, col, select

from tests.flow_fixtures import host_entry
from upkeep.domain.markup import md_escape
from upkeep.flows.release_effect import EffectOutcome, EffectParams, release_effect
from upkeep.models import (
    Contract,
    Finding,
    Host,
    HostResult,
    InspectionRun,
    InterfaceProbe,
    Release,
    ReleaseStep,
    utcnow,
)
from upkeep.tasks.release_effect import schedule_effect_report

pytestmark = pytest.mark.flows

SHOP: dict[str, Any] = {
    "name": "shop",
    "smoke_checks": [
        {"name": "health", "url": "https://shop.acme.example/health"},
        {"name": "search", "url": "https://shop.acme.example/search?q=x"},
    ],
    "release": {
        "release_command": "/opt/shop/switch {version}",
        "rollback_command": "/opt/shop/switch --previous",
    },
}
"""A system released on app1 and app2; its checks are never probed here (the rows are
planted), so no server is needed."""


def load_shop(load_inventory: Any, code: str = "ACME") -> None:
    load_inventory(
        [
            host_entry("app1", None, system="shop"),
            host_entry("app2", None, system="shop"),
            host_entry("db1", None),
        ],
        code=code,
        systems=[SHOP],
    )


def seed_release(
    engine: Any,
    code: str = "ACME",
    *,
    status: str = "released",
    finished: bool = True,
    records: bool = True,
) -> int:
    """A release of shop 2.0 whose window was four days ago and which finished 40 minutes
    later; with ``records``, what the monitor and inspections recorded around it: shop/health
    hourly at 100 ms before, at 300 ms with two failed probes after; shop/search never probed
    before; one finding opened before, two after (and two of other hosts and systems); the
    system log read once before (2 errors) and once after (14)."""
    window = utcnow().replace(microsecond=0) - timedelta(days=4)
    done = window + timedelta(minutes=40)
    before, after = window - timedelta(days=3), done
    with Session(engine) as s:
        contract = s.exec(select(Contract).where(Contract.code == code)).one()
        hosts = {h.name: h for h in s.exec(select(Host).where(Host.contract_id == contract.id))}
        row = Release(
            contract_id=contract.id,
            system="shop",
            version="2.0",
            changes="- faster search",
            window_at=window,
            hosts=["app1", "app2"],
            canary_hosts=["app1"],
            test_report_path="/nonexistent/report.md",
            test_report_sha256="ab" * 32,
            test_report_name="report.md",
            status=status,
            declared_by="Eve Engineer",
            finished_at=done if finished else None,
        )
        s.add(row)
        if not records:
            s.commit()
            assert row.id is not None
            return row.id
        runs = [InspectionRun(contract_id=contract.id, kind="inspection") for _ in range(3)]
        s.add_all(runs)
        s.flush()
        monitor, inspected_before, inspected_after = (r.id for r in runs)

        def probe(check: str, at: datetime, ok: bool, ms: float | None) -> InterfaceProbe:
            return InterfaceProbe(
                contract_id=contract.id, run_id=monitor, system="shop", check=check,
                url="https://shop.acme.example/", probed_at=at, ok=ok, status_code=200 if ok
                else 503, latency_ms=ms, reason="planted",
            )  # fmt: skip

        for i in range(12):
            s.add(probe("health", before + timedelta(hours=i + 1), True, 100.0))
            failed = i in (5, 6)
            s.add(
                probe("health", after + timedelta(hours=i + 1), not failed, None if failed else 300)
            )
            s.add(probe("search", after + timedelta(hours=i + 1), True, 80.0))
        # during the release itself (between the window and its end): in neither period
        s.add(probe("health", window + timedelta(minutes=10), False, None))

        def finding(
            host: str | None, check: str, subject: str, at: datetime, message: str
        ) -> Finding:  # noqa: E501
            return Finding(
                contract_id=contract.id, host_id=hosts[host].id if host else None,
                run_id=monitor, check=check, subject=subject, severity="major", message=message,
                first_seen_at=at, last_seen_at=at, last_seen_run_id=monitor,
            )  # fmt: skip

        s.add(finding("app1", "disk", "/", before + timedelta(hours=2), "disk <b>91%</b> full"))
        s.add(finding("app2", "syslog", "system log", after + timedelta(hours=3), "14 errors"))
        s.add(finding(None, "interface", "shop/health", after + timedelta(hours=6), "health fails"))
        s.add(finding("db1", "disk", "/", after + timedelta(hours=2), "not a shop host"))
        s.add(finding(None, "interface", "crm/api", after + timedelta(hours=2), "other system"))

        def syslog(run: int | None, at: datetime, count: int) -> HostResult:
            assert run is not None
            return HostResult(
                run_id=run, host_id=hosts["app1"].id, reachable=True, started_at=at,
                finished_at=at, facts={"syslog": {"source": "journal", "path": None,
                "count": count, "last_lines": []}},
            )  # fmt: skip

        s.add(syslog(inspected_before, before + timedelta(hours=5), 2))
        s.add(syslog(inspected_after, after + timedelta(hours=5), 14))
        s.commit()
        assert row.id is not None
        return row.id


def steps(engine: Any, release_id: int, step: str) -> list[ReleaseStep]:
    with Session(engine) as s:
        return list(
            s.exec(
                select(ReleaseStep)
                .where(ReleaseStep.release_id == release_id, ReleaseStep.step == step)
                .order_by(col(ReleaseStep.id))
            )
        )


def test_the_effect_report_compares_before_and_after(
    engine, load_inventory, smtp_server, data_dir: Path
) -> None:
    load_shop(load_inventory)
    rid = seed_release(engine)

    state = release_effect(EffectParams(release_id=rid), return_state=True)
    assert state.is_completed(), state.message
    outcome = state.result()
    assert isinstance(outcome, EffectOutcome) and outcome.verdict == "worse"
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == f"release effect · ACME · release {rid}"
    assert outcome.headline.startswith(
        "Effect of shop 2.0 (ACME): WORSE after the release: shop/health availability, "
        "shop/health median response time"
    )

    page = Path(outcome.report_path)
    assert page.is_relative_to(data_dir / "reports" / "ACME") and page.suffix == ".html"
    html = page.read_text()
    for seen in (
        "<td>shop/health</td><td>availability</td><td>100.0%</td><td>83.3%</td>"
        '<td class="worse">worse</td>',
        "<td>shop/health</td><td>median response time</td><td>100 ms</td><td>300 ms</td>",
        "<td>shop/health</td><td>outages</td><td>0 in 3 days</td><td>1 in 3 days</td>",
        "<td>shop/search</td><td>availability</td><td>not measured</td><td>100.0%</td>"
        '<td class="not-measured">not measured</td>',
        "no probe of shop/search in the 3 days before the release: the interface monitor was "
        "not running",
        "findings opened: 1 in 3 days before, 2 in 3 days after: worse",
        "system-log errors rose from 2 per reading to 14 per reading: worse",
        "Where the figure comes from: the inspection records of the release&#39;s hosts",
        "disk &lt;b&gt;91%&lt;/b&gt; full",  # autoescaped
        "health fails",
    ):
        assert seen in html, seen
    assert "<b>91%</b>" not in html
    assert "not a shop host" not in html and "other system" not in html

    from prefect.artifacts import Artifact

    artifact = Artifact.get("release-effect-acme")
    assert artifact is not None
    assert md_escape(outcome.headline) in str(artifact.data)
    assert page.resolve().as_uri() in str(artifact.data)

    (mail,) = smtp_server.handler.received
    message = mail.message()
    assert mail.rcpt_tos == ["it@acme.example"]
    assert message["Subject"] == f"[upkeep] {outcome.headline}"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "- shop/health, availability: 100.0% before, 83.3% after: worse" in text
    assert "- shop/search, availability: not measured before, 100.0% after: not measured" in text
    (attached,) = [p for p in message.iter_attachments()]
    assert attached.get_filename() == page.name
    assert "83.3%" in attached.get_content()

    (step,) = steps(engine, rid, "effect-report")
    assert step.ok and step.summary.startswith(outcome.headline)
    assert step.detail["verdict"] == "worse" and step.detail["report_path"] == str(page)
    assert step.detail["after_complete"] is True

    again = release_effect(EffectParams(release_id=rid, email=False), return_state=True)
    assert again.is_completed(), again.message
    second = Path(again.result().report_path)
    assert second != page and second.is_file() and page.is_file()
    assert len(steps(engine, rid, "effect-report")) == 2
    assert len(smtp_server.handler.received) == 1  # --no-email mails nothing


def test_a_release_not_finished_or_unknown_is_refused(engine, load_inventory) -> None:
    load_shop(load_inventory)
    running = seed_release(engine, status="running", finished=False, records=False)
    state = release_effect(EffectParams(release_id=running), return_state=True)
    assert state.is_failed()
    assert f"release {running} is running and has not finished" in str(state.message)
    cancelled = seed_release(engine, status="cancelled", records=False)
    state = release_effect(EffectParams(release_id=cancelled), return_state=True)
    assert state.is_failed() and "without releasing anything" in str(state.message)
    state = release_effect(EffectParams(release_id=999), return_state=True)
    assert state.is_failed() and "no release 999" in str(state.message)
    assert steps(engine, running, "effect-report") == []
    assert steps(engine, cancelled, "effect-report") == []


def _code() -> str:
    # the session's Prefect server is shared: a contract (and deployment) of this test only
    return f"EFF-{uuid.uuid4().hex[:6].upper()}"


def test_the_report_is_scheduled_on_the_prefect_server(
    engine, load_inventory, prefect_server: str
) -> None:
    from prefect.client.orchestration import get_client

    from upkeep.deployments import to_runner_deployment
    from upkeep.domain.contract import ContractView
    from upkeep.domain.processes import specs_for

    code = _code()
    load_shop(load_inventory, code)
    rid = seed_release(engine, code, records=False)
    with Session(engine) as s:
        contract = s.exec(select(Contract).where(Contract.code == code)).one()
        (spec,) = [p for p in specs_for(ContractView.of(contract)) if p.process == "release_effect"]
        row = s.get(Release, rid)
        assert row is not None and row.finished_at is not None
        due = row.finished_at + timedelta(days=3)
    deployment_id = to_runner_deployment(spec).apply()  # as upkeep deploy registers it
    try:
        run_id = schedule_effect_report(rid)
        assert run_id is not None
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
            deployment = client.read_deployment(deployment_id)
        assert deployment.name == code.lower() and run.deployment_id == deployment_id
        assert run.state is not None and run.state.type.value == "SCHEDULED"
        assert run.expected_start_time == due
        assert run.parameters == {"params": {"release_id": rid}}
        assert f"contract:{code}" in run.tags
        (step,) = steps(engine, rid, "effect-scheduled")
        assert step.ok and step.detail["flow_run_id"] == run_id
        assert step.detail["at"] == due.isoformat()
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)  # its scheduled runs go with it


def test_without_a_deployment_it_says_to_run_the_report_by_hand(engine, load_inventory) -> None:
    code = _code()
    load_shop(load_inventory, code)
    rid = seed_release(engine, code, records=False)
    assert schedule_effect_report(rid) is None
    (step,) = steps(engine, rid, "effect-scheduled")
    assert not step.ok and step.detail["flow_run_id"] is None
    assert f"no deployment release-effect/{code.lower()} serves the effect report" in step.summary
    assert f"run `upkeep releases effect {rid}` by hand at or after" in step.summary
