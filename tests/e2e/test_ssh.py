"""tasks.ssh against real sshd processes on loopback ports (see conftest.py)."""

from __future__ import annotations

import logging
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest

from upkeep.demo.sshd import KeyPair, ThrowawaySshd, free_loopback_port, generate_keypair
from upkeep.settings import SshSettings
from upkeep.tasks.ssh import (
    AuthFailed,
    ChangedHostKey,
    CommandFailed,
    CommandTimeout,
    ConnectionRefused,
    ConnectTimeout,
    DnsError,
    SshProtocolError,
    SshSession,
    SshTarget,
    UnknownHostKey,
    connect,
    fetch_host_key,
    fingerprint_sha256,
    trust_host_key,
)

pytestmark = pytest.mark.e2e

MiB4 = 4 * 1024 * 1024

TargetOf = Callable[..., SshTarget]
KnownHostsFor = Callable[..., Path]


def test_command_succeeds_with_separate_streams(
    sshd: ThrowawaySshd, target_of: TargetOf, known_hosts_for: KnownHostsFor, ssh_settings
) -> None:
    with connect(target_of(sshd), ssh_settings, known_hosts_for(sshd)) as session:
        result = session.run("echo out; echo err >&2; printf 'caf\\303\\251 \\377'")
    assert result.exit_code == 0
    assert result.stdout == "out\ncafé \ufffd"
    assert result.stderr == "err\n"
    assert result.started_at is not None and result.finished_at is not None
    assert result.started_at.tzinfo is UTC
    assert result.started_at <= result.finished_at


def test_stdin_reaches_the_command_and_is_closed(
    sshd: ThrowawaySshd, target_of: TargetOf, known_hosts_for: KnownHostsFor, ssh_settings
) -> None:
    with connect(target_of(sshd), ssh_settings, known_hosts_for(sshd)) as session:
        result = session.run('IFS= read -r a; IFS= read -r b; echo "$b/$a"; cat', stdin=b"1\n2\n")
    assert (result.exit_code, result.stdout) == (0, "2/1\n")  # cat saw EOF: it did not hang


def test_nonzero_exit_is_returned_and_run_checked_raises(
    sshd: ThrowawaySshd, target_of: TargetOf, known_hosts_for: KnownHostsFor, ssh_settings
) -> None:
    with connect(target_of(sshd), ssh_settings, known_hosts_for(sshd)) as session:
        result = session.run("echo partial; echo 'no such unit' >&2; exit 3")
        assert (result.exit_code, result.stdout, result.stderr) == (
            3,
            "partial\n",
            "no such unit\n",
        )
        with pytest.raises(CommandFailed) as failed:
            session.run_checked("echo 'disk on fire' >&2; exit 4")
        assert session.run_checked("exit 1", ok_exit_codes={0, 1}).exit_code == 1
    assert failed.value.exit_code == 4
    assert "disk on fire" in failed.value.stderr_tail
    assert failed.value.kind == "command_failed" and not failed.value.transient
    assert f"{sshd.address}:{sshd.port}" in str(failed.value)


def test_unknown_host_key_is_refused_before_any_command(
    sshd: ThrowawaySshd,
    other_sshd: ThrowawaySshd,
    target_of: TargetOf,
    known_hosts_for: KnownHostsFor,
    ssh_settings,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    target = target_of(sshd, name="web1")
    known_hosts = known_hosts_for(other_sshd)
    with (
        pytest.raises(UnknownHostKey) as refused,
        connect(target, ssh_settings, known_hosts) as session,
    ):
        session.run(f"touch {marker}")
    assert not marker.exists()
    message = str(refused.value)
    assert f"{sshd.address}:{sshd.port}" in message
    assert "ssh-ed25519" in message
    assert fingerprint_sha256(sshd.host_key) in message
    assert "upkeep hosts trust web1" in message
    assert refused.value.kind == "host_key_unknown" and refused.value.attempts == 1


def test_missing_known_hosts_trusts_nothing_and_creates_its_directory(
    sshd: ThrowawaySshd, target_of: TargetOf, ssh_settings, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "fresh" / "known_hosts"
    with pytest.raises(UnknownHostKey):
        connect(target_of(sshd), ssh_settings, known_hosts)
    assert known_hosts.parent.is_dir()
    assert not known_hosts.exists()


def test_changed_host_key_is_refused_before_any_command(
    sshd: ThrowawaySshd,
    other_sshd: ThrowawaySshd,
    target_of: TargetOf,
    ssh_settings,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    known_hosts = tmp_path / "known_hosts"
    trust_host_key(known_hosts, sshd.address, sshd.port, other_sshd.host_key)
    with (
        pytest.raises(ChangedHostKey) as refused,
        connect(target_of(sshd), ssh_settings, known_hosts) as session,
    ):
        session.run(f"touch {marker}")
    assert not marker.exists()
    message = str(refused.value)
    assert "man-in-the-middle" in message
    assert fingerprint_sha256(other_sshd.host_key) in message  # expected
    assert fingerprint_sha256(sshd.host_key) in message  # offered
    assert refused.value.kind == "host_key_changed" and refused.value.attempts == 1


def test_closed_port_is_refused_after_every_retry(
    ssh_settings: SshSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ssh_settings.model_copy(update={"retries": 3})
    target = SshTarget(name="closed", address="127.0.0.1", port=free_loopback_port())
    session = SshSession(target, settings, tmp_path / "known_hosts")
    with (
        caplog.at_level(logging.WARNING, logger="upkeep.tasks.ssh"),
        pytest.raises(ConnectionRefused) as refused,
    ):
        session.connect()
    assert session.attempts == 4
    assert refused.value.attempts == 4
    assert refused.value.transient and refused.value.kind == "refused"
    assert f"127.0.0.1:{target.port}" in str(refused.value)
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 3


def test_wrong_client_key_fails_auth_without_retry(
    sshd: ThrowawaySshd,
    target_of: TargetOf,
    known_hosts_for: KnownHostsFor,
    ssh_settings: SshSettings,
    tmp_path: Path,
) -> None:
    stranger = generate_keypair(tmp_path / "stranger")
    settings = ssh_settings.model_copy(update={"key_file": stranger.private, "retries": 3})
    session = SshSession(target_of(sshd), settings, known_hosts_for(sshd))
    with pytest.raises(AuthFailed) as failed:
        session.connect()
    assert session.attempts == 1 and failed.value.attempts == 1
    assert not failed.value.transient


def test_target_key_file_overrides_settings(
    sshd: ThrowawaySshd,
    target_of: TargetOf,
    known_hosts_for: KnownHostsFor,
    ssh_settings: SshSettings,
    tmp_path: Path,
) -> None:
    stranger = generate_keypair(tmp_path / "stranger")
    settings = ssh_settings.model_copy(update={"key_file": stranger.private})
    target = target_of(sshd, key_file=ssh_settings.key_file)
    with connect(target, settings, known_hosts_for(sshd)) as session:
        assert session.run("echo ok").stdout == "ok\n"


def test_command_outliving_its_timeout_is_stopped(
    sshd: ThrowawaySshd, target_of: TargetOf, known_hosts_for: KnownHostsFor, ssh_settings
) -> None:
    with connect(target_of(sshd), ssh_settings, known_hosts_for(sshd)) as session:
        begun = time.monotonic()
        with pytest.raises(CommandTimeout) as timed_out:
            session.run("sleep 30", timeout=1)
        assert time.monotonic() - begun < 5
        assert timed_out.value.kind == "command_timeout"
        assert session.run("echo still here").stdout == "still here\n"


def test_large_output_on_both_streams_arrives_complete(
    sshd: ThrowawaySshd, target_of: TargetOf, known_hosts_for: KnownHostsFor, ssh_settings
) -> None:
    command = (
        f"head -c {MiB4} /dev/zero | tr '\\0' a & head -c {MiB4} /dev/zero | tr '\\0' b >&2 & wait"
    )
    with connect(target_of(sshd), ssh_settings, known_hosts_for(sshd)) as session:
        result = session.run(command, timeout=45)
    assert result.exit_code == 0
    assert len(result.stdout) == MiB4 and set(result.stdout) == {"a"}
    assert len(result.stderr) == MiB4 and set(result.stderr) == {"b"}


def test_fetched_fingerprint_matches_ssh_keygen(sshd: ThrowawaySshd) -> None:
    key = fetch_host_key(sshd.address, sshd.port, timeout=5)
    keygen = subprocess.run(
        ["ssh-keygen", "-lf", str(sshd.host_key_pair.public)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert fingerprint_sha256(key) == keygen.stdout.split()[1]


def test_trusting_a_fetched_key_lets_the_session_connect(
    sshd: ThrowawaySshd,
    other_sshd: ThrowawaySshd,
    target_of: TargetOf,
    ssh_settings,
    tmp_path: Path,
) -> None:
    known_hosts = tmp_path / "data" / "known_hosts"
    for server in (other_sshd, sshd):
        trust_host_key(
            known_hosts, server.address, server.port, fetch_host_key(server.address, server.port)
        )
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    assert f"[{sshd.address}]:{sshd.port} ssh-ed25519 " in known_hosts.read_text()
    for server in (sshd, other_sshd):
        with connect(target_of(server), ssh_settings, known_hosts) as session:
            assert session.run("echo trusted").stdout == "trusted\n"


def test_unresolvable_name_is_a_dns_error(ssh_settings, tmp_path: Path) -> None:
    target = SshTarget(name="ghost", address="no-such-host.invalid")
    with pytest.raises(DnsError) as failed:
        connect(target, ssh_settings, tmp_path / "known_hosts")
    assert failed.value.kind == "dns"
    assert "no-such-host.invalid" in str(failed.value)


def _save_secret(name: str, value: str) -> None:
    from prefect.blocks.system import Secret

    Secret(value=value).save(name, overwrite=True)


def test_key_from_a_secret_block_is_loaded_at_connect_time(
    prefect_server: str,
    sshd: ThrowawaySshd,
    target_of: TargetOf,
    known_hosts_for: KnownHostsFor,
    ssh_settings: SshSettings,
    client_key: KeyPair,
) -> None:
    _save_secret("acme-ssh-key", client_key.private.read_text())
    settings = ssh_settings.model_copy(update={"key_file": None})
    target = target_of(sshd, key_secret="acme-ssh-key")
    session = SshSession(target, settings, known_hosts_for(sshd))
    with session:
        assert session.run("echo via secret").stdout == "via secret\n"
    assert "PRIVATE KEY" not in repr(target)


def test_a_secret_that_is_not_a_key_fails_auth_without_leaking_it(
    prefect_server: str,
    sshd: ThrowawaySshd,
    target_of: TargetOf,
    known_hosts_for: KnownHostsFor,
    ssh_settings: SshSettings,
) -> None:
    _save_secret("not-a-key", "hunter2")
    target = target_of(sshd, key_secret="not-a-key")
    with pytest.raises(AuthFailed) as failed:
        connect(target, ssh_settings, known_hosts_for(sshd))
    assert "not-a-key" in str(failed.value)
    assert "hunter2" not in str(failed.value)


def test_a_server_that_never_sends_a_banner_is_a_retried_timeout(
    ssh_settings: SshSettings, tmp_path: Path
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes handshakes; nobody ever speaks
        target = SshTarget(name="mute", address="127.0.0.1", port=silent.getsockname()[1])
        settings = ssh_settings.model_copy(update={"banner_timeout": 0.3, "retries": 1})
        session = SshSession(target, settings, tmp_path / "known_hosts")
        with pytest.raises(ConnectTimeout) as failed:
            session.connect()
    assert session.attempts == 2 and failed.value.transient
    assert failed.value.kind == "timeout" and "banner" in str(failed.value)


def test_a_server_that_closes_before_the_banner_is_a_protocol_error(
    ssh_settings: SshSettings, tmp_path: Path
) -> None:
    with socket.socket() as closing:
        closing.bind(("127.0.0.1", 0))
        closing.listen(8)
        target = SshTarget(name="slam", address="127.0.0.1", port=closing.getsockname()[1])
        settings = ssh_settings.model_copy(update={"retries": 0})
        session = SshSession(target, settings, tmp_path / "known_hosts")

        def slam() -> None:
            conn, _ = closing.accept()
            conn.close()

        slammer = threading.Thread(target=slam)
        slammer.start()
        with pytest.raises(SshProtocolError) as failed:
            session.connect()
        slammer.join()
    assert failed.value.kind == "protocol"
    assert "closed before the SSH banner" in str(failed.value)
