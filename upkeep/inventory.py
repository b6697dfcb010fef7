"""The YAML inventory: validation with errors that point at the file and line, and applying it.

Parsing and validation are pure (:func:`parse_inventory`); :func:`apply_inventory` writes the
result in one transaction, idempotently: a second load of the same file changes nothing, a host
or contract missing from the file is deactivated, never deleted.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    EmailStr,
    Field,
    ValidationError,
    field_validator,
)
from sqlmodel import Session, select

from upkeep.domain.approvals import approver_warnings as gate_warnings
from upkeep.domain.cadence import CadenceError, parse_blackouts, parse_cadence
from upkeep.domain.checks.base import Thresholds
from upkeep.domain.contract import (
    CODE_RE,
    BackupSourceSpec,
    GatePolicy,
    PatchPolicy,
    PersonSpec,
    _Strict,
    policy_for,
)
from upkeep.domain.interfaces import SystemSpec
from upkeep.domain.naming import repeated
from upkeep.models import Contract, Customer, Host, utcnow

Process = Literal[
    "inspection",
    "recheck",
    "backup_verification",
    "patch_advisory",
    "service_report",
    "annual_plan",
    "interface_monitor",
    "interface_status",
]
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_.:\[\]-]+$")


class InventoryError(Exception):
    """The inventory cannot be used; ``problems`` each name the file, place and problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


class HostSpec(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=CODE_RE)
    address: str = Field(min_length=1, max_length=255)
    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, min_length=1, max_length=64)
    tags: list[str] = []
    role: str | None = None
    system: str | None = None
    key_file: str | None = None
    key_secret: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not HOSTNAME_RE.match(value):
            raise ValueError(f"{value!r} is not a host name or IP address")
        return value


class ContractSpec(_Strict):
    code: str = Field(min_length=1, max_length=64, pattern=CODE_RE)
    name: str = Field(min_length=1, max_length=200)
    timezone: str = "UTC"
    approvers: list[PersonSpec] = Field(min_length=1)
    backup_approver: PersonSpec | None = None
    report_recipients: list[EmailStr] = []
    plan_requires_approval: bool = True
    thresholds: Thresholds = Thresholds()
    cadences: dict[Process, Any] = {}
    """Process -> cadence as people say it ("quarterly, first Tuesday, 02:00"), or
    {cron: ...} / {rrule: ...}; in the contract's timezone."""
    blackouts: list[Any] = []
    """Days with no scheduled work: "2026-12-24" or {from, to, reason}."""
    blackout_policy: Literal["next_allowed_day", "skip"] = "next_allowed_day"
    backup_sources: list[BackupSourceSpec] = []
    approval_policy: GatePolicy = GatePolicy()
    gate_policies: dict[str, GatePolicy] = {}
    patching: PatchPolicy = PatchPolicy()
    systems: list[SystemSpec] = []
    """Systems and the smoke checks of the interfaces the customer depends on."""
    hosts: list[HostSpec] = []

    @field_validator("approval_policy")
    @classmethod
    def _no_default_approvers(cls, value: GatePolicy) -> GatePolicy:
        if value.approvers:
            raise ValueError(
                "approval_policy cannot name approvers (the contract's approvers answer every "
                "gate): name a gate's own approvers under gate_policies.GATE.approvers"
            )
        return value

    @field_validator("systems")
    @classmethod
    def _unique_systems(cls, value: list[SystemSpec]) -> list[SystemSpec]:
        twice = repeated(item.name for item in value)
        if twice:
            raise ValueError(f"system names must be unique in a contract: {', '.join(twice)}")
        return value

    @field_validator("cadences")
    @classmethod
    def _cadences(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = []
        for process, written in value.items():
            try:
                parse_cadence(written)
            except CadenceError as exc:
                problems.append(f"{process}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("blackouts")
    @classmethod
    def _blackouts(cls, value: list[Any]) -> list[Any]:
        try:
            parse_blackouts(value)
        except CadenceError as exc:
            raise ValueError(str(exc)) from None
        return [
            str(v) if not isinstance(v, dict) else {k: str(x) for k, x in v.items()} for v in value
        ]

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


class CustomerSpec(_Strict):
    code: str = Field(min_length=1, max_length=64, pattern=CODE_RE)
    name: str = Field(min_length=1, max_length=200)
    contracts: list[ContractSpec] = []


class InventorySpec(_Strict):
    customers: list[CustomerSpec] = Field(min_length=1)


def _place(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _node_lines(
    node: yaml.Node,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    dups: list[tuple[tuple[Any, ...], str, int]],
) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                dups.append((path, key, key_node.start_mark.line + 1))
            seen.add(key)
            _node_lines(value_node, (*path, key), lines, dups)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(item, (*path, i), lines, dups)


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _bad_value(text: str, source: str, exc: ValueError) -> str:
    """Name the scalar PyYAML could not turn into a value (e.g. the date 2027-02-30)."""

    def walk(node: yaml.Node) -> yaml.Node | None:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":timestamp"):
            try:
                dt.date.fromisoformat(node.value[:10])
            except ValueError:
                return node
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [v for _, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        for child in children:
            found = walk(child)
            if found is not None:
                return found
        return None

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    bad = walk(root) if root is not None else None
    if bad is None:
        return f"{source}: not a valid value: {exc}"
    return f"{source}:{bad.start_mark.line + 1}: {bad.value!r} is not a valid date ({exc})"


MAX_EXPANDED_VALUES = 200_000
"""How many values (scalars, lists, mappings) the inventory may hold once its YAML aliases are
expanded. Thousands of hosts stay far below; an alias bomb ("billion laughs"), a few lines that
expand to billions of values, is refused before anything walks the expanded tree. Without
aliases there is no limit: the file is as big as it looks."""


def check_alias_expansion(text: str, source: str, limit: int = MAX_EXPANDED_VALUES) -> None:
    """InventoryError when expanding the aliases of ``text`` gives more than ``limit`` values.

    Reads the event stream once and never expands anything: each anchored node's expanded
    size is counted when it ends and reused for every alias to it. Linear in the text.
    """
    sizes: dict[str, int] = {}
    stack: list[tuple[str | None, int]] = [(None, 0)]
    aliased = False  # without aliases the size is the text's own: nothing to refuse

    def add(size: int, mark: Any, alias: str | None) -> None:
        anchor, total = stack[-1]
        stack[-1] = (anchor, total + size)
        if aliased and stack[-1][1] > limit:
            what = f"the alias *{alias}" if alias else "this value"
            raise InventoryError(
                source,
                [
                    f"{source}:{mark.line + 1}: {what} makes the inventory expand to more than "
                    f"{limit:,} values (YAML aliases nested into an alias bomb?): refused; "
                    "write the repeated parts out, or use fewer nested aliases"
                ],
            )

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliased = True
            add(sizes.get(event.anchor or "", 1), event.start_mark, event.anchor)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            add(1, event.start_mark, None)
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append((event.anchor, 1))
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
            if anchor:
                sizes[anchor] = size
            add(size, event.start_mark, None)


def parse_inventory(text: str, source: str = "<inventory>") -> InventorySpec:
    """Validate inventory YAML. Raises :class:`InventoryError` listing every problem found."""
    try:
        check_alias_expansion(text, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except ValueError as exc:  # a date YAML reads as a timestamp but no calendar has
        raise InventoryError(source, [_bad_value(text, source, exc)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise InventoryError(source, [f"{where}: not valid YAML: {problem}"]) from None
    if node is None or data is None:
        raise InventoryError(source, [f"{source}: the inventory is empty"])
    lines: dict[tuple[Any, ...], int] = {}
    dups: list[tuple[tuple[Any, ...], str, int]] = []
    _node_lines(node, (), lines, dups)
    problems = [
        f"{source}:{line}: {_place((*path, key))}: duplicate key {key!r}"
        for path, key, line in dups
    ]
    if not isinstance(data, dict):
        raise InventoryError(
            source, [f"{source}:1: the inventory must be a mapping with a 'customers' list"]
        )
    try:
        spec = InventorySpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_for(loc, lines)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown field {loc[-1]!r}"
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: {_place(loc)}: {msg}")
        raise InventoryError(source, problems) from None
    problems += _cross_checks(spec, source, lines)
    if problems:
        raise InventoryError(source, problems)
    return spec


def _cross_checks(spec: InventorySpec, source: str, lines: dict[tuple[Any, ...], int]) -> list[str]:
    problems: list[str] = []

    def dup(loc: tuple[Any, ...], what: str, value: str, first: tuple[Any, ...]) -> None:
        line = _line_for(loc, lines)
        problems.append(
            f"{source}:{line}: {_place(loc)}: duplicate {what} {value!r} "
            f"(first at {_place(first)}, line {_line_for(first, lines)})"
        )

    customers: dict[str, tuple[Any, ...]] = {}
    contracts: dict[str, tuple[Any, ...]] = {}
    for ci, customer in enumerate(spec.customers):
        loc = ("customers", ci, "code")
        if customer.code in customers:
            dup(loc, "customer code", customer.code, customers[customer.code])
        customers.setdefault(customer.code, loc)
        for ki, contract in enumerate(customer.contracts):
            kloc = ("customers", ci, "contracts", ki)
            if contract.code in contracts:
                dup((*kloc, "code"), "contract code", contract.code, contracts[contract.code])
            contracts.setdefault(contract.code, (*kloc, "code"))
            t = contract.thresholds
            for metric in (
                "disk_used_pct",
                "inode_used_pct",
                "memory_used_pct",
                "swap_used_pct",
                "load_per_core",
                "clock_skew_seconds",
            ):
                if getattr(t, f"{metric}_major") > getattr(t, f"{metric}_critical"):
                    problems.append(
                        f"{source}:{_line_for((*kloc, 'thresholds'), lines)}: "
                        f"{_place((*kloc, 'thresholds'))}: {metric}_major is above "
                        f"{metric}_critical"
                    )
            systems: dict[str, tuple[Any, ...]] = {}
            for bi, backup in enumerate(contract.backup_sources):
                bloc = (*kloc, "backup_sources", bi, "system")
                if backup.system in systems:
                    dup(bloc, "backup source", backup.system, systems[backup.system])
                systems.setdefault(backup.system, bloc)
                for attr in ("host", "scratch_host"):
                    name = getattr(backup, attr)
                    if name is not None and name not in {h.name for h in contract.hosts}:
                        bhost: tuple[Any, ...] = (*kloc, "backup_sources", bi, attr)
                        problems.append(
                            f"{source}:{_line_for(bhost, lines)}: {_place(bhost)}: unknown host "
                            f"{name!r}: a backup host must be one of this contract's hosts"
                        )
            names: dict[str, tuple[Any, ...]] = {}
            endpoints: dict[tuple[str, int], tuple[Any, ...]] = {}
            for hi, host in enumerate(contract.hosts):
                hloc = (*kloc, "hosts", hi)
                if host.name in names:
                    dup((*hloc, "name"), "host", host.name, names[host.name])
                names.setdefault(host.name, (*hloc, "name"))
                ep = (host.address.lower(), host.port)
                if ep in endpoints:
                    dup(
                        (*hloc, "address"),
                        "host address",
                        f"{host.address}:{host.port}",
                        endpoints[ep],
                    )
                endpoints.setdefault(ep, (*hloc, "address"))
                if host.key_file and host.key_secret:
                    problems.append(
                        f"{source}:{_line_for(hloc, lines)}: {_place(hloc)}: give key_file or "
                        "key_secret, not both"
                    )
    return problems


def approver_warnings(spec: InventorySpec) -> list[str]:
    """Per contract, the gates its approvers could leave unapprovable (too few people for the
    approvals needed, or a gate the starter cannot approve when they are one of too few)."""
    out: list[str] = []
    for customer in spec.customers:
        for contract in customer.contracts:
            default = contract.approval_policy.model_dump(exclude_unset=True)
            policies = {"approval_policy": policy_for(default, {}, "")}
            for gate, policy in contract.gate_policies.items():
                policies[f"gate_policies.{gate}"] = policy_for(
                    default, {gate: policy.model_dump(exclude_unset=True)}, gate
                )
            approvers = [p.model_dump() for p in contract.approvers]
            backup = contract.backup_approver.model_dump() if contract.backup_approver else None
            out += [
                f"contract {contract.code}: {w}" for w in gate_warnings(approvers, backup, policies)
            ]
    return out


def load_inventory_file(path: Path) -> InventorySpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(
            str(path), [f"{path}: cannot read the inventory: {exc.strerror}"]
        ) from None
    return parse_inventory(text, str(path))


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deactivated or self.reactivated)

    def lines(self) -> list[str]:
        out = [f"created {x}" for x in self.created]
        out += [f"updated {x}" for x in self.updated]
        out += [f"reactivated {x}" for x in self.reactivated]
        out += [f"deactivated {x}" for x in self.deactivated]
        return out or ["no changes"]


def _sync(obj: Any, values: dict[str, Any]) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed = True
    if changed:
        obj.updated_at = utcnow()
    return changed


def _contract_values(spec: ContractSpec, customer_id: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "name": spec.name,
        "timezone": spec.timezone,
        "plan_requires_approval": spec.plan_requires_approval,
        "thresholds": spec.thresholds.model_dump(exclude_unset=True),
        "approvers": [p.model_dump() for p in spec.approvers],
        "backup_approver": spec.backup_approver.model_dump() if spec.backup_approver else None,
        "report_recipients": list(spec.report_recipients),
        "cadences": dict(spec.cadences),
        "blackouts": spec.blackouts,
        "blackout_policy": spec.blackout_policy,
        "backup_sources": [b.model_dump(exclude_none=True) for b in spec.backup_sources],
        "approval_policy": spec.approval_policy.model_dump(exclude_unset=True),
        "gate_policies": {
            gate: p.model_dump(exclude_unset=True) for gate, p in spec.gate_policies.items()
        },
        "patching": spec.patching.model_dump(exclude_unset=True),
        "systems": [s.model_dump(mode="json", exclude_none=True) for s in spec.systems],
        "active": True,
    }


def _host_values(spec: HostSpec) -> dict[str, Any]:
    return {
        "address": spec.address,
        "port": spec.port,
        "user": spec.user,
        "tags": list(spec.tags),
        "role": spec.role,
        "system": spec.system,
        "key_file": spec.key_file,
        "key_secret": spec.key_secret,
        "active": True,
    }


def apply_inventory(session: Session, spec: InventorySpec) -> ApplyReport:
    """Make the database match ``spec``. The caller owns the transaction."""
    report = ApplyReport()
    seen_contracts: set[int] = set()
    for cspec in spec.customers:
        customer = session.exec(select(Customer).where(Customer.code == cspec.code)).first()
        if customer is None:
            customer = Customer(code=cspec.code, name=cspec.name)
            session.add(customer)
            session.flush()
            report.created.append(f"customer {cspec.code}")
        elif _sync(customer, {"name": cspec.name}):
            report.updated.append(f"customer {cspec.code}")
        assert customer.id is not None
        for kspec in cspec.contracts:
            values = _contract_values(kspec, customer.id)
            contract = session.exec(select(Contract).where(Contract.code == kspec.code)).first()
            if contract is None:
                contract = Contract(code=kspec.code, **values)
                session.add(contract)
                session.flush()
                report.created.append(f"contract {kspec.code}")
            else:
                was_active = contract.active
                if _sync(contract, values):
                    target = report.reactivated if not was_active else report.updated
                    target.append(f"contract {kspec.code}")
            assert contract.id is not None
            seen_contracts.add(contract.id)
            _apply_hosts(session, contract, kspec.hosts, report)
    for contract in session.exec(select(Contract).where(Contract.active == True)):  # noqa: E712
        if contract.id not in seen_contracts:
            contract.active = False
            contract.updated_at = utcnow()
            report.deactivated.append(f"contract {contract.code}")
            _apply_hosts(session, contract, [], report)
    session.flush()
    return report


def _apply_hosts(
    session: Session, contract: Contract, specs: list[HostSpec], report: ApplyReport
) -> None:
    existing = {
        h.name: h for h in session.exec(select(Host).where(Host.contract_id == contract.id))
    }
    for hspec in specs:
        values = _host_values(hspec)
        host = existing.pop(hspec.name, None)
        label = f"host {contract.code}/{hspec.name}"
        if host is None:
            assert contract.id is not None
            session.add(Host(contract_id=contract.id, name=hspec.name, **values))
            report.created.append(label)
        else:
            was_active = host.active
            if _sync(host, values):
                (report.reactivated if not was_active else report.updated).append(label)
    for host in existing.values():
        if host.active:
            host.active = False
            host.updated_at = utcnow()
            report.deactivated.append(f"host {contract.code}/{host.name}")
