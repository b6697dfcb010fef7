"""A release's effect report, pure (PROCESSES.md, section 4, step 8: "an effect report 3 days
later, key figures before and after").

Two periods of the system's ``effect_report_days``: *before* ends at the release's window,
*after* starts when the release finished (cut at the time of the report when it is made
early). Per smoke check, the interface monitor's probes give availability, the median and 95th
percentile response time and the outages of each period (``upkeep.domain.interfaces.figures``);
the findings opened in each period on the system's hosts and about its interfaces, and the
errors in the hosts' system logs where inspections recorded them, complete the picture. Each
figure gets a plain verdict (better, same, worse) within a tolerance, or says honestly that it
was not measured; the headline sums them up. Counts (outages, findings) are compared per day,
so an after period that is not over yet is still compared fairly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from upkeep.domain.interfaces import Figures, Sample, figures

Verdict = Literal["better", "same", "worse", "not measured"]
Direction = Literal["higher", "lower"]
"""Which way is better for a figure."""

NOT_MEASURED: Verdict = "not measured"


@dataclass(frozen=True)
class Tolerance:
    """How far a figure may move and still be "the same" (measurement noise, not an effect)."""

    availability_points: float = 0.5
    """Percentage points of availability."""
    latency_share: float = 0.10
    """A response time within 10% of the one before ..."""
    latency_floor_ms: float = 10.0
    """... or within 10 ms of it (small times jitter by more than 10%)."""
    errors_share: float = 0.10
    """System-log errors per reading within 10% (at least one error) of those before."""


DEFAULT_TOLERANCE = Tolerance()


@dataclass(frozen=True)
class Periods:
    """The two periods compared; ``after_end`` is cut at the time of the report."""

    before_start: datetime
    before_end: datetime
    after_start: datetime
    after_end: datetime
    days: float
    """The system's ``effect_report_days``."""

    @property
    def before_days(self) -> float:
        return (self.before_end - self.before_start).total_seconds() / 86400

    @property
    def after_days(self) -> float:
        return max(0.0, (self.after_end - self.after_start).total_seconds() / 86400)

    @property
    def after_complete(self) -> bool:
        return self.after_days >= self.days


def effect_periods(
    window_at: datetime, finished_at: datetime, days: float, now: datetime
) -> Periods:
    """Before: ``days`` up to the window; after: ``days`` from the release's end, no later
    than ``now``."""
    after_end = min(finished_at + timedelta(days=days), max(now, finished_at))
    return Periods(
        before_start=window_at - timedelta(days=days),
        before_end=window_at,
        after_start=finished_at,
        after_end=after_end,
        days=days,
    )


@dataclass(frozen=True)
class Comparison:
    """One figure before and after, its verdict and what it means in words."""

    figure: str
    before: str
    """The figure as shown ("99.5%", "120 ms", "2 in 3 days", "not measured")."""
    after: str
    verdict: Verdict
    text: str


def _days(value: float) -> str:
    return f"{value:.3g} day" + ("" if value == 1 else "s")


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def _direction_verdict(before: float, after: float, slack: float, better: Direction) -> Verdict:
    if abs(after - before) <= slack:
        return "same"
    went_up = after > before
    return "better" if went_up == (better == "higher") else "worse"


def _shown(value: float | None, fmt: Callable[[float], str]) -> str:
    return NOT_MEASURED if value is None else fmt(value)


def _measured(
    figure: str,
    before: float | None,
    after: float | None,
    fmt: Callable[[float], str],
    *,
    slack: float,
    better: Direction,
    missing_before: str,
    missing_after: str,
) -> Comparison:
    """A figure measured in both periods compared within ``slack``; else not measured, with
    the reason."""
    shown_before, shown_after = _shown(before, fmt), _shown(after, fmt)
    if before is None or after is None:
        why = missing_before if before is None else missing_after
        return Comparison(figure, shown_before, shown_after, NOT_MEASURED, why)
    verdict = _direction_verdict(before, after, slack, better)
    if verdict == "same":
        text = f"{figure}: about the same ({shown_before} before, {shown_after} after)"
    else:
        moved = "rose" if after > before else "fell"
        text = f"{figure} {moved} from {shown_before} to {shown_after}: {verdict}"
    return Comparison(figure, shown_before, shown_after, verdict, text)


def _rate_comparison(
    figure: str,
    before: int | None,
    after: int | None,
    periods: Periods,
    *,
    missing_before: str,
    missing_after: str,
) -> Comparison:
    """A count where fewer is better, compared per day (any difference counts)."""
    shown_before = NOT_MEASURED if before is None else f"{before} in {_days(periods.before_days)}"
    shown_after = NOT_MEASURED if after is None else f"{after} in {_days(periods.after_days)}"
    if before is None or after is None or periods.before_days <= 0 or periods.after_days <= 0:
        why = missing_before if before is None or periods.before_days <= 0 else missing_after
        return Comparison(figure, shown_before, shown_after, NOT_MEASURED, why)
    rate_before = before / periods.before_days
    rate_after = after / periods.after_days
    verdict = _direction_verdict(rate_before, rate_after, 0.0, "lower")
    if verdict == "same":
        text = f"{figure}: the same ({shown_before} before, {shown_after} after)"
    else:
        text = f"{figure}: {shown_before} before, {shown_after} after: {verdict}"
    return Comparison(figure, shown_before, shown_after, verdict, text)


@dataclass(frozen=True)
class CheckEffect:
    """One smoke check before and after the release."""

    interface: str
    """``SYSTEM/CHECK``."""
    before: Figures
    after: Figures
    comparisons: tuple[Comparison, ...]
    note: str = ""
    """What the reader must know about the figures (no probes in a period: why)."""

    @property
    def verdict(self) -> Verdict:
        return overall([c.verdict for c in self.comparisons])


def _no_probes(interface: str, period: str, periods: Periods) -> str:
    length = periods.before_days if period == "before" else periods.after_days
    return (
        f"no probe of {interface} in the {_days(length)} {period} the release: the interface "
        "monitor was not running (or not probing this check) then, so there is nothing to "
        "compare"
    )


def compare_check(
    interface: str,
    before: Sequence[Sample],
    after: Sequence[Sample],
    periods: Periods,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> CheckEffect:
    """Availability, median and 95th-percentile response time and outages of one smoke check,
    before and after, each with its verdict."""
    fb, fa = figures(before), figures(after)
    no_before = _no_probes(interface, "before", periods)
    no_after = _no_probes(interface, "after", periods)
    comparisons = [
        _measured(
            "availability",
            fb.availability,
            fa.availability,
            _pct,
            slack=tolerance.availability_points,
            better="higher",
            missing_before=no_before,
            missing_after=no_after,
        )
    ]
    for name, b, a in (
        ("median response time", fb.p50_ms, fa.p50_ms),
        ("95th percentile response time", fb.p95_ms, fa.p95_ms),
    ):
        slack = max(tolerance.latency_floor_ms, tolerance.latency_share * (b or 0.0))
        comparisons.append(
            _measured(
                name,
                b,
                a,
                _ms,
                slack=slack,
                better="lower",
                missing_before=no_before if not fb.probes else "no probe passed before the release",
                missing_after=no_after if not fa.probes else "no probe passed after the release",
            )
        )
    comparisons.append(
        _rate_comparison(
            "outages",
            len(fb.outages) if fb.probes else None,
            len(fa.outages) if fa.probes else None,
            periods,
            missing_before=no_before,
            missing_after=no_after,
        )
    )
    notes = [n for n, f in ((no_before, fb), (no_after, fa)) if not f.probes]
    return CheckEffect(interface, fb, fa, tuple(comparisons), "; ".join(notes))


@dataclass(frozen=True)
class OpenedFinding:
    """A finding opened in one of the periods, as the report lists it."""

    where: str
    """The host, or the interface (``SYSTEM/CHECK``) for a finding no host carries."""
    check: str
    subject: str
    severity: str
    message: str
    first_seen_at: datetime


@dataclass(frozen=True)
class FindingsEffect:
    before: tuple[OpenedFinding, ...]
    after: tuple[OpenedFinding, ...]
    comparison: Comparison


def compare_findings(
    before: Sequence[OpenedFinding], after: Sequence[OpenedFinding], periods: Periods
) -> FindingsEffect:
    """The findings opened on the system's hosts and interfaces in each period, compared per
    day (the records always exist: zero is a measurement)."""
    comparison = _rate_comparison(
        "findings opened",
        len(before),
        len(after),
        periods,
        missing_before="",
        missing_after="the after period has not begun yet",
    )
    return FindingsEffect(
        tuple(sorted(before, key=lambda f: f.first_seen_at)),
        tuple(sorted(after, key=lambda f: f.first_seen_at)),
        comparison,
    )


@dataclass(frozen=True)
class SyslogReading:
    """One inspection's count of errors in a host's system log."""

    host: str
    at: datetime
    count: int
    source: str
    """``journal`` or ``file``."""
    path: str | None = None
    window_hours: int | None = None
    """The hours the journal count covers (before ``at``); None for a file (no time window)."""

    @property
    def covers(self) -> str:
        if self.source == "journal":
            hours = f"{self.window_hours} h" if self.window_hours else "the check's window"
            return f"the journal over the {hours} before the inspection"
        return f"the last lines of {self.path or 'the syslog file'} (no time window)"


SYSLOG_SOURCE = (
    "the inspection records of the release's hosts (the syslog check of inspections, "
    "re-checks and the release's own host checks made in each period); the check cannot count "
    "a past period over SSH (the journal is read back from the moment it runs, a plain syslog "
    "file has no time filter), so each figure is the errors one reading found, on average"
)


@dataclass(frozen=True)
class SyslogEffect:
    before: tuple[SyslogReading, ...]
    after: tuple[SyslogReading, ...]
    comparison: Comparison
    source: str = SYSLOG_SOURCE


def _mean_errors(readings: Sequence[SyslogReading]) -> float | None:
    if not readings:
        return None
    return sum(r.count for r in readings) / len(readings)


def compare_syslog(
    before: Sequence[SyslogReading],
    after: Sequence[SyslogReading],
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> SyslogEffect:
    """Errors per system-log reading before and after; "not measured" for a period without a
    reading (no inspection looked then), never a number made up."""
    mean_before, mean_after = _mean_errors(before), _mean_errors(after)
    missing = "no inspection read the hosts' system logs {}: not measured"
    neither = "in either period" if not before and not after else "in the before period"
    comparison = _measured(
        "system-log errors",
        mean_before,
        mean_after,
        lambda v: f"{v:.3g} per reading",
        slack=max(1.0, tolerance.errors_share * (mean_before or 0.0)),
        better="lower",
        missing_before=missing.format(neither),
        missing_after=missing.format("in the after period"),
    )

    def key(r: SyslogReading) -> tuple[datetime, str]:
        return (r.at, r.host)

    return SyslogEffect(tuple(sorted(before, key=key)), tuple(sorted(after, key=key)), comparison)


_RANK: Mapping[Verdict, int] = {"worse": 3, "better": 2, "same": 1, "not measured": 0}


def overall(verdicts: Sequence[Verdict]) -> Verdict:
    """Worse if anything is worse; else better if anything is better; else the same if
    anything was measured both times; else not measured."""
    return max(verdicts, key=lambda v: _RANK[v], default=NOT_MEASURED)


@dataclass(frozen=True)
class EffectReport:
    """The whole comparison for one release."""

    contract: str
    system: str
    version: str
    status: str
    """The release's status (released, rolled-back, ...)."""
    periods: Periods
    checks: tuple[CheckEffect, ...]
    findings: FindingsEffect
    syslog: SyslogEffect
    headline: str = ""
    verdict: Verdict = NOT_MEASURED
    notes: tuple[str, ...] = field(default_factory=tuple)
    """What limits the comparison (an after period not over yet, no smoke check probed)."""


def headline(
    contract: str,
    system: str,
    version: str,
    checks: Sequence[CheckEffect],
    findings: FindingsEffect,
    syslog: SyslogEffect,
) -> tuple[Verdict, str]:
    """The overall verdict and the report's one-line headline: what got worse (or better), or
    that nothing changed, or that nothing could be compared."""
    named: list[tuple[str, Verdict]] = []
    for c in checks:
        for comp in c.comparisons:
            named.append((f"{c.interface} {comp.figure}", comp.verdict))
    named.append((findings.comparison.figure, findings.comparison.verdict))
    named.append((syslog.comparison.figure, syslog.comparison.verdict))
    verdict = overall([v for _, v in named])
    what = f"Effect of {system} {version} ({contract})"
    if verdict == NOT_MEASURED:
        return verdict, f"{what}: nothing to compare (no figure was measured before and after)"
    if verdict == "same":
        return verdict, f"{what}: no change in the key figures"
    names = [n for n, v in named if v == verdict]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    if verdict == "worse":
        return verdict, f"{what}: WORSE after the release: {shown}"
    return verdict, f"{what}: better after the release: {shown}"


def assess(
    *,
    contract: str,
    system: str,
    version: str,
    status: str,
    periods: Periods,
    samples: Mapping[str, tuple[Sequence[Sample], Sequence[Sample]]],
    findings_before: Sequence[OpenedFinding],
    findings_after: Sequence[OpenedFinding],
    syslog_before: Sequence[SyslogReading],
    syslog_after: Sequence[SyslogReading],
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> EffectReport:
    """The effect report from the records of both periods: ``samples`` maps each interface
    (``SYSTEM/CHECK``) to its probes (before, after)."""
    checks = tuple(
        compare_check(name, b, a, periods, tolerance) for name, (b, a) in samples.items()
    )
    found = compare_findings(findings_before, findings_after, periods)
    logs = compare_syslog(syslog_before, syslog_after, tolerance)
    verdict, line = headline(contract, system, version, checks, found, logs)
    notes = []
    if not periods.after_complete:
        notes.append(
            f"the after period is not over yet: {_days(periods.after_days)} of "
            f"{_days(periods.days)} so far (counts are compared per day)"
        )
    if not checks:
        notes.append(f"system {system} has no smoke check: no interface figures")
    return EffectReport(
        contract=contract,
        system=system,
        version=version,
        status=status,
        periods=periods,
        checks=checks,
        findings=found,
        syslog=logs,
        headline=line,
        verdict=verdict,
        notes=tuple(notes),
    )
