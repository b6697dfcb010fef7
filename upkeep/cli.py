"""upkeep: maintenance-contract work (inspections, approvals, reports) as Prefect flows."""

from __future__ import annotations

import getpass
import json
import os
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import httpx
import typer
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL
from rich.table import Table
from sqlmodel import Session, col, select

from upkeep.approvals_cli import ApprovalCliError, list_approvals, resume_and_wait
from upkeep.console import (
    db_session,
    engine_or_exit,
    err,
    esc,
    fail,
    out,
    print_run_summary,
    settings_or_exit,
    severity_text,
)
from upkeep.db import current_revision, engine_for, head_revision, upgrade
from upkeep.demo import DemoError, run_demo
from upkeep.demo.prefect_server import api_healthy
from upkeep.deployments import (
    active_contracts,
    all_specs,
    build_deployments,
    deploy_to_pool,
    ensure_process_pool,
    load_flow,
    pause_gone,
    serve_all,
    unsupported,
)
from upkeep.deployments.health import expected_runs, watch_scheduled_runs
from upkeep.domain.advisories import Match, Platform
from upkeep.domain.advisories.inventory import (
    parse_apk_installed,
    parse_dpkg_query,
    parse_dpkg_status,
    parse_os_release,
    parse_rpm_query,
)
from upkeep.domain.advisories.match import match
from upkeep.domain.advisories.versions import UnsupportedFamily
from upkeep.domain.contract import ContractView
from upkeep.domain.markup import markdown_plain
from upkeep.domain.patching import PatchPlan as PatchPlanModel
from upkeep.domain.patching import render_plan_markdown
from upkeep.domain.processes import deployment_name
from upkeep.domain.releases import Declared, ReleaseError, local_time
from upkeep.domain.report_time import human
from upkeep.flows.annual_plan import annual_plan, plan_summary, write_plan_files
from upkeep.flows.backup_verification import BackupOutcome, BackupParams, backup_verification
from upkeep.flows.inspection import (
    InspectionParams,
    RecheckParams,
    check_inventory_allows,
    quarterly_health_inspection,
    recheck_findings,
)
from upkeep.flows.interfaces import (
    MonitorOutcome,
    MonitorParams,
    StatusOutcome,
    StatusParams,
    interface_monitor,
    interface_status,
)
from upkeep.flows.patch_advisory import (
    PatchFixParams,
    PatchOutcome,
    PatchParams,
    patch_advisory,
    patch_fix,
)
from upkeep.flows.release import ReleaseOutcome, ReleaseParams, release
from upkeep.flows.release_effect import EffectOutcome, EffectParams, release_effect
from upkeep.flows.sweep import SweepParams, run_sweep
from upkeep.inventory import InventoryError, apply_inventory, approver_warnings, load_inventory_file
from upkeep.models import Approval, Contract, Customer, Host, OutboxMessage, PatchStep, utcnow
from upkeep.models import PatchPlan as PatchPlanRow
from upkeep.settings import SettingsError, get_settings, prefect_result_settings
from upkeep.tasks.advisories import AdvisorySourceError, load_advisories
from upkeep.tasks.advisory_store import SyncError, load_store, sync
from upkeep.tasks.approval_links import links_of
from upkeep.tasks.gates import events, gate_report
from upkeep.tasks.guards import Refused, check_backup_source, hosts_for_run
from upkeep.tasks.inspection_plan import check_alone
from upkeep.tasks.inventory_scan import (
    ScanUnreadable,
    previous_inventory,
    record_scan,
    scan_host,
    stored_packages,
)
from upkeep.tasks.notify import deliver_pending
from upkeep.tasks.patch_survey import check_patch_alone
from upkeep.tasks.records import (
    RecordNotFound,
    find_hosts,
    get_contract,
    hosts_in_scope,
    list_findings,
)
from upkeep.tasks.release_effect import finished_release
from upkeep.tasks.releases import declare_release, list_releases, release_run_at
from upkeep.tasks.ssh import (
    SshError,
    fetch_host_key,
    fingerprint_sha256,
    known_hosts_name,
    load_known_hosts,
    trust_host_key,
)
from upkeep.web.server import PageError, serve_forever, serve_in_thread

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
inventory_app = typer.Typer(no_args_is_help=True, help="Customers, contracts and hosts.")
hosts_app = typer.Typer(no_args_is_help=True, help="Hosts and their SSH host keys.")
findings_app = typer.Typer(no_args_is_help=True, help="Findings of inspections.")
run_app = typer.Typer(no_args_is_help=True, help="Run flows against the Prefect API.")
approvals_app = typer.Typer(no_args_is_help=True, help="Approval gates.")
outbox_app = typer.Typer(no_args_is_help=True, help="Mail waiting to be delivered.")
patches_app = typer.Typer(
    no_args_is_help=True,
    help="The patch-advisory cycle: plan, customer review, apply only what was approved.",
)
advisories_app = typer.Typer(
    no_args_is_help=True, help="Security advisories (OSV) against installed packages."
)
app.add_typer(db_app, name="db")
app.add_typer(inventory_app, name="inventory")
app.add_typer(hosts_app, name="hosts")
app.add_typer(findings_app, name="findings")
app.add_typer(run_app, name="run")
app.add_typer(approvals_app, name="approvals")
app.add_typer(outbox_app, name="outbox")
app.add_typer(advisories_app, name="advisories")
app.add_typer(patches_app, name="patches")
interfaces_app = typer.Typer(
    no_args_is_help=True,
    help="The interfaces customers depend on: probe the smoke checks, the daily status.",
)
app.add_typer(interfaces_app, name="interfaces")
releases_app = typer.Typer(
    no_args_is_help=True,
    help="Releases: declared with their test report (the release flow is still to come).",
)
app.add_typer(releases_app, name="releases")

# --- db ---------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database or bring its schema to this version of upkeep."""
    settings = settings_or_exit()
    engine = engine_for(settings.db_url)
    before, after = upgrade(engine)
    url = engine.url.render_as_string(hide_password=True)
    if before == after:
        out.print(f"{url}: schema already at {after}", markup=False)
    else:
        out.print(f"{url}: schema upgraded from {before or 'nothing'} to {after}", markup=False)


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one this upkeep needs."""
    settings = settings_or_exit()
    engine = engine_for(settings.db_url)
    out.print(f"database: {current_revision(engine) or 'empty'}; upkeep needs: {head_revision()}")


# --- inventory --------------------------------------------------------------------------------


@inventory_app.command("load")
def inventory_load(
    file: Annotated[Path, typer.Argument(help="Inventory YAML file")],
) -> None:
    """Validate FILE and make the database match it, in one transaction."""
    try:
        spec = load_inventory_file(file)
    except InventoryError as exc:
        err.print(f"[bold red]error:[/] {esc(file)}: the inventory was not loaded:", markup=True)
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False)
        raise typer.Exit(1) from None
    with db_session() as session:
        report = apply_inventory(session, spec)
    for line in report.lines():
        out.print(line, markup=False)
    for warning in approver_warnings(spec):
        err.print(f"[bold yellow]warning:[/] {esc(warning)}", markup=True)


@inventory_app.command("show")
def inventory_show(
    contract: Annotated[str | None, typer.Option(help="Only this contract")] = None,
    inactive: Annotated[bool, typer.Option(help="Also show deactivated hosts")] = False,
) -> None:
    """Print the customers, contracts and hosts that are loaded."""
    with db_session() as session:
        if contract:
            try:
                contracts = [get_contract(session=session, code=contract, active_only=False)]
            except RecordNotFound as exc:
                fail(str(exc))
        else:
            contracts = list(session.exec(select(Contract).order_by(Contract.code)))
        if not contracts:
            out.print("nothing loaded: run `upkeep inventory load FILE`")
            return
        for c in contracts:
            customer = session.get(Customer, c.customer_id)
            assert customer is not None
            state = "" if c.active else " (inactive)"
            out.print(
                f"[bold]{esc(c.code)}[/]{state}: {esc(c.name)} — "
                f"{esc(customer.name)} ({esc(customer.code)})"
            )
            view = ContractView.of(c)
            approvers = ", ".join(f"{a.name} <{a.email}>" for a in view.approvers)
            out.print(f"  timezone {view.timezone}; approvers: {approvers}", markup=False)
            if b := view.backup_approver:
                out.print(f"  backup approver: {b.name} <{b.email}>", markup=False)
            if view.report_recipients:
                out.print(f"  reports to: {', '.join(view.report_recipients)}", markup=False)
            if view.threshold_overrides:
                out.print(f"  thresholds: {view.threshold_overrides}", markup=False)
            table = Table("host", "address", "user", "tags", "role", "system", "key", "active")
            hosts = session.exec(select(Host).where(Host.contract_id == c.id).order_by(Host.name))
            for h in hosts:
                if not h.active and not inactive:
                    continue
                key = h.key_file or (f"secret:{h.key_secret}" if h.key_secret else "default")
                table.add_row(
                    *map(
                        esc,
                        (
                            h.name,
                            f"{h.address}:{h.port}",
                            h.user or "(default)",
                            ",".join(h.tags),
                            h.role or "",
                            h.system or "",
                            key,
                            "yes" if h.active else "no",
                        ),
                    )
                )
            out.print(table)


# --- hosts ------------------------------------------------------------------------------------


@hosts_app.command("trust")
def hosts_trust(
    host: Annotated[str, typer.Argument(help="Host name from the inventory")],
    contract: Annotated[
        str | None, typer.Option(help="Contract, when the name is ambiguous")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Trust a new key without asking")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(help="Replace a CHANGED recorded key without asking (check it first)"),
    ] = False,
) -> None:
    """Fetch HOST's SSH key, show its fingerprint and record it in upkeep's known_hosts.

    A key that differs from the one recorded is shown loudly with both fingerprints and is
    replaced only when you type the host's name (or give --replace; --yes alone never does).
    """
    settings = settings_or_exit()
    with db_session(settings) as session:
        try:
            matches = find_hosts(session=session, name=host, contract_code=contract)
        except RecordNotFound as exc:
            fail(str(exc))
    if not matches:
        fail(f"no active host {host!r} in the inventory" + (f" of {contract}" if contract else ""))
    if len(matches) > 1:
        fail(f"{host!r} is in several contracts: name one with --contract")
    h = matches[0]
    try:
        key = fetch_host_key(h.address, h.port, settings.ssh.connect_timeout)
    except SshError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot fetch the key of {h.name} ({h.address}:{h.port}): {exc}")
    fp = fingerprint_sha256(key)
    where = f"{h.name} ({h.address}:{h.port})"
    out.print(f"{where} offers a {key.get_name()} key {fp}", markup=False)
    recorded = load_known_hosts(settings.known_hosts_file).lookup(
        known_hosts_name(h.address, h.port)
    )
    old = list(recorded.values()) if recorded else []
    if any(k.get_name() == key.get_name() and k.asbytes() == key.asbytes() for k in old):
        out.print(f"already trusted: {settings.known_hosts_file} is unchanged", markup=False)
        return
    if not old:
        if not yes and not typer.confirm("Trust this key?", default=False):
            fail("not trusted: nothing was recorded")
    else:
        err.print(
            f"[bold red]WARNING: THE SSH HOST KEY OF {esc(where)} HAS CHANGED[/] since it was "
            "trusted.\n"
            + "".join(f"  recorded: {k.get_name()} {fingerprint_sha256(k)}\n" for k in old)
            + f"  offered:  {key.get_name()} {fp}\n"
            "The host may have been reinstalled, or someone may be intercepting the connection. "
            "Check the new fingerprint with the host's administrator before you replace the "
            "recorded key.",
            markup=True,
        )
        if not replace:
            if yes:
                fail(
                    f"the key of {h.name} changed: --yes never replaces a changed key; after "
                    "checking the new fingerprint, run again with --replace. Nothing was recorded"
                )
            typed = typer.prompt(
                f"Type the host name ({h.name}) to replace the recorded key",
                default="",
                show_default=False,
            )
            if typed.strip() != h.name:
                fail("not replaced: the recorded key stays trusted, nothing was changed")
    trust_host_key(settings.known_hosts_file, h.address, h.port, key)
    out.print(
        f"{'replaced' if old else 'trusted'}: recorded in {settings.known_hosts_file}",
        markup=False,
    )


# --- findings ---------------------------------------------------------------------------------


@findings_app.command("list")
def findings_list(
    contract: Annotated[str, typer.Option(help="Contract code")],
    open_only: Annotated[bool, typer.Option("--open", help="Only open findings")] = False,
) -> None:
    """Print the contract's findings, worst first per host."""
    with db_session() as session:
        try:
            c = get_contract(session=session, code=contract, active_only=False)
        except RecordNotFound as exc:
            fail(str(exc))
        rows = list_findings(session=session, contract=c, open_only=open_only)
    if not rows:
        out.print("no findings")
        return
    table = Table("id", "host", "check", "subject", "severity", "status", "first seen", "message")
    for f, h in rows:
        table.add_row(
            str(f.id),
            esc(h.name if h else "(backup)"),
            esc(f.check),
            esc(f.subject),
            severity_text(f.severity),
            esc(f.status),
            f.first_seen_at.strftime("%Y-%m-%d %H:%M"),
            esc(f.message),
        )
    out.print(table)


# --- run --------------------------------------------------------------------------------------


@run_app.command("sweep")
def run_sweep_cmd(
    contract: Annotated[str, typer.Option(help="Contract code")],
    tag: Annotated[list[str] | None, typer.Option(help="Only hosts with this tag")] = None,
) -> None:
    """Inspect the contract's hosts now (every check, no plan or approval) and print the result."""
    settings = settings_or_exit()
    with db_session(settings) as session:
        try:
            hosts_for_run(
                session=session, contract=active_contract(session, contract), tags=tag or []
            )
        except Refused as exc:
            fail(f"nothing was run: {exc}")
    summary = run_sweep(SweepParams(contract=contract, tags=tag or [], requested_by=_whoami()))
    with db_session(settings) as session:
        print_run_summary(session, summary.run_id)
    if summary.unreachable:
        err.print(f"not reached: {', '.join(summary.unreachable)}", markup=False)
        raise typer.Exit(3)


def active_contract(session: Session, code: str) -> Any:
    """The active contract ``code``, or exit naming the contracts there are."""
    try:
        return get_contract(session=session, code=code)
    except RecordNotFound as exc:
        fail(f"nothing was run: {exc}")


def require_prefect_api() -> str:
    """The configured Prefect API URL, or exit saying how to get one."""
    url = PREFECT_API_URL.value()
    if not url:
        fail(
            "PREFECT_API_URL is not set: approvals need a Prefect server that outlives this "
            "command. Start one (`prefect server start`) and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api",
            2,
        )
    if not api_healthy(url):
        fail(f"the Prefect API at {url} does not answer: is the server running?", 2)
    return url


@run_app.command("inspection")
def run_inspection_cmd(
    contract: Annotated[str, typer.Option(help="Contract code")],
    tag: Annotated[list[str] | None, typer.Option(help="Only hosts with this tag")] = None,
    window: Annotated[str | None, typer.Option(help="Inspection window agreed")] = None,
    email: Annotated[bool, typer.Option(help="E-mail the report to the recipients")] = False,
    approval: Annotated[
        bool | None, typer.Option(help="Ask for plan approval (default: as the contract says)")
    ] = None,
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
) -> None:
    """Run the quarterly health inspection now; it waits at the plan approval if needed."""
    settings = settings_or_exit()
    engine_or_exit(settings)
    params = InspectionParams(
        contract=contract,
        tags=tag or [],
        window=window,
        email_report=email,
        require_approval=approval,
        requested_by=requested_by or _whoami(),
    )
    try:
        contract_id = check_inventory_allows(params)
        require_prefect_api()
        check_alone(contract, contract_id, None)
    except Refused as exc:
        fail(f"nothing was run: {exc}")
    state = quarterly_health_inspection(params, return_state=True)
    _report_final_state(state)


@run_app.command("recheck")
def run_recheck_cmd(
    contract: Annotated[str, typer.Option(help="Contract code")],
    email: Annotated[bool, typer.Option(help="E-mail the report to the recipients")] = False,
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
) -> None:
    """Re-run only the checks with open findings and resolve what has been fixed."""
    settings = settings_or_exit()
    with db_session(settings) as session:
        active_contract(session, contract)
    params = RecheckParams(
        contract=contract, email_report=email, requested_by=requested_by or _whoami()
    )
    state = recheck_findings(params, return_state=True)
    _report_final_state(state)


@run_app.command("backups")
def run_backups_cmd(
    contract: Annotated[str, typer.Option(help="Contract code")],
    source: Annotated[str | None, typer.Option(help="Only this backup source")] = None,
    email: Annotated[bool, typer.Option(help="Mail the report even when all is well")] = False,
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
) -> None:
    """Prove the contract's backups restore now; exit 3 when one failed."""
    _run_backups(contract, source, False, email, requested_by)


@run_app.command("drill")
def run_drill_cmd(
    contract: Annotated[str, typer.Option(help="Contract code")],
    source: Annotated[str, typer.Option(help="The backup source to recover")],
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
) -> None:
    """Disaster-recovery drill: restore the latest backup in full, run every check, time it."""
    _run_backups(contract, source, True, True, requested_by)


def _run_backups(
    contract: str, source: str | None, drill: bool, email: bool, requested_by: str | None
) -> None:
    settings = settings_or_exit()
    with db_session(settings) as session:
        try:
            check_backup_source(active_contract(session, contract), source)
        except Refused as exc:
            fail(f"nothing was run: {exc}")
    params = BackupParams(
        contract=contract,
        source=source,
        drill=drill,
        email_report=email,
        requested_by=requested_by or _whoami(),
    )
    state = backup_verification(params, return_state=True)
    if not state.is_completed():
        fail(f"the flow run ended {state.type.value}: {state.message}")
    outcome = state.result()
    assert isinstance(outcome, BackupOutcome)  # a completed state holds the flow's return
    for s in outcome.sources:
        line = f"{s.system} ({s.kind}): {s.outcome}"
        if not s.good:
            line += f" — {s.fault} fault ({s.reason}): {s.message}"
        elif s.duration_s:
            line += f" — restored and checked in {s.duration_s:.1f} s"
        out.print(line, markup=False)
    out.print(f"report: {outcome.report_path}", markup=False)
    if outcome.failed:
        raise typer.Exit(3)


def _whoami() -> str:
    return getpass.getuser()


def _report_final_state(state: Any) -> None:
    if state.is_cancelled():
        out.print(f"cancelled: {state.message}", markup=False)
        raise typer.Exit(4)
    if not state.is_completed():
        fail(f"the flow run ended {state.type.value}: {state.message}")
    outcome = state.result()
    out.print(f"report: {outcome.report_path}", markup=False)
    if outcome.email is not None:
        out.print(
            f"mail sent: {len(outcome.email['sent'])}; "
            f"kept in the outbox: {len(outcome.email['failed'])}"
        )
    if outcome.unreachable:
        err.print(f"not reached: {', '.join(outcome.unreachable)}", markup=False)
        raise typer.Exit(3)


# --- approvals --------------------------------------------------------------------------------


@approvals_app.command("serve")
def approvals_serve(
    host: Annotated[str | None, typer.Option(help="Listen address (UPKEEP_APPROVALS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (UPKEEP_APPROVALS_PORT)")] = None,
) -> None:
    """Serve the approval page customers decide on (put it behind your TLS reverse proxy)."""
    settings = settings_or_exit()
    require_prefect_api()
    if host is not None or port is not None:
        page = settings.approvals.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
        settings = settings.model_copy(update={"approvals": page})
    with db_session(settings):
        pass  # the schema is current before the first link is opened
    out.print(
        f"approval page on {settings.approvals.host}:{settings.approvals.port}; "
        f"links in e-mails point to {settings.approvals.base_url}",
        markup=False,
    )
    try:
        serve_forever(settings)
    except PageError as exc:
        fail(str(exc))


@approvals_app.command("list")
def approvals_list(
    pending: Annotated[bool, typer.Option("--pending", help="Only those waiting")] = False,
) -> None:
    """Approval requests and decisions, newest first."""
    with db_session() as session:
        rows = list_approvals(session, pending_only=pending)
    if not rows:
        out.print("no approvals" + (" pending" if pending else ""))
        return
    table = Table("id", "flow run", "gate", "subject", "requested", "decision", "by", "comment")
    for a in rows:
        table.add_row(
            str(a.id),
            esc(a.flow_run_id),
            esc(a.gate),
            esc(a.subject),
            a.requested_at.strftime("%Y-%m-%d %H:%M:%S"),
            esc(a.decision) if a.decision else "[bold]pending[/]",
            esc(a.approver or ""),
            esc(a.comment or ""),
        )
    out.print(table)


@approvals_app.command("show")
def approvals_show(approval_id: Annotated[int, typer.Argument(help="Approval id")]) -> None:
    """One gate: what was asked, the decision, and its whole event log."""
    with db_session() as session:
        a = session.get(Approval, approval_id)
        if a is None:
            fail(f"no approval {approval_id} (see `upkeep approvals list`)")
        log = events(session=session, approval_id=approval_id)
        links = links_of(session, approval_id)
    out.print(f"[bold]approval {a.id}[/]: {esc(a.subject)}")
    out.print(f"gate {a.gate}; flow run {a.flow_run_id}", markup=False)
    out.print(
        f"requested {a.requested_at:%Y-%m-%d %H:%M:%S} UTC; "
        f"decision: {a.decision or 'pending'}"
        + (f" by {a.approver} at {a.decided_at:%Y-%m-%d %H:%M:%S} UTC" if a.decided_at else ""),
        markup=False,
    )
    if a.comment:
        out.print(f"comment: {a.comment}", markup=False)
    table = Table("when (UTC)", "event", "who", "detail")
    for e in log:
        table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", esc(e.kind), esc(e.actor or ""), esc(e.detail))
    out.print(table)
    if links:
        mailed = Table("approval-page link of", "role", "mailed (UTC)", "used (UTC)", "replaced")
        for link in links:
            mailed.add_row(
                esc(link.person),
                esc(link.role),
                f"{link.created_at:%Y-%m-%d %H:%M:%S}",
                f"{link.used_at:%Y-%m-%d %H:%M:%S}" if link.used_at else "",
                "yes" if link.superseded_at else "",
            )
        out.print(mailed)
    out.print("[bold]evidence shown:[/]")
    # The evidence is escaped Markdown (for the UI); the terminal shows it as typed.
    out.print(markdown_plain(a.evidence), markup=False)


@approvals_app.command("report")
def approvals_report(
    contract: Annotated[str | None, typer.Option(help="Only this contract")] = None,
    since: Annotated[str | None, typer.Option(help="Gates opened on or after YYYY-MM-DD")] = None,
) -> None:
    """Time to decision per contract and approver (median, 90th percentile, longest)."""
    start = None
    if since:
        try:
            start = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            fail(f"--since {since!r} is not a date like 2026-01-31")
    with db_session() as session:
        report = gate_report(session=session, contract_code=contract, since=start)
    table = Table("contract", "approver", "decisions", "median", "90th pct", "longest")
    for t in report.times:
        table.add_row(
            esc(t.contract),
            esc(t.approver),
            str(t.decisions),
            human(t.median),
            human(t.p90),
            human(t.longest),
        )
    out.print(table)
    summary = Table(
        "contract",
        "gates",
        "pending",
        "escalations",
        "expiries",
        "refused answers",
        "codes replaced",
        "planted answers",
    )
    for code in sorted(report.gates):
        summary.add_row(
            esc(code),
            str(report.gates[code]),
            str(report.pending.get(code, 0)),
            str(report.escalations.get(code, 0)),
            str(report.expiries.get(code, 0)),
            str(report.refused.get(code, 0)),
            str(report.replaced.get(code, 0)),
            str(report.planted.get(code, 0)),
        )
    out.print(summary)


def _resume(run: str, gate_kind: str, run_input: dict[str, Any]) -> None:
    settings = settings_or_exit()
    require_prefect_api()
    with db_session(settings):
        pass
    try:
        message, ok = resume_and_wait(settings, run, gate_kind, run_input)
    except ApprovalCliError as exc:
        fail(str(exc))
    if not ok:
        fail(message)
    out.print(message)


@app.command("approve")
def approve(
    run: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix) of the gate")],
    as_: Annotated[str, typer.Option("--as", help="Your name as the contract lists it")],
    code: Annotated[str, typer.Option(help="The one-time code from your approval e-mail")],
    comment: Annotated[str, typer.Option(help="Why")] = "",
) -> None:
    """Approve a waiting gate (the same resume call the Prefect UI makes)."""
    _resume(
        run, "approval", {"decision": "approve", "approver": as_, "code": code, "comment": comment}
    )


@app.command("reject")
def reject(
    run: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix) of the gate")],
    as_: Annotated[str, typer.Option("--as", help="Your name as the contract lists it")],
    code: Annotated[str, typer.Option(help="The one-time code from your approval e-mail")],
    comment: Annotated[str, typer.Option(help="What must change (required)")],
) -> None:
    """Reject a waiting gate; the flow goes back to the previous step with your comment."""
    _resume(
        run, "approval", {"decision": "reject", "approver": as_, "code": code, "comment": comment}
    )


@app.command("revise")
def revise(
    run: Annotated[str, typer.Argument(help="Flow run id (or prefix) of the rejected inspection")],
    as_: Annotated[str, typer.Option("--as", help="Your name")],
    exclude: Annotated[list[str] | None, typer.Option(help="Host to leave out")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Excluded host to bring back")] = None,
    window: Annotated[str | None, typer.Option(help="New inspection window")] = None,
    note: Annotated[str, typer.Option(help="What you changed")] = "",
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel the inspection")] = False,
) -> None:
    """Revise a rejected plan and resubmit it for approval (or cancel the inspection)."""
    run_input: dict[str, Any] = {
        "action": "cancel" if cancel else "resubmit",
        "engineer": as_,
        "exclude_hosts": exclude or [],
        "include_hosts": include or [],
        "note": note,
    }
    if window:
        run_input["window"] = window
    _resume(run, "revision", run_input)


# --- outbox -----------------------------------------------------------------------------------


@outbox_app.command("list")
def outbox_list() -> None:
    """Messages in the outbox and whether they went out."""
    with db_session() as session:
        rows = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))).all()
    table = Table("id", "kind", "subject", "to", "status", "attempts", "last error")
    for m in rows:
        table.add_row(
            str(m.id),
            esc(m.kind),
            esc(m.subject),
            esc(", ".join(m.recipients)),
            esc(m.status)
            + (
                f" (due {m.not_before.strftime('%Y-%m-%d %H:%M UTC')})"
                if m.not_before is not None and m.status == "pending"
                else ""
            ),
            str(m.attempts),
            esc(m.last_error or ""),
        )
    out.print(table)


@outbox_app.command("send")
def outbox_send() -> None:
    """Try to deliver every pending message that is due now (a release notice waits for its
    time)."""
    settings = settings_or_exit()
    with db_session(settings) as session:
        report = deliver_pending(session=session, smtp=settings.smtp)
    out.print(f"sent: {report.sent}; still pending: {report.failed}")
    if report.failed:
        raise typer.Exit(1)


# --- advisories -------------------------------------------------------------------------------


def _read_input(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        fail(f"{what} {path}: {exc.strerror}")


@advisories_app.command("match")
def advisories_match(
    os_release: Annotated[Path, typer.Option(help="A copy of the host's /etc/os-release")],
    dpkg_status: Annotated[
        Path | None, typer.Option(help="A copy of the host's /var/lib/dpkg/status")
    ] = None,
    dpkg_query: Annotated[
        Path | None, typer.Option(help="The host's dpkg-query output (format in the README)")
    ] = None,
    rpm_query: Annotated[
        Path | None, typer.Option(help="The host's rpm -qa output (format in the README)")
    ] = None,
    apk_installed: Annotated[
        Path | None, typer.Option(help="A copy of the host's /lib/apk/db/installed (Alpine)")
    ] = None,
    advisories: Annotated[
        list[Path] | None,
        typer.Option(
            help="OSV records: a .json file, a directory, or a zip export (repeat); without "
            "it, the records synced into the store (upkeep advisories sync) for the "
            "platform's ecosystem"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per match")] = False,
) -> None:
    """Match an inventory captured elsewhere against advisory records, offline: the files
    given with --advisories, or else the store's records for the host's ecosystem."""
    given = (
        (dpkg_status, "dpkg"),
        (dpkg_query, "query"),
        (rpm_query, "rpm"),
        (apk_installed, "apk"),
    )
    inventories = [(p, k) for p, k in given if p is not None]
    if len(inventories) != 1:
        fail("give exactly one of --dpkg-status, --dpkg-query, --rpm-query or --apk-installed", 2)
    ((path, kind),) = inventories
    parse = {
        "dpkg": parse_dpkg_status,
        "query": parse_dpkg_query,
        "rpm": parse_rpm_query,
        "apk": parse_apk_installed,
    }[kind]
    try:
        platform = parse_os_release(_read_input(os_release, "--os-release"))
    except ValueError as exc:
        fail(f"{os_release}: {exc}")
    try:
        installed = parse(_read_input(path, "inventory"))
    except ValueError as exc:
        fail(f"{path}: {exc}")
    expected = {"dpkg": "dpkg", "query": "dpkg", "rpm": "rpm", "apk": "apk"}[kind]
    if platform.family != expected:
        fail(
            f"{os_release} says {platform.ecosystem} ({platform.family} packages), but the "
            f"inventory is {'an' if expected == 'apk' else 'a'} {expected} one"
        )
    try:
        if advisories:
            loaded = load_advisories(advisories)
            records = list(loaded.advisories.values())
            origin = f"from {loaded.files} file(s)"
        else:
            with db_session() as session:
                records = load_store(session, platform.ecosystem)
            if not records:
                fail(
                    f"no advisory records for {platform.ecosystem} in the store: run upkeep "
                    "advisories sync SOURCE... (an OSV export, a directory or a URL), or give "
                    "--advisories"
                )
            origin = "from the store"
        found = match(installed, platform, records)
    except AdvisorySourceError as exc:
        fail(str(exc))
    except UnsupportedFamily as exc:
        fail(str(exc))
    if as_json:
        for m in found:
            sys.stdout.write(json.dumps(m.as_json(), sort_keys=True) + "\n")
        return
    err.print(
        f"{platform.ecosystem}: {len(installed)} installed packages, "
        f"{len(records)} advisory records {origin}; "
        f"{len(found)} match(es)",
        markup=False,
    )
    table = Table("package", "installed", "compared", "advisory", "fixed", "severity")
    for m in found:
        table.add_row(
            esc(m.package),
            esc(m.installed_version),
            esc(f"{m.compared_name} {m.compared_version}"),
            esc(m.advisory),
            esc(m.fixed_version or "no fix yet"),
            esc(m.severity or ""),
        )
    out.print(table)


@advisories_app.command("sync")
def advisories_sync(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="OSV records: .json files, directories, zip exports, or http(s) URLs of a "
            ".json file or a zip export",
            metavar="SOURCE...",
            show_default=False,
        ),
    ],
) -> None:
    """Store advisory records for matching: new records are added, a record is replaced only
    by one with a newer `modified`. Each source is one transaction: a record that cannot be
    read fails its source, naming it, and nothing of that source is stored."""
    settings = settings_or_exit()
    with db_session(settings) as session:
        try:
            report = sync(session, sources)
        except SyncError as exc:
            done = exc.done
            if done.sources:
                out.print(
                    f"stored from {len(done.sources)} source(s) before the error: added "
                    f"{done.added}, updated {done.updated}, unchanged {done.unchanged}",
                    markup=False,
                )
            fail(str(exc))
    out.print(
        f"added {report.added}, updated {report.updated}, unchanged {report.unchanged} "
        f"from {len(report.sources)} source(s)",
        markup=False,
    )


def contract_hosts(session: Session, contract: str, host: str | None, nothing: str) -> list[Host]:
    """The active contract's active hosts, or only ``host``; exits saying ``nothing`` happened
    when there is none."""
    c = active_contract(session, contract)
    hosts = (
        find_hosts(session=session, name=host, contract_code=contract)
        if host
        else hosts_in_scope(session=session, contract=c)
    )
    if not hosts:
        fail(
            f"{nothing}: no active host {host!r} in {contract}"
            if host
            else f"{nothing}: {contract} has no active host"
        )
    return hosts


@advisories_app.command("check")
def advisories_check(
    contract: Annotated[str, typer.Option(help="Contract code")],
    host: Annotated[str | None, typer.Option(help="Only this host")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per match")] = False,
) -> None:
    """Match each host's latest scan (upkeep advisories scan) against the synced records
    (upkeep advisories sync); exit 1 naming hosts that were never scanned."""
    settings = settings_or_exit()
    unscanned: list[str] = []
    rows: list[tuple[str, str, Match]] = []
    with db_session(settings) as session:
        hosts = contract_hosts(session, contract, host, "nothing was checked")
        records: dict[str, list[Any]] = {}
        for h in hosts:
            assert h.id is not None
            inventory = previous_inventory(session=session, host_id=h.id)
            if inventory is None:
                unscanned.append(h.name)
                continue
            if inventory.ecosystem not in records:
                records[inventory.ecosystem] = load_store(session, inventory.ecosystem)
            platform = Platform(inventory.ecosystem, inventory.family, inventory.os_pretty)  # type: ignore[arg-type]
            scanned = f"{inventory.taken_at:%Y-%m-%d %H:%M} UTC"
            for m in match(stored_packages(inventory), platform, records[inventory.ecosystem]):
                rows.append((h.name, scanned, m))
            if not records[inventory.ecosystem]:
                err.print(
                    f"{h.name}: no advisory records for {inventory.ecosystem} in the store: "
                    "run upkeep advisories sync SOURCE...",
                    markup=False,
                )
    if as_json:
        for name, scanned, m in rows:
            sys.stdout.write(
                json.dumps({"host": name, "scanned": scanned, **m.as_json()}, sort_keys=True) + "\n"
            )
    else:
        table = Table("host", "scanned", "package", "installed", "advisory", "fixed", "severity")
        for name, scanned, m in rows:
            table.add_row(
                esc(name),
                scanned,
                esc(m.package),
                esc(m.installed_version),
                esc(m.advisory),
                esc(m.fixed_version or "no fix yet"),
                esc(m.severity or ""),
            )
        out.print(table)
    if unscanned:
        fail(f"never scanned: {', '.join(unscanned)} (run upkeep advisories scan first)")


@advisories_app.command("scan")
def advisories_scan(
    contract: Annotated[str, typer.Option(help="Contract code")],
    host: Annotated[str | None, typer.Option(help="Only this host")] = None,
) -> None:
    """Read the installed packages of the contract's hosts over SSH, store each as a dated
    inventory and show what changed since the last one; exit 3 when a host was not scanned."""
    settings = settings_or_exit()
    with db_session(settings) as session:
        hosts = contract_hosts(session, contract, host, "nothing was run")
    failed = []
    for h in hosts:
        try:
            scan = scan_host(h, settings)
        except SshError as exc:
            err.print(f"{h.name}: NOT REACHED ({exc.kind}): {exc}", markup=False)
            failed.append(h.name)
            continue
        except ScanUnreadable as exc:
            err.print(f"{h.name}: not scanned: {exc}", markup=False)
            failed.append(h.name)
            continue
        with db_session(settings) as session:
            _, found = record_scan(session, h, scan)
        reboot = {True: "yes", False: "no", None: "unknown"}[scan.reboot_required]
        out.print(
            f"{h.name}: {scan.platform.ecosystem}, {len(scan.packages)} packages, "
            f"reboot required: {reboot}",
            markup=False,
        )
        if found is None:
            out.print("  first scan: nothing to compare with", markup=False)
            continue
        since = found.since.strftime("%Y-%m-%d %H:%M UTC") if found.since else "the last scan"
        if found.platform_before:
            out.print(f"  was {found.platform_before} at the last scan", markup=False)
        if found.empty:
            out.print(f"  no changes since {since}", markup=False)
            continue
        counts = ", ".join(f"{n} {what}" for what, n in found.counts().items())
        out.print(f"  changes since {since}: {counts}", markup=False)
        lines = found.lines()
        for line in lines[:20]:
            out.print(f"    {line}", markup=False)
        if len(lines) > 20:
            out.print(f"    … and {len(lines) - 20} more", markup=False)
    if failed:
        err.print(f"not scanned: {', '.join(failed)}", markup=False)
        raise typer.Exit(3)


# --- patches ----------------------------------------------------------------------------------


def _patch_outcome(state: Any) -> None:
    """Print a patch run's end; exit 4 when cancelled, 3 when the rollout failed."""
    if state.is_cancelled():
        out.print(f"cancelled: {state.message}", markup=False)
        raise typer.Exit(4)
    try:  # a failed rollout's state carries the outcome too
        outcome = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - no outcome: the state's message says why
        outcome = None
    if not isinstance(outcome, PatchOutcome):
        fail(f"the flow run ended {state.type.value}: {state.message}")
    out.print(
        f"plan {outcome.plan_id} ({outcome.plan_hash}): {outcome.status}, "
        f"{outcome.updates} update(s)",
        markup=False,
    )
    for host in outcome.hosts:
        out.print(
            f"  {host['host']}: {'ok' if host['ok'] else 'FAILED'}: {host['summary']}", markup=False
        )
    out.print(f"report: {outcome.report_path}", markup=False)
    for name, why in outcome.not_surveyed.items():
        err.print(f"{name}: not surveyed: {why}", markup=False)
    if outcome.status == "failed" or not state.is_completed() or outcome.not_surveyed:
        raise typer.Exit(3)


def _refuse_unless_alone(contract: str) -> None:
    settings = settings_or_exit()
    with db_session(settings) as session:
        active_contract(session, contract)
    require_prefect_api()
    try:
        check_patch_alone(contract, None)
    except Refused as exc:
        fail(f"nothing was run: {exc}")


@patches_app.command("run")
def patches_run(
    contract: Annotated[str, typer.Option(help="Contract code")],
    host: Annotated[list[str] | None, typer.Option(help="Only this host (repeatable)")] = None,
    mode: Annotated[
        str | None, typer.Option(help="report or apply (default: the contract's patching.mode)")
    ] = None,
    email: Annotated[bool, typer.Option(help="Mail the plan and the result")] = True,
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
) -> None:
    """The preventive cycle now: survey, plan, wait for the customer's review, then report
    only or apply. Exit 3 when the rollout failed or a host was not surveyed, 4 cancelled."""
    if mode not in (None, "report", "apply"):
        fail(f"--mode must be report or apply, not {mode!r}", 2)
    _refuse_unless_alone(contract)
    params = PatchParams(
        contract=contract,
        hosts=host or [],
        mode=mode,  # type: ignore[arg-type]
        email_report=email,
        requested_by=requested_by or _whoami(),
    )
    _patch_outcome(patch_advisory(params, return_state=True))


@patches_app.command("fix")
def patches_fix(
    contract: Annotated[str, typer.Option(help="Contract code")],
    host: Annotated[list[str], typer.Option(help="A host with the fault (repeatable)")],
    package: Annotated[list[str], typer.Option(help="A suspected package (repeatable)")],
    symptom: Annotated[str, typer.Option(help="What went wrong")],
    finding: Annotated[int | None, typer.Option(help="The finding this fixes")] = None,
    mode: Annotated[
        str | None, typer.Option(help="report or apply (default: the contract's patching.mode)")
    ] = None,
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
) -> None:
    """The responsive path: test the suspected packages' update on the staging hosts, send
    the test report for approval, apply it, resolve the finding."""
    if mode not in (None, "report", "apply"):
        fail(f"--mode must be report or apply, not {mode!r}", 2)
    _refuse_unless_alone(contract)
    params = PatchFixParams(
        contract=contract,
        hosts=host,
        packages=package,
        symptom=symptom,
        finding_id=finding,
        mode=mode,  # type: ignore[arg-type]
        requested_by=requested_by or _whoami(),
    )
    _patch_outcome(patch_fix(params, return_state=True))


@patches_app.command("revise")
def patches_revise(
    run: Annotated[str, typer.Argument(help="Flow run id (or prefix) of the rejected plan")],
    as_: Annotated[str, typer.Option("--as", help="Your name")],
    drop_host: Annotated[list[str] | None, typer.Option(help="Host to leave out")] = None,
    drop: Annotated[
        list[str] | None, typer.Option(help="Package to leave out: PKG or HOST:PKG")
    ] = None,
    defer: Annotated[
        list[str] | None, typer.Option(help="Package to defer: PKG or HOST:PKG")
    ] = None,
    note: Annotated[str, typer.Option(help="What you changed and why")] = "",
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel this patch cycle")] = False,
) -> None:
    """Revise a rejected patch plan and resubmit it for review (or cancel the cycle)."""
    _resume(
        run,
        "revision",
        {
            "action": "cancel" if cancel else "resubmit",
            "engineer": as_,
            "drop_hosts": drop_host or [],
            "drop_packages": drop or [],
            "defer": defer or [],
            "note": note,
        },
    )


@patches_app.command("show")
def patches_show(
    plan_id: Annotated[
        int | None, typer.Argument(help="A plan's id: its updates and steps")
    ] = None,
    contract: Annotated[str | None, typer.Option(help="Only this contract's plans")] = None,
) -> None:
    """The patch plans (newest first), or one plan: its updates, decision and every step."""
    settings = settings_or_exit()
    with db_session(settings) as session:
        if plan_id is None:
            query = select(PatchPlanRow).order_by(col(PatchPlanRow.id).desc()).limit(50)
            if contract:
                query = query.where(
                    PatchPlanRow.contract_id == active_contract(session, contract).id
                )
            table = Table("id", "run", "kind", "rev", "status", "updates", "hash", "decided by")
            for row in session.exec(query):
                plan = PatchPlanModel.model_validate(row.plan)
                table.add_row(
                    str(row.id),
                    str(row.run_id),
                    row.kind,
                    str(row.revision),
                    esc(row.status),
                    str(plan.items),
                    row.plan_hash[:19],
                    esc(row.approved_by or ""),
                )
            out.print(table)
            return
        one = session.get(PatchPlanRow, plan_id)
        if one is None:
            fail(f"no patch plan {plan_id}")
        row = one
        plan = PatchPlanModel.model_validate(row.plan)
        out.print(
            f"plan {row.id} of {plan.contract} ({row.kind}, revision {row.revision}): "
            f"{row.status}\nhash {row.plan_hash}"
            + (
                f"\napproved hash {row.approved_hash} by {row.approved_by}"
                if row.approved_hash
                else ""
            ),
            markup=False,
        )
        out.print(markdown_plain(render_plan_markdown(plan)), markup=False)
        steps = Table("when (UTC)", "host", "step", "by", "ok", "summary")
        for st in session.exec(
            select(PatchStep).where(PatchStep.plan_id == plan_id).order_by(col(PatchStep.id))
        ):
            steps.add_row(
                f"{st.started_at:%Y-%m-%d %H:%M:%S}",
                esc(st.host),
                st.step,
                esc(st.actor),
                "yes" if st.ok else "NO",
                esc(st.summary),
            )
        out.print(steps)


# --- serve ------------------------------------------------------------------------------------


@app.command("serve")
def serve_cmd() -> None:
    """Serve every active contract's flows on their cadences, the approval watchdog, and the
    approval page (unless UPKEEP_APPROVALS_WITH_SERVE=false)."""
    settings = settings_or_exit()
    require_prefect_api()
    with db_session(settings) as session:
        contracts = active_contracts(session)
        if not contracts:
            fail("no active contract: load an inventory first")
        deps = build_deployments(session)
        scheduled = [
            (f"{load_flow(s.flow).name}/{s.name}", s.cadence, s.timezone)
            for s in all_specs(contracts)
        ]
        for c in contracts:
            for process in unsupported(ContractView.of(c)):
                err.print(
                    f"{c.code}: {process} is not scheduled (no flow yet, or no backup sources)"
                )
    for paused in pause_gone({c.code for c in contracts}):
        out.print(f"paused {paused}: its contract is no longer active")
    for d in deps:
        out.print(
            f"serving {d.flow_name}/{d.name}"
            + (f" on {len(d.schedules)} schedule(s)" if d.schedules else "")
        )
    if settings.approvals.with_serve:
        try:
            serve_in_thread(settings)
        except PageError as exc:
            fail(str(exc))
        out.print(
            f"approval page on {settings.approvals.host}:{settings.approvals.port}; "
            f"links in e-mails point to {settings.approvals.base_url}",
            markup=False,
        )
    if settings.serve_check_seconds:
        expected = expected_runs(
            scheduled,
            {"approval-watchdog/upkeep": timedelta(minutes=settings.watchdog_minutes)},
            utcnow(),
        )
        threading.Thread(
            target=watch_scheduled_runs,
            args=(expected, settings.serve_check_seconds, _say, _shout),
            name="schedule-check",
            daemon=True,
        ).start()
    serve_all(deps)


def _say(message: str) -> None:
    out.print(message, markup=False)


def _shout(message: str) -> None:
    err.print(f"[bold red]{esc(message)}[/]")


@app.command("deploy")
def deploy_cmd(
    pool: Annotated[str, typer.Option(help="Prefect work pool (type process) the workers poll")],
    create_pool: Annotated[bool, typer.Option(help="Create the pool when missing")] = True,
    contract_limit: Annotated[
        int | None, typer.Option(help="At most this many host tasks of one contract at once")
    ] = None,
) -> None:
    """Register every active contract's deployments with a work pool, for `prefect worker start`.

    Idempotent: run it after every inventory change; deployments of contracts that are gone are
    paused, never deleted.
    """
    settings = settings_or_exit()
    require_prefect_api()
    if create_pool and ensure_process_pool(pool):
        out.print(f"created work pool {pool} (type process)")
    with db_session(settings) as session:
        report = deploy_to_pool(session, pool, contract_limit)
    for name in report.deployed:
        out.print(f"deployed {name} → pool {pool}")
    for name in report.paused:
        out.print(f"paused {name}: its contract is no longer active")
    for code, processes in report.unsupported.items():
        err.print(
            f"{code}: not scheduled (no flow yet, or no backup sources): {', '.join(processes)}"
        )
    for code, limit in report.limits.items():
        out.print(f"concurrency limit contract:{code} = {limit}")


@app.command("plan")
def plan_cmd(
    contract: Annotated[str, typer.Option(help="Contract code")],
    year: Annotated[int, typer.Option(help="Calendar year")],
) -> None:
    """Write the contract's annual service plan (HTML page and .ics calendar)."""
    settings = settings_or_exit()
    with db_session(settings) as session:
        try:
            plan = annual_plan(session=session, contract_code=contract, year=year)
        except RecordNotFound as exc:
            fail(str(exc))
    html, ics = write_plan_files(plan, settings)
    for title, count in sorted(plan_summary(plan).items()):
        out.print(f"{title}: {count}", markup=False)
    moved = [i for i in plan.items if i.moved]
    skipped = [i for i in plan.items if i.skipped]
    if moved or skipped:
        out.print(f"blackouts: {len(moved)} moved, {len(skipped)} skipped")
    out.print(f"plan: {html}", markup=False)
    out.print(f"calendar: {ics}", markup=False)


# --- demo -------------------------------------------------------------------------------------


@app.command("demo")
def demo() -> None:
    """The whole inspection of this machine: throwaway sshd, local Prefect and mail servers."""
    try:
        run_demo(out)
    except DemoError as exc:
        fail(str(exc))


def main() -> Any:

    try:
        for name, value in prefect_result_settings(get_settings()).items():
            os.environ.setdefault(name, value)
    except SettingsError:
        pass  # each command reports it, naming the variable
    try:
        return app()
    except SettingsError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)


def _flow_result(state: Any, kind: type[Any]) -> Any:
    """The outcome a flow run returned, or exit 1 with the state's message (4 cancelled)."""
    if state.is_cancelled():
        fail(f"cancelled: {state.message}", 4)
    try:
        outcome = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - no outcome: the state's message says why
        outcome = None
    if not isinstance(outcome, kind):
        fail(f"the flow run ended {state.type.value}: {state.message}")
    return outcome


@interfaces_app.command("check")
def interfaces_check(
    contract: Annotated[str, typer.Option(help="Contract code")],
    system: Annotated[list[str] | None, typer.Option(help="Only this system (repeatable)")] = None,
    email: Annotated[
        bool, typer.Option(help="Mail when an interface goes down or comes back")
    ] = True,
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
) -> None:
    """Probe the contract's smoke checks now: recorded, findings opened or resolved, the
    customer told of a change. Exit 3 when an interface fails."""
    settings_or_exit()
    params = MonitorParams(
        contract=contract,
        systems=system or [],
        email_alerts=email,
        requested_by=requested_by or _whoami(),
    )
    outcome: MonitorOutcome = _flow_result(
        interface_monitor(params, return_state=True), MonitorOutcome
    )
    for r in outcome.results:
        change = f" ({r.change})" if r.change else ""
        out.print(f"{r.interface}: {'ok' if r.ok else 'FAILED'}{change}: {r.reason}", markup=False)
    if outcome.failing:
        raise typer.Exit(3)


@interfaces_app.command("status")
def interfaces_status(
    contract: Annotated[str, typer.Option(help="Contract code")],
    hours: Annotated[float, typer.Option(min=0.01, max=24 * 31, help="The window")] = 24,
    email: Annotated[bool, typer.Option(help="Mail the status to the recipients")] = False,
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
) -> None:
    """The figures of the last HOURS from the recorded probes: availability, response times,
    outages. Exit 3 when an interface is down now or was not probed."""
    settings_or_exit()
    params = StatusParams(
        contract=contract, hours=hours, email_report=email, requested_by=requested_by or _whoami()
    )
    outcome: StatusOutcome = _flow_result(
        interface_status(params, return_state=True), StatusOutcome
    )
    out.print(outcome.headline, markup=False)
    for r in outcome.rows:
        if not r.probes:
            out.print(f"  {r.interface}: not probed", markup=False)
            continue
        speed = f", median {r.p50_ms:.0f} ms, p95 {r.p95_ms:.0f} ms" if r.p50_ms is not None else ""
        out.print(
            f"  {r.interface}: {r.availability}% of {r.probes} probes passed{speed}"
            + ("; DOWN NOW" if r.failing_now else ""),
            markup=False,
        )
        for o in r.outages:
            out.print(f"    outage: {o}", markup=False)
    if any(r.failing_now or not r.probes for r in outcome.rows):
        raise typer.Exit(3)


@releases_app.command("declare")
def releases_declare(
    contract: Annotated[str, typer.Option(help="Contract code")],
    system: Annotated[str, typer.Option(help="The system released (as in the inventory)")],
    version: Annotated[str, typer.Option(help="The version released")],
    changes: Annotated[
        Path, typer.Option(help="A text file with the change list", exists=True, dir_okay=False)
    ],
    window: Annotated[str, typer.Option(help="YYYY-MM-DD HH:MM in the contract's timezone")],
    test_report: Annotated[
        Path, typer.Option(help="The test report: HTML, PDF or Markdown", dir_okay=False)
    ],
    canary: Annotated[
        list[str] | None, typer.Option(help="A canary host (repeatable; default: the share)")
    ] = None,
    impact: Annotated[
        str, typer.Option(help="What the customer may notice during the window (the notice)")
    ] = "",
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
    start: Annotated[
        bool,
        typer.Option(
            help="Start the release's run now through its Prefect deployment (checks, the "
            "checklist, the test report's review, the approval)"
        ),
    ] = True,
) -> None:
    """Declare a release: validated against the inventory (the system's hosts and release
    settings, the window outside blackouts and in the future), stored with a copy of its test
    report, the customer's notice queued; then its run is started on the Prefect server that
    serves the contract (upkeep serve), which asks for the confirmations and approvals and
    has Prefect start the release itself before the window. Exit 1 naming every problem;
    nothing is stored then."""
    declared = Declared(
        contract=contract,
        system=system,
        version=version,
        changes=changes.read_text(encoding="utf-8", errors="replace"),
        window=window,
        test_report=test_report,
        canary=tuple(canary or ()),
        impact=impact,
    )
    settings = settings_or_exit()
    try:
        with db_session(settings) as session:
            tz = ZoneInfo(active_contract(session, contract).timezone)
            row, notice = declare_release(
                session=session, declared=declared, declared_by=requested_by or _whoami()
            )
            out.print(
                f"release {row.id}: {row.system} {row.version} at "
                f"{row.window_at.astimezone(tz).strftime('%Y-%m-%d %H:%M %Z')} on "
                f"{', '.join(row.hosts)} (canary: {', '.join(row.canary_hosts)})",
                markup=False,
            )
            out.print(
                f"test report kept: {row.test_report_path} (sha256 {row.test_report_sha256})",
                markup=False,
            )
            if notice is not None and notice.not_before is not None:
                due = notice.not_before.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
                out.print(
                    f"notice to {', '.join(notice.recipients)} queued in the outbox, due {due}",
                    markup=False,
                )
            else:
                err.print("no notice: the contract has no report recipients", markup=False)
            rid, code = row.id, active_contract(session, contract).code
    except ReleaseError as exc:
        fail(f"release not declared: {exc}")
    if start:
        assert rid is not None
        _start_release_review(rid, code, requested_by or _whoami())


def _start_release_review(release_id: int, contract_code: str, requested_by: str) -> None:
    """The declared release's run, started now on the contract's ``release`` deployment; when
    nothing serves it (or the Prefect API is down), how to start it instead."""
    deployment = f"release/{deployment_name(contract_code)}"
    url = PREFECT_API_URL.value()
    if not url or not api_healthy(url):
        err.print(
            f"release {release_id} not started: no Prefect API answers (PREFECT_API_URL="
            f"{url or 'unset'}); start it with `upkeep releases run {release_id}`, or from the "
            f"Prefect UI's {deployment} once upkeep serve runs",
            markup=False,
        )
        return
    try:
        run_id = release_run_at(release_id, contract_code, requested_by)
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
        err.print(
            f"release {release_id} not started: the Prefect API did not answer ({exc}); start "
            f"it with `upkeep releases run {release_id}` or from the UI's {deployment}",
            markup=False,
        )
        return
    if run_id is None:
        err.print(
            f"release {release_id} not started: nothing serves {deployment} (upkeep serve); "
            f"start it with `upkeep releases run {release_id}`",
            markup=False,
        )
        return
    out.print(
        f"release run {run_id} started ({deployment}): it asks for the checklist, the test "
        "report's review and the release approval, then Prefect starts the release before "
        "the window",
        markup=False,
    )


@releases_app.command("show")
def releases_show(
    contract: Annotated[str | None, typer.Option(help="Only this contract")] = None,
) -> None:
    """The declared releases, by window."""
    with db_session() as session:
        if contract:
            active_contract(session, contract)
        rows = list_releases(session=session, contract=contract)
        contracts = {c.id: c for c in session.exec(select(Contract))}
    if not rows:
        out.print("no releases declared", markup=False)
        return
    for r in rows:
        c = contracts[r.contract_id]
        when = local_time(r.window_at, c.timezone)
        out.print(
            f"{r.id}  {c.code}  {r.system} {r.version}  {when}  {r.status}  hosts "
            f"{', '.join(r.hosts)} (canary {', '.join(r.canary_hosts)})  declared by "
            f"{r.declared_by}  report {r.test_report_name} sha256 {r.test_report_sha256[:12]}",
            markup=False,
        )


@releases_app.command("run")
def releases_run(
    release_id: Annotated[int, typer.Argument(help="The declared release (releases show)")],
    soak_seconds: Annotated[
        float | None, typer.Option(min=0, help="Override the system's soak time")
    ] = None,
    email: Annotated[bool, typer.Option(help="Mail the result to the recipients")] = True,
    requested_by: Annotated[str | None, typer.Option("--as", help="Your name")] = None,
) -> None:
    """Run the declared release here: checks, the checklist confirmation, the customer's
    test-report review and the release approval (answered in the Prefect UI, by the mailed
    code or on the approval page); with the window more than an hour away the run ends
    approved and Prefect starts the release before the window (when upkeep serve serves the
    contract; else run this again within the hour before it); then canary, soak, the rest,
    verification, rollback on failure. Exit 0 released or approved, 3 rolled back or the
    rollback failed, 1 refused or stopped before releasing, 4 cancelled or rejected."""
    settings_or_exit()
    params = ReleaseParams(
        release_id=release_id,
        soak_seconds=soak_seconds,
        email=email,
        requested_by=requested_by or _whoami(),
    )
    outcome: ReleaseOutcome = _flow_result(release(params, return_state=True), ReleaseOutcome)
    out.print(f"release {outcome.release_id}: {outcome.status}: {outcome.outcome}", markup=False)
    if outcome.status not in ("released", "approved"):
        raise typer.Exit(3)


@releases_app.command("effect")
def releases_effect(
    release_id: Annotated[int, typer.Argument(help="The finished release (releases show)")],
    email: Annotated[bool, typer.Option(help="Mail the report to the recipients")] = True,
) -> None:
    """The release's effect report now: the key figures of the days before the release and of
    the days after it (smoke-check availability and response times, outages, findings opened,
    system-log errors) as an HTML report, an artifact and the customer's mail. A finished
    release schedules it by itself for effect_report_days later when upkeep serve serves the
    contract. Exit 1 when refused (no such release, not finished, nothing released)."""
    settings_or_exit()
    try:  # refused here without starting a flow run (or a temporary Prefect server)
        finished_release(release_id)
    except (Refused, LookupError) as exc:
        fail(f"no effect report: {exc.args[0] if exc.args else exc}")
    params = EffectParams(release_id=release_id, email=email)
    outcome: EffectOutcome = _flow_result(release_effect(params, return_state=True), EffectOutcome)
    out.print(outcome.headline, markup=False)
    out.print(f"report: {outcome.report_path}", markup=False)


if __name__ == "__main__":
    main()
