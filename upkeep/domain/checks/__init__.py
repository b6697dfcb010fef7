"""The health-check catalogue, in the order the inspection runs it.

Order matters: ``os`` and ``cpu`` come first because later evaluations read their facts
(``uptime`` divides the load by the CPU count, ``updates`` names the release).
"""

from __future__ import annotations

from typing import Any

from upkeep.domain.checks import (
    clock,
    cpu,
    disk,
    inodes,
    memory,
    ports,
    syslog,
    systemd,
    updates,
    uptime,
)
from upkeep.domain.checks import os as os_check
from upkeep.domain.checks.base import Check

CATALOGUE: tuple[Check[Any], ...] = (
    os_check.CHECK,
    cpu.CHECK,
    uptime.CHECK,
    memory.CHECK,
    disk.CHECK,
    inodes.CHECK,
    systemd.CHECK,
    syslog.CHECK,
    clock.CHECK,
    ports.CHECK,
    updates.CHECK,
)

CHECKS_BY_NAME: dict[str, Check[Any]] = {check.name: check for check in CATALOGUE}

__all__ = ["CATALOGUE", "CHECKS_BY_NAME"]
