"""Memory and swap grading at the threshold boundaries."""

from __future__ import annotations

import pytest

from upkeep.domain.checks import memory
from upkeep.domain.checks.base import EvalContext, Severity, Thresholds


def _facts(available: int = 500, swap_free: int = 0, swap_total: int = 0) -> memory.MemoryFacts:
    return memory.MemoryFacts(
        total_kb=1000,
        available_kb=available,
        available_estimated=False,
        swap_total_kb=swap_total,
        swap_free_kb=swap_free,
    )


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        (101, None),
        (100, Severity.MAJOR),
        (99, Severity.MAJOR),
        (51, Severity.MAJOR),
        (50, Severity.CRITICAL),
        (49, Severity.CRITICAL),
    ],
)
def test_memory_boundaries(available: int, expected: Severity | None) -> None:
    mem, swap = memory.evaluate(_facts(available), Thresholds(), EvalContext())
    assert mem.severity is expected
    assert swap.value == "none configured" and swap.severity is None


@pytest.mark.parametrize(
    ("free", "expected"),
    [
        (501, None),
        (500, Severity.MAJOR),
        (499, Severity.MAJOR),
        (201, Severity.MAJOR),
        (200, Severity.CRITICAL),
        (0, Severity.CRITICAL),
    ],
)
def test_swap_boundaries(free: int, expected: Severity | None) -> None:
    _, swap = memory.evaluate(_facts(swap_total=1000, swap_free=free), Thresholds(), EvalContext())
    assert swap.severity is expected


def test_message_states_value_and_limit() -> None:
    mem, _ = memory.evaluate(_facts(30), Thresholds(), EvalContext())
    assert mem.message == "Memory is 97% used (critical at 95%)"


def test_old_kernel_estimates_available() -> None:
    facts = memory.parse(
        "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"
        "SwapTotal: 0 kB\nSwapFree: 0 kB\n"
    )
    assert facts.available_kb == 400 and facts.available_estimated
    assert facts.used_pct == 60.0


def test_missing_memtotal_is_a_parse_error() -> None:
    with pytest.raises(ValueError):
        memory.parse("MemFree: 100 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
