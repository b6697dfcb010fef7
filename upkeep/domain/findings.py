"""Pure decisions about findings: what a host's latest inspection means for its open findings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from upkeep.domain.checks.base import Measurement, Severity

REACHABILITY = "reachability"
"""The pseudo-check under which a host that could not be inspected is recorded."""


def severity_rank(severity: str | None) -> int:
    """Where ``severity`` (a :class:`Severity` or its value) sorts, worst first, by
    :attr:`Severity.rank`; anything else (None, an unknown word) sorts after every severity."""
    try:
        return Severity(severity).rank if severity is not None else len(Severity)
    except ValueError:
        return len(Severity)


@dataclass(frozen=True)
class Observed:
    """A finding as seen by one inspection of one host."""

    check: str
    subject: str
    severity: Severity
    message: str
    evidence: str = ""
    recommendation: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.check, self.subject)

    @classmethod
    def from_measurement(cls, check: str, m: Measurement) -> Observed:
        assert m.severity is not None
        return cls(check, m.subject, m.severity, m.message, m.evidence, m.recommendation)


@dataclass
class Reconciliation:
    """What to do with one host's findings after one inspection.

    ``new`` are observations with no open finding; ``persisting`` maps an open finding's key to
    the observation that saw it again; ``resolved`` are keys of open findings whose check was
    evaluated and did not see them. Open findings of checks that were not evaluated (host
    unreachable, output unparsable, check skipped) are left alone: not seeing a problem because
    we could not look is not a fix.
    """

    new: list[Observed] = field(default_factory=list)
    persisting: dict[tuple[str, str], Observed] = field(default_factory=dict)
    resolved: list[tuple[str, str]] = field(default_factory=list)


def reconcile(
    open_keys: Iterable[tuple[str, str]],
    observed: Iterable[Observed],
    evaluated_checks: Iterable[str],
) -> Reconciliation:
    """What one host's inspection means for its open findings (see :class:`Reconciliation`);
    an observation seen twice counts once."""
    open_set = set(open_keys)
    evaluated = set(evaluated_checks)
    out = Reconciliation()
    seen: set[tuple[str, str]] = set()
    for obs in observed:
        if obs.key in seen:
            continue
        seen.add(obs.key)
        if obs.key in open_set:
            out.persisting[obs.key] = obs
        else:
            out.new.append(obs)
    for key in sorted(open_set - seen):
        if key[0] in evaluated:
            out.resolved.append(key)
    return out
