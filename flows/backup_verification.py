"""Backup-restore verification and the disaster-recovery drill (PROCESSES.md, section 2).

For each backup source of the contract, in its own task (one bad source never stops the
others):

1. Freshness: is the latest backup within the source's validity? Else take a new full one
   (never in a drill).
2. Restore test: restore it somewhere harmless and check the data is complete and usable.
3. On an anomaly, say whose fault it is (the backup's or the system's) and raise a finding.
4. Versions: keep the verified one in the archive (by system, security level, importance
   and time) and prune old ones, never the last good one.

Then the report (file and UI artifact), mailed to the contract's recipients when a backup
failed (or when asked). The work per source is ``tasks.backup_verify``; its decisions are
``upkeep.domain.backups``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.db import open_session
from upkeep.domain.backups import SourceOutcome
from upkeep.flows.blackout import blackout_guard
from upkeep.models import RunStatus
from upkeep.tasks.backup_report import tell_recipients, write_backup_report
from upkeep.tasks.backup_verify import contract_sources, verify_source
from upkeep.tasks.records import finish_run, get_contract, start_run
from upkeep.tasks.runs import current_flow_run_id, run_name, run_params

__all__ = [
    "BackupOutcome",
    "BackupParams",
    "backup_run_name",
    "backup_verification",
    "tell_recipients",
    "write_backup_report",
]


class BackupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    source: str | None = Field(None, description="Only this backup source (system name)")
    drill: bool = Field(False, description="Disaster-recovery drill: full restore, timed")
    email_report: bool = Field(False, description="Mail the report even when all is well")
    requested_by: str | None = None


class BackupOutcome(BaseModel):
    run_id: int
    report_path: str
    sources: list[SourceOutcome]

    @property
    def failed(self) -> list[str]:
        return [s.system for s in self.sources if not s.good]


def backup_run_name() -> str:
    """``backup test · CONTRACT[ · source]``, or ``drill · ...``."""
    params = run_params()
    return run_name("drill" if params.get("drill") else "backup test", params, params.get("source"))


def _start(params: BackupParams) -> tuple[int, list[str]]:
    """The run's record, and the systems it verifies."""
    with open_session() as db:
        contract = get_contract(session=db, code=params.contract)
        systems = contract_sources(contract, params.source)
        run = start_run(
            session=db,
            contract=contract,
            kind="drill" if params.drill else "backup",
            flow_run_id=current_flow_run_id(),
            requested_by=params.requested_by,
        )
        assert run.id is not None
        return run.id, systems


@flow(name="backup-verification", flow_run_name=backup_run_name, persist_result=True)
def backup_verification(params: BackupParams) -> BackupOutcome | State[Any]:
    """Prove each backup source restores; keep the last good versions; report and tell."""
    if not params.drill and (ended := blackout_guard(params.contract)) is not None:
        return ended
    run_id, systems = _start(params)

    # 1-4 per source, side by side: freshness, restore test, fault and finding, versions.
    futures = [
        verify_source.submit(params.contract, system, run_id, params.drill) for system in systems
    ]
    outcomes: list[SourceOutcome] = []
    status = RunStatus.COMPLETED
    for fut, system in zip(futures, systems, strict=True):
        fut.wait()
        if fut.state.is_completed():
            outcomes.append(fut.result())
        else:
            status = RunStatus.FAILED
            outcomes.append(SourceOutcome.crashed(system, str(fut.state.message)))
    with open_session() as db:
        finish_run(session=db, run_id=run_id, status=status)

    # The report; the recipients hear of it when a backup failed (or when asked).
    report = write_backup_report(run_id, outcomes, params.drill)
    if params.email_report or any(not o.good for o in outcomes):
        tell_recipients(run_id, report, outcomes, params.drill)
    return BackupOutcome(run_id=run_id, report_path=report, sources=outcomes)
