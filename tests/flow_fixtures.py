"""Fixtures for flow tests (a pytest plugin).

The session's Prefect test server, real sshd hosts, a fresh upkeep database per test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlmodel import Session

from tests.polling import wait_until
from tests.smtp_fixtures import SmtpServer
from upkeep.demo.sshd import KeyPair, ThrowawaySshd, free_loopback_port
from upkeep.inventory import apply_inventory, parse_inventory
from upkeep.settings import Settings, reset_settings
from upkeep.tasks.ssh import trust_host_key

APPROVERS = [
    {"name": "Alice Owner", "email": "alice@acme.example"},
    {"name": "Paul Lead", "email": "paul@provider.example"},
]


CODE_RE = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}\b")


def codes_sent(server: SmtpServer, email: str) -> list[str]:
    """The one-time codes mailed to ``email`` so far, oldest first."""
    found = []
    for mail in list(server.handler.received):
        if email in mail.rcpt_tos:
            body = mail.message().get_body(preferencelist=("plain",))
            assert body is not None
            found += CODE_RE.findall(body.get_content())[:1]
    return found


def wait_for_code(server: SmtpServer, email: str, nth: int = 1, timeout: float = 60) -> str:
    """Block until the ``nth`` code for ``email`` arrived; return it."""

    def enough() -> list[str] | None:
        codes = codes_sent(server, email)
        return codes if len(codes) >= nth else None

    codes = wait_until(f"code #{nth} mailed to {email}", enough, timeout)
    return str(codes[nth - 1])


@pytest.fixture
def flow_env(
    prefect_server: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    client_key: KeyPair,
    smtp_server: SmtpServer,
) -> Iterator[Settings]:
    """Settings for flows: fast approval polling, the test client key, short SSH timeouts,
    and a real SMTP server for approval codes and reports."""
    monkeypatch.setenv("UPKEEP_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("UPKEEP_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("UPKEEP_SMTP_TLS", "none")
    monkeypatch.setenv("UPKEEP_APPROVAL_POLL_SECONDS", "1")
    monkeypatch.setenv("UPKEEP_SSH_KEY_FILE", str(client_key.private))
    monkeypatch.setenv("UPKEEP_SSH_RETRIES", "1")
    monkeypatch.setenv("UPKEEP_SSH_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("UPKEEP_SSH_CONNECT_TIMEOUT", "5")
    reset_settings()
    from upkeep.settings import get_settings

    yield get_settings()
    reset_settings()


def host_entry(name: str, server: ThrowawaySshd | None, **extra: Any) -> dict[str, Any]:
    """An inventory host for a throwaway sshd, or for a closed port when ``server`` is None."""
    if server is None:
        entry = {"name": name, "address": "127.0.0.1", "port": free_loopback_port()}
    else:
        entry = {"name": name, "address": server.address, "port": server.port, "user": server.user}
    entry.update(extra)
    return entry


def inventory_text(hosts: list[dict[str, Any]], code: str = "ACME", **contract: Any) -> str:
    doc = {
        "customers": [
            {
                "code": "acme",
                "name": "ACME Retail",
                "contracts": [
                    {
                        "code": code,
                        "name": "ACME managed operations",
                        "timezone": "Europe/Berlin",
                        "approvers": APPROVERS,
                        "report_recipients": ["it@acme.example"],
                        "hosts": hosts,
                        **contract,
                    }
                ],
            }
        ]
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _apply_and_trust(
    engine: sa.Engine,
    known_hosts: Path,
    hosts: list[dict[str, Any]],
    trust: list[ThrowawaySshd],
    contract: dict[str, Any],
) -> None:
    with Session(engine) as s:
        apply_inventory(s, parse_inventory(inventory_text(hosts, **contract)))
        s.commit()
    for server in trust:
        trust_host_key(known_hosts, server.address, server.port, server.host_key)


@pytest.fixture
def load_inventory(engine: sa.Engine, flow_env: Settings) -> Callable[..., None]:
    """``load_inventory(hosts, trust=[servers], **contract)``: load it and trust those keys."""

    def load(
        hosts: list[dict[str, Any]], trust: list[ThrowawaySshd] | None = None, **contract: Any
    ) -> None:
        _apply_and_trust(engine, flow_env.known_hosts_file, hosts, trust or [], contract)

    return load


@pytest.fixture
def load_inventory_on(
    flow_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., sa.Engine]:
    """``load_inventory_on(url, hosts, trust=[...])``: point upkeep at ``url`` and load there."""
    from upkeep.db import make_engine, upgrade
    from upkeep.settings import get_settings

    def load(
        url: str,
        hosts: list[dict[str, Any]],
        trust: list[ThrowawaySshd] | None = None,
        **contract: Any,
    ) -> sa.Engine:
        monkeypatch.setenv("UPKEEP_DATABASE_URL", url)
        reset_settings()
        engine = make_engine(get_settings().db_url)
        upgrade(engine)
        _apply_and_trust(engine, flow_env.known_hosts_file, hosts, trust or [], contract)
        return engine

    return load
