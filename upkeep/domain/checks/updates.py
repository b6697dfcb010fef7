"""[updates] Pending package updates, security ones counted apart where the manager knows.

Nothing here refreshes package lists: apt reads its last ``apt update``, dnf/yum run
cache-only (-C), apk reads its cached indexes. The counts are as fresh as the host's lists.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from upkeep.domain.checks._common import sections, to_int
from upkeep.domain.checks.base import (
    Check,
    EvalContext,
    Measurement,
    ParseError,
    Severity,
    Thresholds,
)
from upkeep.domain.checks.os import OsFacts

# dnf/yum check-update exits 100 when updates are pending; it runs last so that its exit
# code is the command's. The security listing runs first and reports its own exit code.
COMMAND = (
    "if command -v apt >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then "
    "echo '@@ apt'; apt list --upgradable 2>/dev/null; "
    "elif command -v dnf >/dev/null 2>&1; then "
    "echo '@@ security'; dnf -q -C updateinfo list --security 2>/dev/null; "
    "echo \"@@ security-rc $?\"; echo '@@ dnf'; dnf -q -C check-update; "
    "elif command -v yum >/dev/null 2>&1; then "
    "echo '@@ security'; yum -q -C updateinfo list security 2>/dev/null; "
    "echo \"@@ security-rc $?\"; echo '@@ yum'; yum -q -C check-update; "
    "elif command -v apk >/dev/null 2>&1; then "
    "echo '@@ apk'; apk version -v -l '<' 2>/dev/null; "
    "else echo 'UPKEEP-SKIP: no apt, dnf, yum or apk package manager found'; fi"
)

_APT = re.compile(r"^(\S+)/(\S+) (\S+) (\S+) \[upgradable from: ([^\]]+)\]$")
_APK = re.compile(r"^(\S+?)-(\d\S*-r\d+)\s+<\s+(\S+)$")
_ADVISORY_KINDS = ("/Sec.", "security")


class PendingUpdate(BaseModel):
    name: str
    version: str
    """The version on offer."""
    origin: str
    """apt: the suites (``jammy-updates,jammy-security``); dnf/yum: the repository; apk: ''."""
    security: bool | None
    """None when the package manager has no security metadata (apk) or it could not be read."""


class UpdateFacts(BaseModel):
    manager: Literal["apt", "dnf", "yum", "apk"]
    pending: list[PendingUpdate]
    security_known: bool

    @property
    def security_count(self) -> int:
        return sum(1 for p in self.pending if p.security)


def _apt(lines: list[str]) -> list[PendingUpdate]:
    pending = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("Listing..."):
            continue
        match = _APT.match(line)
        if match is None:
            raise ParseError(f"not an apt list row: {line[:80]!r}")
        name, suites, version = match.group(1), match.group(2), match.group(3)
        security = any(s.endswith("-security") for s in suites.split(","))
        pending.append(PendingUpdate(name=name, version=version, origin=suites, security=security))
    return pending


def _rpm_rows(lines: list[str]) -> list[tuple[str, str, str]]:
    # dnf wraps a long name.arch onto its own line: regroup the words in threes.
    words: list[str] = []
    for line in lines:
        if line.strip() in ("Obsoleting Packages", "Obsoleting packages"):
            break  # what follows repeats packages already listed
        if line.startswith("Security:") or line.startswith("Last metadata"):
            continue
        words.extend(line.split())
    if len(words) % 3:
        raise ParseError("check-update rows do not split into name, version, repository")
    rows = [(words[i], words[i + 1], words[i + 2]) for i in range(0, len(words), 3)]
    for name_arch, version, _ in rows:
        if "." not in name_arch or not version[:1].isdigit():
            raise ParseError(f"not a check-update row: {name_arch} {version}")
    return rows


def _security_names(lines: list[str]) -> set[str]:
    # updateinfo rows: ADVISORY TYPE/SEVERITY NEVRA (dnf may add a CVE column first).
    names = set()
    for line in lines:
        words = line.split()
        if not words or line.strip() == "Updateinfo list done":
            continue
        if len(words) < 3 or not any(k in w for w in words[1:-1] for k in _ADVISORY_KINDS):
            raise ParseError(f"not an updateinfo security row: {line[:80]!r}")
        nevra = words[-1]
        # name-[epoch:]version-release.arch: the name is everything before the version.
        match = re.match(r"^(.+?)-(?:\d+:)?\d[^-]*-[^-]+$", nevra)
        if match is None:
            raise ParseError(f"not a package NEVRA: {nevra!r}")
        names.add(match.group(1))
    return names


def _rpm(parts: dict[str, tuple[list[str], list[str]]], manager: str) -> UpdateFacts:
    rc_args, _ = parts["security-rc"]
    security_known = len(rc_args) == 1 and to_int(rc_args[0], "security rc") == 0
    secure = _security_names(parts["security"][1]) if security_known else set()
    pending = []
    for name_arch, version, repo in _rpm_rows(parts[manager][1]):
        name = name_arch.rsplit(".", 1)[0]
        pending.append(
            PendingUpdate(
                name=name,
                version=version,
                origin=repo,
                security=(name in secure) if security_known else None,
            )
        )
    return UpdateFacts(manager=manager, pending=pending, security_known=security_known)  # type: ignore[arg-type]


def _apk(lines: list[str]) -> list[PendingUpdate]:
    pending = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("Installed:"):
            continue
        match = _APK.match(line)
        if match is None:
            raise ParseError(f"not an apk version row: {line[:80]!r}")
        pending.append(
            PendingUpdate(name=match.group(1), version=match.group(3), origin="", security=None)
        )
    return pending


def parse(stdout: str) -> UpdateFacts:
    """Parse the section the host's package manager printed."""
    parts = {words[0]: (words[1:], body) for words, body in sections(stdout)}
    if "apt" in parts:
        return UpdateFacts(manager="apt", pending=_apt(parts["apt"][1]), security_known=True)
    if "apk" in parts:
        return UpdateFacts(manager="apk", pending=_apk(parts["apk"][1]), security_known=False)
    for manager in ("dnf", "yum"):
        if manager in parts:
            if "security" not in parts or "security-rc" not in parts:
                raise ParseError("the security listing is missing")
            return _rpm(parts, manager)
    raise ParseError("no package manager section (truncated?)")


_UPGRADE = {
    "apt": "apt-get upgrade (after apt-get update)",
    "dnf": "dnf upgrade (dnf upgrade --security for security fixes only)",
    "yum": "yum update (yum update --security for security fixes only)",
    "apk": "apk upgrade (after apk update)",
}


def evaluate(facts: UpdateFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """Major at security_updates_major security updates, minor at pending_updates_minor."""
    os_facts = ctx.facts.get("os")
    on = (
        f" on {os_facts.pretty_name}"
        if isinstance(os_facts, OsFacts) and os_facts.pretty_name
        else ""
    )
    recommendation = f"Apply the updates in a maintenance window: {_UPGRADE[facts.manager]}."
    names = ", ".join(p.name for p in facts.pending[:20]) + ("…" if len(facts.pending) > 20 else "")
    n = len(facts.pending)
    minor = thresholds.pending_updates_minor
    pending = Measurement(
        subject="pending updates",
        value=str(n),
        threshold=f"minor at {minor}",
        severity=Severity.MINOR if n >= minor else None,
        message=f"{n} package update{'s' if n != 1 else ''} pending{on} ({facts.manager})"
        if n >= minor
        else "",
        evidence=names if n >= minor else "",
        recommendation=recommendation if n >= minor else "",
    )
    if not facts.security_known:
        why = "apk has no security metadata" if facts.manager == "apk" else "updateinfo failed"
        return [pending, Measurement(subject="security updates", value=f"unknown ({why})")]
    s = facts.security_count
    major = thresholds.security_updates_major
    if s < major:
        security = Measurement(
            subject="security updates", value=str(s), threshold=f"major at {major}"
        )
    else:
        security = Measurement(
            subject="security updates",
            value=str(s),
            threshold=f"major at {major}",
            severity=Severity.MAJOR,
            message=f"{s} security update{'s' if s != 1 else ''} pending{on} (major at {major})",
            evidence=", ".join(p.name for p in facts.pending if p.security),
            recommendation=recommendation,
        )
    return [pending, security]


CHECK = Check(
    name="updates",
    title="Pending updates",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    ok_exit_codes=frozenset({0, 100}),
    timeout=120,
)
