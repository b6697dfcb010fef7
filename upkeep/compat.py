"""Old module names, kept importable for one release (0.2 drops them).

Before 0.1.0's package layout, upkeep's modules were imported as top-level ``flows``,
``tasks``, ``models`` and ``deployments``, and a few moved since (the cadence, calendar and
backup retention into ``upkeep.domain``, the demo's throwaway servers into ``upkeep.demo``).
Prefect keeps those names where upkeep does not control them: the results a run persisted
before it was suspended at a gate are pickles that name their classes' modules, and a
deployment registered by an older ``upkeep deploy`` names its flow's module. Without these
aliases such a run could not resume after an upgrade.

Two kinds of old names occur in those pickles. A module the old code imported by package
(``flows.approvals``, ``tasks.gates``, ``models.approval``); and the flow module itself under
its bare file name (``inspection``): the old deployments had file entrypoints
(``flows/inspection.py:quarterly_health_inspection``) and Prefect loads a file entrypoint as a
module named after the file, so the plan an old inspection persisted before its gate names
``inspection.InspectionPlan``. A class that left its module since is found through ``MOVED``.

Should an old result still fail to load, Prefect does not strand the run: it treats the
result as missing and runs that task again, which is safe because every step before a gate
is persisted or idempotent by a database key (see ``upkeep.flows``).

An old name resolves to the *same module object* as its new name (never a second copy, so
classes compare equal and Prefect sees one flow). A top-level name that belongs to some other
installed distribution is left alone. Importing ``upkeep`` installs the finder.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

RENAMED: dict[str, str] = {
    # old module or package -> new; a package's submodules follow it (longest prefix wins)
    "flows": "upkeep.flows",
    "tasks": "upkeep.tasks",
    "tasks.checks": "upkeep.domain.checks",
    "tasks.codes": "upkeep.domain.codes",
    "tasks.findings": "upkeep.domain.findings",
    "tasks.markup": "upkeep.domain.markup",
    "tasks.backups.retention": "upkeep.domain.retention",
    "upkeep.tasks.backups.retention": "upkeep.domain.retention",
    "models": "upkeep.models",
    "deployments": "upkeep.deployments",
    "deployments.cadence": "upkeep.domain.cadence",
    "deployments.calendar": "upkeep.domain.calendar",
    "upkeep.sshd": "upkeep.demo.sshd",
    "upkeep.mailsink": "upkeep.demo.mailsink",
    "upkeep.prefect_server": "upkeep.demo.prefect_server",
    # the module a file entrypoint loaded (see above); only the flow whose runs wait at gates
    "inspection": "upkeep.flows.inspection",
}
MOVED: dict[str, dict[str, str]] = {
    # module (new name) -> {class that left it: the module it lives in now}. Every class of
    # the old module is listed, also one the module still imports for its own use, so the old
    # names never depend on a module's imports.
    "upkeep.tasks.gates": {"GatePolicy": "upkeep.domain.contract"},
    "upkeep.flows.approvals": {
        "ApprovalExpired": "upkeep.domain.approvals",
        "ApprovalInput": "upkeep.tasks.pause",
        "ApprovalRequest": "upkeep.domain.approvals",
        "ApprovalResult": "upkeep.domain.approvals",
        "Decision": "upkeep.domain.approvals",
        "GateClosed": "upkeep.domain.approvals",
        "Person": "upkeep.domain.approvals",
        "Verdict": "upkeep.domain.approvals",
    },
    # also the file-entrypoint name "inspection" (RENAMED above)
    "upkeep.flows.inspection": {
        "AlreadyRunning": "upkeep.tasks.guards",
        "InspectionPlan": "upkeep.domain.inspection",
        "PlanHost": "upkeep.domain.inspection",
        "PlanRevision": "upkeep.flows.inspection_gate",
    },
    "upkeep.tasks.reports": dict.fromkeys(
        ("_HasSeverity", "CustomerInfo", "ContractInfo", "RunInfo", "PlanApproval")
        + ("MeasurementRow", "HostRow", "FindingRow", "SeverityGroup", "PreviousRun")
        + ("Changes", "UnreachedHost", "InspectionReport"),
        "upkeep.domain.inspection_report",
    ),
    "upkeep.tasks.service_report": dict.fromkeys(
        ("RunRow", "RunTally", "FindingRow", "SeverityTally", "HostTally", "BackupVerification")
        + ("ApproverTimes", "GateRow", "ApprovalSummary", "PlannedRun", "PeriodPlan", "Figure")
        + ("ServiceReport",),
        "upkeep.domain.service_report",
    ),
}
_PACKAGE_DIR = Path(__file__).resolve().parent


def new_name(old: str) -> str | None:
    """The current name of module ``old``, or None when ``old`` is not an old upkeep name."""
    parts = old.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in RENAMED:
            return ".".join([RENAMED[prefix], *parts[n:]])
    return None


def _foreign(top: str) -> bool:
    """Whether top-level ``top`` is found on sys.path outside upkeep (another distribution's
    package of that name): then it is not ours to alias."""
    spec = importlib.machinery.PathFinder.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return spec is not None
    ours = (_PACKAGE_DIR / top).resolve()
    return all(Path(p).resolve() != ours for p in spec.submodule_search_locations)


def _moved_attribute(module: str, moved: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` (PEP 562) that finds the classes that left ``module``."""

    def __getattr__(name: str) -> object:
        if name in moved:
            return getattr(importlib.import_module(moved[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # The import system keeps an existing module's __name__, __spec__ and __path__, so
        # the old name becomes a second key for the one module object.
        module = importlib.import_module(self.target)
        moved = MOVED.get(self.target)
        if moved and not hasattr(module, "__getattr__"):
            # PEP 562: the module answers for the classes that left it
            setattr(module, "__getattr__", _moved_attribute(self.target, moved))  # noqa: B010
        return module

    def exec_module(self, module: ModuleType) -> None:
        return None


class OldNameFinder(importlib.abc.MetaPathFinder):
    """Resolves a pre-0.1.0 module name to its current module (see the module docstring)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        current = new_name(fullname)
        if current is None or current == fullname:
            return None
        top = fullname.partition(".")[0]
        if top != "upkeep" and _foreign(top):
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(current))


def install() -> None:
    """Put the finder first on sys.meta_path (once): in a checkout the old top-level
    directories are importable from the working directory and would otherwise load a second
    copy of each module."""
    if not any(isinstance(f, OldNameFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, OldNameFinder())
