"""Real sshd servers for the end-to-end and flow tests (a pytest plugin).

Three throwaway sshd processes (one host key each) run for the whole session on loopback
ports, all accepting one client key. Each test builds its own known_hosts file with
``known_hosts_for`` to decide which of them it trusts.

Hosts that hang: ``own_sshd`` starts a throwaway sshd for one test (to be frozen without
harming the shared ones), ``freezer`` stops sshd processes with SIGSTOP (the listener before
a connection: no banner; every per-connection child after login: a session that stops
answering) and always resumes and ends them in teardown, and ``silent_listener`` accepts TCP
connections and never says a word.
"""

from __future__ import annotations

import getpass
import itertools
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from tests.polling import POLL_INTERVAL
from upkeep.demo.sshd import KeyPair, ThrowawaySshd, generate_keypair
from upkeep.settings import SshSettings
from upkeep.tasks.ssh import SshTarget, trust_host_key

SERVER_COUNT = 3
SSH_DEFAULTS = SshSettings(
    connect_timeout=10,
    banner_timeout=15,
    auth_timeout=15,
    channel_timeout=15,
    command_timeout=60,
    retries=2,
    retry_backoff=1.0,
)
"""The SSH settings' defaults, written out so that no UPKEEP_SSH_* variable or .env changes
them under a test (the bounds the README states are for these)."""


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


# -- hosts that hang ---------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: sshd forks one child per connection, which forks more."""
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


class Freezer:
    """Stops sshd processes with SIGSTOP; :meth:`thaw` resumes (SIGCONT) and ends them."""

    def __init__(self) -> None:
        self.stopped: set[int] = set()
        self._per_connection: set[int] = set()
        self._watchers: list[tuple[threading.Event, threading.Thread]] = []

    def _stop(self, pid: int, per_connection: bool) -> None:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return
        self.stopped.add(pid)
        if per_connection:
            self._per_connection.add(pid)

    def stop_listener(self, server: ThrowawaySshd) -> None:
        """Freeze the listening sshd: the kernel still accepts connections, no banner comes."""
        assert server.pid is not None
        self._stop(server.pid, per_connection=False)

    def stop_sessions(self, server: ThrowawaySshd) -> list[int]:
        """Freeze every per-connection sshd process of ``server`` (logged-in sessions)."""
        assert server.pid is not None
        pids = descendants(server.pid)
        for pid in pids:
            self._stop(pid, per_connection=True)
        return pids

    def stop_sessions_after_login(self, server: ThrowawaySshd) -> None:
        """From now on, freeze ``server``'s sessions as soon as sshd logged a login (needs
        ``log_level="INFO"``): a host that hangs right after login."""
        done = threading.Event()

        def watch() -> None:
            seen = server.logins()
            while not done.wait(POLL_INTERVAL / 10):
                if server.logins() > seen:
                    seen = server.logins()
                    self.stop_sessions(server)

        thread = threading.Thread(target=watch, name=f"freeze-{server.port}", daemon=True)
        thread.start()
        self._watchers.append((done, thread))

    def thaw(self) -> None:
        """Resume everything stopped; per-connection processes are then terminated."""
        for done, thread in self._watchers:
            done.set()
            thread.join()
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
                if pid in self._per_connection:
                    os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.stopped.clear()
        self._per_connection.clear()


@pytest.fixture
def freezer() -> Iterator[Freezer]:
    frozen = Freezer()
    try:
        yield frozen
    finally:
        frozen.thaw()


@pytest.fixture
def own_sshd(client_key: KeyPair, freezer: Freezer) -> Iterator[Callable[[], ThrowawaySshd]]:
    """``own_sshd()``: a throwaway sshd for this test only (logging logins), stopped after it
    (after the ``freezer`` resumed whatever it stopped)."""
    started: list[ThrowawaySshd] = []

    def start() -> ThrowawaySshd:
        server = ThrowawaySshd(client_key=client_key, log_level="INFO").start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        freezer.thaw()
        for server in started:
            server.stop()


class SilentListener:
    """A loopback TCP port that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.address, self.port = "127.0.0.1", int(self._sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            self.accepted.append(conn)

    def close(self) -> None:
        with suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()
