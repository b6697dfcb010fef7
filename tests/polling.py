"""Waiting for a condition in tests: poll it with a bound, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

POLL_INTERVAL = 0.1
"""Seconds between two looks at the condition."""


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Return the first truthy value of ``predicate()``; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def answers(url: str, proc: Any = None) -> bool:
    """True once ``url`` answers 200; fails at once if ``proc`` (the server's
    ``subprocess.Popen``) has exited meanwhile. For :func:`wait_until`."""
    if proc is not None and proc.poll() is not None:
        raise AssertionError(f"the server behind {url} exited {proc.returncode}")
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
