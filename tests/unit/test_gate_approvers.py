"""A gate's own approvers (``gate_policies.GATE.approvers``): who answers the release's gates,
who the approval tools recognise, and what ``inventory load`` warns about. Pure."""

from __future__ import annotations

import pytest

from upkeep.domain.approvals import approver_warnings
from upkeep.domain.contract import ContractView, GatePolicy, PersonSpec
from upkeep.domain.releases import RELEASE_GATE, TEST_REPORT_GATE
from upkeep.inventory import InventoryError, parse_inventory

ALICE = PersonSpec(name="Alice Owner", email="alice@acme.example")
CORA = PersonSpec(name="Cora Customer", email="cora@acme.example")
RITA = PersonSpec(name="Rita Release", email="rita@acme.example")
BOB = PersonSpec(name="Bob Backup", email="bob@provider.example")


def _view(**policies: GatePolicy) -> ContractView:
    return ContractView(
        id=1,
        code="ACME",
        name="ACME",
        customer_id=1,
        approvers=(ALICE,),
        backup_approver=BOB,
        gate_policies=dict(policies),
    )


def test_a_gate_with_its_own_approvers_is_answered_by_them_and_the_others_by_the_contracts() -> (
    None
):
    view = _view(**{TEST_REPORT_GATE: GatePolicy(approvers=(CORA,))})
    assert view.approvers_for(TEST_REPORT_GATE) == (CORA,)
    assert view.approvers_for(RELEASE_GATE) == (ALICE,)
    assert view.approvers_for("inspection-plan") == (ALICE,)


def test_everyone_who_may_answer_a_gate_is_known_once_with_the_backup_last() -> None:
    view = _view(
        **{
            TEST_REPORT_GATE: GatePolicy(approvers=(CORA, ALICE)),
            RELEASE_GATE: GatePolicy(approvers=(RITA,), required_approvals=1),
        }
    )
    assert view.people == (ALICE, CORA, RITA, BOB)


def test_warnings_count_a_gates_own_approvers_not_the_contracts() -> None:
    policies = {
        "gate_policies.release": GatePolicy(approvers=(RITA,), required_approvals=2),
        "gate_policies.release-test-report": GatePolicy(approvers=(CORA, RITA)),
    }
    warnings = approver_warnings([ALICE, CORA, RITA], None, policies)
    assert len(warnings) == 1
    assert warnings[0].startswith("gate_policies.release: the gate needs 2 approvals but only 1")


INVENTORY = """
customers:
  - code: acme
    name: ACME
    contracts:
      - code: ACME
        name: ACME ops
        approvers: [{name: Alice Owner, email: alice@acme.example}]
        {policies}
"""


def test_the_inventory_takes_a_gates_approvers_and_refuses_them_as_a_default() -> None:
    spec = parse_inventory(
        INVENTORY.replace(
            "{policies}",
            "gate_policies: {release: {approvers: [{name: Rita Release, email: "
            "rita@acme.example}]}}",
        )
    )
    (contract,) = spec.customers[0].contracts
    assert contract.gate_policies["release"].approvers == (RITA,)
    with pytest.raises(InventoryError) as refused:
        parse_inventory(
            INVENTORY.replace(
                "{policies}",
                "approval_policy: {approvers: [{name: Rita Release, email: rita@acme.example}]}",
            )
        )
    assert "approval_policy cannot name approvers" in str(refused.value)
    assert "gate_policies.GATE.approvers" in str(refused.value)
