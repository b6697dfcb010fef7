"""Report periods: the last complete month, quarter or year, in local dates.

A period is ``[start, end)`` in local dates of the contract's timezone: a run at 23:30 UTC
on 31 October belongs to November in Berlin. Pure.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo
from typing import Literal, get_args

PeriodKind = Literal["month", "quarter", "year"]
PERIOD_KINDS: tuple[str, ...] = get_args(PeriodKind)
_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}


def _check_kind(kind: str) -> int:
    try:
        return _MONTHS[kind]
    except KeyError:
        raise ValueError(f"unknown period {kind!r}: one of {', '.join(PERIOD_KINDS)}") from None


def _add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after (or before) ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _period_start(kind: str, day: date) -> date:
    """The first day of the period of ``kind`` that contains ``day``."""
    months = _check_kind(kind)
    month = (day.month - 1) // months * months + 1
    return date(day.year, month, 1)


def period_bounds(kind: PeriodKind, reference: date) -> tuple[date, date]:
    """``(start, end)`` of the last complete period of ``kind`` before ``reference``.

    ``end`` is exclusive: the first day of the period that contains ``reference`` (a report
    runs at the start of the next period). Pure: ``("month", 2026-01-05)`` gives
    ``(2025-12-01, 2026-01-01)``.
    """
    end = _period_start(kind, reference)
    return _add_months(end, -_check_kind(kind)), end


def next_period(kind: PeriodKind, end: date) -> tuple[date, date]:
    """``(start, end)`` of the period of ``kind`` that starts on ``end``."""
    start = _period_start(kind, end)
    return start, _add_months(start, _check_kind(kind))


def period_label(kind: PeriodKind, start: date) -> str:
    """``2026-11`` for a month, ``2026-Q4`` for a quarter, ``2026`` for a year."""
    _check_kind(kind)
    if kind == "month":
        return f"{start:%Y-%m}"
    if kind == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return f"{start.year}"


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The instant (UTC) at which ``day`` begins in ``zone``."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
