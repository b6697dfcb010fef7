"""The approval form's text: what an approver reads above the fields of a waiting gate, and
the deadlines in the contract's timezone. Pure Markdown; every name and reason is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from upkeep.domain.approvals import ApprovalRequest, still_deciding
from upkeep.domain.markup import md_escape

REFUSALS_SHOWN = 5
"""How many refused answers a form lists (the newest); the rest are counted."""


def describe_refusals(
    refusals: Sequence[str], *, heading: str = "Earlier answers were refused"
) -> str:
    """The refused answers and why, newest last, as a Markdown block ("" when none).

    The reasons hold what people typed (a claimed name, a comment): each is escaped.
    """
    if not refusals:
        return ""
    shown = refusals[-REFUSALS_SHOWN:]
    lines = [f"**{md_escape(heading)}** ({len(refusals)}, newest last):"]
    if len(refusals) > len(shown):
        lines.append(f"- … {len(refusals) - len(shown)} earlier refusal(s) not shown")
    lines += [f"- {md_escape(r, limit=300)}" for r in shown]
    return "\n".join(lines)


def format_deadline(at: datetime, timezone: str) -> str:
    """``at`` in the contract's timezone, named: ``2026-12-04 09:00 CET (Europe/Berlin)``.

    A naive ``at`` is UTC (SQLite drops the offset); an unknown zone falls back to UTC.
    """
    try:
        zone: tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone, timezone = UTC, "UTC"
    local = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M %Z} ({timezone})"


def describe(
    request: ApprovalRequest,
    refusals: Sequence[str],
    *,
    approved_by: Sequence[str] = (),
    escalated: bool = False,
    opened_at: datetime | None = None,
) -> str:
    """The approval form's Markdown: what the approver needs first, then the evidence.

    In this order: refused earlier answers and why; how many approvals are given and needed;
    who may still decide (the backup approver once the gate escalated); the deadline (and
    when it escalates) in the contract's timezone; how to answer; the evidence. Every name,
    subject and reason is escaped; the evidence is Markdown its requester built (escaped
    there). ``approved_by``, ``escalated`` and ``opened_at`` are the gate's state from its
    records.
    """
    policy = request.policy
    need = policy.required_approvals
    approved = list(dict.fromkeys(approved_by))
    # No heading: the UI shows the description in a short scrolling box above the fields,
    # where a large heading would be all the approver sees.
    lines = [f"**Approval needed:** {md_escape(request.subject)}", ""]
    refused = describe_refusals(refusals)
    if refused:
        lines += [refused, ""]
    if need > 1 or approved:
        given = f"**{len(approved)} of {need} approved**"
        if approved:
            given += " (" + ", ".join(md_escape(n) for n in approved) + ")"
        more = need - len(approved)
        lines.append("- " + given + (f"; {more} more needed." if more > 0 else "."))
    still = still_deciding(request, approved, with_backup=escalated)
    if still:
        names = ", ".join(
            md_escape(p.name) + (" (backup approver)" if p is request.backup_approver else "")
            for p in still
        )
        lines.append(f"- **Who may still decide:** {names}.")
    else:
        lines.append("- **Nobody who may decide is left to answer this gate.**")
    if escalated and request.backup_approver is not None:
        lines.append(
            "- Nobody decided in time, so the gate was escalated to the backup approver "
            f"{md_escape(request.backup_approver.name)}."
        )
    if opened_at is not None:
        tz = request.timezone
        deadline = opened_at + timedelta(hours=policy.expire_after_hours)
        lines.append(f"- **Decide before:** {format_deadline(deadline, tz)}.")
        if (
            not escalated
            and request.backup_approver is not None
            and policy.escalate_after_hours is not None
        ):
            at = opened_at + timedelta(hours=policy.escalate_after_hours)
            lines.append(
                f"- Undecided at {format_deadline(at, tz)}, it goes to the backup approver "
                f"{md_escape(request.backup_approver.name)} too."
            )
    lines += [
        "",
        "Choose *approve* or *reject*, give your name as listed and the one-time code "
        "from your e-mail, and say why when you reject.",
        "",
        "---",
        "",
        request.evidence.rstrip(),
    ]
    return "\n".join(lines)
