"""Run catalogue commands on customer hosts over SSH, refusing any host key not trusted.

One :class:`SshSession` holds one paramiko connection to one host. Host keys are checked
against upkeep's own known_hosts file only (never ``~/.ssh/known_hosts``): an unknown key
raises :class:`UnknownHostKey` and a different key raises :class:`ChangedHostKey`, both before
any command runs. Keys are trusted explicitly, with :func:`fetch_host_key` and
:func:`trust_host_key` (``upkeep hosts trust HOST``).

Client credentials, first match wins:

1. ``SshTarget.key_secret``: a Prefect Secret block holding a private key, loaded at connect
   time and kept only in memory;
2. ``SshTarget.key_file``, else ``SshSettings.key_file``: a private key file.

With an explicit key nothing else is offered (no agent, no ``~/.ssh/id_*``), so a wrong key
fails cleanly instead of depending on the worker's environment. Without one, the SSH agent and
the default ``~/.ssh/id_*`` keys are tried (paramiko ``allow_agent``/``look_for_keys``).
Passphrase-protected key files are not supported (use the agent for those).

Every failure is an :class:`SshError` with ``host``, ``kind`` and ``transient``. Transient
connect failures (refused, timeout, reset) are retried with jittered exponential backoff;
authentication and host-key failures never are. Commands are not retried: the caller knows
whether a command is safe to repeat.

Every wait on a host is bounded by :class:`SshSettings` (see :func:`connect_bound` and
:func:`command_bound`): the TCP connect, the handshake (banner, key exchange, login), each
request to a logged-in host (open a channel, start a command, a keepalive) and each command's
output. paramiko's channel requests wait without a timeout, so each is run under a
:class:`_Watchdog` that closes the connection when its time is up: a host that stops answering
after login is a ``timeout`` error, never a hang. Sessions opened inside :func:`session_group`
are aborted together when the group's block is left by an exception (a flow stopped by
SIGTERM), so the threads running them end at once with :class:`SessionAborted`.

Neither command output nor key material is logged.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import logging
import os
import random
import select
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import paramiko
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    IncompatiblePeer,
    PasswordRequiredException,
    SSHException,
)

from upkeep.domain.checks.base import RawResult
from upkeep.settings import SshSettings

logger = logging.getLogger(__name__)


class _QuietTransportLog(logging.Filter):
    """Keep paramiko's transport thread from logging the failures it hands back to us.

    The transport logs every exception of its thread at ERROR, its traceback one line per
    record ("Exception (client): Error reading SSH protocol banner", "Traceback ..."). The same
    failure reaches the caller as an :class:`SshError`, which is what gets reported; the copy
    is kept only when someone turned paramiko's debug logging on, at DEBUG.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_TRANSPORT_LOGGER = logging.getLogger("paramiko.transport")
if not any(isinstance(f, _QuietTransportLog) for f in _TRANSPORT_LOGGER.filters):
    _TRANSPORT_LOGGER.addFilter(_QuietTransportLog())

DEFAULT_PORT = 22
MAX_BACKOFF = 60.0
"""No single retry delay exceeds this many seconds, whatever the base and retry count."""
STDERR_TAIL = 2000
_CHUNK = 65536

T = TypeVar("T")


# -- errors ------------------------------------------------------------------------------------


def _restore_error(cls: type[SshError], message: str, state: dict[str, Any]) -> SshError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class SshError(Exception):
    """Any SSH failure. ``host`` is the target's name, ``kind`` a short stable code."""

    kind: ClassVar[str] = "ssh"
    default_transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        host: str,
        address: str | None = None,
        port: int | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.host = host
        self.address = address
        self.port = port
        self.transient = self.default_transient if transient is None else transient
        self.attempts = 1
        """How many connection attempts were made before this error was raised."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect may pickle a task's exception; the keyword-only constructor would not survive.
        return (_restore_error, (type(self), str(self), dict(self.__dict__)))


class DnsError(SshError):
    kind = "dns"


class ConnectionRefused(SshError):
    kind = "refused"
    default_transient = True


class ConnectTimeout(SshError):
    kind = "timeout"
    default_transient = True


class HostNotAnswering(SshError):
    """A logged-in host stopped answering: a request got no reply within its bound.

    The connection is closed by then. Same ``kind`` as a connect timeout: for the report, the
    host did not answer."""

    kind = "timeout"
    default_transient = True


class SessionAborted(Exception):
    """The session's :func:`session_group` was aborted (its run is stopping).

    Deliberately not an :class:`SshError`: it says nothing about the host, so no finding must
    be recorded for it."""


class AuthFailed(SshError):
    kind = "auth"


class SshProtocolError(SshError):
    """The connection was reset, the banner never came, or the SSH protocol failed."""

    kind = "protocol"
    default_transient = True


class UnknownHostKey(SshError):
    kind = "host_key_unknown"

    def __init__(self, target: SshTarget, key: paramiko.PKey) -> None:
        self.key_type = key.get_name()
        self.fingerprint = fingerprint_sha256(key)
        super().__init__(
            f"{target.where}: host key is not trusted ({self.key_type} {self.fingerprint}). "
            f"Check the fingerprint with the customer, then run "
            f"`upkeep hosts trust {target.name}`",
            host=target.name,
            address=target.address,
            port=target.port,
        )


class ChangedHostKey(SshError):
    kind = "host_key_changed"

    def __init__(self, target: SshTarget, expected: paramiko.PKey, offered: paramiko.PKey) -> None:
        self.expected_fingerprint = fingerprint_sha256(expected)
        self.offered_fingerprint = fingerprint_sha256(offered)
        super().__init__(
            f"{target.where}: HOST KEY CHANGED, possible man-in-the-middle attack. "
            f"Expected {expected.get_name()} {self.expected_fingerprint}, "
            f"offered {offered.get_name()} {self.offered_fingerprint}. "
            f"If the host was reinstalled, verify the new key and run "
            f"`upkeep hosts trust {target.name}`",
            host=target.name,
            address=target.address,
            port=target.port,
        )


class CommandTimeout(SshError):
    kind = "command_timeout"

    def __init__(self, target: SshTarget, command: str, timeout: float) -> None:
        self.command = command
        self.timeout = timeout
        super().__init__(
            f"{target.where}: command did not finish within {timeout:g}s: {_short(command)}",
            host=target.name,
            address=target.address,
            port=target.port,
        )


class CommandFailed(SshError):
    kind = "command_failed"

    def __init__(self, target: SshTarget, result: RawResult) -> None:
        self.command = result.command
        self.exit_code = result.exit_code
        self.stderr_tail = _tail(result.stderr)
        last = self.stderr_tail.strip().rsplit("\n", 1)[-1]
        super().__init__(
            f"{target.where}: command exited with {result.exit_code}: {_short(result.command)}"
            + (f" ({_short(last)})" if last else ""),
            host=target.name,
            address=target.address,
            port=target.port,
        )


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(text: str, limit: int = STDERR_TAIL) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


# -- targets and keys --------------------------------------------------------------------------


@dataclass(frozen=True)
class SshTarget:
    """Where to connect and as whom. ``user`` None means ``SshSettings.user``.

    ``key_secret`` names a Prefect Secret block holding a private key; only the name is
    stored here. At most one of ``key_file`` and ``key_secret`` may be set.
    """

    name: str
    address: str
    port: int = DEFAULT_PORT
    user: str | None = None
    key_file: Path | None = None
    key_secret: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.address:
            raise ValueError("SshTarget needs a name and an address")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"{self.name}: port {self.port} is not in 1..65535")
        if self.key_file is not None and self.key_secret is not None:
            raise ValueError(f"{self.name}: set key_file or key_secret, not both")

    @property
    def where(self) -> str:
        """``name (address:port)``, for messages."""
        return f"{self.name} ({_hostport(self.address, self.port)})"


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True)
class _Credentials:
    pkey: paramiko.PKey | None
    use_agent_and_defaults: bool


_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key,
    paramiko.ECDSAKey,
    paramiko.RSAKey,
)


def _parse_private_key(text: str) -> paramiko.PKey | None:
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text))
        except (SSHException, ValueError):
            continue
    return None


def _load_secret(name: str) -> Any:
    from prefect.blocks.system import Secret  # slow import, and only some targets need it

    return Secret.load(name).get()  # type: ignore[union-attr]  # sync call returns the block


def _credentials(target: SshTarget, settings: SshSettings) -> _Credentials:
    """Resolve the client key (see the module docstring for the order)."""

    def fail(why: str) -> AuthFailed:
        return AuthFailed(
            f"{target.where}: {why}", host=target.name, address=target.address, port=target.port
        )

    if target.key_secret is not None:
        try:
            value = _load_secret(target.key_secret)
        except Exception as exc:
            raise fail(
                f"cannot load Prefect Secret block {target.key_secret!r} ({type(exc).__name__})"
            ) from None
        pkey = _parse_private_key(value) if isinstance(value, str) else None
        if pkey is None:
            raise fail(
                f"Prefect Secret block {target.key_secret!r} does not hold an unencrypted "
                "private key"
            )
        return _Credentials(pkey, use_agent_and_defaults=False)
    key_file = target.key_file or settings.key_file
    if key_file is not None:
        path = key_file.expanduser()
        try:
            return _Credentials(paramiko.PKey.from_path(path), use_agent_and_defaults=False)
        except PasswordRequiredException:
            raise fail(f"key file {path} is passphrase-protected; load it into an agent") from None
        except OSError as exc:
            raise fail(f"cannot read key file {path} ({exc.strerror or exc})") from None
        except (SSHException, ValueError, TypeError):
            raise fail(f"key file {path} is not a supported private key") from None
    return _Credentials(None, use_agent_and_defaults=True)


# -- host keys ---------------------------------------------------------------------------------


def known_hosts_name(address: str, port: int = DEFAULT_PORT) -> str:
    """The host field OpenSSH writes: ``address`` on port 22, else ``[address]:port``."""
    return address if port == DEFAULT_PORT else f"[{address}]:{port}"


def known_hosts_entry(address: str, port: int, key: paramiko.PKey) -> str:
    """One known_hosts line (without newline) trusting ``key`` for ``address:port``."""
    return f"{known_hosts_name(address, port)} {key.get_name()} {key.get_base64()}"


def fingerprint_sha256(key: paramiko.PKey) -> str:
    """``SHA256:<base64, no padding>``, exactly as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def load_known_hosts(known_hosts: Path, keys: paramiko.HostKeys | None = None) -> paramiko.HostKeys:
    """The keys in ``known_hosts`` (added to ``keys`` if given); a missing or empty file
    trusts nothing. Creates the parent directory."""
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = paramiko.HostKeys() if keys is None else keys
    if known_hosts.is_file():
        keys.load(str(known_hosts))
    return keys


def _line_without(line: str, name: str) -> str | None:
    """``line`` with ``name`` removed from its host list; None if nothing remains."""
    fields = line.split()
    if not fields or fields[0].startswith(("#", "@")) or len(fields) < 3:
        return line
    kept = []
    for pattern in fields[0].split(","):
        if pattern == name:
            continue
        if pattern.startswith("|1|"):
            salt = pattern.split("|")[2]
            if paramiko.HostKeys.hash_host(name, salt) == pattern:
                continue
        kept.append(pattern)
    if not kept:
        return None
    if len(kept) == len(fields[0].split(",")):
        return line
    return " ".join([",".join(kept), *fields[1:]])


def trust_host_key(known_hosts: Path, address: str, port: int, key: paramiko.PKey) -> None:
    """Make ``key`` the one trusted key for ``address:port`` in ``known_hosts``.

    Earlier entries for that exact host name (plain or hashed, any key type) are dropped;
    every other line is kept as it was. The file is replaced atomically, with mode 0600.
    """
    name = known_hosts_name(address, port)
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = known_hosts.read_text().splitlines() if known_hosts.exists() else []
    lines = [kept for line in old if (kept := _line_without(line, name)) is not None]
    lines.append(known_hosts_entry(address, port, key))
    fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=known_hosts.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, known_hosts)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _RefuseUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Raise :class:`UnknownHostKey`: upkeep never trusts a key on first use."""

    def __init__(self, target: SshTarget) -> None:
        self._target = target

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise UnknownHostKey(self._target, key)


# -- connecting --------------------------------------------------------------------------------


def _socket_error(target: SshTarget, exc: OSError) -> SshError:
    where = target.where
    ctx: dict[str, Any] = {"host": target.name, "address": target.address, "port": target.port}
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused(f"{where}: connection refused (is sshd running?)", **ctx)
    if isinstance(exc, TimeoutError):
        return ConnectTimeout(f"{where}: no answer (timed out)", **ctx)
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return ConnectTimeout(f"{where}: host unreachable ({exc.strerror})", **ctx)
    if isinstance(exc, ConnectionResetError):
        return SshProtocolError(f"{where}: connection reset by peer", **ctx)
    return SshProtocolError(f"{where}: connection failed ({exc.strerror or exc})", **ctx)


def _open_socket(target: SshTarget, timeout: float) -> socket.socket:
    """A TCP connection to the target, trying each resolved address in turn, all of them
    within ``timeout`` seconds."""
    try:
        infos = socket.getaddrinfo(target.address, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DnsError(
            f"{target.where}: cannot resolve {target.address!r} ({exc.strerror})",
            host=target.name,
            address=target.address,
            port=target.port,
            transient=exc.errno == socket.EAI_AGAIN,
        ) from None
    last: OSError = OSError(errno.EHOSTUNREACH, "no usable address")
    deadline = time.monotonic() + timeout
    for family, kind, proto, _, sockaddr in infos:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            last = TimeoutError(errno.ETIMEDOUT, "timed out")
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(remaining)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise _socket_error(target, last) from None


def _ssh_error(target: SshTarget, exc: BaseException) -> SshError | None:
    """The :class:`SshError` for an exception from the handshake; None if it is not one."""
    if isinstance(exc, SshError):
        return exc
    ctx: dict[str, Any] = {"host": target.name, "address": target.address, "port": target.port}
    if isinstance(exc, BadHostKeyException):
        return ChangedHostKey(target, expected=exc.expected_key, offered=exc.key)
    if isinstance(exc, AuthenticationException):
        if "timeout" in str(exc).lower():
            return ConnectTimeout(f"{target.where}: authentication timed out", **ctx)
        return AuthFailed(f"{target.where}: authentication failed ({exc})", **ctx)
    if isinstance(exc, IncompatiblePeer):
        return SshProtocolError(
            f"{target.where}: no common SSH algorithms ({exc})", transient=False, **ctx
        )
    if isinstance(exc, SSHException) and str(exc).startswith("Error reading SSH protocol banner"):
        # paramiko raises this inside ``except``: the cause is the timeout, or EOF (closed).
        if isinstance(exc.__context__, TimeoutError):
            return ConnectTimeout(
                f"{target.where}: accepted the connection but sent no SSH banner "
                "(a hung sshd, or not an SSH server)",
                **ctx,
            )
        return SshProtocolError(f"{target.where}: connection closed before the SSH banner", **ctx)
    if isinstance(exc, SSHException) and str(exc) == "No existing session":
        # start_client gave up waiting for the key exchange (its timeout is connect_timeout).
        return ConnectTimeout(f"{target.where}: the SSH key exchange did not finish", **ctx)
    if isinstance(exc, SSHException):
        return SshProtocolError(f"{target.where}: SSH handshake failed ({exc})", **ctx)
    if isinstance(exc, EOFError):
        return SshProtocolError(f"{target.where}: connection closed during handshake", **ctx)
    if isinstance(exc, OSError):
        return _socket_error(target, exc)
    return None


class _Watchdog:
    """Call ``expire`` from a timer thread unless the ``with`` block ends within ``seconds``.

    paramiko waits for some replies without a timeout (a channel's exec and subsystem
    requests, a global request); ``expire`` closes the connection, which ends those waits with
    an exception. ``fired`` tells the caller that this, not the host, ended the wait.
    """

    def __init__(self, seconds: float, expire: Callable[[], None]) -> None:
        self.seconds = seconds
        self.fired = False
        self._expire = expire
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        self._expire()

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    """Wake every thread blocked on ``sock`` (paramiko's transport thread reads it)."""
    with suppress(OSError):  # not connected, or already closed
        sock.shutdown(socket.SHUT_RDWR)


def handshake_bound(settings: SshSettings) -> float:
    """Longest one login may take once TCP is connected: banner, key exchange and login all
    within ``banner_timeout + auth_timeout`` (a watchdog enforces it)."""
    return settings.banner_timeout + settings.auth_timeout


def connect_bound(settings: SshSettings) -> float:
    """Longest :meth:`SshSession.connect` can take, retries and their delays included."""
    attempt = settings.connect_timeout + handshake_bound(settings)
    delays = sum(
        min(MAX_BACKOFF, settings.retry_backoff * 2**i * 1.5) for i in range(settings.retries)
    )
    return (settings.retries + 1) * attempt + delays


def command_bound(settings: SshSettings, timeout: float | None = None) -> float:
    """Longest :meth:`SshSession.run` can take for a command limited to ``timeout`` (default
    ``command_timeout``): the command itself, plus one ``channel_timeout`` to start it and
    one for the keepalive that tells a slow command from a host that stopped answering."""
    limit = settings.command_timeout if timeout is None else timeout
    return max(limit, settings.channel_timeout) + settings.channel_timeout


def _connect_once(
    target: SshTarget,
    settings: SshSettings,
    creds: _Credentials,
    known_hosts: Path,
    on_socket: Callable[[socket.socket | None], None] = lambda sock: None,
) -> paramiko.SSHClient:
    """One connection attempt. ``on_socket`` is told the socket while the handshake runs (and
    None after), so that :meth:`SshSession.abort` can wake it."""
    sock = _open_socket(target, settings.connect_timeout)
    client = paramiko.SSHClient()
    # HostKeys.load, not SSHClient.load_host_keys: the client must never write the file back.
    load_known_hosts(known_hosts, client.get_host_keys())
    client.set_missing_host_key_policy(_RefuseUnknownHostKey(target))
    watchdog = _Watchdog(handshake_bound(settings), lambda: _shutdown(sock))
    on_socket(sock)
    try:
        with watchdog:
            client.connect(
                target.address,
                port=target.port,
                username=target.user or settings.user,
                pkey=creds.pkey,
                sock=sock,
                timeout=settings.connect_timeout,
                banner_timeout=settings.banner_timeout,
                auth_timeout=settings.auth_timeout,
                channel_timeout=settings.channel_timeout,
                allow_agent=creds.use_agent_and_defaults,
                look_for_keys=creds.use_agent_and_defaults,
            )
        if watchdog.fired:
            raise EOFError("handshake watchdog fired")
    except BaseException as exc:
        client.close()
        sock.close()
        if watchdog.fired and not isinstance(exc, SshError):
            raise ConnectTimeout(
                f"{target.where}: no SSH login within {watchdog.seconds:g}s "
                "(the host stopped answering during the handshake)",
                host=target.name,
                address=target.address,
                port=target.port,
            ) from None
        err = _ssh_error(target, exc)
        if err is None or err is exc:
            raise
        raise err from None
    finally:
        on_socket(None)
    return client


def backoff_delays(retries: int, base: float, rng: random.Random) -> list[float]:
    """The sleeps between ``retries + 1`` attempts: ``base * 2**i``, jittered.

    Each delay is scaled by a factor drawn from [0.5, 1.5) so that many workers retrying the
    same host spread out, then capped at :data:`MAX_BACKOFF`. Pure given ``rng``.
    """
    return [min(MAX_BACKOFF, base * 2**i * (0.5 + rng.random())) for i in range(retries)]


def call_with_retries(
    attempt: Callable[[], T],
    delays: Sequence[float],
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[SshError, float], None] | None = None,
) -> tuple[T, int]:
    """Call ``attempt`` until it succeeds; return its result and the number of attempts.

    A transient :class:`SshError` is retried after the next delay while delays remain; any
    other exception, or the last transient one, propagates with ``attempts`` set.
    """
    for number in range(1, len(delays) + 2):
        try:
            return attempt(), number
        except SshError as exc:
            exc.attempts = number
            if not exc.transient or number > len(delays):
                raise
            delay = delays[number - 1]
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")


# -- sessions ----------------------------------------------------------------------------------


class SessionGroup:
    """The sessions opened while this group is current (see :func:`session_group`).

    :meth:`abort` ends them all from any thread: each one's connection is closed and the
    thread using it gets :class:`SessionAborted` at once, and sessions opened afterwards fail
    the same way before they connect.
    """

    def __init__(self) -> None:
        self._sessions: weakref.WeakSet[SshSession] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.aborted = threading.Event()
        self.reason = ""

    def add(self, session: SshSession) -> None:
        with self._lock:
            self._sessions.add(session)
        if self.aborted.is_set():
            session.abort(self.reason)

    def discard(self, session: SshSession) -> None:
        with self._lock:
            self._sessions.discard(session)

    def abort(self, reason: str) -> None:
        with self._lock:
            self.reason = reason
            self.aborted.set()
            sessions = list(self._sessions)
        for session in sessions:
            session.abort(reason)


_GROUP: ContextVar[SessionGroup | None] = ContextVar("upkeep_ssh_session_group", default=None)


@contextmanager
def session_group() -> Iterator[SessionGroup]:
    """Make a new :class:`SessionGroup` current for the block; abort it if the block raises.

    The group is a context variable, so Prefect tasks submitted inside the block (which run
    in a copy of the submitter's context) open their sessions in it. A flow stopped by SIGTERM
    raises ``TerminationSignal`` in its main thread: leaving the block then ends every
    session of the sweep, instead of waiting for each host's timeouts.
    """
    group = SessionGroup()
    token = _GROUP.set(group)
    try:
        yield group
    except BaseException as exc:
        group.abort(f"the run is stopping ({type(exc).__name__})")
        raise
    finally:
        _GROUP.reset(token)


class SshSession:
    """One SSH connection to one host. Use as a context manager (connects on entry)."""

    def __init__(self, target: SshTarget, ssh_settings: SshSettings, known_hosts: Path) -> None:
        self.target = target
        self.settings = ssh_settings
        self.known_hosts = known_hosts
        self.attempts = 0
        """Connection attempts made by the last :meth:`connect`."""
        self._client: paramiko.SSHClient | None = None
        self._handshake_sock: socket.socket | None = None
        self._aborted = threading.Event()
        self._abort_reason = ""
        self._group = _GROUP.get()

    @property
    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def abort(self, reason: str = "aborted") -> None:
        """End this session from any thread: the thread using it gets :class:`SessionAborted`."""
        self._abort_reason = reason
        self._aborted.set()
        sock = self._handshake_sock
        if sock is not None:
            _shutdown(sock)
        client = self._client
        transport = client.get_transport() if client is not None else None
        if transport is not None:
            transport.close()

    def _check_aborted(self) -> None:
        if self._aborted.is_set():
            raise SessionAborted(f"{self.target.where}: {self._abort_reason}")

    def _sleep(self, seconds: float) -> None:
        """A retry delay that :meth:`abort` cuts short."""
        if self._aborted.wait(seconds):
            self._check_aborted()

    def _on_socket(self, sock: socket.socket | None) -> None:
        self._handshake_sock = sock
        if sock is not None and self._aborted.is_set():
            _shutdown(sock)

    def connect(self) -> SshSession:
        """Connect and authenticate, retrying transient failures; return ``self``.

        Raises an :class:`SshError` (with ``attempts`` set) once retries are exhausted, or at
        once for DNS, authentication and host-key failures. No command has run by then. Takes
        at most :func:`connect_bound` seconds.
        """
        if self._client is not None:
            return self
        if self._group is not None:
            self._group.add(self)
        self._check_aborted()
        target, settings = self.target, self.settings
        creds = _credentials(target, settings)
        delays = backoff_delays(settings.retries, settings.retry_backoff, random.Random())

        def on_retry(err: SshError, delay: float) -> None:
            logger.warning("%s (attempt %d); retrying in %.2fs", err, err.attempts, delay)

        self.attempts = 0

        def attempt() -> paramiko.SSHClient:
            self.attempts += 1
            try:
                return _connect_once(target, settings, creds, self.known_hosts, self._on_socket)
            except SshError:
                self._check_aborted()
                raise

        client, self.attempts = call_with_retries(
            attempt, delays, sleep=self._sleep, on_retry=on_retry
        )
        self._client = client
        if self._aborted.is_set():  # aborted between the handshake and here
            self.close()
            self._check_aborted()
        logger.debug("connected to %s as %s", target.where, target.user or settings.user)
        return self

    def _transport(self) -> paramiko.Transport:
        self._check_aborted()
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            raise SshProtocolError(
                f"{self.target.where}: not connected",
                host=self.target.name,
                address=self.target.address,
                port=self.target.port,
            )
        return transport

    def _not_answering(self, what: str) -> HostNotAnswering:
        return HostNotAnswering(
            f"{self.target.where}: the host stopped answering ({what}); connection closed",
            host=self.target.name,
            address=self.target.address,
            port=self.target.port,
        )

    def _answers(self, transport: paramiko.Transport) -> bool:
        """Whether the host still answers a keepalive within ``channel_timeout``; if it does
        not, the connection is closed."""
        seconds = self.settings.channel_timeout
        with _Watchdog(seconds, transport.close) as watchdog:
            # OpenSSH answers an unknown global request with a failure: either reply will do.
            transport.global_request("keepalive@openssh.com", wait=True)
        return not watchdog.fired and transport.is_active()

    def run(
        self, command: str, timeout: float | None = None, stdin: bytes | None = None
    ) -> RawResult:
        """Run ``command`` and return its exit code and output, whatever the exit code.

        stdout and stderr are read together (large output on both cannot deadlock) and decoded
        as UTF-8 with replacement. ``timeout`` (default ``SshSettings.command_timeout``) bounds
        the whole command. Past it, a keepalive tells the two cases apart: a host that still
        answers gets the command sent SIGTERM (best effort, not for root logins) and
        :class:`CommandTimeout` raised; a host that does not answer is
        :class:`HostNotAnswering`, as is one that does not open the channel or start the
        command within ``channel_timeout``. At most :func:`command_bound` seconds.
        Exit code -1 means the command ended without an exit status (e.g. killed by a signal).
        ``stdin``, when given, is written to the command's standard input, which is then
        closed: the way to hand a command a secret without putting it on its command line.
        """
        limit = self.settings.command_timeout if timeout is None else timeout
        channel_timeout = self.settings.channel_timeout
        transport = self._transport()
        started = datetime.now(UTC)
        deadline = time.monotonic() + limit
        chan: paramiko.Channel | None = None
        starting = _Watchdog(channel_timeout, transport.close)
        try:
            with starting:
                chan = transport.open_session(timeout=channel_timeout)
                chan.settimeout(channel_timeout)
                chan.exec_command(command)
                if stdin is not None:
                    chan.sendall(stdin)
                    chan.shutdown_write()
            if starting.fired:
                raise EOFError("the start watchdog fired")
            drained = _drain(chan, deadline)
            if drained is None:
                if not self._answers(transport):
                    raise self._not_answering(
                        f"no output for {limit:g}s, then no answer to a keepalive within "
                        f"{channel_timeout:g}s"
                    )
                _terminate_remote(chan)
                raise CommandTimeout(self.target, command, limit)
            exit_code = chan.recv_exit_status()
            if exit_code == -1 and not transport.is_active():
                raise EOFError("connection lost before the exit status")
        except (SSHException, EOFError, OSError) as exc:
            self._check_aborted()
            if starting.fired:
                raise self._not_answering(
                    f"a command was not started within {channel_timeout:g}s"
                ) from None
            if isinstance(exc, SSHException) and str(exc) == "Timeout opening channel.":
                transport.close()
                raise self._not_answering(
                    f"no channel opened within {channel_timeout:g}s"
                ) from None
            raise SshProtocolError(
                f"{self.target.where}: connection failed while running a command "
                f"({type(exc).__name__}: {exc})",
                host=self.target.name,
                address=self.target.address,
                port=self.target.port,
            ) from None
        finally:
            if chan is not None:
                chan.close()
        stdout, stderr = drained
        return RawResult(
            command=command,
            exit_code=exit_code,
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            started_at=started,
            finished_at=datetime.now(UTC),
        )

    def open_sftp(self) -> paramiko.SFTPClient:
        """An SFTP client on this connection (same host key, same login); close it when done.

        Opening it takes at most ``channel_timeout``; each of its reads then waits at most
        ``command_timeout`` for the host (a stall raises ``TimeoutError``, an ``OSError``)."""
        transport = self._transport()
        assert self._client is not None
        watchdog = _Watchdog(self.settings.channel_timeout, transport.close)
        try:
            with watchdog:
                sftp = self._client.open_sftp()
            if watchdog.fired:
                sftp.close()
                raise EOFError("the start watchdog fired")
        except (SSHException, EOFError, OSError):
            self._check_aborted()
            if watchdog.fired:
                raise self._not_answering(
                    f"SFTP not started within {watchdog.seconds:g}s"
                ) from None
            raise
        channel = sftp.get_channel()
        assert channel is not None
        channel.settimeout(self.settings.command_timeout)
        return sftp

    def run_checked(
        self, command: str, timeout: float | None = None, ok_exit_codes: Collection[int] = (0,)
    ) -> RawResult:
        """Like :meth:`run`, but raise :class:`CommandFailed` for an exit code not in
        ``ok_exit_codes``."""
        result = self.run(command, timeout=timeout)
        if result.exit_code not in ok_exit_codes:
            raise CommandFailed(self.target, result)
        return result

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._group is not None:
            self._group.discard(self)

    def __enter__(self) -> SshSession:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_POLL_MS = 50


def _read_available(chan: paramiko.Channel, out: bytearray, err: bytearray) -> None:
    while chan.recv_ready():
        out += chan.recv(_CHUNK)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(_CHUNK)


def _drain(chan: paramiko.Channel, deadline: float) -> tuple[bytes, bytes] | None:
    """Read stdout and stderr until the command has exited; None if ``deadline`` passes."""
    out, err = bytearray(), bytearray()
    # The channel's fileno is readable when either stream has data or the channel closes.
    # poll, not select: a busy worker holds more than select's 1024 descriptors.
    poller = select.poll()
    poller.register(chan.fileno(), select.POLLIN)
    while True:
        _read_available(chan, out, err)
        remaining = deadline - time.monotonic()
        if chan.eof_received or chan.closed:
            # No data follows EOF: take what arrived just before it, then wait for the exit
            # status (it may come after EOF) without spinning on the now always-ready pipe.
            _read_available(chan, out, err)
            if not chan.status_event.wait(max(0.0, remaining)):
                return None
            return bytes(out), bytes(err)
        if remaining <= 0:
            return None
        # paramiko's "either stream readable" pipe can miss a wakeup when both streams are
        # busy (seen as a 45 s stall with 4 MiB on each): never sleep long on it alone.
        poller.poll(max(1, min(_POLL_MS, int(remaining * 1000))))


def _terminate_remote(chan: paramiko.Channel) -> None:
    """Best effort: ask sshd to SIGTERM the command's process group.

    Closing a channel without a pty does not stop the remote command, and a hung command must
    not linger on a customer's host. This is the RFC 4254 "signal" request; paramiko has no
    public call for it, hence the hand-built message. OpenSSH >= 7.9 honours it only when
    post-authentication privilege separation is in effect, i.e. NOT for root logins: there the
    command keeps running until it exits or writes to its closed stdout/stderr.
    """
    msg = paramiko.Message()
    msg.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    msg.add_int(chan.remote_chanid)
    msg.add_string("signal")
    msg.add_boolean(False)
    msg.add_string("TERM")
    try:
        chan.get_transport()._send_user_message(msg)  # type: ignore[attr-defined]
    except (SSHException, EOFError, OSError):
        logger.debug("could not signal a timed-out command", exc_info=True)


def connect(target: SshTarget, ssh_settings: SshSettings, known_hosts: Path) -> SshSession:
    """A connected :class:`SshSession` (see :meth:`SshSession.connect`); close it when done."""
    return SshSession(target, ssh_settings, known_hosts).connect()


# -- trusting hosts ----------------------------------------------------------------------------


def fetch_host_key(address: str, port: int = DEFAULT_PORT, timeout: float = 10.0) -> paramiko.PKey:
    """The host key ``address:port`` offers, from a key exchange without authentication.

    This trusts nothing by itself: show :func:`fingerprint_sha256` to a human, who compares it
    with the one the customer reads off the host, then call :func:`trust_host_key`.
    """
    target = SshTarget(name=address, address=address, port=port)
    sock = _open_socket(target, timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (SSHException, EOFError, OSError) as exc:
        err = _ssh_error(target, exc)
        if err is None:
            raise
        raise err from None
    finally:
        transport.close()
        sock.close()
