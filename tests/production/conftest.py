"""Fixtures of the production-path tests: upkeep run the way the README runs it.

One real ``prefect server start`` process for the session (its own scheduler creates the
scheduled runs), and per test an ``upkeep serve`` process with its own data directory, mail
sink and inventory, whose host is one of the session's throwaway sshd servers.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.production.stack import Api, Mailbox, Served, ServeUpkeep, inventory
from tests.production.ui import chromium
from upkeep.demo.mailsink import MailSink
from upkeep.demo.prefect_server import LocalPrefectServer
from upkeep.demo.sshd import KeyPair, ThrowawaySshd, free_loopback_port


@pytest.fixture(scope="session")
def prefect_server_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalPrefectServer]:
    """``prefect server start`` on a free loopback port, as the README starts it."""
    with LocalPrefectServer(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture(scope="session")
def prod_api(prefect_server_process: LocalPrefectServer) -> Api:
    return Api(prefect_server_process.api_url)


def base_env(api_url: str, data_dir: Path, client_key: KeyPair, mail_port: int) -> dict[str, str]:
    """The environment an operator sets (README "Running an inspection for a customer"),
    with test-sized intervals; nothing of the test process's own Prefect or upkeep settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPKEEP_", "PREFECT_"))}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(data_dir / "prefect-client"),
            "UPKEEP_DATA_DIR": str(data_dir),
            "UPKEEP_SSH_USER": getpass.getuser(),
            "UPKEEP_SSH_KEY_FILE": str(client_key.private),
            "UPKEEP_SMTP_HOST": "127.0.0.1",
            "UPKEEP_SMTP_PORT": str(mail_port),
            "UPKEEP_SMTP_TLS": "none",
            "UPKEEP_PREFECT_UI_URL": api_url.removesuffix("/api"),
            "UPKEEP_APPROVAL_POLL_SECONDS": "1",
            "UPKEEP_WATCHDOG_MINUTES": "1",
            # How often `upkeep serve` asks for runs to start (Prefect's default: 10 s); every
            # resume is a new run start, so this sets the pace of the gate tests.
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            # The approval page `upkeep serve` starts, on a free port of its own.
            "UPKEEP_APPROVALS_PORT": str(free_loopback_port()),
        }
    )
    return env


@pytest.fixture
def operator_env(prod_api: Api, client_key: KeyPair) -> Callable[[Path, int], dict[str, str]]:
    """``operator_env(data_dir, mail_port)``: :func:`base_env` against the session's server,
    for a test that starts its ``upkeep`` processes itself (tests/production/test_upgrade.py)."""
    return lambda data_dir, mail_port: base_env(prod_api.url, data_dir, client_key, mail_port)


@pytest.fixture
def serve_upkeep(
    tmp_path: Path, prod_api: Api, client_key: KeyPair, sshd: ThrowawaySshd
) -> Iterator[ServeUpkeep]:
    """``serve_upkeep(contract, host_fields=None, **contract_fields)``: load an inventory whose
    one host (web1, with ``host_fields``) is the session's sshd, trust its key with ``upkeep
    hosts trust``, start ``upkeep serve``; stopped (and its deployments removed from the
    server) after the test."""
    started: list[Served] = []
    sinks: list[MailSink] = []

    def start(
        contract: str,
        *,
        env: dict[str, str] | None = None,
        api: Api | None = None,
        serve: bool = True,
        host_fields: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Served:
        api = api or prod_api
        workdir = tmp_path / contract.lower()
        workdir.mkdir()
        sink = MailSink(workdir / "mail").__enter__()
        sinks.append(sink)
        served = Served(
            api=api,
            env=base_env(api.url, workdir / "data", client_key, sink.port) | (env or {}),
            workdir=workdir,
            mailbox=Mailbox(workdir / "mail"),
            contract=contract,
        )
        started.append(served)
        host = {"name": "web1", "address": sshd.address, "port": sshd.port, "tags": ["web"]}
        host |= host_fields or {}
        (workdir / "inventory.yaml").write_text(inventory(contract, [host], **fields))
        for args in (
            ("inventory", "load", "inventory.yaml"),
            ("hosts", "trust", "web1", "--contract", contract, "--yes"),
        ):
            done = served.upkeep(*args)
            assert done.returncode == 0, f"upkeep {' '.join(args)}: {done.stdout}{done.stderr}"
        return served.serve() if serve else served

    yield start
    for served in started:
        served.stop()
    for sink in sinks:
        sink.__exit__(None, None, None)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Selenium through Debian's chromedriver (installed
    by scripts/setup); no driver or browser is ever downloaded."""
    driver = chromium()
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
