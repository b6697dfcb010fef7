"""A throwaway OpenSSH server on a loopback port.

Used by ``upkeep demo``, the end-to-end tests and the benchmarks: each :class:`ThrowawaySshd`
is a real ``/usr/sbin/sshd`` with its own fresh host key, configuration, authorized_keys and
pid file, all inside one temporary directory. It accepts public-key logins only.

sshd refuses to run unless it is started by absolute path; when started as root it also needs
its privilege-separation directory (``/run/sshd``), which :meth:`ThrowawaySshd.start` creates.
Run as an ordinary user, only that user can log in.
"""

from __future__ import annotations

import base64
import getpass
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paramiko

logger = logging.getLogger(__name__)

DEFAULT_SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
LOOPBACK = "127.0.0.1"


class SshdError(RuntimeError):
    """The throwaway sshd could not be installed, configured or started."""


@dataclass(frozen=True)
class KeyPair:
    """An OpenSSH key pair on disk: ``private`` and ``private`` + ``.pub``."""

    private: Path

    @property
    def public(self) -> Path:
        return self.private.with_name(self.private.name + ".pub")

    @property
    def public_line(self) -> str:
        """The ``type base64 comment`` line, as it goes into authorized_keys."""
        return self.public.read_text().strip()

    def load(self) -> paramiko.PKey:
        """The private key, parsed by paramiko."""
        return paramiko.PKey.from_path(self.private)


def public_key_from_line(line: str) -> paramiko.PKey:
    """Parse an OpenSSH public key line (``type base64 [comment]``)."""
    key_type, b64 = line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))


def _require(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise SshdError(f"{tool} not found: {hint}")
    return found


def generate_keypair(private: Path, comment: str = "upkeep-throwaway") -> KeyPair:
    """Create a passphrase-less ed25519 key pair at ``private`` (replacing any old one)."""
    keygen = _require("ssh-keygen", "install openssh-client")
    private.parent.mkdir(parents=True, exist_ok=True)
    for path in (private, private.with_name(private.name + ".pub")):
        path.unlink(missing_ok=True)
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)],
        check=True,
        capture_output=True,
    )
    return KeyPair(private)


def free_loopback_port(address: str = LOOPBACK) -> int:
    """A TCP port that nothing listens on right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def wait_for_banner(address: str, port: int, deadline: float) -> bool:
    """Poll until ``address:port`` sends an SSH banner or ``deadline`` (monotonic) passes."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1.0) as sock:
                sock.settimeout(max(0.1, min(2.0, deadline - time.monotonic())))
                if sock.recv(64).startswith(b"SSH-2.0"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)  # poll interval, bounded by the deadline above
    return False


SSHD_CONFIG = """\
ListenAddress {address}
Port {port}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
LogLevel {log_level}
MaxStartups 200:30:400
MaxSessions 50
Subsystem sftp internal-sftp
# bash reads ~/.bashrc for a command run by sshd only when SHLVL says it is the first shell:
# a throwaway host runs commands in sshd's plain environment, not the user's interactive set-up
# (which may be slow or hang: a pyenv rehash lock left by a killed command stalls every login).
SetEnv SHLVL=1
"""


class ThrowawaySshd:
    """One real sshd on a free loopback port with a fresh host key.

    ``client_key`` is authorized for :attr:`user` (the current user); pass one to reuse it
    across servers, or let :meth:`start` generate one. Use as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        client_key: KeyPair | None = None,
        workdir: Path | None = None,
        sshd: Path = DEFAULT_SSHD,
        address: str = LOOPBACK,
        start_timeout: float = 10.0,
        log_level: str = "ERROR",
    ) -> None:
        """``log_level`` INFO makes sshd log every login (``Accepted publickey``) to
        :attr:`log_file`, which lets a test count the sessions a host really saw."""
        self.address = address
        self._log_level = log_level
        self.port = 0
        self.user = getpass.getuser()
        self._sshd = sshd
        self._start_timeout = start_timeout
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="upkeep-sshd-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._client_key = client_key
        self._host_key: KeyPair | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths -------------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.workdir / "sshd_config"

    @property
    def authorized_keys(self) -> Path:
        return self.workdir / "authorized_keys"

    @property
    def log_file(self) -> Path:
        return self.workdir / "sshd.log"

    @property
    def host_key_pair(self) -> KeyPair:
        if self._host_key is None:
            raise SshdError("sshd not started")
        return self._host_key

    @property
    def host_key(self) -> paramiko.PKey:
        """The server's public host key, as a client sees it."""
        return public_key_from_line(self.host_key_pair.public_line)

    @property
    def client_key(self) -> KeyPair:
        if self._client_key is None:
            raise SshdError("sshd not started")
        return self._client_key

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle ---------------------------------------------------------------------------

    def authorize(self, key: KeyPair) -> None:
        """Allow ``key`` to log in (takes effect for the next connection)."""
        with self.authorized_keys.open("a") as fh:
            fh.write(key.public_line + "\n")

    def start(self, attempts: int = 3) -> ThrowawaySshd:
        """Start sshd and return once it answers with an SSH banner.

        Another process may grab the free port between picking and binding it, so a start
        that fails is retried on a new port, ``attempts`` times in all.
        """
        if self._proc is not None:
            return self
        if not self._sshd.is_file():
            raise SshdError(f"{self._sshd} not found: install openssh-server")
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._host_key = generate_keypair(self.workdir / "ssh_host_ed25519_key", "host")
        if self._client_key is None:
            self._client_key = generate_keypair(self.workdir / "client_ed25519", "client")
        self.authorized_keys.write_text("")
        self.authorize(self._client_key)
        failure = ""
        for _ in range(attempts):
            failure = self._try_start()
            if not failure:
                logger.debug("throwaway sshd on %s:%d (pid %s)", self.address, self.port, self.pid)
                return self
        self._cleanup_dir()
        raise SshdError(f"sshd did not start: {failure}")

    def _try_start(self) -> str:
        """Start sshd once on a fresh port; '' on success, else why it failed."""
        self.port = free_loopback_port(self.address)
        self.config_file.write_text(
            SSHD_CONFIG.format(
                address=self.address,
                port=self.port,
                host_key=self.host_key_pair.private,
                pid_file=self.workdir / "sshd.pid",
                authorized_keys=self.authorized_keys,
                log_level=self._log_level,
            )
        )
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self._sshd), "-D", "-e", "-f", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if wait_for_banner(self.address, self.port, min(deadline, time.monotonic() + 0.5)):
                return ""
        self._terminate()
        tail = self.log_file.read_text(errors="replace").strip()[-1000:]
        return tail or f"no SSH banner on {self.address}:{self.port} within {self._start_timeout}s"

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def _cleanup_dir(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def logins(self) -> int:
        """How many logins sshd accepted so far (needs ``log_level="INFO"``)."""
        if not self.log_file.exists():
            return 0
        return self.log_file.read_text(errors="replace").count("Accepted publickey")

    def stop(self) -> None:
        """Terminate sshd (by its pid), wait for it, and remove a temp dir it created."""
        self._terminate()
        self._cleanup_dir()

    def __enter__(self) -> ThrowawaySshd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
