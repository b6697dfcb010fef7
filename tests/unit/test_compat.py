"""Every module and class of the release before the package layout resolves under its old name
(upkeep/compat.py), so the results that release persisted load after the upgrade.

The old names are read from git history (commit cf6a27a, the last release with top-level
``flows``, ``tasks``, ``models`` and ``deployments``); a module or class that moves later and
is forgotten in ``compat.RENAMED``/``compat.MOVED`` fails here.
"""

from __future__ import annotations

import ast
import importlib
import pickle
import subprocess
from pathlib import Path

import pytest

import upkeep.domain.inspection
import upkeep.domain.retention
import upkeep.flows.inspection
from upkeep.compat import MOVED, new_name
from upkeep.domain.contract import GatePolicy

ROOT = Path(__file__).resolve().parents[2]
OLD_RELEASE = "cf6a27a"
OLD_PACKAGES = ("flows", "tasks", "models", "deployments")


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"git {' '.join(args)}: {done.stderr} (the test needs the full history)")
    return done.stdout


def old_modules() -> list[tuple[str, list[str]]]:
    """(old module name, its top-level classes) of every module of the old release."""
    paths = git("ls-tree", "-r", "--name-only", OLD_RELEASE, "--", *OLD_PACKAGES).split()
    out = []
    for path in sorted(p for p in paths if p.endswith(".py")):
        module = ".".join(Path(path).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(git("show", f"{OLD_RELEASE}:{path}"))
        out.append((module, [n.name for n in tree.body if isinstance(n, ast.ClassDef)]))
    return out


def test_every_old_module_and_class_resolves_to_the_current_object() -> None:
    missing = []
    modules = old_modules()
    assert len(modules) > 30
    for old, classes in modules:
        current = new_name(old)
        assert current is not None, f"{old} has no new name in compat.RENAMED"
        module = importlib.import_module(old)
        assert module is importlib.import_module(current), old
        missing += [f"{old}.{c}" for c in classes if not hasattr(module, c)]
    assert missing == [], f"classes that left their module, add them to compat.MOVED: {missing}"


def test_the_file_entrypoint_name_of_the_inspection_resolves() -> None:
    """Old deployments loaded flows/inspection.py as module ``inspection``: the plan an old run
    persisted before its gate is pickled as ``inspection.InspectionPlan``."""
    assert importlib.import_module("inspection") is upkeep.flows.inspection
    for name in ("InspectionPlan", "PlanHost"):
        # the GLOBAL opcode an old pickle starts an object of that class with
        legacy = f"cinspection\n{name}\n.".encode()
        assert pickle.loads(legacy) is getattr(upkeep.domain.inspection, name)  # noqa: S301 - our own bytes


def test_a_class_that_left_its_module_is_found_under_the_old_name() -> None:
    gates = importlib.import_module("tasks.gates")
    assert gates.GatePolicy is GatePolicy
    with pytest.raises(AttributeError):
        _ = gates.NoSuchThing


@pytest.mark.parametrize(
    ("module", "name", "home"),
    [(module, name, home) for module, moved in MOVED.items() for name, home in moved.items()],
)
def test_every_moved_class_is_the_class_in_its_new_home(module: str, name: str, home: str) -> None:
    """Under its old name (``flows.approvals.Decision``) a class that left its module is the
    very class of its new home, as an old pickle asks for it."""
    old = module.removeprefix("upkeep.")
    assert new_name(old) == module
    legacy = f"c{old}\n{name}\n.".encode()
    assert pickle.loads(legacy) is getattr(importlib.import_module(home), name)  # noqa: S301


def test_a_module_that_moved_away_whole_resolves_to_its_new_home() -> None:
    """tasks/backups/retention.py is gone; both its old names are upkeep.domain.retention."""
    for old in ("tasks.backups.retention", "upkeep.tasks.backups.retention"):
        assert importlib.import_module(old) is upkeep.domain.retention
    legacy = b"ctasks.backups.retention\nVersion\n."
    assert pickle.loads(legacy) is upkeep.domain.retention.Version  # noqa: S301 - our own bytes
