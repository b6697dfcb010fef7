"""The release checklist's records, pure (PROCESSES.md, section 4): how a system is released
and rolled back (the inventory), and a release as the engineer declares it, validated before
anything is stored.

Release and rollback commands are written by the provider's engineers in the inventory, split
like a shell line; the only value put into them is the version, through the ``{version}``
placeholder, and it is always quoted (:func:`render_command`). A declared release names its
system, version, changes, window (in the contract's timezone, never on a blackout day), the
target hosts (the contract's hosts of that system) with the canary hosts (named, or the
``canary_share`` of them, at least one) and the test report file.
"""

from __future__ import annotations

import math
import re
import shlex
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from upkeep.domain.cadence import Blackout, blackout_on
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import repeated

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+~:-]{0,99}$")
"""A release version: letters, digits and ``. _ + ~ : -``, starting with a letter or digit."""
PLACEHOLDERS = frozenset({"version"})
REPORT_SUFFIXES = (".html", ".htm", ".pdf", ".md")
AUTOMATIC_CHECKS = ("hosts_healthy", "backup_fresh", "smoke_checks", "config_changes")


class ReleaseError(ValueError):
    """A release that cannot be declared; the message names each problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class ChecklistItem(_Strict):
    """One pre-release item: run by upkeep (``automatic``, one of :data:`AUTOMATIC_CHECKS`) or
    confirmed by a named person (``manual``)."""

    name: str = Field(min_length=1, max_length=64, pattern=NAME_RE)
    kind: Literal["automatic", "manual"]
    description: str = Field("", max_length=2000)
    check: Literal["hosts_healthy", "backup_fresh", "smoke_checks", "config_changes"] | None = None

    @model_validator(mode="after")
    def _check_matches_kind(self) -> ChecklistItem:
        if self.kind == "automatic" and self.check is None:
            raise ValueError(
                f"automatic item {self.name!r} needs a check: {', '.join(AUTOMATIC_CHECKS)}"
            )
        if self.kind == "manual" and self.check is not None:
            raise ValueError(f"manual item {self.name!r} is confirmed by a person: drop check")
        if self.kind == "manual" and not self.description:
            raise ValueError(f"manual item {self.name!r} needs a description of what to confirm")
        return self


def command_problems(template: str) -> list[str]:
    """What is wrong with a release or rollback command as written (empty: nothing)."""
    try:
        argv = shlex.split(template)
    except ValueError as exc:
        return [f"cannot be split like a shell line: {exc}"]
    if not argv:
        return ["is empty"]
    problems = []
    for arg in argv:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
        except ValueError as exc:
            problems.append(f"{arg!r}: {exc} (write {{{{ and }}}} for literal braces)")
            continue
        unknown = sorted(set(fields) - PLACEHOLDERS)
        if unknown:
            problems.append(
                f"{arg!r} uses {', '.join('{' + u + '}' for u in unknown)}: the only "
                "placeholder is {version}"
            )
    return problems


def render_command(template: str, version: str) -> str:
    """The command line for ``version``: each word of the template with ``{version}`` filled
    in and the word quoted, so no value can add a word or a shell construct."""
    if not VERSION_RE.match(version):
        raise ReleaseError(f"version {version!r} is not a release version")
    return " ".join(shlex.quote(arg.format(version=version)) for arg in shlex.split(template))


class ReleaseSpec(_Strict):
    """How a system is released, as the inventory writes it (under the system's ``release``)."""

    release_command: str = Field(min_length=1, max_length=2000)
    rollback_command: str = Field(min_length=1, max_length=2000)
    command_timeout_seconds: float = Field(600, gt=0, le=6 * 3600)
    checklist: list[ChecklistItem] = []
    canary_share: float = Field(0.1, gt=0, lt=1)
    """The share of the system's hosts released first (at least one host)."""
    soak_minutes: float = Field(10, ge=0, le=24 * 60)
    rollback_limit_minutes: float = Field(60, gt=0, le=24 * 60)
    """From the failure detected to the rollback complete and verified."""
    notice_hours: float = Field(24, ge=0, le=24 * 14)
    """The customer's notice goes out this long before the window."""
    effect_report_days: float = Field(3, gt=0, le=60)
    backup_sources: list[str] = []
    """The backup sources (their ``system``) whose verified backup the ``backup_fresh`` item
    wants; empty: the one named like this system."""
    backup_max_age_hours: float = Field(26, gt=0, le=24 * 90)

    @field_validator("release_command", "rollback_command")
    @classmethod
    def _command(cls, value: str) -> str:
        problems = command_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("checklist")
    @classmethod
    def _unique_items(cls, value: list[ChecklistItem]) -> list[ChecklistItem]:
        twice = repeated(item.name for item in value)
        if twice:
            raise ValueError(f"checklist item names must be unique: {', '.join(twice)}")
        return value


@dataclass(frozen=True)
class Declared:
    """A release as the engineer asks for it, before validation."""

    contract: str
    system: str
    version: str
    changes: str
    window: str
    """``YYYY-MM-DD HH:MM`` in the contract's timezone."""
    test_report: Path
    canary: tuple[str, ...] = ()
    impact: str = ""
    """What the customer may notice during the window (for the notice)."""


@dataclass(frozen=True)
class ValidRelease:
    """A declaration that passed every check: the window in UTC and local, the hosts."""

    contract: str
    system: str
    version: str
    changes: str
    window_utc: datetime
    window_local: datetime
    hosts: tuple[str, ...]
    canary: tuple[str, ...]
    test_report: Path


def canary_hosts(hosts: Sequence[str], share: float, named: Sequence[str]) -> tuple[str, ...]:
    """The named canary hosts, or the first ``ceil(share × n)`` of the sorted hosts (at least
    one, never all when there are two or more)."""
    if named:
        return tuple(sorted(set(named)))
    ordered = sorted(hosts)
    count = max(1, math.ceil(share * len(ordered)))
    if len(ordered) > 1:
        count = min(count, len(ordered) - 1)
    return tuple(ordered[:count])


def validate_release(
    declared: Declared,
    *,
    timezone: str,
    system_hosts: Sequence[str],
    spec: ReleaseSpec,
    blackouts: Sequence[Blackout],
    now: datetime,
) -> ValidRelease:
    """The release, or :class:`ReleaseError` naming every problem at once."""
    problems = []
    if not VERSION_RE.match(declared.version):
        problems.append(
            f"version {declared.version!r}: letters, digits and . _ + ~ : - only (at most 100)"
        )
    if not declared.changes.strip():
        problems.append("the change list is empty: say what the release changes")
    tz = ZoneInfo(timezone)
    local: datetime | None = None
    try:
        naive = datetime.strptime(declared.window, "%Y-%m-%d %H:%M")
    except ValueError:
        problems.append(f"window {declared.window!r}: write YYYY-MM-DD HH:MM ({timezone})")
    else:
        local = naive.replace(tzinfo=tz)
        if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
            problems.append(f"window {declared.window}: that time does not exist in {timezone}")
        elif local <= now:
            problems.append(f"window {declared.window} {timezone} is not in the future")
        elif (blocked := blackout_on(local.date(), blackouts)) is not None:
            why = f" ({blocked.reason})" if blocked.reason else ""
            problems.append(
                f"window {declared.window}: {local.date()} is a blackout day of the contract{why}"
            )
    if not system_hosts:
        problems.append(
            f"contract {declared.contract} has no active host of system {declared.system} "
            "(hosts name their system in the inventory)"
        )
    unknown = sorted(set(declared.canary) - set(system_hosts))
    if unknown:
        problems.append(
            f"canary host(s) {', '.join(unknown)} are not hosts of system {declared.system} "
            f"(they are: {', '.join(sorted(system_hosts)) or 'none'})"
        )
    elif system_hosts and set(declared.canary) >= set(system_hosts) and len(system_hosts) > 1:
        problems.append("every host is a canary: leave at least one for after the canary")
    report = declared.test_report
    problems += report_problems(report)
    if problems:
        raise ReleaseError("; ".join(problems))
    assert local is not None
    return ValidRelease(
        contract=declared.contract,
        system=declared.system,
        version=declared.version,
        changes=declared.changes.strip(),
        window_utc=local.astimezone(UTC),
        window_local=local,
        hosts=tuple(sorted(system_hosts)),
        canary=canary_hosts(system_hosts, spec.canary_share, declared.canary),
        test_report=report,
    )


def in_inbox(given: str, inbox: Path) -> Path:
    """A test report named in a UI form: a name in ``inbox`` or a path inside it, resolved
    (symbolic links followed); ReleaseError for anything outside. Pure but for resolving."""
    path = Path(given.strip())
    resolved = (inbox / path).resolve() if not path.is_absolute() else path.resolve()
    if not resolved.is_relative_to(inbox):
        raise ReleaseError(
            f"test report {given!r} is not in the report inbox {inbox}: copy it there "
            "(UPKEEP_REPORT_INBOX) and give its name"
        )
    return resolved


def local_time(at: datetime, timezone: str) -> str:
    """A release's time as the customer reads it: ``YYYY-MM-DD HH:MM TZ`` in the contract's
    timezone."""
    return at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def report_problems(report: Path) -> list[str]:
    """What is wrong with a test report file (empty: nothing)."""
    if report.suffix.lower() not in REPORT_SUFFIXES:
        suffix = report.suffix or "no suffix"
        return [f"test report {report.name}: HTML, PDF or Markdown ({suffix})"]
    if not report.is_file():
        return [f"test report {report} does not exist (a file on the machine running upkeep)"]
    if report.stat().st_size == 0:
        return [f"test report {report} is empty"]
    return []


TEST_REPORT_GATE = "release-test-report"
"""The customer's review of the test report (gate policy ``release-test-report``: its own
approvers, e.g. the customer's testers, or the contract's)."""
TEST_REPORT_REVISION_GATE = "release-test-report-revision"
"""The engineer's answer to a rejected test report: a new report, or cancel the release."""
MARKDOWN_SHOWN = 20_000
"""How much of a Markdown test report its reviewers see inline (the whole file is mailed)."""

RELEASE_GATE = "release"
"""The release approvers' gate (the contract's gate policy ``release``: M of N, no
self-approval unless allowed)."""
CHECKLIST_GATE = "release-checklist"
"""The engineer's confirmation of the manual checklist items."""


@dataclass(frozen=True)
class RollbackClock:
    """From the failure detected to the rollback complete and verified, against the limit."""

    detected_at: datetime
    done_at: datetime
    limit_minutes: float
    verified: bool

    @property
    def minutes(self) -> float:
        return (self.done_at - self.detected_at).total_seconds() / 60

    @property
    def kept(self) -> bool:
        """The promise held: rolled back and verified within the limit."""
        return self.verified and self.minutes <= self.limit_minutes

    def text(self) -> str:
        took = f"{self.minutes:.1f} min" if self.minutes >= 0.1 else (f"{self.minutes * 60:.1f} s")
        if not self.verified:
            return f"rollback NOT verified after {took} (limit {self.limit_minutes:g} min)"
        if not self.kept:
            return f"rolled back and verified in {took}: LATE, the limit is " + (
                f"{self.limit_minutes:g} min"
            )
        return f"rolled back and verified in {took} (limit {self.limit_minutes:g} min)"


def missing_confirmations(manual: Sequence[str], confirmed: Sequence[str]) -> list[str]:
    """The manual items not confirmed; unknown names are an error (ValueError)."""
    unknown = sorted(set(confirmed) - set(manual))
    if unknown:
        raise ValueError(
            f"not checklist items: {', '.join(unknown)} (the items are: {', '.join(manual)})"
        )
    return [m for m in manual if m not in confirmed]


def release_markdown(
    *,
    contract: str,
    system: str,
    version: str,
    changes: str,
    window: str,
    hosts: Sequence[str],
    canary: Sequence[str],
    report_name: str,
    report_sha256: str,
    checks: Sequence[tuple[str, bool, str]],
    confirmed: Sequence[tuple[str, str]],
) -> str:
    """What the release approvers see: the release, its test report, the checks' results and
    who confirmed the manual items. Values are Markdown-escaped by the caller's renderer."""
    lines = [
        f"**Release:** {md_escape(system)} {md_escape(version)} for {md_escape(contract)}",
        f"**Window:** {md_escape(window)}",
        f"**Hosts:** {md_escape(', '.join(hosts))} (canary first: {md_escape(', '.join(canary))})",
        f"**Test report:** {md_escape(report_name)} (sha256 `{report_sha256}`)",
        "",
        "**Changes:**",
        "",
        *[f"> {md_escape(line)}" for line in changes.splitlines() if line.strip()],
        "",
        "**Pre-release checks:**",
        "",
        *[
            f"- {'ok' if ok else 'FAILED'}: {md_escape(name)}: {md_escape(summary)}"
            for name, ok, summary in checks
        ],
    ]
    if confirmed:
        lines += ["", "**Confirmed by hand:**", ""]
        lines += [f"- {md_escape(item)}: {md_escape(who)}" for item, who in confirmed]
    return "\n".join(lines)


def test_report_markdown(
    *,
    contract: str,
    system: str,
    version: str,
    changes: str,
    window: str,
    report_name: str,
    report_sha256: str,
    report_text: str | None,
    round_no: int,
) -> str:
    """What the customer's reviewers see at the test-report gate: the release, the changes and
    the report (a Markdown report inline, escaped; HTML and PDF go as the mail's attachment)."""
    lines = [
        f"**Test report for review:** {md_escape(system)} {md_escape(version)} for "
        f"{md_escape(contract)}" + (f" (revision {round_no})" if round_no > 1 else ""),
        f"**Window:** {md_escape(window)}",
        f"**File:** {md_escape(report_name)} (sha256 `{report_sha256}`), attached to the mail "
        "that brought your code",
        "",
        "**Changes:**",
        "",
        *[f"> {md_escape(line)}" for line in changes.splitlines() if line.strip()],
    ]
    if report_text is not None:
        shown = report_text[:MARKDOWN_SHOWN]
        lines += ["", "**The report:**", ""]
        lines += [f"> {md_escape(line)}" if line.strip() else ">" for line in shown.splitlines()]
        if len(report_text) > MARKDOWN_SHOWN:
            lines += ["", f"(first {MARKDOWN_SHOWN} characters; the whole file is attached)"]
    lines += [
        "",
        "Approve if the tests cover the changes; reject with a comment to send the report back "
        "to the engineer.",
    ]
    return "\n".join(lines)
