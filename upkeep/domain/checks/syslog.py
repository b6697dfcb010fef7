"""[syslog] Error messages in the recent system log (journal, else the syslog file)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from upkeep.domain.checks._common import SECTION, tail_lines, to_int
from upkeep.domain.checks.base import (
    Check,
    EvalContext,
    Measurement,
    ParseError,
    Severity,
    Thresholds,
)

KEEP = 10
"""Lines of the log kept as evidence (the command prints only the count and these)."""

FILE_TAIL = 5000
"""Lines read from the end of a plain syslog file, which has no cheap time filter."""

# The journal counts only when a journal file is readable by us: journalctl run by an
# unprivileged user, or with no journal at all, prints nothing and would read as "no errors".
# awk keeps the count and the last lines so a flood of errors does not flood the transport.
# Braces are doubled for str.format; {hours} is the only placeholder and stays unquoted
# here because Check.render shlex-quotes it.
_AWK = (
    "awk '!/^-- / {{ n++; l[n % " + str(KEEP) + '] = $0 }} END {{ print "@@ count " n+0; '
    "s = n - " + str(KEEP - 1) + "; if (s < 1) s = 1; "
    "for (i = s; i <= n; i++) print l[i % " + str(KEEP) + "] }}'"
)
COMMAND = (
    "j=; if command -v journalctl >/dev/null 2>&1; then "
    "for f in /run/log/journal/*/*.journal /var/log/journal/*/*.journal; do "
    '[ -r "$f" ] && {{ j=1; break; }}; done; fi; '
    'if [ -n "$j" ]; then echo "@@ source journal"; '
    "journalctl -p err --since -{hours}h -q --no-pager -o short-iso 2>/dev/null | " + _AWK + "; "
    "else f=; for c in /var/log/messages /var/log/syslog; do "
    '[ -r "$c" ] && {{ f=$c; break; }}; done; '
    'if [ -n "$f" ]; then echo "@@ source file $f"; '
    "tail -n " + str(FILE_TAIL) + ' "$f" | '
    "grep -i -w -E 'err|error|crit|critical|alert|emerg|panic|fatal' | " + _AWK + "; "
    "else echo 'UPKEEP-SKIP: no readable journal, /var/log/messages or /var/log/syslog'; "
    "fi; fi"
)


class SyslogFacts(BaseModel):
    source: Literal["journal", "file"]
    path: str | None = None
    """The syslog file read when there is no journal."""
    count: int = Field(ge=0)
    last_lines: list[str]


def parse(stdout: str) -> SyslogFacts:
    """Parse the ``@@ source``/``@@ count`` markers and the last lines that follow them."""
    lines = stdout.splitlines()
    if len(lines) < 2:
        raise ParseError("output ends before the error count")
    source = lines[0][len(SECTION) :].split() if lines[0].startswith(SECTION) else []
    count = lines[1][len(SECTION) :].split() if lines[1].startswith(SECTION) else []
    if len(source) not in (2, 3) or source[0] != "source" or source[1] not in ("journal", "file"):
        raise ParseError(f"unexpected first line {lines[0][:80]!r}")
    if len(count) != 2 or count[0] != "count":
        raise ParseError(f"unexpected count line {lines[1][:80]!r}")
    n = to_int(count[1], "error count")
    body = lines[2:]
    if len(body) != min(n, KEEP):
        raise ParseError(f"{n} errors announced but {len(body)} lines follow (truncated?)")
    path = source[2] if len(source) == 3 else None
    if (source[1] == "file") != (path is not None):
        raise ParseError("a file source needs a path, the journal none")
    return SyslogFacts(source=source[1], path=path, count=n, last_lines=body)  # type: ignore[arg-type]


def evaluate(facts: SyslogFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """Grade the error count with syslog_errors_minor/major; the last lines are evidence."""
    hours = thresholds.syslog_window_hours
    if facts.source == "journal":
        where = f"in the journal over the last {hours} h"
    else:
        where = f"in the last {FILE_TAIL} lines of {facts.path} (no journal; no time window)"
    minor, major = thresholds.syslog_errors_minor, thresholds.syslog_errors_major
    threshold = f"minor at {minor}, major at {major}"
    if facts.count >= major:
        severity: Severity | None = Severity.MAJOR
    elif facts.count >= minor:
        severity = Severity.MINOR
    else:
        severity = None
    value = f"{facts.count} error{'s' if facts.count != 1 else ''}"
    limit = major if severity is Severity.MAJOR else minor
    if severity is None:
        return [Measurement(subject="system log", value=value, threshold=threshold)]
    return [
        Measurement(
            subject="system log",
            value=value,
            threshold=threshold,
            severity=severity,
            message=f"{value} {where} ({severity.value} at {limit})",
            evidence=tail_lines(facts.last_lines, KEEP),
            recommendation=(
                "Read the errors (journalctl -p err -b, or the syslog file) and fix their "
                "causes; recurring harmless messages can be silenced at their source."
            ),
        )
    ]


def params(thresholds: Thresholds) -> dict[str, Any]:
    return {"hours": thresholds.syslog_window_hours}


CHECK = Check(
    name="syslog",
    title="Errors in the system log",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    timeout=60,
    params=params,
)
