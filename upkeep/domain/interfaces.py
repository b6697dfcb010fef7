"""The interfaces a customer depends on: each system's smoke checks, what one probe means, and
the figures over many (PROCESSES.md, section 4: after a release broke a customer group's
interface, the provider monitored it and sent a daily message that it was working).

A smoke check is either an HTTP endpoint probed from upkeep with an expected status, an
optional text the body must contain and a latency bound, or a command the provider's engineers
wrote in the inventory, run over SSH on each of the system's hosts, with the exit status it must
end with and an optional text its output must contain. The same checks serve the interface
monitor (on the contract's ``interface_monitor`` cadence) and the release checklist's pre- and
post-release verification. Pure: the probing itself is ``upkeep.tasks.interfaces``.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from upkeep.domain.naming import repeated
from upkeep.domain.releases import ReleaseSpec

INTERFACE_CHECK = "interface"
"""The ``check`` of a finding about a failing smoke check (subject ``SYSTEM/CHECK``, or
``SYSTEM/CHECK@HOST`` for a command check)."""
MONITOR_RUN_KIND = "interface-monitor"
STATUS_RUN_KIND = "interface-status"
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SECRET_QUERY = re.compile(r"token|key|secret|passw|auth|sig|session|credential", re.IGNORECASE)
"""Query parameter names that carry a secret: refused in a smoke check's URL."""
BODY_KEPT = 65536
"""How much of a response body a probe reads (a body text must appear within it)."""
SECRET_WORD = re.compile(
    r"^-*[A-Za-z0-9_.-]*(token|secret|passw|pwd|api[-_]?key|credential)[A-Za-z0-9_.-]*=.",
    re.IGNORECASE,
)
"""A command word that sets a secret (``--password=x``, ``PGPASSWORD=x``): refused."""
URL_LOGIN = re.compile(r"://[^/@\s]+@")
"""A URL with a user (and maybe a password) in a command word: refused."""
HTTP_ONLY = ("method", "expect_status", "body_contains", "max_latency_ms")
COMMAND_ONLY = ("expect_output", "expect_exit")
EXCERPT = 160
"""How much of a command's output a verdict quotes."""
_BLANKS = re.compile(r"[ \t\r\n]+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


def command_problems(command: str) -> list[str]:
    """What is wrong with a command check's command line as written (empty: nothing)."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return [f"cannot be split like a shell line: {exc}"]
    if not words:
        return ["is empty"]
    problems = []
    secret = [w.split("=", 1)[0] for w in words if SECRET_WORD.match(w)]
    if secret:
        problems.append(
            f"must not carry a secret ({', '.join(secret)}=...): it is stored, logged and shown "
            "in reports; let the command read it on the host (a file only its user can read)"
        )
    if any(URL_LOGIN.search(w) for w in words):
        problems.append(
            "must not carry a URL with a user or password: it is stored, logged and shown in "
            "reports"
        )
    return problems


class SmokeCheck(_Strict):
    """One interface the customer depends on, as the inventory writes it: an HTTP endpoint
    (``url``) probed from upkeep, or a ``command`` run over SSH on each of the system's
    hosts. Exactly one of the two; the fields of the other kind are refused."""

    name: str = Field(min_length=1, max_length=64, pattern=NAME_RE)
    url: HttpUrl | None = None
    command: str | None = Field(None, min_length=1, max_length=2000)
    """A command line, split like a shell line and run with each word quoted: no shell
    constructs (``sh -c '...'`` for those) and nothing ever put into it."""
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: int = Field(200, ge=100, le=599)
    body_contains: str | None = Field(None, min_length=1, max_length=1000)
    max_latency_ms: float = Field(2000, gt=0, le=600_000)
    expect_output: str | None = Field(None, min_length=1, max_length=1000)
    """Text the command's output (standard output or error) must contain."""
    expect_exit: int = Field(0, ge=0, le=255)
    timeout_seconds: float = Field(10, gt=0, le=300)
    severity: Literal["critical", "major", "minor"] = "critical"
    """Of the finding raised while the check fails."""

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        problems = command_problems(value) if value is not None else []
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator(*HTTP_ONLY)
    @classmethod
    def _http_only(cls, value: object, info: ValidationInfo) -> object:
        if info.data.get("command") is not None:
            raise ValueError(
                f"{info.field_name} is for an HTTP check (url), not a command check: a command "
                f"check takes {', '.join(COMMAND_ONLY)}, timeout_seconds and severity"
            )
        return value

    @field_validator(*COMMAND_ONLY)
    @classmethod
    def _command_only(cls, value: object, info: ValidationInfo) -> object:
        if info.data.get("url") is not None:
            raise ValueError(
                f"{info.field_name} is for a command check (command), not an HTTP check: an HTTP "
                f"check takes {', '.join(HTTP_ONLY)}, timeout_seconds and severity"
            )
        return value

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: HttpUrl | None) -> HttpUrl | None:
        if value is None:
            return value
        if value.username or value.password:
            raise ValueError(
                "a smoke check URL must not carry a user or password (it is stored, logged and "
                "shown in reports): probe an endpoint that needs no login"
            )
        secret = [k for k, _ in value.query_params() if SECRET_QUERY.search(k)]
        if secret:
            raise ValueError(
                f"a smoke check URL must not carry a secret in its query ({', '.join(secret)}): "
                "it is stored, logged and shown in reports; probe an endpoint that needs no "
                "login"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SmokeCheck:
        if (self.url is None) == (self.command is None):
            raise ValueError(
                "a smoke check has either url (an HTTP endpoint probed from upkeep) or command "
                "(run on each of the system's hosts over SSH): "
                + ("not both" if self.url is not None else "neither is set")
            )
        if self.method == "HEAD" and self.body_contains:
            raise ValueError("a HEAD request has no body to contain text: use GET")
        return self

    @model_serializer(mode="wrap")
    def _only_its_kind(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without the other kind's fields (their defaults): what is stored validates again."""
        data: dict[str, Any] = handler(self)
        other = (*HTTP_ONLY, "url") if self.command is not None else (*COMMAND_ONLY, "command")
        return {k: v for k, v in data.items() if k not in other}

    @property
    def runs_on_hosts(self) -> bool:
        """A command check: run on the system's hosts, one probe per host."""
        return self.command is not None

    @property
    def command_line(self) -> str:
        """What runs on a host: each word of :attr:`command` quoted, nothing put in."""
        if self.command is None:
            raise ValueError(f"smoke check {self.name} is an HTTP check, not a command")
        return " ".join(shlex.quote(word) for word in shlex.split(self.command))

    @property
    def target(self) -> str:
        """What the check probes, for records and messages: the URL or the command line."""
        return self.command_line if self.command is not None else str(self.url)


class SystemSpec(_Strict):
    """A system of the contract and the smoke checks of the interfaces it offers."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_RE)
    description: str = Field("", max_length=2000)
    smoke_checks: list[SmokeCheck] = Field(min_length=1)
    release: ReleaseSpec | None = None
    """How the system is released and rolled back (the release checklist)."""

    @field_validator("smoke_checks")
    @classmethod
    def _unique_names(cls, value: list[SmokeCheck]) -> list[SmokeCheck]:
        twice = repeated(item.name for item in value)
        if twice:
            raise ValueError(f"smoke check names must be unique in a system: {', '.join(twice)}")
        return value


@dataclass(frozen=True)
class Probe:
    """What one request saw: the status and body, or the error; the time to the whole
    response."""

    status: int | None
    latency_ms: float | None
    body: str = ""
    error: str | None = None


@dataclass(frozen=True)
class CommandProbe:
    """What a command check saw on one host: the exit status and output (as the SSH layer
    decodes it: UTF-8, undecodable bytes as U+FFFD), or why it could not run there (the SSH
    error and its kind); the command's run time."""

    host: str
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    latency_ms: float | None = None
    error: str | None = None
    error_kind: str | None = None
    """The SSH error's kind (``refused``, ``host_key_unknown``, ...), for the recommendation."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def _excerpt(text: str, tail: bool = False) -> str:
    """A short, single-line, escaped quote of ``text`` (its start, or its end with ``tail``)."""
    flat = _BLANKS.sub(" ", text).strip(" ")
    if len(flat) > EXCERPT:
        flat = "…" + flat[-EXCERPT:] if tail else flat[:EXCERPT] + "…"
    return repr(flat)


def _seen(probe: CommandProbe) -> str:
    parts = []
    if probe.stdout.strip():
        parts.append(f"output {_excerpt(probe.stdout)}")
    if probe.stderr.strip():
        parts.append(f"error output {_excerpt(probe.stderr, tail=True)}")
    return "; ".join(parts) or "no output"


def judge_command(check: SmokeCheck, probe: CommandProbe) -> Verdict:
    """Whether one host's run of a command check passes; the reason names the host, what was
    expected and what was seen."""
    on = probe.host or "no host"
    if probe.error is not None or probe.exit_code is None:
        return Verdict(False, f"could not run on {on}: {probe.error or 'no exit status'}")
    took = f"{probe.latency_ms:.0f} ms" if probe.latency_ms is not None else "unknown time"
    if probe.exit_code < 0:
        return Verdict(
            False,
            f"ended without an exit status on {on} (killed by a signal?), expected exit "
            f"{check.expect_exit} ({took}); {_seen(probe)}",
        )
    if probe.exit_code != check.expect_exit:
        return Verdict(
            False,
            f"exit {probe.exit_code}, expected {check.expect_exit} on {on} ({took}); "
            f"{_seen(probe)}",
        )
    expected = check.expect_output
    if expected and expected not in probe.stdout and expected not in probe.stderr:
        replaced = (probe.stdout + probe.stderr).count("\ufffd")
        note = (
            f" (the output is not valid UTF-8: {replaced} undecodable sequence(s) shown as \ufffd)"
            if replaced
            else ""
        )
        return Verdict(
            False,
            f"exit {probe.exit_code} on {on} but the output lacks {expected!r}; "
            f"{_seen(probe)}{note}",
        )
    return Verdict(True, f"exit {probe.exit_code} on {on} in {took}")


def judge(check: SmokeCheck, probe: Probe | CommandProbe) -> Verdict:
    """Whether ``probe`` passes ``check``; the reason names what was expected and seen (and,
    for a command check, the host)."""
    if isinstance(probe, CommandProbe):
        return judge_command(check, probe)
    if probe.error is not None or probe.status is None:
        return Verdict(False, f"no answer from {check.url}: {probe.error or 'no status'}")
    took = f"{probe.latency_ms:.0f} ms" if probe.latency_ms is not None else "unknown time"
    if probe.status != check.expect_status:
        return Verdict(False, f"HTTP {probe.status}, expected {check.expect_status} ({took})")
    if check.body_contains and check.body_contains not in probe.body:
        return Verdict(
            False,
            f"HTTP {probe.status} but the body lacks {check.body_contains!r} "
            f"(first {BODY_KEPT // 1024} KiB read)",
        )
    if probe.latency_ms is not None and probe.latency_ms > check.max_latency_ms:
        return Verdict(
            False, f"HTTP {probe.status} in {took}, slower than {check.max_latency_ms:.0f} ms"
        )
    return Verdict(True, f"HTTP {probe.status} in {took}")


def subject(system: str, check: str, host: str = "") -> str:
    """A finding's subject for one smoke check (on one host, for a command check)."""
    return f"{system}/{check}@{host}" if host else f"{system}/{check}"


@dataclass(frozen=True)
class Sample:
    """One recorded probe, as the figures read it."""

    at: datetime
    ok: bool
    latency_ms: float | None


@dataclass(frozen=True)
class Outage:
    """Consecutive failed probes: from the first failure to the next success (None: still
    failing at the last probe)."""

    start: datetime
    end: datetime | None
    probes: int


@dataclass(frozen=True)
class Figures:
    """One smoke check over a window: how often it answered right, how fast, when it did not."""

    probes: int
    passed: int
    availability: float | None
    """Percent of probes that passed; None without probes."""
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    outages: list[Outage] = field(default_factory=list)

    @property
    def failing_now(self) -> bool:
        return bool(self.outages) and self.outages[-1].end is None


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile (a value that was measured, never an interpolation)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def figures(samples: Sequence[Sample]) -> Figures:
    """Availability, latency percentiles of the probes that got an answer in time, and the
    outages, from ``samples`` in any order."""
    ordered = sorted(samples, key=lambda s: s.at)
    latencies = [s.latency_ms for s in ordered if s.ok and s.latency_ms is not None]
    outages: list[Outage] = []
    start: datetime | None = None
    count = 0
    for s in ordered:
        if not s.ok:
            start = start or s.at
            count += 1
        elif start is not None:
            outages.append(Outage(start, s.at, count))
            start, count = None, 0
    if start is not None:
        outages.append(Outage(start, None, count))
    passed = sum(1 for s in ordered if s.ok)
    return Figures(
        probes=len(ordered),
        passed=passed,
        availability=round(100 * passed / len(ordered), 2) if ordered else None,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        max_ms=max(latencies) if latencies else None,
        outages=outages,
    )


def status_headline(
    contract: str, failing: Sequence[str], troubled: Sequence[str], unprobed: Sequence[str]
) -> str:
    """The daily message's subject: all well, or which interfaces are down now (``failing``),
    were down during the window (``troubled``) or were never probed (``unprobed``)."""
    if failing:
        return f"Interfaces of {contract}: DOWN now: {', '.join(failing)}"
    if unprobed:
        return f"Interfaces of {contract}: NOT PROBED: {', '.join(unprobed)}"
    if troubled:
        return f"Interfaces of {contract}: up now, had outages: {', '.join(troubled)}"
    return f"Interfaces of {contract}: all working"
