"""Probing the interfaces a customer depends on, and what is recorded and said about them.

:func:`probe` makes one HTTP request (TLS certificates verified, no redirects followed, at most
:data:`~upkeep.domain.interfaces.BODY_KEPT` of the body read); :func:`run_command_check` runs a
command check's command on one host over SSH (the host key verified, as for an inspection);
:func:`probe_checks` does both for a list of checks and hosts, every host of a command check
giving its own probe (a host that cannot be reached is a failed probe naming it).
:func:`probe_system` probes a system's smoke checks on its active hosts, records every probe,
opens a finding when a check fails (one finding however long it fails; one per host for a
command check) and resolves it when the check passes again. The daily status reads its figures
back from the records. Decisions are ``upkeep.domain.interfaces``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx
from prefect import task
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel
from sqlmodel import Session, col, select

from upkeep.db import open_session
from upkeep.domain.contract import ContractView
from upkeep.domain.interfaces import (
    BODY_KEPT,
    INTERFACE_CHECK,
    CommandProbe,
    Figures,
    Probe,
    Sample,
    SmokeCheck,
    Verdict,
    figures,
    judge,
    status_headline,
    subject,
)
from upkeep.domain.naming import artifact_key
from upkeep.models import Host, InspectionRun, InterfaceProbe, utcnow
from upkeep.settings import Settings, get_settings
from upkeep.tasks.inspect import RECOMMEND_UNREACHABLE, target_for
from upkeep.tasks.notify import Mail, _one_line, _render_pair, mail_recipients
from upkeep.tasks.records import get_contract, resolve_system_finding, system_finding
from upkeep.tasks.ssh import SshError, SshSession

Change = Literal["down", "still down", "up"] | None


class CheckResult(BaseModel):
    """One smoke check in one monitor run (on one host, for a command check): what it saw
    and whether that changed anything."""

    system: str
    check: str
    host: str = ""
    url: str
    """The URL probed, or the command line run."""
    ok: bool
    reason: str
    status_code: int | None = None
    latency_ms: float | None = None
    change: Change = None
    """down: a finding was opened; still down: the open one refreshed; up: it was resolved."""

    @property
    def interface(self) -> str:
        """``SYSTEM/CHECK``, or ``SYSTEM/CHECK@HOST`` for a command check."""
        return subject(self.system, self.check, self.host)


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


Probed = Probe | CommandProbe


def probe(check: SmokeCheck) -> Probe:
    """One request as ``check`` says; the latency is the time to the end of the body read."""
    started = time.perf_counter()
    try:
        with (
            httpx.Client(timeout=check.timeout_seconds, follow_redirects=False) as client,
            client.stream(check.method, str(check.url)) as response,
        ):
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= BODY_KEPT:
                    break
            latency = (time.perf_counter() - started) * 1000
            text = body[:BODY_KEPT].decode(response.encoding or "utf-8", errors="replace")
            return Probe(response.status_code, latency, text)
    except httpx.HTTPError as exc:
        return Probe(None, None, error=_describe(exc))


def run_command_check(check: SmokeCheck, host: Host, settings: Settings) -> CommandProbe:
    """``check``'s command on ``host`` over SSH, the host key verified against upkeep's
    known_hosts; the latency is the command's run time. A host that cannot be reached, or
    whose key is unknown or changed, is a probe naming the host and the reason: never an
    exception (the other hosts' results stand)."""
    try:
        with SshSession(target_for(host, settings), settings.ssh, settings.known_hosts_file) as ssh:
            started = time.perf_counter()
            raw = ssh.run(check.command_line, timeout=check.timeout_seconds)
            took = (time.perf_counter() - started) * 1000
    except SshError as exc:
        return CommandProbe(host.name, None, error=str(exc), error_kind=exc.kind)
    return CommandProbe(host.name, raw.exit_code, raw.stdout, raw.stderr, took)


def probe_checks(
    checks: Sequence[SmokeCheck], hosts: Sequence[Host]
) -> list[tuple[SmokeCheck, Probed]]:
    """Every check now: an HTTP check once from upkeep, a command check on each of ``hosts``
    (``UPKEEP_SWEEP_CONCURRENCY`` at a time), in the order of ``checks`` then ``hosts``. A
    command check with no host to run on is a failed probe saying so."""
    settings = get_settings()
    jobs: list[tuple[SmokeCheck, Host | None]] = []
    for check in checks:
        if not check.runs_on_hosts:
            jobs.append((check, None))
        else:
            jobs += [(check, host) for host in hosts] or [(check, None)]

    def one(job: tuple[SmokeCheck, Host | None]) -> Probed:
        check, host = job
        if not check.runs_on_hosts:
            return probe(check)
        if host is None:
            return CommandProbe("", None, error="the system has no active host to run it on")
        return run_command_check(check, host, settings)

    if not jobs:
        return []
    with ThreadPoolExecutor(min(len(jobs), settings.sweep_concurrency)) as pool:
        return list(zip((c for c, _ in jobs), pool.map(one, jobs), strict=True))


def system_hosts(contract_id: int, system: str, names: Sequence[str] | None = None) -> list[Host]:
    """The contract's active hosts of ``system`` (those named in ``names``, when given), by
    name."""
    with open_session() as db:
        query = select(Host).where(
            Host.contract_id == contract_id, Host.system == system, col(Host.active)
        )
        if names is not None:
            query = query.where(col(Host.name).in_(names))
        return list(db.exec(query.order_by(col(Host.name))).all())


def contract_view(contract_code: str) -> ContractView:
    with open_session() as db:
        return ContractView.of(get_contract(session=db, code=contract_code))


def systems_to_probe(view: ContractView, only: list[str]) -> list[str]:
    """The systems a run probes: ``only`` (each must exist) or every system with checks.
    LookupError names what is missing."""
    if not view.smoke_checked:
        raise LookupError(
            f"contract {view.code} lists no system with smoke checks (inventory: systems)"
        )
    for name in only:
        try:
            view.system(name)
        except KeyError as exc:
            raise LookupError(exc.args[0]) from None
    return list(only) or [s.name for s in view.systems if s.smoke_checks]


def record_probe(
    db: Session, contract_id: int, run_id: int, system: str, check: SmokeCheck, probed: Probed
) -> Verdict:
    """What one probe of ``check`` means, recorded as an ``interfaceprobe`` row (a command
    check's: its host, its command line as the ``url``, no HTTP status)."""
    verdict = judge(check, probed)
    db.add(
        InterfaceProbe(
            contract_id=contract_id,
            run_id=run_id,
            system=system,
            check=check.name,
            host=probed_on(probed),
            url=check.target[:2000],
            ok=verdict.ok,
            status_code=probed.status if isinstance(probed, Probe) else None,
            latency_ms=probed.latency_ms,
            reason=verdict.reason[:2000],
        )
    )
    return verdict


def probed_on(probed: Probed) -> str:
    """The host a probe ran on; empty for an HTTP probe (made from upkeep)."""
    return probed.host if isinstance(probed, CommandProbe) else ""


def _evidence(check: SmokeCheck, probed: Probed, reason: str) -> str:
    at = utcnow().isoformat()
    if isinstance(probed, CommandProbe):
        return f"`{check.target}` on {probed.host or 'no host'} at {at}: {reason}"
    return f"{check.method} {check.url} at {at}: {reason}"


_RESOLVES = "the finding resolves itself once the check passes again."


def _recommendation(probed: Probed) -> str:
    if not isinstance(probed, CommandProbe):
        return f"Check the service behind the interface, then its network path; {_RESOLVES}"
    if not probed.host:
        return f"List the system's hosts in the inventory (hosts[].system); {_RESOLVES}"
    if probed.error_kind in RECOMMEND_UNREACHABLE:
        return f"{RECOMMEND_UNREACHABLE[probed.error_kind]} Then {_RESOLVES}"
    if probed.error_kind == "command_timeout":
        return (
            "Check the service on the host: the command did not finish in time (or raise the "
            f"check's timeout_seconds); {_RESOLVES}"
        )
    if probed.error is not None:
        return f"Check the host's SSH service and upkeep's login to it; {_RESOLVES}"
    return f"Check the service on the host (run the check's command there by hand); {_RESOLVES}"


@task(name="probe-system", task_run_name="probe {system_name}")
def probe_system(contract_code: str, system_name: str, run_id: int) -> list[CheckResult]:
    """Probe each smoke check of the system (a command check on each of the system's active
    hosts); record the probes; open, refresh or resolve each check's finding (each host's)."""
    view = contract_view(contract_code)
    system = view.system(system_name)
    hosts = (
        system_hosts(view.id, system.name)
        if any(c.runs_on_hosts for c in system.smoke_checks)
        else []
    )
    seen = probe_checks(system.smoke_checks, hosts)
    results = []
    with open_session() as db:
        run = db.get(InspectionRun, run_id)
        assert run is not None
        for check, probed in seen:
            verdict = record_probe(db, run.contract_id, run_id, system.name, check, probed)
            host = probed_on(probed)
            what = subject(system.name, check.name, host)
            change: Change = None
            if verdict.ok:
                if resolve_system_finding(session=db, run=run, check=INTERFACE_CHECK, subject=what):
                    change = "up"
            else:
                found = system_finding(
                    session=db,
                    run=run,
                    check=INTERFACE_CHECK,
                    subject=what,
                    severity=check.severity,
                    message=f"interface {what} fails: {verdict.reason}",
                    evidence=_evidence(check, probed, verdict.reason),
                    recommendation=_recommendation(probed),
                )
                change = "down" if found.run_id == run_id else "still down"
            results.append(
                CheckResult(
                    system=system.name,
                    check=check.name,
                    host=host,
                    url=check.target,
                    ok=verdict.ok,
                    reason=verdict.reason,
                    status_code=probed.status if isinstance(probed, Probe) else None,
                    latency_ms=probed.latency_ms,
                    change=change,
                )
            )
    return results


def publish_results(contract_code: str, results: list[CheckResult]) -> None:
    """The run's table in the Prefect UI."""
    create_table_artifact(
        table=[
            {
                "interface": r.interface,
                "result": "ok" if r.ok else "FAILED",
                "reason": r.reason,
                "change": r.change or "",
            }
            for r in results
        ],
        key=artifact_key("interfaces", contract_code),
        description=f"interface probes of {contract_code}",
    )


@task(name="mail-interface-alert")
def mail_interface_alert(contract_code: str, results: list[CheckResult]) -> dict[str, Any]:
    """Tell the contract's recipients which interfaces went down or came back."""
    settings = get_settings()
    down = [r for r in results if r.change == "down"]
    up = [r for r in results if r.change == "up"]

    def compose() -> Mail:
        parts = []
        if down:
            parts.append("DOWN: " + ", ".join(r.interface for r in down))
        if up:
            parts.append("back up: " + ", ".join(r.interface for r in up))
        headline = f"Interfaces of {contract_code}: {'; '.join(parts)}"
        text, html = _render_pair(
            settings.templates_dir,
            "email/interface_alert.txt.j2",
            "email/interface_alert.html.j2",
            {"headline": headline, "contract_code": contract_code, "results": results},
        )
        return Mail(_one_line(f"[upkeep] {headline}"), text, html)

    return mail_recipients(contract_code, "interface_alert", compose, smtp=settings.smtp)


class CheckFigures(BaseModel):
    """One smoke check over the status window (on one host, for a command check), as the
    mail and the CLI show it."""

    interface: str
    url: str
    """The URL probed, or the command line run."""
    probes: int
    availability: float | None
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    failing_now: bool
    outages: list[str]
    """Each outage as local times, ``HH:MM–HH:MM (n probes)`` or ``since HH:MM``."""


def _outage_text(start: datetime, end: datetime | None, probes: int, tz: ZoneInfo) -> str:
    fmt = "%Y-%m-%d %H:%M"
    if end is None:
        return f"since {start.astimezone(tz).strftime(fmt)} ({probes} failed probes)"
    return (
        f"{start.astimezone(tz).strftime(fmt)} to {end.astimezone(tz).strftime(fmt)} "
        f"({probes} failed probes)"
    )


def status_figures(
    contract_code: str, hours: float, now: datetime | None = None
) -> tuple[ContractView, list[CheckFigures]]:
    """Each configured smoke check's figures over the last ``hours``, from the records. A
    command check has a row per host: each of the system's active hosts and each host it was
    probed on in the window (its latency is the command's run time)."""
    view = contract_view(contract_code)
    tz = ZoneInfo(view.timezone)
    end = now or utcnow()
    start = end - timedelta(hours=hours)
    rows: list[CheckFigures] = []
    active = {s.name: [h.name for h in system_hosts(view.id, s.name)] for s in view.systems}
    with open_session() as db:
        for system in view.systems:
            for check in system.smoke_checks:
                probes = db.exec(
                    select(InterfaceProbe).where(
                        InterfaceProbe.contract_id == view.id,
                        InterfaceProbe.system == system.name,
                        InterfaceProbe.check == check.name,
                        col(InterfaceProbe.probed_at) >= start,
                        col(InterfaceProbe.probed_at) <= end,
                    )
                ).all()
                hosts = (
                    sorted(set(active[system.name]) | {p.host for p in probes if p.host}) or [""]
                    if check.runs_on_hosts
                    else [""]
                )
                for host in hosts:
                    f: Figures = figures(
                        [Sample(p.probed_at, p.ok, p.latency_ms) for p in probes if p.host == host]
                    )
                    rows.append(
                        CheckFigures(
                            interface=subject(system.name, check.name, host),
                            url=check.target,
                            probes=f.probes,
                            availability=f.availability,
                            p50_ms=f.p50_ms,
                            p95_ms=f.p95_ms,
                            max_ms=f.max_ms,
                            failing_now=f.failing_now,
                            outages=[_outage_text(o.start, o.end, o.probes, tz) for o in f.outages],
                        )
                    )
    return view, rows


def headline_of(contract_code: str, rows: list[CheckFigures]) -> str:
    failing = [r.interface for r in rows if r.failing_now]
    troubled = [r.interface for r in rows if r.outages and not r.failing_now]
    unprobed = [r.interface for r in rows if r.probes == 0]
    return status_headline(contract_code, failing, troubled, unprobed)


@task(name="mail-interface-status")
def mail_interface_status(contract_code: str, hours: float, rows: list[CheckFigures]) -> str:
    """The daily status to the contract's recipients; its headline."""
    settings = get_settings()
    headline = headline_of(contract_code, rows)
    view = contract_view(contract_code)
    now = datetime.now(ZoneInfo(view.timezone))

    def compose() -> Mail:
        text, html = _render_pair(
            settings.templates_dir,
            "email/interface_status.txt.j2",
            "email/interface_status.html.j2",
            {
                "headline": headline,
                "contract_code": contract_code,
                "contract_name": view.name,
                "hours": hours,
                "until": now.strftime("%Y-%m-%d %H:%M %Z"),
                "rows": rows,
            },
        )
        return Mail(_one_line(f"[upkeep] {headline}"), text, html)

    mail_recipients(contract_code, "interface_status", compose, smtp=settings.smtp)
    return headline
