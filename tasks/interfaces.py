"""Probing the interfaces a customer depends on, and what is recorded and said about them.

:func:`probe` makes one HTTP request (TLS certificates verified, no redirects followed, at most
:data:`~upkeep.domain.interfaces.BODY_KEPT` of the body read); :func:`probe_system` probes a
system's smoke checks, records every probe, opens a finding when a check fails (one finding
however long it fails) and resolves it when the check passes again. The daily status reads its
figures back from the records. Decisions are ``upkeep.domain.interfaces``.
"""

from __future__ import annotations

import time
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
from upkeep.models import InspectionRun, InterfaceProbe, utcnow
from upkeep.settings import get_settings
from upkeep.tasks.notify import Mail, _one_line, _render_pair, mail_recipients
from upkeep.tasks.records import get_contract, resolve_system_finding, system_finding

Change = Literal["down", "still down", "up"] | None


class CheckResult(BaseModel):
    """One smoke check in one monitor run: what it saw and whether that changed anything."""

    system: str
    check: str
    url: str
    ok: bool
    reason: str
    status_code: int | None = None
    latency_ms: float | None = None
    change: Change = None
    """down: a finding was opened; still down: the open one refreshed; up: it was resolved."""


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    db: Session, contract_id: int, run_id: int, system: str, check: SmokeCheck, probed: Probe
) -> Verdict:
    """What one probe of ``check`` means, recorded as an ``interfaceprobe`` row."""
    verdict = judge(check, probed)
    db.add(
        InterfaceProbe(
            contract_id=contract_id,
            run_id=run_id,
            system=system,
            check=check.name,
            url=str(check.url),
            ok=verdict.ok,
            status_code=probed.status,
            latency_ms=probed.latency_ms,
            reason=verdict.reason[:2000],
        )
    )
    return verdict


@task(name="probe-system", task_run_name="probe {system_name}")
def probe_system(contract_code: str, system_name: str, run_id: int) -> list[CheckResult]:
    """Probe each smoke check of the system; record the probes; open, refresh or resolve
    each check's finding."""
    system = contract_view(contract_code).system(system_name)
    seen = [(check, probe(check)) for check in system.smoke_checks]
    results = []
    with open_session() as db:
        run = db.get(InspectionRun, run_id)
        assert run is not None
        for check, probed in seen:
            verdict = record_probe(db, run.contract_id, run_id, system.name, check, probed)
            what = subject(system.name, check.name)
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
                    evidence=f"{check.method} {check.url} at {utcnow().isoformat()}: "
                    f"{verdict.reason}",
                    recommendation="Check the service behind the interface, then its network "
                    "path; the finding resolves itself once the check passes again.",
                )
                change = "down" if found.run_id == run_id else "still down"
            results.append(
                CheckResult(
                    system=system.name,
                    check=check.name,
                    url=str(check.url),
                    ok=verdict.ok,
                    reason=verdict.reason,
                    status_code=probed.status,
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
                "interface": subject(r.system, r.check),
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
            parts.append("DOWN: " + ", ".join(subject(r.system, r.check) for r in down))
        if up:
            parts.append("back up: " + ", ".join(subject(r.system, r.check) for r in up))
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
    """One smoke check over the status window, as the mail and the CLI show it."""

    interface: str
    url: str
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
    """Each configured smoke check's figures over the last ``hours``, from the records."""
    view = contract_view(contract_code)
    tz = ZoneInfo(view.timezone)
    end = now or utcnow()
    start = end - timedelta(hours=hours)
    rows: list[CheckFigures] = []
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
                f: Figures = figures([Sample(p.probed_at, p.ok, p.latency_ms) for p in probes])
                rows.append(
                    CheckFigures(
                        interface=subject(system.name, check.name),
                        url=str(check.url),
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
