"""The release run's work: pre-release checks, releasing hosts over SSH, smoke checks, the
rollback against its clock, the mail after; every step a :class:`~upkeep.models.ReleaseStep`.

Commands are the system's release and rollback commands from the inventory with the version
quoted in (``upkeep.domain.releases.render_command``); nothing else is put into them. The
decisions are ``upkeep.domain.releases``; the flow is ``upkeep.flows.release``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from sqlmodel import col, select

from upkeep.db import open_session
from upkeep.domain.checks.base import Severity
from upkeep.domain.contract import ContractView
from upkeep.domain.interfaces import SystemSpec
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import artifact_key
from upkeep.domain.processes import deployment_name
from upkeep.domain.releases import ReleaseSpec, RollbackClock, render_command
from upkeep.models import (
    BackupVersion,
    Contract,
    Host,
    InspectionRun,
    Outcome,
    Release,
    ReleaseStep,
    RunStatus,
    utcnow,
)
from upkeep.settings import get_settings
from upkeep.tasks.guards import Refused, refuse_if_running, run_info
from upkeep.tasks.inspect import inspect_host_now, target_for
from upkeep.tasks.interfaces import probe_checks, probed_on, record_probe, system_hosts
from upkeep.tasks.inventory_scan import ScanUnreadable, record_scan, scan_host
from upkeep.tasks.notify import Mail, _one_line, _render_pair, mail_recipients
from upkeep.tasks.records import finish_run, start_run, system_finding
from upkeep.tasks.releases import release_run_at
from upkeep.tasks.render import safe_name, write_atomic
from upkeep.tasks.runs import current_flow_run_id
from upkeep.tasks.ssh import SshError, SshSession

RELEASE_RUN_KIND = "release"
REVIEW_RUN_KIND = "release-review"
WINDOW_LEAD = timedelta(minutes=15)
"""The window run starts this long before the window: the automatic checks run again, then
it waits for the window."""
ROLLBACK_CHECK = "release-rollback"
_TAIL = 4000


def log_step(
    release_id: int,
    step: str,
    ok: bool,
    summary: str,
    *,
    host: str = "",
    actor: str = "upkeep",
    detail: dict[str, Any] | None = None,
    started: Any = None,
) -> None:
    """One step of the release's record: who, when, on which host, what came of it."""
    with open_session() as db:
        db.add(
            ReleaseStep(
                release_id=release_id,
                host=host,
                step=step,
                actor=actor[:200],
                ok=ok,
                summary=summary,
                detail=detail or {},
                started_at=started or utcnow(),
                finished_at=utcnow(),
            )
        )


def load_release(release_id: int) -> tuple[Release, ContractView, SystemSpec, ReleaseSpec]:
    """The release row, its contract, system and release settings; LookupError naming what
    is missing."""
    with open_session() as db:
        row = db.get(Release, release_id)
        if row is None:
            raise LookupError(f"no release {release_id} (upkeep releases show lists them)")
        contract = db.get(Contract, row.contract_id)
        assert contract is not None
        view = ContractView.of(contract)
    try:
        system = view.system(row.system)
    except KeyError as exc:
        raise LookupError(exc.args[0]) from None
    if system.release is None:
        raise LookupError(f"system {row.system} of {view.code} has no release settings any more")
    return row, view, system, system.release


REVIEW = "review"
WINDOW = "window"
RECOVER = "recover"


def check_startable(release_id: int, me: str | None) -> str:
    """Which part of the release this run does: ``review`` (a declared release: checks,
    confirmations, the test report's review, the approval), ``window`` (an approved one:
    checks again, then the release) or ``recover`` (a release whose run was interrupted while
    releasing: this run, re-executed, or a new one once that run has ended). Refused for a
    release that has run, one whose run is still under way, or one approved with its window
    run already scheduled by Prefect (it starts by itself); a run replayed after a resume
    goes on with its part."""
    row, _, _, _ = load_release(release_id)
    mine = row.flow_run_id is not None and row.flow_run_id == me
    if row.status in ("reviewing", "running") and not mine and row.flow_run_id is not None:
        holder = run_info(row.flow_run_id)
        if holder is not None and holder.active:
            raise Refused(
                f"release {release_id} is {row.status} in run {holder.name} ({holder.id}, "
                f"{holder.state}): wait for it, or cancel it first"
            )
        mine = True  # that run ended without finishing the release: this one takes over
    if row.status == "declared" or (mine and row.status == "reviewing"):
        return REVIEW
    if row.status == "approved" and (mine or row.flow_run_id is None):
        return WINDOW
    if mine and row.status == "running":
        return RECOVER
    if row.status == "approved":
        raise Refused(
            f"release {release_id} is approved and its window run {row.flow_run_id} is "
            "scheduled: Prefect starts it by itself before the window (cancel that run first "
            "to start the release another way)"
        )
    raise Refused(
        f"release {release_id} is {row.status}, not declared: a release runs once "
        "(declare a new one to try again)"
    )


def steps_of(release_id: int) -> list[ReleaseStep]:
    """The release's record, oldest step first."""
    with open_session() as db:
        return list(
            db.exec(
                select(ReleaseStep)
                .where(ReleaseStep.release_id == release_id)
                .order_by(col(ReleaseStep.id))
            )
        )


def interrupted(release_id: int) -> tuple[list[str], datetime | None]:
    """What an interrupted release run left: the hosts whose release command was started
    (finished or not), in order, and when the last step was recorded."""
    steps = steps_of(release_id)
    hosts: list[str] = []
    for step in steps:
        if step.step == "release" and step.host not in hosts:
            hosts.append(step.host)
    last = max((s.finished_at or s.started_at for s in steps), default=None)
    return hosts, last


def claim_window(release_id: int, me: str | None) -> None:
    """One release at a time per contract: AlreadyRunning names the other release run."""
    _, view, _, _ = load_release(release_id)
    refuse_if_running("release", view.code, view.id, me)


@task(name="start-release-run")
def start_release_run(release_id: int, requested_by: str | None, status: str) -> int:
    """The run's record (kind ``release`` at the window, ``release-review`` before); the
    release marked ``status`` by this flow run."""
    with open_session() as db:
        row = db.get(Release, release_id)
        assert row is not None
        contract = db.get(Contract, row.contract_id)
        assert contract is not None
        run = start_run(
            session=db,
            contract=contract,
            kind=RELEASE_RUN_KIND if status == "running" else REVIEW_RUN_KIND,
            flow_run_id=current_flow_run_id(),
            requested_by=requested_by,
        )
        row.status, row.flow_run_id = status, current_flow_run_id()
        db.add(row)
        assert run.id is not None
        return run.id


@task(name="release-set-running")
def set_running(release_id: int) -> None:
    """Approved with the window near: this run goes on to release."""
    with open_session() as db:
        row = db.get(Release, release_id)
        assert row is not None
        row.status = "running"
        db.add(row)


@task(name="schedule-release-window")
def schedule_window(release_id: int, run_id: int, requested_by: str | None) -> str | None:
    """After the approval, with the window still far: a run of the contract's ``release``
    deployment that Prefect's server starts ``WINDOW_LEAD`` before the window (kept by the
    server: it survives restarts). The release is ``approved``, its flow run that one; the
    review run's record completed. None when nothing serves the deployment: the release
    waits, approved, for ``upkeep releases run ID`` within the hour before its window."""
    row, view, _, _ = load_release(release_id)
    at = row.window_at - WINDOW_LEAD
    scheduled = release_run_at(release_id, view.code, requested_by, at)
    with open_session() as db:
        stored = db.get(Release, release_id)
        assert stored is not None
        stored.status, stored.flow_run_id = "approved", scheduled
        db.add(stored)
        finish_run(session=db, run_id=run_id, status=RunStatus.COMPLETED)
    when = at.astimezone(ZoneInfo(view.timezone)).strftime("%Y-%m-%d %H:%M %Z")
    log_step(
        release_id,
        "scheduled",
        scheduled is not None,
        f"the window run {scheduled} starts at {when}"
        if scheduled
        else f"no deployment release/{deployment_name(view.code)} serves the release: run "
        f"`upkeep releases run {release_id}` within the hour before the window ({when})",
        detail={"flow_run_id": scheduled, "at": at.isoformat()},
    )
    return scheduled


def smoke(release_id: int, run_id: int, step: str) -> tuple[bool, str]:
    """Probe the system's smoke checks now (a command check on each of the release's target
    hosts); each probe recorded; (all passed, summary)."""
    row, _, system, _ = load_release(release_id)
    started = utcnow()
    hosts = system_hosts(row.contract_id, system.name, row.hosts)
    results = []
    with open_session() as db:
        for check, probed in probe_checks(system.smoke_checks, hosts):
            verdict = record_probe(db, row.contract_id, run_id, system.name, check, probed)
            host = probed_on(probed)
            name = f"{check.name}@{host}" if host else check.name
            results.append((name, verdict.ok, verdict.reason))
    ok = all(r[1] for r in results)
    summary = "; ".join(f"{n}: {'ok' if o else 'FAILED'} ({why})" for n, o, why in results)
    log_step(release_id, step, ok, summary, detail={"checks": results}, started=started)
    return ok, summary


def _hosts_healthy(release_id: int, row: Release) -> tuple[bool, str]:
    """The inspection catalogue on each target host (a run of its own per host check), no
    critical finding and every host reached."""
    problems = []
    with open_session() as db:
        contract = db.get(Contract, row.contract_id)
        assert contract is not None
        hosts = db.exec(
            select(Host).where(Host.contract_id == row.contract_id, col(Host.name).in_(row.hosts))
        ).all()
        check_run = start_run(
            session=db,
            contract=contract,
            kind="release-check",
            flow_run_id=current_flow_run_id(),
            requested_by="upkeep",
        )
        check_run_id, host_ids = check_run.id, [(h.id, h.name) for h in hosts]
    assert check_run_id is not None
    for host_id, name in host_ids:
        assert host_id is not None
        result = inspect_host_now(host_id, check_run_id)
        if not result.reachable:
            problems.append(f"{name} not reached: {result.error}")
            continue
        critical = [
            f"{o.check} {o.subject}".strip()
            for o in result.observed
            if o.severity is Severity.CRITICAL
        ]
        if critical:
            problems.append(f"{name} critical: {', '.join(critical)}")
    with open_session() as db:
        finish_run(session=db, run_id=check_run_id, status=RunStatus.COMPLETED)
    if problems:
        return False, "; ".join(problems)
    return True, f"{len(host_ids)} host(s) inspected, nothing critical (run {check_run_id})"


def _backup_fresh(row: Release, spec: ReleaseSpec) -> tuple[bool, str]:
    """A good verified backup of each named source within ``backup_max_age_hours``."""
    since = utcnow() - timedelta(hours=spec.backup_max_age_hours)
    problems, seen = [], []
    with open_session() as db:
        for source in spec.backup_sources or [row.system]:
            latest = db.exec(
                select(BackupVersion)
                .where(
                    BackupVersion.contract_id == row.contract_id,
                    BackupVersion.system == source,
                    BackupVersion.outcome == Outcome.GOOD,
                )
                .order_by(col(BackupVersion.verified_at).desc())
            ).first()
            if latest is None or latest.verified_at < since:
                when = latest.verified_at.isoformat() if latest else "never"
                problems.append(
                    f"{source}: no backup verified good in the last "
                    f"{spec.backup_max_age_hours:g} h (last: {when})"
                )
            else:
                seen.append(f"{source} verified {latest.verified_at.isoformat()}")
    return (False, "; ".join(problems)) if problems else (True, "; ".join(seen))


def _config_changes(release_id: int, row: Release) -> tuple[bool, str]:
    """What changed on each target host since the last release of this system: its packages
    (and kernel, OS) scanned now over SSH against its inventory from before that release
    ended; the scan is kept as the host's newest inventory. Evidence for the approvers, not
    a verdict: it fails only for a host that could not be scanned."""
    settings = get_settings()
    with open_session() as db:
        last = db.exec(
            select(Release)
            .where(
                Release.contract_id == row.contract_id,
                Release.system == row.system,
                Release.status == "released",
                Release.id != release_id,
            )
            .order_by(col(Release.finished_at).desc())
        ).first()
        hosts = db.exec(
            select(Host).where(Host.contract_id == row.contract_id, col(Host.name).in_(row.hosts))
        ).all()
    since = f"release {last.id} ({last.version})" if last else "the last inventory"
    seen, problems = [], []
    for host in sorted(hosts, key=lambda h: h.name):
        try:
            scan = scan_host(host, settings)
        except (SshError, ScanUnreadable) as exc:
            problems.append(f"{host.name} not scanned: {exc}")
            continue
        with open_session() as db:
            _, found = record_scan(
                db,
                host,
                scan,
                flow_run_id=current_flow_run_id(),
                since=last.finished_at if last else None,
            )
        if found is None:
            seen.append(f"{host.name}: nothing from before {since} to compare (now recorded)")
        elif found.empty:
            seen.append(f"{host.name}: no package changed since {since}")
        else:
            counts = ", ".join(f"{n} {what}" for what, n in found.counts().items() if n)
            shown = "; ".join(found.lines()[:10])
            more = f" (+{len(found.lines()) - 10} more)" if len(found.lines()) > 10 else ""
            seen.append(f"{host.name}: {counts} since {since}: {shown}{more}")
    return (not problems), "; ".join(problems + seen)


@task(name="release-baseline")
def record_baseline(release_id: int) -> None:
    """After a release verified good, when the checklist compares configurations: each
    target host's inventory now, the baseline the next release compares with."""
    row, _, _, spec = load_release(release_id)
    if not any(i.check == "config_changes" for i in spec.checklist):
        return
    started = utcnow()
    ok, summary = _config_changes(release_id, row)
    log_step(release_id, "baseline", ok, summary, started=started)


@task(name="release-pre-checks")
def pre_checks(release_id: int, run_id: int, phase: str) -> list[tuple[str, bool, str]]:
    """The checklist's automatic items (the smoke checks when it names none), each recorded
    (``check:ITEM`` before the review, ``window-check:ITEM`` again at the window): (item,
    passed, what was seen)."""
    row, _, _, spec = load_release(release_id)
    items = [(i.name, i.check) for i in spec.checklist if i.kind == "automatic"]
    prefix = "window-check" if phase == WINDOW else "check"
    out = []
    for name, check in items or [("smoke-checks", "smoke_checks")]:
        started = utcnow()
        step = f"{prefix}:{name}"[:32]
        if check == "smoke_checks":
            ok, summary = smoke(release_id, run_id, step)
            out.append((name, ok, summary))
            continue
        if check == "hosts_healthy":
            ok, summary = _hosts_healthy(release_id, row)
        elif check == "config_changes":
            ok, summary = _config_changes(release_id, row)
        else:
            ok, summary = _backup_fresh(row, spec)
        log_step(release_id, step, ok, summary, started=started)
        out.append((name, ok, summary))
    return out


def run_command(release_id: int, host_name: str, which: str, version: str) -> bool:
    """The system's release or rollback command on one host over SSH; recorded."""
    row, _, _, spec = load_release(release_id)
    template = spec.release_command if which == "release" else spec.rollback_command
    command = render_command(template, version)
    settings = get_settings()
    with open_session() as db:
        host = db.exec(
            select(Host).where(Host.contract_id == row.contract_id, Host.name == host_name)
        ).one()
        # recorded before the command runs: a run interrupted now leaves an unfinished step
        # that says this host may be changed (``interrupted``)
        step = ReleaseStep(
            release_id=release_id,
            host=host_name,
            step=which,
            ok=False,
            summary=f"{command}: started, not finished",
            detail={"command": command},
        )
        db.add(step)
        db.flush()
        step_id = step.id
    try:
        with SshSession(target_for(host, settings), settings.ssh, settings.known_hosts_file) as ssh:
            raw = ssh.run(command, timeout=spec.command_timeout_seconds)
    except SshError as exc:
        _end_step(step_id, False, f"{command}: {exc}", {"command": command})
        return False
    ok = raw.exit_code == 0
    _end_step(
        step_id,
        ok,
        f"{command}: exit {raw.exit_code}",
        {
            "command": command,
            "exit_code": raw.exit_code,
            "stdout": raw.stdout[-_TAIL:],
            "stderr": raw.stderr[-_TAIL:],
        },
    )
    return ok


def _end_step(step_id: int | None, ok: bool, summary: str, detail: dict[str, Any]) -> None:
    with open_session() as db:
        step = db.get(ReleaseStep, step_id)
        assert step is not None
        step.ok, step.summary, step.detail, step.finished_at = ok, summary, detail, utcnow()
        db.add(step)


def soak(release_id: int, run_id: int, seconds: float) -> tuple[bool, str]:
    """Watch the smoke checks for ``seconds`` after the canary (every 30 s at most, and at
    the end); the first failure ends the soak."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while True:
        rounds += 1
        ok, summary = smoke(release_id, run_id, "soak")
        left = deadline - time.monotonic()
        if not ok or left <= 0:
            return ok, f"{rounds} round(s) over {seconds:g} s: {summary}"
        time.sleep(min(30.0, left))  # the soak is a wait the contract asks for


def roll_back(release_id: int, run_id: int, released: list[str], detected_at: Any) -> RollbackClock:
    """Every released host back (latest first), then the smoke checks; the clock recorded;
    a late or unverified rollback is a critical finding."""
    row, _, _, spec = load_release(release_id)
    logger = get_run_logger()
    done = [run_command(release_id, h, "rollback", row.version) for h in reversed(released)]
    verified = all(done) and smoke(release_id, run_id, "rollback-verify")[0]
    clock = RollbackClock(detected_at, utcnow(), spec.rollback_limit_minutes, verified)
    log_step(
        release_id,
        "rollback-clock",
        clock.kept,
        clock.text(),
        detail={
            "detected_at": detected_at.isoformat(),
            "done_at": clock.done_at.isoformat(),
            "minutes": round(clock.minutes, 4),
            "limit_minutes": spec.rollback_limit_minutes,
            "verified": verified,
        },
        started=detected_at,
    )
    if not clock.kept:
        logger.error("release %s: %s", release_id, clock.text())
        with open_session() as db:
            run = db.get(InspectionRun, run_id)
            assert run is not None
            system_finding(
                session=db,
                run=run,
                check=ROLLBACK_CHECK,
                subject=f"{row.system} {row.version}",
                severity=Severity.CRITICAL,
                message=f"release {row.system} {row.version}: {clock.text()}",
                evidence=f"release {release_id}, hosts {', '.join(released)}",
                recommendation="Restore the previous version by hand now and tell the "
                f"customer; the contract promises a rollback within {spec.rollback_limit_minutes:g}"
                " minutes.",
            )
    return clock


def finish_release(release_id: int, run_id: int, status: str) -> None:
    with open_session() as db:
        row = db.get(Release, release_id)
        assert row is not None
        row.status, row.finished_at = status, utcnow()
        db.add(row)
        finish_run(
            session=db,
            run_id=run_id,
            status=RunStatus.COMPLETED if status == "released" else RunStatus.FAILED,
        )


def report_file(kind: str, contract_code: str, release_id: int, tz: ZoneInfo) -> Path:
    """A new file per report (a second report of the same release is kept beside the first):
    ``<reports>/<contract>/<year>/<kind>-<contract>-<release>-<time>-<run>.html``."""
    now = datetime.now(tz)
    code = safe_name(contract_code)
    run = (current_flow_run_id() or "by-hand")[:8]
    return (
        get_settings().reports
        / code
        / f"{now:%Y}"
        / f"{kind}-{code}-{release_id}-{now:%Y-%m-%d-%H%M%S}-{run}.html"
    )


@dataclass(frozen=True)
class ReleaseReport:
    """The report after the release, rendered: the mail's subject line and both parts, and
    the page kept under the reports directory (the HTML part)."""

    headline: str
    text: str
    html: str
    page: str


@task(name="release-report")
def release_report(release_id: int, status: str, outcome: str) -> ReleaseReport:
    """The report after the release (what was released, when, every step with who, the
    verification's result): an HTML page under the reports directory and a Prefect artifact;
    the ``report`` step says where."""
    settings = get_settings()
    row, view, _, _ = load_release(release_id)
    tz = ZoneInfo(view.timezone)
    rows = [
        {
            "when": s.started_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
            "host": s.host,
            "step": s.step,
            "actor": s.actor,
            "ok": s.ok,
            "summary": s.summary,
        }
        for s in steps_of(release_id)
    ]
    headline = {
        "released": f"Released: {row.system} {row.version} ({view.code})",
        "rolled-back": f"Release ROLLED BACK: {row.system} {row.version} ({view.code})",
    }.get(status, f"Release FAILED: {row.system} {row.version} ({view.code})")
    text, html = _render_pair(
        settings.templates_dir,
        "email/release_result.txt.j2",
        "email/release_result.html.j2",
        {
            "headline": headline,
            "contract_code": view.code,
            "system": row.system,
            "version": row.version,
            "changes": row.changes,
            "outcome": outcome,
            "steps": rows,
        },
    )
    page = report_file("release", view.code, release_id, tz)
    write_atomic(page, html)
    create_markdown_artifact(
        markdown="\n".join(
            [
                f"## {md_escape(headline)}",
                "",
                md_escape(outcome),
                "",
                "| When | Step | Host | Who | Result |",
                "|---|---|---|---|---|",
                *[
                    f"| {r['when']} | {md_escape(r['step'])} | {md_escape(r['host'])} | "
                    f"{md_escape(r['actor'])} | {'ok' if r['ok'] else 'FAILED'} |"
                    for r in rows
                ],
                "",
                f"The report: {md_escape(str(page))}",
            ]
        ),
        key=artifact_key("release", view.code),
        description=md_escape(f"release {row.system} {row.version} ({view.code}): {status}"),
    )
    log_step(release_id, "report", True, f"the report: {page}", detail={"path": str(page)})
    return ReleaseReport(_one_line(f"[upkeep] {headline}"), text, html, str(page))


@task(name="mail-release-result")
def mail_release_result(release_id: int, report: ReleaseReport) -> dict[str, Any]:
    """The report to the contract's recipients, the page attached (queued in the outbox
    first)."""
    code = load_release(release_id)[1].code

    def compose() -> Mail:
        return Mail(report.headline, report.text, report.html, (report.page,))

    return mail_recipients(code, "release_result", compose, smtp=get_settings().smtp)
