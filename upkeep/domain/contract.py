"""The contract, typed: who approves, the gate rules, the thresholds, the backup sources and the
cadences, validated once and read as attributes everywhere (never ``dict.get`` with a default
restated at each use).

The inventory validates a contract with these same models before it is stored; a
:class:`ContractView` reads it back from the :class:`~upkeep.models.Contract` row. Pure: no
database access here.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

from upkeep.domain.cadence import Blackout, parse_blackouts
from upkeep.domain.checks.base import Thresholds
from upkeep.domain.interfaces import SystemSpec
from upkeep.models import Contract

CODE_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PersonSpec(_Strict):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr


class GatePolicy(BaseModel):
    """A contract's rules for a gate. Defaults are the plans' usual promises."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required_approvals: int = Field(1, ge=1, le=10)
    """M of the N named approvers must approve; one rejection sends it back."""
    allow_self_approval: bool = False
    """Whether the person who started the run may approve it."""
    escalate_after_hours: float | None = Field(4, gt=0)
    """Then the backup approver gets a code too. None: never escalate."""
    expire_after_hours: float = Field(72, gt=0)
    """Then the gate expires and the run ends."""
    approvers: tuple[PersonSpec, ...] = ()
    """Who answers this gate instead of the contract's approvers (e.g. the customer's release
    approvers, or who reviews a test report); empty: the contract's approvers. The backup
    approver stays the contract's."""
    max_failed_attempts: int = Field(3, ge=1, le=20)
    """Wrong codes typed under one approver's name before that approver's code is replaced.

    Nobody is ever locked out (a stranger could otherwise lock out the real approver): the
    old code stops working, the approver is mailed a new one, and the attempts are recorded
    (``rotated`` events, shown by ``upkeep approvals show``)."""

    @model_validator(mode="after")
    def _escalate_before_expiry(self) -> GatePolicy:
        if self.escalate_after_hours is not None and (
            self.escalate_after_hours >= self.expire_after_hours
        ):
            raise ValueError("escalate_after_hours must be less than expire_after_hours")
        return self


class PatchPolicy(_Strict):
    """How the contract's patch-advisory cycle ends once the customer approved a plan."""

    mode: Literal["report", "apply"] = "report"
    """report: the approved plan is the agreed basis, the provider installs it by hand;
    apply: upkeep installs exactly the approved versions."""
    staging_tag: str = Field("staging", min_length=1, max_length=64)
    """Hosts with this tag (or this role) get the updates first; production waits until
    their health checks pass."""
    statistics_days: int = Field(365, ge=1, le=3650)
    """How far back the fault statistics look."""


def policy_for(
    approval_policy: dict[str, Any], gate_policies: dict[str, Any], gate: str
) -> GatePolicy:
    """The contract's policy for ``gate``: its defaults overlaid with the gate's own."""
    return GatePolicy.model_validate({**approval_policy, **gate_policies.get(gate, {})})


class BackupSourceSpec(_Strict):
    """One system's backups: where they are, where a restore may be tried, what "right" means.

    Secrets are named, never given: database URLs come from environment variables, the restic
    password from a Prefect Secret block or an environment variable.
    """

    system: str = Field(min_length=1, max_length=200, pattern=CODE_RE)
    kind: Literal["files", "postgresql", "restic"]
    host: str | None = Field(
        None,
        description="The contract's host holding the backups (location, source and "
        "dump_database are on it; new backups are taken there over SSH)",
    )
    location: str = Field(min_length=1, description="Directory of the backups, or the repo")
    source: str | None = Field(None, description="What a new full backup copies (files, restic)")
    source_database_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    dump_database: str | None = Field(
        None,
        min_length=1,
        description="postgresql with host: the database pg_dump reads on that host, a name or "
        "a libpq connection string without a password (the host's peer or .pgpass login)",
    )
    scratch: str | None = Field(None, description="Parent directory for restores (files, restic)")
    scratch_host: str | None = Field(
        None,
        description="files with host: restore on this contract host (scratch is a path there) "
        "instead of fetching the backup to the machine running upkeep",
    )
    scratch_database_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    password_secret: str | None = None
    password_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    importance: Literal["low", "medium", "high", "critical"] = "medium"
    security_level: Literal["public", "internal", "confidential", "secret"] = "internal"
    validity_hours: float = Field(26, gt=0)
    keep_versions: int = Field(5, ge=1, le=100)
    expected_files: list[str] = []
    tables: dict[str, int] = {}
    sql_checks: list[str] = []
    commands: list[str] = Field(
        [],
        description="Commands that must exit 0 in the restored copy (split like a shell "
        "line, run without a shell; postgresql: with PG* set to the scratch database)",
    )
    command_timeout: float = Field(300, gt=0, le=24 * 3600)
    read_data_subset: str | None = None

    @field_validator("commands")
    @classmethod
    def _commands_split(cls, value: list[str]) -> list[str]:
        for line in value:
            try:
                argv = shlex.split(line)
            except ValueError as exc:
                raise ValueError(f"command {line!r} cannot be split: {exc}") from None
            if not argv:
                raise ValueError("a check command is empty")
        return value

    @field_validator("dump_database")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        if value is not None and re.search(r"password\s*=|://[^/@]*:[^/@]*@", value, re.I):
            raise ValueError(
                "dump_database must not hold a password: the host's own login is used "
                "(peer authentication or ~/.pgpass there)"
            )
        return value

    @model_validator(mode="after")
    def _kind_needs(self) -> BackupSourceSpec:
        missing = []
        if self.kind in ("files", "restic") and not self.scratch:
            missing.append("scratch")
        if self.kind == "postgresql" and not self.scratch_database_env:
            missing.append("scratch_database_env")
        if self.kind == "restic" and not (self.password_secret or self.password_env):
            missing.append("password_secret or password_env")
        if self.dump_database and not (self.kind == "postgresql" and self.host):
            raise ValueError("dump_database is for a postgresql source with a host")
        if self.scratch_host and not (self.kind == "files" and self.host):
            raise ValueError("scratch_host is for a files source with a host")
        if self.scratch_host and self.commands:
            raise ValueError(
                "check commands run on the machine running upkeep, not on a scratch_host: "
                "remove commands or scratch_host"
            )
        if missing:
            raise ValueError(f"a {self.kind} backup source needs {', '.join(missing)}")
        # With a host, the source and location are paths there and the scratch is here
        # (or on scratch_host: there, it must not be inside the source either).
        same_side = not self.host or self.scratch_host == self.host
        for path in (self.scratch, self.location) if same_side else (self.location,):
            if (
                self.source
                and path
                and (path == self.source or path.startswith(self.source.rstrip("/") + "/"))
            ):
                raise ValueError("backups and restores must not live inside the source")
        return self


class ContractView(BaseModel):
    """One contract as every process reads it. Build it with :meth:`of` from the row."""

    model_config = ConfigDict(frozen=True)

    id: int
    code: str
    name: str
    customer_id: int
    timezone: str = "UTC"
    active: bool = True
    plan_requires_approval: bool = True
    approvers: tuple[PersonSpec, ...] = ()
    backup_approver: PersonSpec | None = None
    report_recipients: tuple[str, ...] = ()
    thresholds: Thresholds = Thresholds()
    cadences: dict[str, Any] = {}
    """Process -> cadence as written (``upkeep.domain.cadence`` parses it)."""
    blackouts: tuple[Any, ...] = ()
    """As written (``upkeep.domain.cadence.parse_blackouts`` parses them)."""
    blackout_policy: Literal["next_allowed_day", "skip"] = "next_allowed_day"
    backup_sources: tuple[BackupSourceSpec, ...] = ()
    approval_policy: GatePolicy = GatePolicy()
    gate_policies: dict[str, GatePolicy] = {}
    patching: PatchPolicy = PatchPolicy()
    systems: tuple[SystemSpec, ...] = ()

    @classmethod
    def of(cls, row: Contract) -> ContractView:
        """The typed view of a stored contract (validated like the inventory that wrote it)."""
        if row.id is None:
            raise ValueError(f"contract {row.code} is not stored yet")
        return cls(
            id=row.id,
            code=row.code,
            name=row.name,
            customer_id=row.customer_id,
            timezone=row.timezone,
            active=row.active,
            plan_requires_approval=row.plan_requires_approval,
            approvers=tuple(PersonSpec.model_validate(p) for p in row.approvers or ()),
            backup_approver=(
                PersonSpec.model_validate(row.backup_approver) if row.backup_approver else None
            ),
            report_recipients=tuple(row.report_recipients or ()),
            thresholds=Thresholds.model_validate(row.thresholds or {}),
            cadences=dict(row.cadences or {}),
            blackouts=tuple(row.blackouts or ()),
            blackout_policy=row.blackout_policy or "next_allowed_day",  # type: ignore[arg-type]
            backup_sources=tuple(
                BackupSourceSpec.model_validate(s) for s in row.backup_sources or ()
            ),
            approval_policy=GatePolicy.model_validate(row.approval_policy or {}),
            gate_policies={
                gate: policy_for(row.approval_policy or {}, row.gate_policies or {}, gate)
                for gate in (row.gate_policies or {})
            },
            patching=PatchPolicy.model_validate(row.patching or {}),
            systems=tuple(SystemSpec.model_validate(s) for s in row.systems or ()),
        )

    @property
    def people(self) -> tuple[PersonSpec, ...]:
        """Everyone who may answer one of the contract's gates: the approvers, each gate's own
        approvers, then the backup approver (when there is one); each person once."""
        backup = (self.backup_approver,) if self.backup_approver is not None else ()
        everyone = self.approvers + tuple(
            p for policy in self.gate_policies.values() for p in policy.approvers
        )
        seen: dict[tuple[str, str], PersonSpec] = {}
        for person in everyone + backup:
            seen.setdefault((person.name.casefold(), person.email.lower()), person)
        return tuple(seen.values())

    def approvers_for(self, gate: str) -> tuple[PersonSpec, ...]:
        """Who answers ``gate``: the gate's own approvers, else the contract's."""
        return self.policy(gate).approvers or self.approvers

    @property
    def threshold_overrides(self) -> dict[str, Any]:
        """The thresholds the inventory sets, as it wrote them (the others are the defaults)."""
        return self.thresholds.model_dump(exclude_unset=True)

    def blackout_days(self) -> list[Blackout]:
        """The blackouts parsed (``upkeep.domain.cadence.parse_blackouts``), sorted by start."""
        return parse_blackouts(self.blackouts)

    def policy(self, gate: str) -> GatePolicy:
        """The rules of ``gate``: the contract's defaults overlaid with the gate's own."""
        return self.gate_policies.get(gate, self.approval_policy)

    @property
    def smoke_checked(self) -> bool:
        """Whether the contract names any interface to probe."""
        return any(s.smoke_checks for s in self.systems)

    def system(self, name: str) -> SystemSpec:
        """The system called ``name``; KeyError names the systems there are."""
        for system in self.systems:
            if system.name == name:
                return system
        known = ", ".join(s.name for s in self.systems) or "none"
        raise KeyError(f"contract {self.code} has no system {name!r} (it has: {known})")

    def backup_source(self, system: str) -> BackupSourceSpec:
        """The backup source of ``system``; KeyError names the systems there are."""
        for source in self.backup_sources:
            if source.system == system:
                return source
        known = ", ".join(s.system for s in self.backup_sources) or "none"
        raise KeyError(f"contract {self.code} has no backup source {system!r} (it has: {known})")
