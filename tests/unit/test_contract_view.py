"""The typed contract as the processes read it: ContractView.of a stored Contract row."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, select

from upkeep.domain.cadence import Blackout
from upkeep.domain.contract import ContractView, GatePolicy, PersonSpec
from upkeep.inventory import apply_inventory, parse_inventory
from upkeep.models import Contract

GOOD = (Path(__file__).parent.parent / "fixtures" / "inventory" / "good.yaml").read_text()


def _views(engine: sa.Engine, text: str = GOOD) -> dict[str, ContractView]:
    with Session(engine) as s:
        apply_inventory(s, parse_inventory(text, "good.yaml"))
        s.commit()
        return {c.code: ContractView.of(c) for c in s.exec(select(Contract))}


def test_people_are_the_approvers_then_the_backup_approver(engine: sa.Engine) -> None:
    views = _views(engine)
    acme = views["ACME-OPS"]
    assert [p.name for p in acme.people] == ["Alice Owner", "Paul Lead", "Bob Backup"]
    assert acme.people[-1] == PersonSpec(name="Bob Backup", email="bob@provider.example")
    assert acme.approvers == acme.people[:2]
    # no backup approver: the approvers alone
    assert [p.name for p in views["GLOBEX"].people] == ["Gina Globex"]


def test_threshold_overrides_are_what_the_inventory_wrote(engine: sa.Engine) -> None:
    views = _views(engine)
    acme = views["ACME-OPS"]
    assert acme.threshold_overrides == {
        "disk_used_pct_major": 75.0,
        "disk_used_pct_critical": 90.0,
        "allowed_tcp_ports": [22, 443],
    }
    assert acme.thresholds.disk_used_pct_major == 75
    assert acme.thresholds.memory_used_pct_major == 90  # a default
    # nothing written: nothing overridden, every threshold the default
    assert views["GLOBEX"].threshold_overrides == {}
    assert views["GLOBEX"].thresholds.disk_used_pct_major == 80


def test_threshold_overrides_round_trip_the_stored_column(engine: sa.Engine) -> None:
    _views(engine)
    with Session(engine) as s:
        row = s.exec(select(Contract).where(Contract.code == "ACME-OPS")).one()
        assert ContractView.of(row).threshold_overrides == row.thresholds


def test_blackout_days_are_parsed_and_sorted(engine: sa.Engine) -> None:
    text = GOOD.replace(
        "          - 2027-01-05\n",
        "          - 2027-01-05\n          - {from: 2026-12-24, reason: Christmas Eve}\n",
    )
    views = _views(engine, text)
    assert views["ACME-OPS"].blackout_days() == [
        Blackout(date(2026, 12, 24), date(2026, 12, 24), "Christmas Eve"),
        Blackout(date(2027, 1, 5), date(2027, 1, 5)),
        Blackout(date(2027, 12, 20), date(2028, 1, 6), "customer year-end freeze"),
    ]
    assert views["ACME-OPS"].blackout_policy == "next_allowed_day"
    assert views["GLOBEX"].blackout_days() == []


def test_a_directly_built_row_without_json_columns_reads_as_the_defaults() -> None:
    row = Contract(id=7, code="BARE", name="Bare", customer_id=1)
    view = ContractView.of(row)
    assert view.people == ()
    assert view.threshold_overrides == {}
    assert view.blackout_days() == []
    assert view.policy("inspection-plan") == GatePolicy()


def test_a_gate_policy_overlays_the_contract_default() -> None:
    row = Contract(
        id=7,
        code="GATED",
        name="Gated",
        customer_id=1,
        approvers=[{"name": "Alice Owner", "email": "alice@acme.example"}],
        backup_approver={"name": "Bob Backup", "email": "bob@provider.example"},
        approval_policy={"expire_after_hours": 48},
        gate_policies={"inspection-plan": {"required_approvals": 2}},
    )
    view = ContractView.of(row)
    assert view.policy("inspection-plan") == GatePolicy(required_approvals=2, expire_after_hours=48)
    assert view.policy("backup-drill") == GatePolicy(expire_after_hours=48)
    assert [p.email for p in view.people] == ["alice@acme.example", "bob@provider.example"]
