"""The time bounds a sweep promises (README, "Host keys and SSH"): pure arithmetic."""

from __future__ import annotations

import heapq
import random

import pytest

from tests.sshd_fixtures import SSH_DEFAULTS as DEFAULTS
from upkeep.domain.checks import CATALOGUE
from upkeep.tasks.inspect import host_bound, sweep_bound
from upkeep.tasks.ssh import command_bound, connect_bound


def test_host_bound_is_the_login_plus_every_check_at_its_own_timeout() -> None:
    timeouts = [c.timeout or DEFAULTS.command_timeout for c in CATALOGUE]
    assert host_bound(DEFAULTS) == connect_bound(DEFAULTS) + sum(t + 15 for t in timeouts)
    # The figure the README states for the default settings and catalogue.
    assert connect_bound(DEFAULTS) == 124.5
    assert sum(timeouts) == 460 and len(timeouts) == 11
    assert host_bound(DEFAULTS) == 124.5 + 460 + 11 * 15


def test_host_bound_counts_only_the_checks_run() -> None:
    (disk,) = [c for c in CATALOGUE if c.name == "disk"]
    assert host_bound(DEFAULTS, (disk,)) == connect_bound(DEFAULTS) + command_bound(DEFAULTS, 60)


@pytest.mark.parametrize(
    ("hosts", "at_once", "rounds"), [(0, 10, 0), (1, 10, 1), (10, 10, 1), (11, 10, 2), (25, 4, 7)]
)
def test_sweep_bound_is_one_host_bound_per_round(hosts: int, at_once: int, rounds: int) -> None:
    assert sweep_bound(hosts, at_once, 100.0) == rounds * 100.0


def _makespan(durations: list[float], at_once: int) -> float:
    """What sweep_hosts does: start the next host as soon as fewer than ``at_once`` run."""
    running: list[float] = []
    now = 0.0
    for duration in durations:
        if len(running) >= at_once:
            now = heapq.heappop(running)
        heapq.heappush(running, now + duration)
    return max(running, default=0.0)


def test_no_schedule_of_hosts_within_their_bound_outlasts_the_sweep_bound() -> None:
    rng = random.Random(10)
    for _ in range(2000):
        hosts, at_once = rng.randint(1, 40), rng.randint(1, 12)
        durations = [rng.choice([1.0, rng.random()]) for _ in range(hosts)]
        assert _makespan(durations, at_once) <= sweep_bound(hosts, at_once, 1.0) + 1e-9
