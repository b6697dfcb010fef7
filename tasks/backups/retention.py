"""Moved to :mod:`upkeep.domain.retention` (pure decisions live in the domain); this name
stays for one release."""

from upkeep.domain.retention import (
    MAX_COMPONENT,
    Version,
    archive_path,
    backup_key,
    plan_retention,
    safe_component,
)

__all__ = [
    "MAX_COMPONENT",
    "Version",
    "archive_path",
    "backup_key",
    "plan_retention",
    "safe_component",
]
