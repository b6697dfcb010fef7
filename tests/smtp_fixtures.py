"""Real SMTP servers (aiosmtpd) for the mail end-to-end tests.

``smtp_server`` is plain SMTP; ``smtp_tls_server`` requires STARTTLS with a certificate for
127.0.0.1/localhost signed by a CA generated for the session (``test_ca``), and accepts the
login ``SMTP_USER``/``SMTP_PASSWORD``. ``start_smtp`` starts more (on a given port, refusing
some recipients, with implicit TLS). Every server is stopped when its test ends. Handlers
record what they received; ``wait_for`` polls with a bound instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from upkeep.settings import SmtpSettings, TlsMode

LOOPBACK = "127.0.0.1"
SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-Pa55-for-tests"  # noqa: S105 - the test server's own login
SENDER = "upkeep@example.com"


def free_port() -> int:
    """A loopback port nothing listens on right now (aiosmtpd cannot bind port 0 itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool

    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """Stores every message; answers ``550 no such user`` for addresses in ``refuse``."""

    refuse: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        content = envelope.original_content or envelope.content
        with self._cond:
            self.received.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=content if isinstance(content, bytes) else content.encode(),
                    tls=session.ssl is not None,
                    authenticated=bool(session.authenticated),
                )
            )
            self._cond.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[Received]:
        """Block until ``count`` messages arrived (at most ``timeout`` s); return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"expected {count} message(s), got {len(self.received)}")
            return list(self.received)


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler
    ca_file: Path | None = None

    def settings(self, **overrides: Any) -> SmtpSettings:
        """SmtpSettings pointing at this server: plain, no login, short timeout by default."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "tls": TlsMode.NONE,
            "sender": SENDER,
            "timeout": 5,
            "user": None,
            "password": None,
            "ca_file": None,
        }
        values.update(overrides)
        return SmtpSettings(**values)


@dataclass(frozen=True)
class CaFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_test_ca(directory: Path) -> CaFiles:
    """A CA and a server certificate for 127.0.0.1 and localhost, as PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("upkeep test CA"))
        .issuer_name(_name("upkeep test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return CaFiles(ca_cert=ca_path, server_cert=cert_path, server_key=key_path)


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CaFiles:
    return make_test_ca(tmp_path_factory.mktemp("smtp-ca"))


StartSmtp = Callable[..., SmtpServer]


@pytest.fixture
def start_smtp(test_ca: CaFiles) -> Iterator[StartSmtp]:
    """``start_smtp(port=None, refuse=(), starttls=False, implicit_tls=False)``.

    ``starttls`` requires STARTTLS before any mail and offers AUTH (``SMTP_USER`` /
    ``SMTP_PASSWORD``) only after it; ``implicit_tls`` wraps the connection in TLS from the
    first byte (what ``tls=ssl`` speaks). TLS servers present the ``test_ca`` certificate.
    """
    controllers: list[Controller] = []

    def start(
        port: int | None = None,
        refuse: Iterable[str] = (),
        starttls: bool = False,
        implicit_tls: bool = False,
    ) -> SmtpServer:
        handler = RecordingHandler(refuse=set(refuse))
        kwargs: dict[str, Any] = {}
        if starttls:
            kwargs.update(
                tls_context=test_ca.server_context(),
                require_starttls=True,
                authenticator=_authenticator,
            )
        if implicit_tls:
            kwargs.update(ssl_context=test_ca.server_context(), authenticator=_authenticator)
        controller = Controller(
            handler,
            hostname=LOOPBACK,
            port=port or free_port(),
            server_hostname="localhost",
            ready_timeout=10,
            **kwargs,
        )
        controller.start()
        controllers.append(controller)
        return SmtpServer(
            host=LOOPBACK,
            port=controller.port,
            handler=handler,
            ca_file=test_ca.ca_cert if (starttls or implicit_tls) else None,
        )

    yield start
    for controller in reversed(controllers):
        controller.stop()


@pytest.fixture
def smtp_server(start_smtp: StartSmtp) -> SmtpServer:
    """Plain SMTP on loopback, accepting every recipient, no login."""
    return start_smtp()


@pytest.fixture
def smtp_tls_server(start_smtp: StartSmtp) -> SmtpServer:
    """STARTTLS required, certificate from ``test_ca``, login ``SMTP_USER``/``SMTP_PASSWORD``."""
    return start_smtp(starttls=True)
