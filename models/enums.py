"""Closed sets of words that tables store as their plain string values (no database enum
type, so no migration: ``Outcome.GOOD == "good"``). The domain and the tasks import them from
here, the lowest layer that needs them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class Outcome(StrEnum):
    """How a backup verification ended: restored and every check passed, or not."""

    GOOD = "good"
    BAD = "bad"


class Fault(StrEnum):
    """Whose problem a failed backup verification is: the backup itself (truncated, corrupt,
    incomplete) or the system that makes, holds or restores it (no space, tool missing, server
    unreachable, a missing setting)."""

    BACKUP = "backup"
    SYSTEM = "system"


class StrEnumColumn(sa.types.TypeDecorator[Any]):
    """A column storing a :class:`StrEnum` as its plain string value (a VARCHAR, as before the
    enum existed) and reading it back as the enum member."""

    impl = sa.String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(self.enum(value).value)

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)
