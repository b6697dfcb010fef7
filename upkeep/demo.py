"""``upkeep demo``: inspect this machine over a real, throwaway sshd, with no configuration.

It uses the normal settings (so the records land in the default SQLite database and can be read
afterwards with ``upkeep findings list --contract DEMO``), starts what it needs on free
loopback ports, and stops what it started.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import yaml
from rich.console import Console

from upkeep.settings import Settings, get_settings

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
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=15)


def _prefect_api(stack: ExitStack, settings: Settings, console: Console) -> str:
    from upkeep.prefect_server import LocalPrefectServer, api_healthy

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


def run_demo(console: Console, keep: bool = False) -> int:
    """Run the demo; returns the inspection run id."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.sweep import SweepParams, run_sweep
    from tasks.ssh import fetch_host_key, fingerprint_sha256, trust_host_key
    from upkeep.cli import engine_or_exit, print_run_summary
    from upkeep.db import session_scope
    from upkeep.inventory import apply_inventory, parse_inventory
    from upkeep.sshd import SshdError, ThrowawaySshd, generate_keypair

    settings = get_settings()
    demo_dir = settings.data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_or_exit(settings)
    console.print(f"database: {engine.url.render_as_string(hide_password=True)}")

    key_path = demo_dir / "client_ed25519"
    if not key_path.exists():
        generate_keypair(key_path, comment="upkeep-demo")
    from upkeep.sshd import KeyPair

    client_key = KeyPair(key_path)
    with ExitStack() as stack:
        sshd = ThrowawaySshd(client_key=client_key)
        try:
            sshd.start()
        except SshdError as exc:
            raise DemoError(str(exc)) from None
        if not keep:
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
        console.print(
            f"trusted host key {fingerprint_sha256(key)} in {settings.known_hosts_file}"
        )

        api_url = _prefect_api(stack if not keep else ExitStack(), settings, console)
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            summary = run_sweep(SweepParams(contract=DEMO_CONTRACT, kind="demo",
                                            requested_by="upkeep demo"))
        with session_scope(engine) as db:
            print_run_summary(db, summary.run_id)
        if summary.unreachable:
            raise DemoError(f"not reached: {', '.join(summary.unreachable)}")
        console.print(
            f"run {summary.run_id} stored; see `upkeep findings list --contract {DEMO_CONTRACT}`"
        )
        return summary.run_id
