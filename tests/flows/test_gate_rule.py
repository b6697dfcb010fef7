"""Which processes can stop at a gate, found from the code, against the list whose replay is
tested (the rule in ``upkeep.flows``' docstring: every step before a gate is persisted or
idempotent by a database key).

A process whose flow starts to reach a gate (``request_approval``, or Prefect's
``suspend_flow_run``/``pause_flow_run``) fails here until it is added to ``REPLAY_TESTED``
together with a test (tests/flows/test_gate_replay.py, test_patch_replay.py) that resumes it
in fresh processes and counts its records and mails. No Prefect server needed: this reads the
code only.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

from upkeep.domain.processes import FLOWS

GATE_CALLS = {"request_approval", "suspend_flow_run", "pause_flow_run"}
REPLAY_TESTED = {"inspection", "patch_advisory", "patch_fix", "release"}
"""Processes with a gate, each covered by tests/flows/test_gate_replay.py (the inspection) or
tests/flows/test_patch_replay.py (both patch flows) or test_release_replay.py."""


def _code_objects(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out += _code_objects(const)
    return out


def _callee(obj: Any) -> Any:
    """The plain function behind a Prefect task or flow, or ``obj``."""
    return getattr(obj, "fn", obj)


def reaches_gate(fn: Any, seen: set[int] | None = None) -> bool:
    """Whether ``fn`` (or any upkeep function it names, transitively) calls a gate."""
    seen = set() if seen is None else seen
    fn = _callee(fn)
    if not isinstance(fn, types.FunctionType) or id(fn) in seen:
        return False
    seen.add(id(fn))
    if not str(fn.__module__).startswith("upkeep."):
        return False
    names = {n for c in _code_objects(fn.__code__) for n in c.co_names}
    if names & GATE_CALLS:
        return True
    for name in names:
        obj = fn.__globals__.get(name)
        if isinstance(obj, types.ModuleType):
            if obj.__name__.startswith("upkeep.") and any(
                reaches_gate(getattr(obj, n, None), seen) for n in names
            ):
                return True
        elif reaches_gate(obj, seen):
            return True
    return False


def flow_of(ref: str) -> Any:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def test_every_process_that_gates_has_its_replay_tested() -> None:
    gated = {process for process, ref in FLOWS.items() if reaches_gate(flow_of(ref))}
    assert gated == REPLAY_TESTED


def test_the_finder_sees_a_gate_two_calls_deep() -> None:
    assert not reaches_gate(lambda: None)
    assert reaches_gate(flow_of(FLOWS["inspection"]))
    assert not reaches_gate(flow_of(FLOWS["service_report"]))
