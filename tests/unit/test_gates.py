"""Gate records, their event log, and response-time figures computed from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from upkeep.domain.approvals import (
    WRONG_CODE,
    Decision,
    Person,
    code_recipients,
    pending_attempt,
    wrong_codes_since_rotation,
)
from upkeep.domain.report_time import human
from upkeep.models import Approval, Contract, Customer
from upkeep.tasks.gates import (
    Decided,
    close_gate,
    events,
    gate_report,
    log_event,
    open_gate,
    percentile,
    response_times,
)
from upkeep.tasks.pause import ApprovalInput, parse_answer, response_key

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


def minutes(*values: int) -> list[timedelta]:
    return [timedelta(minutes=v) for v in values]


def test_percentile_is_nearest_rank() -> None:
    waits = minutes(*range(1, 11))
    assert percentile(waits, 90) == timedelta(minutes=9)
    assert percentile(waits, 100) == timedelta(minutes=10)
    assert percentile(minutes(7), 90) == timedelta(minutes=7)


def test_response_times_per_contract_and_approver() -> None:
    decided = [Decided("ACME", "Alice", T0, T0 + w) for w in minutes(10, 30, 20)]
    decided += [Decided("ACME", "Paul", T0, T0 + timedelta(hours=5))]
    decided += [Decided("GLOBEX", "Alice", T0, T0 + timedelta(minutes=1))]
    (alice, paul, globex) = response_times(decided)
    assert (alice.contract, alice.approver, alice.decisions) == ("ACME", "Alice", 3)
    assert alice.median == timedelta(minutes=20)
    assert alice.p90 == alice.longest == timedelta(minutes=30)
    assert paul.median == timedelta(hours=5)
    assert (globex.contract, globex.decisions) == ("GLOBEX", 1)


def test_human_durations() -> None:
    assert human(timedelta(seconds=12)) == "12s"
    assert human(timedelta(minutes=4, seconds=10)) == "4m 10s"
    assert human(timedelta(hours=2, minutes=5)) == "2h 05m"
    assert human(timedelta(days=3, hours=4, minutes=59)) == "3d 4h"


def _contract(s: Session, code: str) -> int:
    customer = Customer(code=code.lower(), name=code)
    s.add(customer)
    s.flush()
    contract = Contract(code=code, name=code, customer_id=customer.id)
    s.add(contract)
    s.flush()
    assert contract.id is not None
    return contract.id


def test_event_log_and_report_from_records(engine: sa.Engine) -> None:
    with Session(engine) as s:
        acme = _contract(s, "ACME")
        globex = _contract(s, "GLOBEX")
        a = open_gate(
            session=s,
            flow_run_id="r1",
            contract_id=acme,
            gate="inspection-plan",
            subject="plan",
            requested_at=T0,
        )
        assert a.id is not None
        log_event(
            session=s, approval_id=a.id, kind="refused", actor="Mallory", detail="not an approver"
        )
        log_event(session=s, approval_id=a.id, kind="escalated", detail="to Bob")
        close_gate(session=s, approval_id=a.id, decision="approve", approver="Alice", comment="ok")
        rev = open_gate(
            session=s,
            flow_run_id="r1",
            contract_id=acme,
            gate="inspection-plan-revision",
            subject="revise",
        )
        assert rev.id is not None
        close_gate(session=s, approval_id=rev.id, decision="resubmit", approver="Eve", comment="")
        expired = open_gate(
            session=s, flow_run_id="r2", contract_id=globex, gate="inspection-plan", subject="plan"
        )
        assert expired.id is not None
        close_gate(
            session=s,
            approval_id=expired.id,
            decision="expired",
            approver=None,
            comment="no decision",
        )
        open_gate(
            session=s, flow_run_id="r3", contract_id=globex, gate="inspection-plan", subject="plan"
        )
        old = Approval(
            flow_run_id="r0",
            contract_id=acme,
            gate="inspection-plan",
            subject="last year",
            requested_at=T0 - timedelta(days=365),
        )
        s.add(old)
        s.commit()
        kinds = [e.kind for e in events(session=s, approval_id=a.id)]
        assert kinds == ["opened", "refused", "escalated", "decided"]
        report = gate_report(session=s, since=T0 - timedelta(days=1))
    (alice,) = report.times  # the engineer's revision is not an approver's decision
    assert (alice.contract, alice.approver, alice.decisions) == ("ACME", "Alice", 1)
    assert report.gates == {"ACME": 1, "GLOBEX": 2}  # no revision gates, nothing before since
    assert report.escalations == {"ACME": 1}
    assert report.expiries == {"GLOBEX": 1}
    assert report.pending == {"GLOBEX": 1}
    assert report.refused == {"ACME": 1}  # Mallory's answer
    assert report.replaced == {} and report.planted == {}


def test_each_approver_of_an_m_of_n_gate_gets_their_own_time(engine: sa.Engine) -> None:
    with Session(engine) as s:
        acme = _contract(s, "ACME")
        gate = open_gate(
            session=s,
            flow_run_id="r1",
            contract_id=acme,
            gate="release",
            subject="release 2.1",
            requested_at=T0,
        )
        assert gate.id is not None
        first = log_event(session=s, approval_id=gate.id, kind="approved", actor="Alice")
        first.at = T0 + timedelta(minutes=10)
        second = log_event(session=s, approval_id=gate.id, kind="approved", actor="Paul")
        second.at = T0 + timedelta(hours=2)
        close_gate(
            session=s, approval_id=gate.id, decision="approve", approver="Alice, Paul", comment=""
        )
        s.commit()
        report = gate_report(session=s)
    times = {t.approver: t.median for t in report.times}
    assert times == {"Alice": timedelta(minutes=10), "Paul": timedelta(hours=2)}


def test_the_pending_form_is_the_newest_waiting_key_without_a_verdict() -> None:
    assert pending_attempt([("opened", None), ("notified", None)]) is None
    log = [("opened", None), ("waiting", "g-r1-aaaa")]
    assert pending_attempt(log) == "g-r1-aaaa"
    log += [("refused", "g-r1-aaaa"), ("waiting", "g-r1-bbbb")]
    assert pending_attempt(log) == "g-r1-bbbb"  # the judged form is never read again
    assert pending_attempt([*log, ("approved", "g-r1-bbbb")]) is None
    assert pending_attempt([*log, ("decided", "g-r1-bbbb")]) is None
    assert pending_attempt([*log, ("expired", "g-r1-bbbb")]) is None
    # events that judge no answer (notices, planted answers, rotations) leave the form open
    assert pending_attempt([*log, ("planted", None), ("rotated", None)]) == "g-r1-bbbb"


def test_wrong_codes_are_counted_per_person_since_their_code_was_replaced() -> None:
    log = [
        ("refused", "Alice", WRONG_CODE),
        ("refused", "Alice", "a rejection needs a comment saying what must change"),
        ("refused", "Paul", WRONG_CODE),
        ("refused", "Alice", WRONG_CODE + "; ..."),
    ]
    assert wrong_codes_since_rotation(log, "Alice") == 2  # other refusals do not count
    assert wrong_codes_since_rotation(log, "Paul") == 1
    log += [("rotated", "Alice", "3 wrong codes"), ("refused", "Alice", WRONG_CODE)]
    assert wrong_codes_since_rotation(log, "Alice") == 1
    assert wrong_codes_since_rotation(log, "Mallory") == 0


def test_codes_go_only_to_people_who_may_still_answer_and_have_none() -> None:
    alice = Person(name="Alice Owner", email="alice@acme.example")
    paul = Person(name="Paul Lead", email="paul@provider.example")
    bob = Person(name="Bob Backup", email="bob@provider.example")
    people = [alice, paul, bob]

    def names(**kw: object) -> list[str]:
        args: dict = {
            "coded": set(),
            "answered": set(),
            "requested_by": None,
            "allow_self_approval": False,
        }
        args.update(kw)
        return [p.name for p in code_recipients(people, **args)]

    assert names() == ["Alice Owner", "Paul Lead", "Bob Backup"]
    assert names(coded={"Alice Owner"}) == ["Paul Lead", "Bob Backup"]  # once per gate
    assert names(answered={"Paul Lead"}) == ["Alice Owner", "Bob Backup"]
    # the starter may not approve, so is sent no code; by e-mail or by name, any case
    assert names(requested_by="ALICE@acme.example") == ["Paul Lead", "Bob Backup"]
    assert names(requested_by="paul lead") == ["Alice Owner", "Bob Backup"]
    assert names(requested_by="paul lead", allow_self_approval=True) == [
        "Alice Owner",
        "Paul Lead",
        "Bob Backup",
    ]


def test_closing_a_gate_records_the_answer_it_judged(engine: sa.Engine) -> None:
    with Session(engine) as s:
        acme = _contract(s, "ACME")
        gate = open_gate(
            session=s, flow_run_id="r1", contract_id=acme, gate="inspection-plan", subject="p"
        )
        assert gate.id is not None
        log_event(session=s, approval_id=gate.id, kind="waiting", attempt_key="k-1")
        close_gate(
            session=s,
            approval_id=gate.id,
            decision="reject",
            approver="Alice",
            comment="no db1",
            attempt_key="k-1",
        )
        s.commit()
        log = events(session=s, approval_id=gate.id)
    assert [(e.kind, e.attempt_key) for e in log] == [
        ("opened", None),
        ("waiting", "k-1"),
        ("decided", "k-1"),
    ]
    assert pending_attempt([(e.kind, e.attempt_key) for e in log]) is None


def test_a_stored_answer_is_read_as_the_form_or_as_why_it_is_not_one() -> None:
    good = parse_answer(
        ApprovalInput, {"decision": "approve", "approver": "Alice Owner", "code": "ABCDE-FGHJK"}
    )
    assert isinstance(good, ApprovalInput) and good.decision is Decision.APPROVE
    assert parse_answer(ApprovalInput, "approve") == "the answer was not a form"
    assert parse_answer(ApprovalInput, {"decision": "approve"}) == (
        "the answer was not valid (2 error(s))"
    )
    extra = {"decision": "approve", "approver": "A", "code": "B", "admin": True}
    assert parse_answer(ApprovalInput, extra) == "the answer was not valid (1 error(s))"
    # where Prefect's resume stores the answer to a form opened under a pause key
    assert response_key("inspection-plan-r1-00ff") == "suspended-inspection-plan-r1-00ff-response"
    assert response_key("k", suspended=False) == "paused-k-response"


def test_the_report_counts_refused_answers_replaced_codes_and_planted_answers(
    engine: sa.Engine,
) -> None:
    with Session(engine) as s:
        acme = _contract(s, "ACME")
        gate = open_gate(
            session=s, flow_run_id="r1", contract_id=acme, gate="inspection-plan", subject="p"
        )
        assert gate.id is not None
        for _ in range(3):
            log_event(
                session=s, approval_id=gate.id, kind="refused", actor="Alice", detail=WRONG_CODE
            )
        log_event(session=s, approval_id=gate.id, kind="rotated", actor="Alice", detail="3")
        log_event(session=s, approval_id=gate.id, kind="planted", detail="removed")
        s.commit()
        report = gate_report(session=s)
    assert (report.refused, report.replaced, report.planted) == (
        {"ACME": 3},
        {"ACME": 1},
        {"ACME": 1},
    )
    assert report.escalations == {}
