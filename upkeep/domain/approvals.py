"""The approval rules, pure: who may decide a gate, who gets a code, when M of N approvals
decide it, what one answer is worth, and when a gate escalates or expires.

No database and no Prefect here. The gate's records come in as values (its
:class:`~upkeep.models.ApprovalEvent` and :class:`~upkeep.models.ApprovalCode` rows, built in a
test without a database), and :func:`verdict` says what one answer is worth and what to record;
``upkeep.tasks.approval_records`` reads the facts and writes the result, and
``upkeep.flows.approvals`` is the gate process around them.

The rules, each below:

* **Who may decide**: a person named by name or e-mail (any case) among the gate's approvers,
  and the backup approver once the gate escalated (:func:`match_person`, :func:`deciders`).
* **Self-approval**: whoever started the run may not approve it unless the policy allows it
  (:func:`same_person`, :func:`may_still_answer`).
* **Codes**: one per person per gate, mailed only to who may still answer
  (:func:`code_recipients`); an answer needs that person's unused code.
* **Wrong codes**: after ``max_failed_attempts`` wrong codes under one name that person's code
  is replaced (:func:`wrong_codes_since_rotation`); nobody is locked out.
* **M of N**: ``required_approvals`` distinct approvers decide the gate; one rejection (with a
  comment) decides it at once and sends the work back.
* **Escalation and expiry**: the policy's hours after the gate opened (:func:`due`,
  :func:`escalation_due`, :func:`expiry_reason`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from upkeep.domain.codes import looks_like_code, verify_code
from upkeep.domain.contract import GatePolicy, PersonSpec
from upkeep.models import Approval, ApprovalCode, ApprovalEvent

Person = PersonSpec
"""An approver: the contract's typed person (name and e-mail)."""


class Decision(StrEnum):
    """An approver's decision on a gate."""

    APPROVE = "approve"
    REJECT = "reject"


DECISIONS = tuple(d.value for d in Decision)
"""Decisions of an approver (the others, resubmit and cancel, are the engineer's)."""

VERDICTS = frozenset({"refused", "approved", "decided", "expired"})
"""Event kinds that judge the answer given under their ``attempt_key``."""

WRONG_CODE = "wrong code for this gate"


class ApprovalRequest(BaseModel):
    """What a gate asks, of whom, under which policy."""

    model_config = ConfigDict(extra="forbid")

    gate: str = Field(description="Which gate: inspection-plan, release, ...")
    key: str = Field(
        pattern=r"^[a-z0-9-]+$",
        description="Unique within the run (gate and round); Prefect's input keys allow only "
        "letters, digits and dashes",
    )
    contract: str
    contract_id: int | None = None
    subject: str
    evidence: str = Field(description="Markdown shown to the approver")
    approvers: list[Person] = Field(min_length=1)
    backup_approver: Person | None = None
    requested_by: str | None = None
    policy: GatePolicy = GatePolicy()
    timezone: str = Field("UTC", description="The contract's timezone: deadlines are shown in it")


class ApprovalResult(BaseModel):
    approval_id: int
    decision: Decision
    approver: str
    comment: str
    decided_at: datetime


class GateClosed(RuntimeError):
    """The gate ended without an approver's decision: expired, or its run was cancelled.

    ``cancelled``: the run itself is being cancelled (the flow should end *Cancelled*)."""

    def __init__(self, message: str, *, cancelled: bool = False) -> None:
        super().__init__(message)
        self.cancelled = cancelled


class ApprovalExpired(GateClosed):
    pass


class Answer(Protocol):
    """One answer to a gate's form (the resume form :class:`ApprovalInput` is one)."""

    @property
    def decision(self) -> Decision: ...
    @property
    def approver(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def comment(self) -> str: ...


class Verdict(BaseModel):
    """How one answer was judged, and what to record. ``final`` is set once the gate is
    decided.

    Refused (``accepted`` False): a ``refused`` event by ``person`` with ``reason``; with
    ``rotate``, that person's unused codes are replaced and a ``rotated`` event says why.
    Accepted: the code whose hash is ``code_used`` is used up; an approval is recorded with
    ``note``; a final decision closes the gate under ``decided_by`` with ``decision_comment``.
    """

    accepted: bool
    person: str | None = None
    reason: str = ""
    final: Decision | None = None
    note: str = ""
    decided_by: str = ""
    decision_comment: str = ""
    code_used: str | None = None
    rotate: str | None = None


# --- people ---------------------------------------------------------------------------------


def same_person(person: Person, who: str | None) -> bool:
    """Whether ``who`` names ``person`` (by name or e-mail, any case)."""
    if not who:
        return False
    wanted = who.strip().casefold()
    return wanted in (person.name.strip().casefold(), str(person.email).strip().casefold())


def match_person(claimed: str, people: Iterable[Person]) -> Person | None:
    """The person ``claimed`` names (by name or e-mail, any case), or None."""
    return next((p for p in people if same_person(p, claimed)), None)


def distinct(people: Iterable[Person]) -> list[Person]:
    """``people`` with each person once (the same name or e-mail is the same person)."""
    out: list[Person] = []
    for p in people:
        if not any(same_person(q, p.name) or same_person(q, str(p.email)) for q in out):
            out.append(p)
    return out


def deciders(
    approvers: Sequence[Person], backup: Person | None, *, with_backup: bool
) -> list[Person]:
    """Who may decide the gate: its approvers, and the backup approver when ``with_backup``
    (the gate escalated, or for planning: it can escalate). Each person once."""
    people = list(approvers)
    if with_backup and backup is not None:
        people.append(backup)
    return distinct(people)


def roles(request: ApprovalRequest, escalated: bool) -> list[tuple[Person, str]]:
    """Who is mailed a code now, with the role the mail names: the approvers, and after
    escalation the backup approver."""
    people = [(p, "approver") for p in request.approvers]
    if escalated and request.backup_approver is not None:
        people.append((request.backup_approver, "backup approver"))
    return people


def may_still_answer(
    person: Person,
    *,
    answered: Collection[str],
    requested_by: str | None,
    allow_self_approval: bool,
) -> bool:
    """Whether ``person`` may still answer a gate: not if they already approved it, nor if
    they started the run and the contract does not let a starter approve."""
    return person.name not in answered and (
        allow_self_approval or not same_person(person, requested_by)
    )


def still_deciding(
    request: ApprovalRequest, approved_by: Sequence[str], *, with_backup: bool
) -> list[Person]:
    """The gate's approvers (and its backup approver when ``with_backup``) who may still
    answer, each once by name."""
    people = list(request.approvers)
    if with_backup and request.backup_approver is not None:
        people.append(request.backup_approver)
    still: list[Person] = []
    for person in people:
        if person.name not in {p.name for p in still} and may_still_answer(
            person,
            answered=approved_by,
            requested_by=request.requested_by,
            allow_self_approval=request.policy.allow_self_approval,
        ):
            still.append(person)
    return still


def answerable_names(request: ApprovalRequest, approved_by: Sequence[str] = ()) -> list[str]:
    """The names the form offers: everyone who may ever decide this gate (its approvers, and
    the backup approver when the gate escalates), less those who already approved and the
    starter when self-approval is off. The form is saved once per suspend, so the backup
    approver is offered before escalation too; an answer of theirs that comes too early is
    judged and refused with the reason."""
    escalates = request.policy.escalate_after_hours is not None
    return [p.name for p in still_deciding(request, approved_by, with_backup=escalates)]


def code_recipients(
    people: Sequence[Person],
    *,
    coded: Collection[str],
    answered: Collection[str],
    requested_by: str | None,
    allow_self_approval: bool,
) -> list[Person]:
    """Who of ``people`` is mailed a code now.

    Only someone who may still answer and holds no code of this gate yet: not whoever already
    has one (live or used; a replaced code is deleted, so its owner gets a new one), nor who
    already approved, nor the run's starter when the contract does not let them approve.
    """
    return [
        p
        for p in people
        if p.name not in coded
        and may_still_answer(
            p,
            answered=answered,
            requested_by=requested_by,
            allow_self_approval=allow_self_approval,
        )
    ]


def notice_recipients(request: ApprovalRequest, escalated: bool) -> list[str]:
    """Who hears that a gate ended without a decision: approvers, backup, the starter."""
    people = list(request.approvers)
    if escalated and request.backup_approver is not None:
        people.append(request.backup_approver)
    recipients = [str(p.email) for p in people]
    starter = (request.requested_by or "").strip()
    if "@" in starter and starter not in recipients:
        recipients.append(starter)
    return recipients


# --- the gate's log -------------------------------------------------------------------------


def pending_attempt(log: Sequence[tuple[str, str | None]]) -> str | None:
    """The pause key of the newest form still waiting for its answer, or None.

    ``log`` is the gate's (kind, attempt_key) events, oldest first: a ``waiting`` event opens
    a form under a key, a verdict event with the same key answers it.
    """
    judged = {key for kind, key in log if kind in VERDICTS and key}
    waiting = [key for kind, key in log if kind == "waiting" and key]
    if not waiting or waiting[-1] in judged:
        return None
    return waiting[-1]


def wrong_codes_since_rotation(log: Sequence[tuple[str, str | None, str]], person: str) -> int:
    """How many wrong codes were typed under ``person`` since their code was last replaced.

    ``log`` is the gate's (kind, actor, detail) events, oldest first.
    """
    count = 0
    for kind, actor, detail in log:
        if actor != person:
            continue
        if kind == "rotated":
            count = 0
        elif kind == "refused" and detail.startswith(WRONG_CODE):
            count += 1
    return count


def escalated(events: Iterable[ApprovalEvent]) -> bool:
    return any(e.kind == "escalated" for e in events)


def approved_by(events: Iterable[ApprovalEvent]) -> list[str]:
    """Who approved the gate so far, in order (one of M each)."""
    return [e.actor for e in events if e.kind == "approved" and e.actor]


def refusals(events: Iterable[ApprovalEvent]) -> list[str]:
    """Why earlier answers were refused, oldest first."""
    return [e.detail for e in events if e.kind == "refused"]


# --- time -----------------------------------------------------------------------------------


def due(requested_at: datetime, hours: float | None, now: datetime) -> bool:
    """Whether ``hours`` (None: never) have passed since ``requested_at``."""
    return hours is not None and now - requested_at >= timedelta(hours=hours)


def expiry_due(policy: GatePolicy, opened: datetime, now: datetime) -> bool:
    return due(opened, policy.expire_after_hours, now)


def escalation_due(
    request: ApprovalRequest, opened: datetime, now: datetime, *, already: bool
) -> bool:
    """Whether the gate escalates to its backup approver now: the policy's hours passed, it
    has a backup approver, and it has not escalated yet."""
    return (
        not already
        and request.backup_approver is not None
        and due(opened, request.policy.escalate_after_hours, now)
    )


def expiry_reason(policy: GatePolicy, opened: datetime) -> str:
    return (
        f"approval gate expired: no decision {policy.expire_after_hours:g} h after it "
        f"opened ({opened:%Y-%m-%d %H:%M} UTC)"
    )


def escalation_reason(policy: GatePolicy) -> str:
    return f"no decision after {policy.escalate_after_hours:g} h"


# --- one answer -----------------------------------------------------------------------------


def _refused(person: str, reason: str, rotate: str | None = None) -> Verdict:
    return Verdict(accepted=False, person=person, reason=reason, rotate=rotate)


def verdict(
    request: ApprovalRequest,
    answer: Answer,
    *,
    closed: str | None,
    events: Sequence[ApprovalEvent],
    codes: Sequence[ApprovalCode],
) -> Verdict:
    """What one answer is worth, from the gate's facts: ``closed`` (the gate's decision if it
    has one), its ``events`` oldest first and its ``codes`` (hashes, used or not).

    In order: a closed gate takes no answer; the answer must name someone who may decide (the
    backup approver only after escalation); the starter may not approve unless the policy
    allows it; a rejection needs a comment; the code must be that person's (wrong codes count
    towards replacing it) and unused. Then a rejection decides the gate, and an approval
    decides it once ``required_approvals`` distinct people approved.
    """
    policy = request.policy
    if closed is not None:
        return _refused(answer.approver, f"the gate is already closed ({closed})")
    people = [p for p, _ in roles(request, escalated(events))]
    person = match_person(answer.approver, people)
    if person is None:
        allowed = ", ".join(p.name for p in people)
        return _refused(
            answer.approver, f"{answer.approver!r} may not decide this gate (allowed: {allowed})"
        )
    name = person.name
    if not policy.allow_self_approval and same_person(person, request.requested_by):
        return _refused(name, f"{name} started this run and may not approve it")
    comment = answer.comment.strip()
    if answer.decision is Decision.REJECT and not comment:
        return _refused(name, "a rejection needs a comment saying what must change")
    match = None
    if looks_like_code(answer.code):
        mine = [c for c in codes if c.person == name]
        match = next((c for c in mine if verify_code(answer.code, c.code_hash)), None)
    if match is None:
        log = [(e.kind, e.actor, e.detail) for e in events]
        wrong = wrong_codes_since_rotation(log, name) + 1
        if wrong < policy.max_failed_attempts:
            return _refused(name, WRONG_CODE)
        return _refused(
            name,
            f"{WRONG_CODE}; after {wrong} wrong codes under this name {name}'s code was "
            "replaced and a new one is mailed to them",
            rotate=f"{wrong} wrong codes were typed under {name}'s name",
        )
    if match.used_at is not None:
        return _refused(name, "that code was already used")
    used = match.code_hash
    if answer.decision is Decision.REJECT:
        return Verdict(
            accepted=True,
            person=name,
            final=Decision.REJECT,
            decided_by=name,
            decision_comment=comment,
            code_used=used,
        )
    approvals = [e for e in events if e.kind == "approved"]
    names = list(dict.fromkeys([*(e.actor for e in approvals if e.actor), name]))
    if len(names) < policy.required_approvals:
        return Verdict(accepted=True, person=name, note=comment, code_used=used)
    comments = "; ".join(
        [*(e.detail for e in approvals if e.detail), *([comment] if comment else [])]
    )
    return Verdict(
        accepted=True,
        person=names[-1],
        final=Decision.APPROVE,
        note=comment,
        decided_by=", ".join(names),
        decision_comment=comments,
        code_used=used,
    )


def ended_state(state: Any) -> str:
    """How a run's final state reads in a reason: ``Cancelled: <its message>``."""
    return f"{state.name}: {state.message or 'no message'}"


def closed_reason(gate: Approval) -> str:
    """Why a gate takes no more answers: its decision and the reason recorded with it."""
    return f"the gate {gate.gate!r} is closed ({gate.decision}: {gate.comment or 'no reason'})"


# --- gates nobody could approve (checked before a run starts and at inventory load) -------

PersonLike: TypeAlias = PersonSpec | Mapping[str, Any]
"""An approver typed, or as an inventory spec dumps it (a dict)."""


def unapprovable(
    approvers: Sequence[Person],
    backup: Person | None,
    policy: GatePolicy,
    requested_by: str | None,
) -> str | None:
    """Why a gate asked by ``requested_by`` could never be approved, or None. Pure."""
    people = deciders(list(approvers), backup, with_backup=policy.escalate_after_hours is not None)
    need = policy.required_approvals
    if len(people) < need:
        return (
            f"the gate needs {need} approvals but only {len(people)} "
            f"{'person' if len(people) == 1 else 'people'} may give one "
            f"({', '.join(p.name for p in people)}): no run can be approved"
        )
    if policy.allow_self_approval:
        return None
    starter = [p for p in people if same_person(p, requested_by)]
    others = [p for p in people if p not in starter]
    if len(others) >= need:
        return None
    who = starter[0].name
    if not others:
        return (
            f"{who} started this run and is its only approver, and the contract does not allow "
            "self-approval: nobody could approve it. Start it under another name (--as), or "
            "add an approver to the contract"
        )
    return (
        f"{who} started this run and may not approve it; {need} approvals are needed but only "
        f"{len(others)} other approver{'s' if len(others) != 1 else ''} "
        f"({', '.join(p.name for p in others)}) could give one. Start it under "
        "another name (--as), or add an approver to the contract"
    )


def approver_warnings(
    approvers: Sequence[PersonLike],
    backup: PersonLike | None,
    policies: dict[str, GatePolicy],
) -> list[str]:
    """For ``inventory load``: gates these approvers could leave unapprovable. Pure.

    ``policies`` maps where the policy is written (``approval_policy``,
    ``gate_policies.inspection-plan``) to the policy in force there; a policy that names its
    own ``approvers`` is checked against them instead of ``approvers``.
    """
    contract_people = [Person.model_validate(p) for p in approvers]
    backup_person = Person.model_validate(backup) if backup is not None else None
    warnings: list[str] = []
    for where, policy in policies.items():
        typed = list(policy.approvers) or contract_people
        never = unapprovable(typed, backup_person, policy, None)
        if never is not None:
            warnings.append(f"{where}: {never}")
            continue
        people = deciders(typed, backup_person, with_backup=policy.escalate_after_hours is not None)
        if not policy.allow_self_approval and len(people) == policy.required_approvals:
            names = ", ".join(p.name for p in people)
            warnings.append(
                f"{where}: a run started by {'' if len(people) == 1 else 'one of '}{names} "
                f"could not be approved ({policy.required_approvals} approval"
                f"{'s' if policy.required_approvals != 1 else ''} needed and self-approval is "
                "not allowed): add an approver or a backup approver"
            )
    return warnings
