"""Small text helpers shared by the catalogue's parsers (pure, no I/O)."""

from __future__ import annotations

from upkeep.domain.checks.base import ParseError

SECTION = "@@ "
"""Catalogue commands that combine probes print ``@@ <name> [args]`` before each part."""


def sections(stdout: str) -> list[tuple[list[str], list[str]]]:
    """Split output into ``(header words, body lines)`` at each ``@@`` marker line.

    Text before the first marker is an error (every combining command starts with a marker);
    an output with no marker at all raises :class:`ParseError`.
    """
    parts: list[tuple[list[str], list[str]]] = []
    for line in stdout.splitlines():
        if line.startswith(SECTION):
            words = line[len(SECTION) :].split()
            if not words:
                raise ParseError("empty section marker")
            parts.append((words, []))
        elif parts:
            parts[-1][1].append(line)
        elif line.strip():
            raise ParseError(f"unexpected text before the first section: {line[:80]!r}")
    if not parts:
        raise ParseError("no section marker in the output")
    return parts


def section(stdout: str, name: str) -> tuple[list[str], list[str]]:
    """The one section called ``name``: its header arguments and body lines."""
    found = [(words[1:], body) for words, body in sections(stdout) if words[0] == name]
    if len(found) != 1:
        raise ParseError(f"expected one {name!r} section, found {len(found)}")
    return found[0]


def to_int(text: str, what: str) -> int:
    """An integer field, or ParseError naming what was expected."""
    try:
        return int(text)
    except ValueError:
        raise ParseError(f"{what}: {text!r} is not an integer") from None


def to_float(text: str, what: str) -> float:
    """A decimal field, or ParseError naming what was expected."""
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"{what}: {text!r} is not a number") from None


def fmt_pct(value: float) -> str:
    """A percentage for display: no decimals when whole, else one."""
    return f"{value:.0f}%" if float(value).is_integer() else f"{value:.1f}%"


def tail_lines(lines: list[str], limit: int = 10) -> str:
    """The last ``limit`` lines joined, for a measurement's evidence."""
    return "\n".join(lines[-limit:])
