"""Times as reports show them: in the contract's timezone, as text.

Pure helpers shared by the inspection and the service report and their templates (the
``dt`` and ``date`` filters).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)


def contract_zone(name: str) -> tzinfo:
    """The contract's timezone; UTC (with a warning) when the name is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown timezone %r in the contract, showing times in UTC", name)
        return UTC


def format_dt(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """A report time as text; an em dash for none."""
    return "—" if value is None else value.strftime(fmt)


def format_date(value: datetime | None) -> str:
    return format_dt(value, "%Y-%m-%d")


def human(delta: timedelta) -> str:
    """``3d 4h``, ``2h 05m``, ``4m 10s``, ``12s``."""
    seconds = int(round(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
