"""[os] Kernel and distribution release: informational, read by later checks."""

from __future__ import annotations

import shlex

from pydantic import BaseModel

from upkeep.domain.checks._common import section
from upkeep.domain.checks.base import (
    Check,
    EvalContext,
    Measurement,
    ParseError,
    Severity,
    Thresholds,
)

COMMAND = (
    "echo '@@ uname'; uname -srm; "
    "echo '@@ os-release'; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null"
    " || true"
)


class OsFacts(BaseModel):
    kernel_name: str
    kernel_release: str
    machine: str
    id: str | None = None
    id_like: list[str] = []
    version_id: str | None = None
    pretty_name: str | None = None


def _os_release_value(raw: str) -> str:
    # os-release values are shell-quoted; shlex undoes "..." and '...' the way sh would.
    try:
        words = shlex.split(raw)
    except ValueError:
        raise ParseError(f"unbalanced quotes in os-release value {raw!r}") from None
    return " ".join(words)


def parse(stdout: str) -> OsFacts:
    """Parse ``uname -srm`` and /etc/os-release; the os-release part may be empty."""
    _, uname_lines = section(stdout, "uname")
    _, release_lines = section(stdout, "os-release")
    uname = [line for line in uname_lines if line.strip()]
    if len(uname) != 1 or len(uname[0].split()) != 3:
        raise ParseError(f"uname -srm should print three words, got {uname!r}")
    kernel_name, kernel_release, machine = uname[0].split()
    values: dict[str, str] = {}
    for line in release_lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise ParseError(f"not an os-release line: {line[:80]!r}")
        values[key] = _os_release_value(raw)
    return OsFacts(
        kernel_name=kernel_name,
        kernel_release=kernel_release,
        machine=machine,
        id=values.get("ID"),
        id_like=values.get("ID_LIKE", "").split(),
        version_id=values.get("VERSION_ID"),
        pretty_name=values.get("PRETTY_NAME"),
    )


def evaluate(facts: OsFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """Report the release and kernel; an unidentifiable distribution is an INFO finding."""
    kernel = f"{facts.kernel_name} {facts.kernel_release} {facts.machine}"
    if facts.id is None:
        release = Measurement(
            subject="distribution",
            value="unknown",
            severity=Severity.INFO,
            message="The host has no /etc/os-release; the distribution could not be identified",
            recommendation="Record the distribution and release in the inventory by hand.",
        )
    else:
        name = facts.pretty_name or f"{facts.id} {facts.version_id or ''}".strip()
        release = Measurement(subject="distribution", value=name)
    return [release, Measurement(subject="kernel", value=kernel)]


CHECK = Check(
    name="os",
    title="Kernel and OS release",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    timeout=20,
)
