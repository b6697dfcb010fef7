"""Inspecting one host: run the catalogue over one SSH connection, evaluate, store.

The task takes ids and names only (no secrets, no key material): it loads the host and the
contract's thresholds itself and hands the key reference to the SSH layer.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from upkeep.db import open_session
from upkeep.domain.checks import CATALOGUE
from upkeep.domain.checks.base import (
    Check,
    CheckOutcome,
    EvalContext,
    Measurement,
    Severity,
    Thresholds,
    evaluate_check,
    not_evaluated,
)
from upkeep.domain.findings import REACHABILITY, Observed
from upkeep.domain.inspection import HostOutcome
from upkeep.models import Contract, Host, utcnow
from upkeep.settings import Settings, SshSettings, get_settings
from upkeep.tasks.records import HostInspection, contract_thresholds, store_host_inspection
from upkeep.tasks.ssh import (
    CommandTimeout,
    SshError,
    SshSession,
    SshTarget,
    command_bound,
    connect_bound,
)

RECOMMEND_UNREACHABLE = {
    "dns": "Check the host's address in the inventory and the DNS record.",
    "refused": "Check that sshd runs on the host and the port in the inventory is right.",
    "timeout": "Check that the host is up and not hung or overloaded, and that no firewall "
    "drops the connection.",
    "auth": "Check that the inspection key is in the user's authorized_keys.",
    "host_key_unknown": "Verify the fingerprint with the customer, then `upkeep hosts trust`.",
    "host_key_changed": "Find out why the key changed before trusting it: it may be an attack.",
}


def target_for(host: Host, settings: Settings) -> SshTarget:
    return SshTarget(
        name=host.name,
        address=host.address,
        port=host.port,
        user=host.user or settings.ssh.user,
        key_file=Path(host.key_file).expanduser() if host.key_file else None,
        key_secret=host.key_secret,
    )


def host_bound(ssh: SshSettings, checks: tuple[Check[Any], ...] = CATALOGUE) -> float:
    """Longest one host's inspection can take (seconds): logging in, then every check's
    command at its own bound. A host that stops answering ends the inspection at the command
    it was running (the session is closed, :func:`run_catalogue` stops)."""
    return connect_bound(ssh) + sum(
        command_bound(ssh, check.timeout or ssh.command_timeout) for check in checks
    )


def sweep_bound(hosts: int, at_once: int, per_host: float) -> float:
    """Longest a sweep of ``hosts`` hosts, at most ``at_once`` at a time, can take when none
    takes longer than ``per_host``: ``ceil(hosts / at_once)`` rounds.

    Host ``i`` (0-based) starts by ``(i // at_once) * per_host``: by then every host of an
    earlier round has ended, so fewer than ``at_once`` are in flight."""
    if hosts <= 0:
        return 0.0
    return -(-hosts // at_once) * per_host


def _measurement_rows(outcome: CheckOutcome) -> list[dict[str, Any]]:
    rows = []
    for m in outcome.measurements:
        row = asdict(m)
        row["check"] = outcome.check
        row["severity"] = m.severity.value if m.severity else None
        rows.append(row)
    return rows


def run_catalogue(
    session: SshSession,
    thresholds: Thresholds,
    checks: tuple[Check[Any], ...] = CATALOGUE,
    command_timeout: float | None = None,
) -> list[CheckOutcome]:
    """Run each check's command on an open session and evaluate it; never raises for output."""
    outcomes: list[CheckOutcome] = []
    parsed: dict[str, Any] = {}
    for check in checks:
        try:
            raw = session.run(check.render(thresholds), timeout=check.timeout or command_timeout)
        except CommandTimeout as exc:
            outcomes.append(_timed_out(check, exc))
            if not session.connected:
                raise
            continue
        ctx = EvalContext(inspected_at=raw.finished_at or utcnow(), facts=dict(parsed))
        outcome = evaluate_check(check, raw, thresholds, ctx)
        if outcome.parsed is not None:
            parsed[check.name] = outcome.parsed
        outcomes.append(outcome)
    return outcomes


def _timed_out(check: Check[Any], exc: CommandTimeout) -> CheckOutcome:
    return not_evaluated(
        check.name,
        Measurement(
            subject="",
            value="timed out",
            severity=Severity.MINOR,
            message=f"{check.title}: {exc}",
            recommendation="Find out why the command hangs on this host (NFS, a stuck "
            "package manager, an overloaded system).",
        ),
    )


def summarise(host_id: int, outcomes: list[CheckOutcome], started: Any) -> HostInspection:
    observed = [Observed.from_measurement(o.check, m) for o in outcomes for m in o.findings]
    return HostInspection(
        host_id=host_id,
        reachable=True,
        started_at=started,
        finished_at=utcnow(),
        facts={o.check: o.facts for o in outcomes if o.facts is not None},
        measurements=[row for o in outcomes for row in _measurement_rows(o)],
        skipped={o.check: o.skipped for o in outcomes if o.skipped},
        observed=observed,
        evaluated_checks=[REACHABILITY] + [o.check for o in outcomes if o.facts is not None],
    )


def unreachable(host_id: int, host_name: str, exc: SshError, started: Any) -> HostInspection:
    message = f"{host_name} could not be inspected: {exc}"
    return HostInspection(
        host_id=host_id,
        reachable=False,
        started_at=started,
        finished_at=utcnow(),
        facts={},
        measurements=[
            {
                "check": REACHABILITY,
                "subject": "",
                "value": exc.kind,
                "threshold": "reachable over SSH",
                "severity": Severity.CRITICAL.value,
                "message": message,
                "evidence": str(exc),
                "recommendation": RECOMMEND_UNREACHABLE.get(exc.kind, ""),
            }
        ],
        skipped={},
        observed=[
            Observed(
                REACHABILITY,
                "",
                Severity.CRITICAL,
                message,
                evidence=str(exc),
                recommendation=RECOMMEND_UNREACHABLE.get(exc.kind, "Check the host."),
            )
        ],
        evaluated_checks=[],
        error=str(exc),
        error_kind=exc.kind,
    )


def inspect_host_now(
    host_id: int,
    run_id: int,
    check_names: list[str] | None = None,
    settings: Settings | None = None,
) -> HostInspection:
    """Inspect one host and store the result. A host that cannot be reached is a finding.

    ``check_names`` limits the catalogue (a re-check runs only the checks with open findings).
    """
    settings = settings or get_settings()
    with open_session() as db:
        host = db.get(Host, host_id)
        if host is None:
            raise LookupError(f"no host with id {host_id}")
        contract = db.get(Contract, host.contract_id)
        assert contract is not None
        thresholds = contract_thresholds(contract)
        target = target_for(host, settings)
    checks = (
        CATALOGUE
        if check_names is None
        else tuple(c for c in CATALOGUE if c.name in set(check_names))
    )
    started = utcnow()
    try:
        with SshSession(target, settings.ssh, settings.known_hosts_file) as ssh:
            outcomes = run_catalogue(ssh, thresholds, checks, settings.ssh.command_timeout)
        result = summarise(host_id, outcomes, started)
    except SshError as exc:
        result = unreachable(host_id, target.name, exc, started)
    with open_session() as db:
        store_host_inspection(session=db, run_id=run_id, result=result)
    return result


@task(name="inspect-host", task_run_name="inspect {host_name}")
def inspect_host(
    host_id: int, host_name: str, run_id: int, check_names: list[str] | None = None
) -> HostOutcome:
    """Prefect task around :func:`inspect_host_now`; returns a small summary for the flow."""
    logger = get_run_logger()
    result = inspect_host_now(host_id, run_id, check_names)
    if not result.reachable:
        logger.warning("%s not inspected (%s): %s", host_name, result.error_kind, result.error)
    counts: dict[str, int] = {}
    for obs in result.observed:
        counts[obs.severity.value] = counts.get(obs.severity.value, 0) + 1
    logger.info("%s: %s", host_name, counts or "no findings")
    return HostOutcome(
        host=host_name, reachable=result.reachable, error_kind=result.error_kind, findings=counts
    )


def preflight_now(host_id: int, settings: Settings | None = None) -> str:
    """Log in to the host and out again, running nothing: "ok", or why it failed."""
    settings = settings or get_settings()
    with open_session() as db:
        host = db.get(Host, host_id)
        if host is None:
            raise LookupError(f"no host with id {host_id}")
        target = target_for(host, settings)
    try:
        with SshSession(target, settings.ssh, settings.known_hosts_file):
            return "ok"
    except SshError as exc:
        return f"{exc.kind}: {exc}"


@task(name="preflight-host", task_run_name="pre-check {host_name}")
def preflight_host(host_id: int, host_name: str) -> str:
    """Prefect task around :func:`preflight_now`, run before the plan goes for approval."""
    return preflight_now(host_id)
