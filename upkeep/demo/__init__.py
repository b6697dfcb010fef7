"""``upkeep demo``: inspect this machine over a real, throwaway sshd, with no configuration.

It uses the normal settings (so the records land in the default SQLite database and can be read
afterwards with ``upkeep findings list --contract DEMO``), starts what it needs on free
loopback ports, and stops what it started.

Its throwaway servers live beside it (``upkeep.demo.sshd``, ``.mailsink``, ``.prefect_server``):
they ship with upkeep because ``upkeep demo`` needs them on a fresh machine, and the tests and
benchmarks start their servers with the same code, so what the demo runs is what is tested.
Nothing below the CLI imports them.
"""

from __future__ import annotations

import email as email_lib
import html
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from email import policy
from pathlib import Path
from typing import Any

import httpx
import yaml
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from rich.console import Console
from sqlmodel import Session, col, select

from upkeep.console import engine_or_exit, print_run_summary
from upkeep.db import session_scope
from upkeep.demo.mailsink import MailSink
from upkeep.demo.prefect_server import LocalPrefectServer, api_healthy
from upkeep.demo.sshd import (
    KeyPair,
    SshdError,
    ThrowawaySshd,
    free_loopback_port,
    generate_keypair,
)
from upkeep.flows.inspection import InspectionParams, quarterly_health_inspection
from upkeep.inventory import apply_inventory, parse_inventory
from upkeep.models import Approval
from upkeep.settings import Settings, get_settings, reset_settings
from upkeep.tasks.ssh import fetch_host_key, fingerprint_sha256, trust_host_key

DEMO_CONTRACT = "DEMO"


class DemoError(RuntimeError):
    pass


def demo_inventory(address: str, port: int, user: str, key_file: Path) -> str:
    """The demo's inventory: one customer, one contract, this machine as its only host."""
    doc = {
        "customers": [
            {
                "code": "demo",
                "name": "Demo Customer Ltd",
                "contracts": [
                    {
                        "code": DEMO_CONTRACT,
                        "name": "Demo maintenance contract",
                        "timezone": "Europe/Berlin",
                        "approvers": [{"name": "Dana Owner", "email": "dana@customer.example"}],
                        "backup_approver": {"name": "Lee Lead", "email": "lee@provider.example"},
                        "report_recipients": ["it@customer.example"],
                        "plan_requires_approval": True,
                        "hosts": [
                            {
                                "name": "this-machine",
                                "address": address,
                                "port": port,
                                "user": user,
                                "tags": ["demo"],
                                "role": "inspector",
                                "key_file": str(key_file),
                            }
                        ],
                    }
                ],
            }
        ]
    }
    return yaml.safe_dump(doc, sort_keys=False)


def drain_prefect_logs() -> None:
    """Send the logs Prefect still holds before the server they go to is stopped."""
    APILogWorker.drain_all(timeout=15)


def _prefect_api(stack: ExitStack, settings: Settings, console: Console) -> str:
    configured = os.environ.get("PREFECT_API_URL")
    if configured and api_healthy(configured):
        console.print(f"Prefect API: {configured} (already running)")
        return configured
    server = LocalPrefectServer(settings.data_dir / "prefect")
    console.print(f"starting a local Prefect server on {server.url} …")
    stack.enter_context(server)
    stack.callback(drain_prefect_logs)
    console.print(f"Prefect UI: {server.url}")
    return server.api_url


LINK_RE = re.compile(r"https?://[^\s\"'<>]+/a/[A-Za-z0-9_-]{43}")
CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
OUTCOME_RE = re.compile(r'<section id="outcome"[^>]*>\s*<h2>(.*?)</h2>', re.S)


def _link_in(mail: MailSink, email: str, timeout: float) -> tuple[Path, str]:
    """The approval mail sent to ``email`` and the personal link in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in list(mail.saved):
            msg = email_lib.message_from_bytes(path.read_bytes(), policy=policy.default)
            if email in str(msg["To"]):
                body = msg.get_body(preferencelist=("plain",))
                found = LINK_RE.search(body.get_content() if body else "")
                if found:
                    return path, found.group(0)
        time.sleep(0.2)
    raise DemoError(f"no approval link was mailed to {email}")


def _start_page(stack: ExitStack, console: Console, api_url: str) -> str:
    """``upkeep approvals serve`` on a free loopback port, as an operator starts it."""
    port = free_loopback_port()
    os.environ["UPKEEP_APPROVALS_PORT"] = str(port)
    reset_settings()
    base = get_settings().approvals.base_url
    env = dict(os.environ, PREFECT_API_URL=api_url)
    log = (get_settings().data_dir / "demo" / "approval-page.log").open("ab")
    stack.callback(log.close)
    proc = subprocess.Popen(
        [sys.executable, "-m", "upkeep.cli", "approvals", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()

    stack.callback(stop)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the approval page exited {proc.returncode}: see {log.name}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                console.print(f"approval page: {base} (upkeep approvals serve)")
                return base
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise DemoError("the approval page did not start")


def _approve_on_the_page(
    console: Console, engine: Any, bg: Any, mail: MailSink, timeout: float = 120.0
) -> None:
    """Wait for the plan gate, then decide it as the customer's owner does: open the link
    from her e-mail, read the plan, press Approve (the page's HTTP requests, no Prefect)."""
    deadline = time.monotonic() + timeout
    gate = None
    while gate is None and time.monotonic() < deadline:
        if not bg.is_alive():
            return
        with Session(engine) as db:
            gate = db.exec(select(Approval).where(col(Approval.decision).is_(None))).first()
        if gate is None:
            time.sleep(0.3)
    if gate is None:
        raise DemoError("the inspection never asked for plan approval")
    console.print("\n[bold]The flow is paused for plan approval.[/] What the approver sees:")
    console.print(gate.evidence, markup=False)
    path, link = _link_in(mail, "dana@customer.example", timeout)
    origin = link.split("/a/")[0]
    console.print(f"\nDana's approval e-mail with her personal link: {path}")
    console.print(f"Dana opens {origin}/a/<her token> and presses Approve …")
    with httpx.Client(timeout=timeout) as browser:
        page = browser.get(link)
        csrf = CSRF_RE.search(page.text)
        if page.status_code != 200 or csrf is None:
            raise DemoError(f"the approval page answered {page.status_code}")
        done = browser.post(
            link,
            data={"csrf": csrf.group(1), "decision": "approve", "comment": "approved in the demo"},
            headers={"origin": origin},
        )
    said = OUTCOME_RE.search(done.text)
    headline = html.unescape(said.group(1)) if said else f"HTTP {done.status_code}"
    console.print(f"the page says: {headline}", markup=False)
    if done.status_code != 200 or not headline.startswith("Accepted"):
        raise DemoError("the approval on the page failed")


def run_demo(console: Console) -> int:
    """Run the demo: plan, approval, sweep, report, e-mail. Returns the inspection run id."""
    settings = get_settings()
    demo_dir = settings.data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_or_exit(settings)
    console.print(f"database: {engine.url.render_as_string(hide_password=True)}")

    key_path = demo_dir / "client_ed25519"
    if not key_path.exists():
        generate_keypair(key_path, comment="upkeep-demo")
    with ExitStack() as stack:
        sshd = ThrowawaySshd(client_key=KeyPair(key_path))
        try:
            sshd.start()
        except SshdError as exc:
            raise DemoError(str(exc)) from None
        stack.callback(sshd.stop)
        console.print(f"throwaway sshd on {sshd.address}:{sshd.port} (pid {sshd.pid})")

        inventory_file = demo_dir / "inventory.yaml"
        inventory_file.write_text(demo_inventory(sshd.address, sshd.port, sshd.user, key_path))
        spec = parse_inventory(inventory_file.read_text(), str(inventory_file))
        with session_scope(engine) as db:
            report = apply_inventory(db, spec)
        console.print(f"inventory {inventory_file}: {'; '.join(report.lines())}")

        key = fetch_host_key(sshd.address, sshd.port, settings.ssh.connect_timeout)
        trust_host_key(settings.known_hosts_file, sshd.address, sshd.port, key)
        console.print(f"trusted host key {fingerprint_sha256(key)} in {settings.known_hosts_file}")

        mail = stack.enter_context(MailSink(demo_dir / "mail"))
        os.environ.update(
            {
                "UPKEEP_SMTP_HOST": "127.0.0.1",
                "UPKEEP_SMTP_PORT": str(mail.port),
                "UPKEEP_SMTP_TLS": "none",
                "UPKEEP_SMTP_USER": "",
                "UPKEEP_APPROVAL_POLL_SECONDS": "1",
            }
        )
        os.environ.pop("UPKEEP_SMTP_USER")
        reset_settings()
        console.print(f"local mail server on 127.0.0.1:{mail.port}, saving to {demo_dir / 'mail'}")

        api_url = _prefect_api(stack, settings, console)
        os.environ["UPKEEP_PREFECT_UI_URL"] = api_url.removesuffix("/api")
        reset_settings()
        params = InspectionParams(
            contract=DEMO_CONTRACT, email_report=True, requested_by="upkeep demo"
        )
        box: dict[str, Any] = {}

        def run() -> None:
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                box["state"] = quarterly_health_inspection(params, return_state=True)

        bg = threading.Thread(target=run, name="inspection", daemon=True)
        _start_page(stack, console, api_url)
        bg.start()
        _approve_on_the_page(console, engine, bg, mail)
        bg.join()
        state = box.get("state")
        if state is None or not state.is_completed():
            raise DemoError(
                f"the inspection ended {state.type.value if state else 'badly'}: "
                f"{state.message if state else ''}"
            )
        outcome = state.result()
        with session_scope(engine) as db:
            print_run_summary(db, outcome.run_id)
        if outcome.unreachable:
            raise DemoError(f"not reached: {', '.join(outcome.unreachable)}")
        console.print(f"\n[bold]report:[/] {outcome.report_path}")
        for path in mail.saved:
            console.print(f"[bold]e-mail sent:[/] {path}")
        console.print(f"findings: `upkeep findings list --contract {DEMO_CONTRACT}`")
        return int(outcome.run_id)
