"""How a flow refuses to start: one rule for every process.

A run whose start checks refuse ends at once with the reason as its state: *Cancelled* while
another run of the process holds the contract's claim (nothing is wrong, it just is not this
run's turn), *Failed* for anything else refused (an unknown contract, host or system, a plan
nobody could approve). The reason is logged either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.states import Cancelled, Failed, State

from upkeep.tasks.guards import AlreadyRunning, Refused

T = TypeVar("T")


def start_or_refuse(check: Callable[[], T]) -> T | State[Any]:
    """``check()``'s value, or the state to end the run with when it refused."""
    logger = get_run_logger()
    try:
        return check()
    except AlreadyRunning as exc:
        logger.warning("not started: %s", exc)
        return Cancelled(message=f"not started: {exc}")
    except (Refused, LookupError) as exc:
        logger.error("not started: %s", exc)
        return Failed(message=f"not started: {exc}")
