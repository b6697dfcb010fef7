"""Pure parts of tasks.ssh: retry schedule, fingerprints, known_hosts lines, error shapes."""

from __future__ import annotations

import base64
import logging
import pickle
import random
import re
import stat
from pathlib import Path

import paramiko
import pytest
from paramiko.ssh_exception import SSHException

from tests.sshd_fixtures import SSH_DEFAULTS
from upkeep.domain.checks.base import RawResult
from upkeep.tasks.ssh import (
    MAX_BACKOFF,
    AuthFailed,
    ChangedHostKey,
    CommandFailed,
    CommandTimeout,
    ConnectionRefused,
    ConnectTimeout,
    DnsError,
    HostNotAnswering,
    SessionAborted,
    SshError,
    SshProtocolError,
    SshSession,
    SshTarget,
    UnknownHostKey,
    _QuietTransportLog,
    _ssh_error,
    backoff_delays,
    call_with_retries,
    command_bound,
    connect_bound,
    fingerprint_sha256,
    handshake_bound,
    known_hosts_entry,
    known_hosts_name,
    load_known_hosts,
    session_group,
    trust_host_key,
)

BANNER_ERROR = "Error reading SSH protocol banner"

# Two ed25519 public keys and what `ssh-keygen -lf` printed for them.
KEY1_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEy2NHnHgVql0e5s/sOSjcZvJZtTRp3qo4yb3lzbfg9G"
KEY1_FP = "SHA256:5j76q4z/WUy8ZAWSjRcgBefCNBWYTNeGD2GRgL7SiHs"
KEY2_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILwEwGeo2msy/a7auxNmSnfaK+7p3toQpe4Y/qnkFNT"
KEY2_FP = "SHA256:q1QPD0dTVGnfk5jv+6CnmkgCP9Zsqu4Q1O3kKhz1qsQ"


def _key(line: str) -> paramiko.PKey:
    kind, b64 = line.split()
    return paramiko.PKey.from_type_string(kind, base64.b64decode(b64))


KEY1, KEY2 = _key(KEY1_LINE), _key(KEY2_LINE)
TARGET = SshTarget(name="web1", address="10.0.0.5", port=2222)


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_has_one_delay_per_retry_doubling_within_jitter() -> None:
    delays = backoff_delays(5, 0.5, random.Random(7))
    assert len(delays) == 5
    for i, delay in enumerate(delays):
        nominal = 0.5 * 2**i
        assert 0.5 * nominal <= delay < 1.5 * nominal


def test_backoff_is_deterministic_for_a_seeded_rng_and_jittered() -> None:
    assert backoff_delays(4, 1.0, random.Random(1)) == backoff_delays(4, 1.0, random.Random(1))
    assert backoff_delays(4, 1.0, random.Random(1)) != backoff_delays(4, 1.0, random.Random(2))


def test_backoff_edge_cases() -> None:
    assert backoff_delays(0, 1.0, random.Random(0)) == []
    assert backoff_delays(3, 0.0, random.Random(0)) == [0.0, 0.0, 0.0]
    assert max(backoff_delays(10, 30.0, random.Random(0))) == MAX_BACKOFF


def _failing(errors: list[SshError], result: str = "ok"):
    calls = []

    def attempt() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return attempt, calls


def _refused() -> ConnectionRefused:
    return ConnectionRefused("refused", host="web1")


def test_transient_errors_are_retried_with_the_schedule() -> None:
    slept: list[float] = []
    attempt, calls = _failing([_refused(), _refused(), _refused()])
    with pytest.raises(ConnectionRefused) as failed:
        call_with_retries(attempt, [0.1, 0.2], sleep=slept.append)
    assert len(calls) == 3 and failed.value.attempts == 3
    assert slept == [0.1, 0.2]


def test_success_after_a_transient_error_reports_the_attempt_count() -> None:
    slept: list[float] = []
    attempt, _ = _failing([SshProtocolError("banner", host="web1")])
    assert call_with_retries(attempt, [0.1, 0.2], sleep=slept.append) == ("ok", 2)
    assert slept == [0.1]


@pytest.mark.parametrize(
    "error",
    [
        AuthFailed("denied", host="web1"),
        UnknownHostKey(TARGET, KEY1),
        ChangedHostKey(TARGET, KEY1, KEY2),
        DnsError("nxdomain", host="web1"),
    ],
)
def test_permanent_errors_are_not_retried(error: SshError) -> None:
    slept: list[float] = []
    attempt, calls = _failing([error])
    with pytest.raises(type(error)) as failed:
        call_with_retries(attempt, [0.1, 0.2], sleep=slept.append)
    assert len(calls) == 1 and failed.value.attempts == 1 and slept == []


# -- fingerprints and known_hosts --------------------------------------------------------------


def test_fingerprint_matches_ssh_keygen_format() -> None:
    assert fingerprint_sha256(KEY1) == KEY1_FP
    assert fingerprint_sha256(KEY2) == KEY2_FP
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", fingerprint_sha256(KEY1))


def test_known_hosts_entry_uses_brackets_only_for_non_default_ports() -> None:
    assert known_hosts_entry("10.0.0.5", 22, KEY1) == f"10.0.0.5 {KEY1_LINE}"
    assert known_hosts_entry("10.0.0.5", 2222, KEY1) == f"[10.0.0.5]:2222 {KEY1_LINE}"
    assert known_hosts_name("db.example.com", 22) == "db.example.com"
    assert known_hosts_name("::1", 2222) == "[::1]:2222"


def test_trust_replaces_the_hosts_entries_and_keeps_the_rest(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host("[10.0.0.5]:2222")
    known_hosts.write_text(
        "# managed by upkeep\n"
        f"other.example.com {KEY2_LINE}\n"
        f"[10.0.0.5]:2222 {KEY2_LINE}\n"
        f"[10.0.0.5]:2222,alias.example.com {KEY2_LINE}\n"
        f"{hashed} {KEY2_LINE}\n"
        f"10.0.0.5 {KEY2_LINE}\n"
    )
    trust_host_key(known_hosts, "10.0.0.5", 2222, KEY1)
    assert known_hosts.read_text().splitlines() == [
        "# managed by upkeep",
        f"other.example.com {KEY2_LINE}",
        f"alias.example.com {KEY2_LINE}",
        f"10.0.0.5 {KEY2_LINE}",
        f"[10.0.0.5]:2222 {KEY1_LINE}",
    ]
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    trusted = load_known_hosts(known_hosts).lookup("[10.0.0.5]:2222")
    assert trusted is not None and list(trusted.values()) == [KEY1]


def test_trust_creates_the_file_and_its_directory(tmp_path: Path) -> None:
    known_hosts = tmp_path / "data" / "known_hosts"
    trust_host_key(known_hosts, "db.example.com", 22, KEY2)
    assert known_hosts.read_text() == f"db.example.com {KEY2_LINE}\n"
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600


def test_missing_known_hosts_trusts_nothing(tmp_path: Path) -> None:
    assert len(load_known_hosts(tmp_path / "nope" / "known_hosts")) == 0
    assert (tmp_path / "nope").is_dir()


# -- error shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind", "transient"),
    [
        (DnsError("x", host="h"), "dns", False),
        (DnsError("x", host="h", transient=True), "dns", True),
        (ConnectionRefused("x", host="h"), "refused", True),
        (ConnectTimeout("x", host="h"), "timeout", True),
        (AuthFailed("x", host="h"), "auth", False),
        (UnknownHostKey(TARGET, KEY1), "host_key_unknown", False),
        (ChangedHostKey(TARGET, KEY1, KEY2), "host_key_changed", False),
        (CommandTimeout(TARGET, "sleep 30", 1), "command_timeout", False),
        (CommandFailed(TARGET, RawResult("false", 1, "")), "command_failed", False),
        (SshProtocolError("x", host="h"), "protocol", True),
    ],
)
def test_error_kinds(error: SshError, kind: str, transient: bool) -> None:
    assert isinstance(error, SshError)
    assert (error.kind, error.transient) == (kind, transient)
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is type(error) and str(restored) == str(error)
    assert restored.__dict__ == error.__dict__


def test_host_key_messages_name_the_host_and_fingerprints() -> None:
    unknown = str(UnknownHostKey(TARGET, KEY1))
    assert "web1 ([10.0.0.5]:2222)" not in unknown  # IPv4 is not bracketed in messages
    assert "web1 (10.0.0.5:2222)" in unknown
    assert "ssh-ed25519" in unknown and KEY1_FP in unknown
    assert "upkeep hosts trust web1" in unknown
    changed = ChangedHostKey(TARGET, expected=KEY1, offered=KEY2)
    assert "man-in-the-middle" in str(changed)
    assert (changed.expected_fingerprint, changed.offered_fingerprint) == (KEY1_FP, KEY2_FP)


def test_command_failed_keeps_exit_code_and_a_bounded_stderr_tail() -> None:
    result = RawResult("apt-get update", 100, "", "x" * 5000 + "\nE: lock held")
    failed = CommandFailed(TARGET, result)
    assert failed.exit_code == 100
    assert failed.stderr_tail.endswith("E: lock held") and len(failed.stderr_tail) <= 2001
    assert "exited with 100" in str(failed) and "E: lock held" in str(failed)


def test_target_validation() -> None:
    with pytest.raises(ValueError, match="not both"):
        SshTarget(name="a", address="a", key_file=Path("k"), key_secret="s")
    with pytest.raises(ValueError, match="port"):
        SshTarget(name="a", address="a", port=0)


# -- hangs: bounds, kinds, quiet logs ----------------------------------------------------------


def _raised_in_except(cause: BaseException, message: str) -> SSHException:
    """An SSHException raised while handling ``cause``, as paramiko's banner reader does."""
    try:
        try:
            raise cause
        except BaseException:
            raise SSHException(message) from None
    except SSHException as exc:
        return exc


def test_no_banner_before_the_timeout_is_a_timeout_and_a_closed_socket_is_protocol() -> None:
    silent = _ssh_error(TARGET, _raised_in_except(TimeoutError(), BANNER_ERROR))
    assert isinstance(silent, ConnectTimeout) and silent.kind == "timeout" and silent.transient
    assert "no SSH banner" in str(silent) and "web1 (10.0.0.5:2222)" in str(silent)
    closed = _ssh_error(TARGET, _raised_in_except(EOFError(), BANNER_ERROR))
    assert isinstance(closed, SshProtocolError) and closed.kind == "protocol"
    assert "closed before the SSH banner" in str(closed)


def test_an_unfinished_key_exchange_is_a_timeout() -> None:
    err = _ssh_error(TARGET, SSHException("No existing session"))
    assert isinstance(err, ConnectTimeout) and err.kind == "timeout"


def test_host_not_answering_is_a_timeout_kind() -> None:
    err = HostNotAnswering("stopped", host="web1")
    assert (err.kind, err.transient) == ("timeout", True)
    assert not issubclass(SessionAborted, SshError)  # an aborted run is no finding on the host


def test_connect_bound_is_every_attempt_plus_the_longest_retry_delays() -> None:
    assert handshake_bound(SSH_DEFAULTS) == 30
    # 3 attempts x (10 TCP + 30 handshake) + delays of at most 1.5 and 3.0 s
    assert connect_bound(SSH_DEFAULTS) == 3 * 40 + 1.5 + 3.0
    assert connect_bound(SSH_DEFAULTS.model_copy(update={"retries": 0})) == 40
    many = SSH_DEFAULTS.model_copy(update={"retries": 10, "retry_backoff": 30.0})
    assert connect_bound(many) == 11 * 40 + 45 + 9 * MAX_BACKOFF  # 30 x 1.5, then capped


def test_the_retry_delays_never_exceed_what_connect_bound_counts() -> None:
    rng = random.Random(3)
    for _ in range(200):
        delays = backoff_delays(SSH_DEFAULTS.retries, SSH_DEFAULTS.retry_backoff, rng)
        assert sum(delays) <= connect_bound(SSH_DEFAULTS) - 3 * 40


def test_command_bound_is_the_command_plus_starting_it_and_one_keepalive() -> None:
    assert command_bound(SSH_DEFAULTS) == 60 + 15
    assert command_bound(SSH_DEFAULTS, 120) == 120 + 15
    assert command_bound(SSH_DEFAULTS, 1) == 15 + 15  # a start takes up to channel_timeout anyway


def _record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("paramiko.transport", level, __file__, 1, msg, None, None)


def test_paramiko_transport_errors_are_dropped_unless_paramiko_debugging_is_on() -> None:
    quiet = _QuietTransportLog()
    transport_log = logging.getLogger("paramiko.transport")
    before = transport_log.level
    try:
        transport_log.setLevel(logging.WARNING)
        assert not quiet.filter(_record(logging.ERROR, "Exception (client): banner"))
        assert quiet.filter(_record(logging.WARNING, "Oops"))
        transport_log.setLevel(logging.DEBUG)
        kept = _record(logging.ERROR, "Traceback (most recent call last):")
        assert quiet.filter(kept) and kept.levelno == logging.DEBUG
    finally:
        transport_log.setLevel(before)
    assert any(isinstance(f, _QuietTransportLog) for f in transport_log.filters)


def test_an_aborted_group_refuses_new_sessions_before_any_connection(tmp_path: Path) -> None:
    with session_group() as group:
        group.abort("the run is stopping")
        session = SshSession(TARGET, SSH_DEFAULTS, tmp_path / "known_hosts")
        with pytest.raises(SessionAborted, match="the run is stopping"):
            session.connect()
    assert session.attempts == 0


def test_leaving_the_group_by_an_exception_aborts_it() -> None:
    with pytest.raises(KeyboardInterrupt), session_group() as group:
        raise KeyboardInterrupt
    assert group.aborted.is_set() and "KeyboardInterrupt" in group.reason
    with session_group() as calm:
        pass
    assert not calm.aborted.is_set()
