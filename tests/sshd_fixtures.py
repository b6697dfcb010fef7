"""Real sshd servers for the end-to-end and flow tests (a pytest plugin).

Three throwaway sshd processes (one host key each) run for the whole session on loopback
ports, all accepting one client key. Each test builds its own known_hosts file with
``known_hosts_for`` to decide which of them it trusts.
"""

from __future__ import annotations

import getpass
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks.ssh import SshTarget, trust_host_key
from upkeep.settings import SshSettings
from upkeep.sshd import KeyPair, ThrowawaySshd, generate_keypair

SERVER_COUNT = 3


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """The key every throwaway sshd authorizes."""
    return generate_keypair(tmp_path_factory.mktemp("client") / "id_ed25519", "upkeep-e2e")


@pytest.fixture(scope="session")
def sshd_servers(client_key: KeyPair) -> Iterator[list[ThrowawaySshd]]:
    servers: list[ThrowawaySshd] = []
    try:
        for _ in range(SERVER_COUNT):
            servers.append(ThrowawaySshd(client_key=client_key).start())
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def sshd(sshd_servers: list[ThrowawaySshd]) -> ThrowawaySshd:
    return sshd_servers[0]


@pytest.fixture(scope="session")
def other_sshd(sshd_servers: list[ThrowawaySshd]) -> ThrowawaySshd:
    return sshd_servers[1]


@pytest.fixture
def known_hosts_for(tmp_path: Path) -> Callable[..., Path]:
    """``known_hosts_for(*servers)``: a fresh known_hosts file trusting exactly those servers."""
    counter = itertools.count()

    def make(*servers: ThrowawaySshd) -> Path:
        path = tmp_path / f"known_hosts_{next(counter)}"
        path.touch(mode=0o600)
        for server in servers:
            trust_host_key(path, server.address, server.port, server.host_key)
        return path

    return make


@pytest.fixture
def ssh_settings(client_key: KeyPair) -> SshSettings:
    """A tiny backoff, so retry tests take milliseconds; timeouts that survive a loaded CI."""
    return SshSettings(
        user=getpass.getuser(),
        key_file=client_key.private,
        connect_timeout=15,
        banner_timeout=15,
        auth_timeout=15,
        command_timeout=30,
        retries=2,
        retry_backoff=0.01,
    )


@pytest.fixture
def target_of() -> Callable[[ThrowawaySshd], SshTarget]:
    def make(server: ThrowawaySshd, **overrides: object) -> SshTarget:
        fields: dict[str, object] = {
            "name": f"sshd-{server.port}",
            "address": server.address,
            "port": server.port,
        }
        fields.update(overrides)
        return SshTarget(**fields)  # type: ignore[arg-type]

    return make
