"""Hosts that hang, with real sshd processes stopped by SIGSTOP: every wait ends in its bound.

Timeouts are short here (a few seconds) so that each test measures the bound it states; a
loaded machine may add a few seconds of scheduling on top (``SLACK``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.polling import wait_until
from tests.sshd_fixtures import Freezer, SilentListener, descendants
from upkeep.demo.sshd import ThrowawaySshd
from upkeep.settings import SshSettings
from upkeep.tasks.ssh import (
    CommandTimeout,
    ConnectTimeout,
    HostNotAnswering,
    SessionAborted,
    SshSession,
    SshTarget,
    command_bound,
    connect_bound,
    session_group,
)

pytestmark = pytest.mark.e2e

SLACK = 5.0
"""Seconds a loaded test machine may add to a stated bound."""

TargetOf = Callable[..., SshTarget]
KnownHostsFor = Callable[..., Path]


@pytest.fixture
def short(ssh_settings: SshSettings) -> SshSettings:
    return ssh_settings.model_copy(
        update={
            "connect_timeout": 3,
            "banner_timeout": 2,
            "auth_timeout": 3,
            "channel_timeout": 2,
            "command_timeout": 4,
            "retries": 1,
        }
    )


def _elapsed_since(begun: float) -> float:
    return time.monotonic() - begun


def test_a_host_frozen_after_login_is_a_timeout_within_the_bound(
    own_sshd, freezer: Freezer, target_of: TargetOf, known_hosts_for: KnownHostsFor, short
) -> None:
    server = own_sshd()
    with SshSession(target_of(server), short, known_hosts_for(server)) as session:
        assert session.run("echo up").stdout == "up\n"
        assert freezer.stop_sessions(server)  # the per-connection sshd, logged in
        begun = time.monotonic()
        with pytest.raises(HostNotAnswering) as stopped:
            session.run("echo again")
        assert _elapsed_since(begun) <= command_bound(short) + SLACK
        assert not session.connected
    assert stopped.value.kind == "timeout" and stopped.value.transient
    assert "stopped answering" in str(stopped.value)
    assert f"{server.address}:{server.port}" in str(stopped.value)


def test_a_host_frozen_while_a_command_runs_is_told_from_a_slow_command(
    own_sshd, freezer: Freezer, target_of: TargetOf, known_hosts_for: KnownHostsFor, short
) -> None:
    server = own_sshd()
    assert server.pid is not None

    def freeze_once_the_command_runs() -> None:
        def running() -> bool:
            return any(b"sleep" in _cmdline(pid) for pid in descendants(server.pid or 0))

        wait_until("the remote sleep to start", running, timeout=30)
        freezer.stop_sessions(server)

    with SshSession(target_of(server), short, known_hosts_for(server)) as session:
        freezing = threading.Thread(target=freeze_once_the_command_runs)
        freezing.start()
        begun = time.monotonic()
        with pytest.raises(HostNotAnswering) as stopped:
            session.run("sleep 60", timeout=3)
        freezing.join()
        assert _elapsed_since(begun) <= command_bound(short, 3) + SLACK
    assert "keepalive" in str(stopped.value)


def test_a_slow_command_on_a_host_that_answers_is_a_command_timeout(
    sshd: ThrowawaySshd, target_of: TargetOf, known_hosts_for: KnownHostsFor, short
) -> None:
    with SshSession(target_of(sshd), short, known_hosts_for(sshd)) as session:
        begun = time.monotonic()
        with pytest.raises(CommandTimeout):
            session.run("sleep 60", timeout=1)
        assert _elapsed_since(begun) <= command_bound(short, 1) + SLACK
        assert session.connected and session.run("echo on").stdout == "on\n"


def test_sftp_on_a_frozen_host_is_a_timeout(
    own_sshd, freezer: Freezer, target_of: TargetOf, known_hosts_for: KnownHostsFor, short
) -> None:
    server = own_sshd()
    with SshSession(target_of(server), short, known_hosts_for(server)) as session:
        freezer.stop_sessions(server)
        begun = time.monotonic()
        with pytest.raises(HostNotAnswering, match="SFTP"):
            session.open_sftp()
        assert _elapsed_since(begun) <= short.channel_timeout + SLACK


def test_a_listener_stopped_before_the_connection_is_a_timeout_not_protocol(
    own_sshd, freezer: Freezer, target_of: TargetOf, known_hosts_for: KnownHostsFor, short
) -> None:
    server = own_sshd()
    freezer.stop_listener(server)  # the kernel still completes the TCP handshake
    session = SshSession(target_of(server), short, known_hosts_for(server))
    begun = time.monotonic()
    with pytest.raises(ConnectTimeout) as failed:
        session.connect()
    assert _elapsed_since(begun) <= connect_bound(short) + SLACK
    assert failed.value.kind == "timeout" and session.attempts == 2
    assert "no SSH banner" in str(failed.value)


def test_a_silent_listener_is_a_retried_timeout_and_logs_no_paramiko_traceback(
    silent_listener: SilentListener, short, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = SshTarget(name="mute", address=silent_listener.address, port=silent_listener.port)
    session = SshSession(target, short, tmp_path / "known_hosts")
    begun = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(ConnectTimeout) as failed:
        session.connect()
    assert _elapsed_since(begun) <= connect_bound(short) + SLACK
    assert failed.value.kind == "timeout" and failed.value.transient
    assert session.attempts == 2 and failed.value.attempts == 2
    assert "no SSH banner" in str(failed.value)
    assert silent_listener.accepted  # it really accepted, then said nothing
    assert "Traceback" not in caplog.text and "Exception (client)" not in caplog.text
    # The one log line is upkeep's own retry warning.
    logged = [(r.name, "retrying" in r.getMessage()) for r in caplog.records]
    assert logged == [("upkeep.tasks.ssh", True)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_aborting_the_group_ends_a_session_waiting_on_a_frozen_host_at_once(
    own_sshd, freezer: Freezer, target_of: TargetOf, known_hosts_for: KnownHostsFor, short
) -> None:
    patient = short.model_copy(update={"channel_timeout": 120, "command_timeout": 120})
    server = own_sshd()
    outcome: list[BaseException] = []
    connected = threading.Event()

    def inspect() -> None:
        try:
            with SshSession(target_of(server), patient, known_hosts_for(server)) as session:
                connected.set()
                freezer.stop_sessions(server)
                session.run("echo never")
        except BaseException as exc:
            outcome.append(exc)

    with pytest.raises(KeyboardInterrupt), session_group():
        # Prefect runs each task in a copy of the submitter's context; so does this thread.
        worker = threading.Thread(target=contextvars.copy_context().run, args=(inspect,))
        worker.start()
        assert connected.wait(30)
        wait_until("the session to be frozen", lambda: freezer.stopped, timeout=30)
        begun = time.monotonic()
        raise KeyboardInterrupt  # what SIGTERM's TerminationSignal does to the flow's thread
    worker.join(timeout=SLACK)
    assert not worker.is_alive() and _elapsed_since(begun) <= SLACK
    assert len(outcome) == 1 and isinstance(outcome[0], SessionAborted)


def test_aborting_the_group_ends_a_connect_waiting_for_a_banner(
    silent_listener: SilentListener, short, tmp_path: Path
) -> None:
    patient = short.model_copy(update={"banner_timeout": 120, "retries": 3})
    target = SshTarget(name="mute", address=silent_listener.address, port=silent_listener.port)
    outcome: list[BaseException] = []
    with session_group() as group:
        session = SshSession(target, patient, tmp_path / "known_hosts")

        def connect() -> None:
            try:
                session.connect()
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=contextvars.copy_context().run, args=(connect,))
        worker.start()
        wait_until("the connection to be accepted", lambda: silent_listener.accepted, timeout=30)
        begun = time.monotonic()
        group.abort("test stops the run")
        worker.join(timeout=SLACK)
        with pytest.raises(SessionAborted):  # a session opened afterwards does not connect
            SshSession(target, patient, tmp_path / "known_hosts").connect()
    assert not worker.is_alive() and _elapsed_since(begun) <= SLACK
    assert len(outcome) == 1 and isinstance(outcome[0], SessionAborted)
    assert session.attempts == 1  # an aborted session is not retried
