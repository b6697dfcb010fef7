"""Mail: render the report mail, queue it in the outbox, deliver the outbox with yagmail.

Queueing and delivery are apart so nothing is lost while the mail server is down: a message
stays ``pending`` (with its last error) until a delivery succeeds, and one marked ``sent`` is
never picked up again.

Security: the server's certificate is always verified (``ssl.create_default_context``, plus
``UPKEEP_SMTP_CA_FILE`` when set). ``tls=none`` is plain SMTP for a local relay only: anyone
on the path can read and alter the mail, so upkeep refuses to send a password over it. The
password is read from :class:`SmtpSettings` at login and never logged or stored; errors are
scrubbed of it before they are.
"""

from __future__ import annotations

import base64
import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any, NamedTuple

import yagmail
from pydantic import SecretStr
from sqlalchemy import update
from sqlmodel import Session, col, select
from yagmail.headers import resolve_addresses
from yagmail.message import prepare_message

from models import OutboxMessage, OutboxStatus, utcnow
from tasks.reports import InspectionReport, template_env
from upkeep.settings import SmtpSettings, TlsMode

log = logging.getLogger(__name__)

TEXT_TEMPLATE = "email/inspection_report.txt.j2"
HTML_TEMPLATE = "email/inspection_report.html.j2"
ERROR_LIMIT = 2000


# ---------------------------------------------------------------------------------------------
# Rendering


def report_subject(report: InspectionReport) -> str:
    """One-line subject: contract, customer, score and the worst counts."""
    c = report.counts
    parts = [f"score {report.overall_score}/100"]
    if c["critical"] or c["major"]:
        parts.append(f"{c['critical']} critical, {c['major']} major")
    if report.unreached:
        parts.append(f"{len(report.unreached)} host(s) not reached")
    subject = f"[upkeep] Inspection {report.contract.code} ({report.customer.name}): " + ", ".join(
        parts
    )
    # Inventory text goes into a header: no line breaks, whatever the inventory holds.
    return " ".join(subject.split())


def render_report_email(
    report: InspectionReport, report_url_or_path: str | Path, templates_dir: Path
) -> tuple[str, str, str]:
    """(subject, text, html) of the mail announcing ``report``.

    A :class:`Path` means the report goes along as an attachment (the mail says so); a string
    is a link to it. Text and HTML come from ``email/inspection_report.txt.j2`` and
    ``.html.j2``; the HTML is autoescaped, both use ``StrictUndefined``.
    """
    is_file = isinstance(report_url_or_path, Path)
    context: dict[str, Any] = {
        "report": report,
        "report_is_file": is_file,
        "report_link": str(report_url_or_path),
        "report_name": Path(report_url_or_path).name if is_file else "",
    }
    text = template_env(Path(templates_dir), html=False).get_template(TEXT_TEMPLATE)
    html = template_env(Path(templates_dir), html=True).get_template(HTML_TEMPLATE)
    return report_subject(report), text.render(**context), html.render(**context)


# ---------------------------------------------------------------------------------------------
# The outbox


def queue_message(
    *,
    session: Session,
    contract_id: int | None,
    kind: str,
    subject: str,
    recipients: Sequence[str],
    text_body: str,
    html_body: str,
    attachments: Sequence[str | Path] = (),
) -> OutboxMessage:
    """Store one message as ``pending`` in the caller's transaction; sends nothing."""
    if not recipients:
        raise ValueError("a message needs at least one recipient")
    message = OutboxMessage(
        contract_id=contract_id,
        kind=kind,
        subject=" ".join(subject.split()),
        recipients=list(recipients),
        text_body=text_body,
        html_body=html_body,
        attachments=[str(a) for a in attachments],
    )
    session.add(message)
    session.flush()
    return message


@dataclass
class DeliveryReport:
    """What one :func:`deliver_pending` call did, by outbox message id."""

    sent: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    """Message id -> the error recorded on it."""
    skipped: list[int] = field(default_factory=list)
    """Taken by another delivery running at the same time."""

    @property
    def attempted(self) -> int:
        return len(self.sent) + len(self.failed)


class DeliveryError(Exception):
    """One message could not be delivered; the text is what goes into ``last_error``."""


class _Bodies(NamedTuple):
    text: str
    html: str


class _UpkeepClient(yagmail.SMTP):
    """yagmail's client with two things yagmail 0.16 does not do by itself.

    * The envelope sender (``UPKEEP_SMTP_SENDER``) is not the login user: yagmail's own login
      is skipped and the connection it opened (and secured) is authenticated here, so yagmail
      never looks for a password in a keyring or prompts for one.
    * The mail is a real multipart/alternative: yagmail puts every content string in both the
      text and the HTML part, so its placeholders are replaced with the two bodies.
    """

    def __init__(self, *, auth: tuple[str, SecretStr] | None, **kwargs: Any) -> None:
        super().__init__(smtp_skip_login=True, **kwargs)
        self._auth = auth
        # yagmail's logger prints to stderr by default; upkeep logs the outcome itself.
        self.set_logging(None)

    def login(self) -> None:
        super().login()
        if self._auth is not None:
            user, password = self._auth
            self.smtp.login(user, password.get_secret_value())

    def prepare_send(  # type: ignore[override]
        self,
        to: Any = None,
        subject: Any = None,
        contents: Any = None,
        attachments: Any = None,
        cc: Any = None,
        bcc: Any = None,
        headers: dict[str, str] | None = None,
        prettify_html: bool = True,
        message_id: str | None = None,
        group_messages: bool = True,
    ) -> tuple[list[str], str]:
        if not isinstance(contents, _Bodies):
            raise TypeError("upkeep passes the bodies as _Bodies(text, html)")
        addresses = resolve_addresses(self.user, self.useralias, to, cc, bcc)
        msg = prepare_message(
            self.user,
            self.useralias,
            addresses,
            subject,
            None,
            attachments,
            headers,
            self.encoding,
            False,
            message_id,
            group_messages,
            self.dkim,
        )
        _fill_bodies(msg, contents, self.encoding)
        _mark_attachments(msg)
        return addresses["recipients"], msg.as_string()


def _fill_bodies(msg: Message, bodies: _Bodies, encoding: str) -> None:
    """Put the text and HTML bodies into yagmail's empty multipart/alternative skeleton."""
    alternative = msg.get_payload(0)
    if not isinstance(alternative, Message) or alternative.get_content_type() != (
        "multipart/alternative"
    ):
        raise RuntimeError("unexpected MIME layout from yagmail: no multipart/alternative")
    parts = alternative.get_payload()
    assert isinstance(parts, list)
    filled = set()
    for i, part in enumerate(parts):
        if part.get_content_type() == "text/plain":
            parts[i] = MIMEText(bodies.text, "plain", _charset=encoding)
            filled.add("text")
        elif part.get_content_type() == "multipart/related":
            inner = part.get_payload()
            for j, sub in enumerate(inner):
                if sub.get_content_type() == "text/html":
                    inner[j] = MIMEText(bodies.html, "html", _charset=encoding)
                    filled.add("html")
    if filled != {"text", "html"}:
        raise RuntimeError("unexpected MIME layout from yagmail: missing text or html part")


def _mark_attachments(msg: Message) -> None:
    # yagmail only marks application/* files as attachments; an .html report would otherwise
    # be shown inline by some clients, in place of the mail itself.
    parts = msg.get_payload()
    assert isinstance(parts, list)
    for part in parts[1:]:
        assert isinstance(part, Message)
        if part.get("Content-Disposition") is None:
            name = part.get_param("name")
            filename = name[2] if isinstance(name, tuple) else name
            part.add_header("Content-Disposition", "attachment", filename=str(filename or ""))


def _client_options(smtp: SmtpSettings) -> dict[str, Any]:
    """yagmail constructor arguments for ``smtp``; raises :class:`DeliveryError` if unsafe."""
    auth: tuple[str, SecretStr] | None = None
    if smtp.user:
        if smtp.password is None:
            raise DeliveryError(
                "config: UPKEEP_SMTP_USER is set but UPKEEP_SMTP_PASSWORD is not "
                "(unset the user to send without logging in)"
            )
        if smtp.tls == TlsMode.NONE:
            raise DeliveryError(
                "config: refusing to send the SMTP password without TLS "
                "(UPKEEP_SMTP_TLS=none); use starttls or ssl"
            )
        auth = (smtp.user, smtp.password)
    options: dict[str, Any] = {
        "user": smtp.sender,
        "host": smtp.host,
        "port": smtp.port,
        "auth": auth,
        "timeout": smtp.timeout,
        "soft_email_validation": True,
    }
    cafile = str(smtp.ca_file) if smtp.ca_file else None
    if smtp.tls == TlsMode.STARTTLS:
        options["smtp_ssl"] = False
        options["smtp_starttls"] = {"context": ssl.create_default_context(cafile=cafile)}
    elif smtp.tls == TlsMode.SSL:
        options["smtp_ssl"] = True
        options["smtp_starttls"] = False
        options["context"] = ssl.create_default_context(cafile=cafile)
    else:
        options["smtp_ssl"] = False
        options["smtp_starttls"] = False
    return options


def _describe_refused(refused: dict[str, Any]) -> str:
    items = []
    for address, answer in sorted(refused.items()):
        code, text = answer if isinstance(answer, tuple) and len(answer) == 2 else ("", answer)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        items.append(f"{address} ({code} {text})".replace(" )", ")"))
    return "refused recipients: " + ", ".join(items)


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, DeliveryError):
        return str(exc)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _describe_refused(exc.recipients)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"auth: the server refused the login ({exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"smtp: {exc}"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"sender refused: {exc.sender} ({exc.smtp_code} {exc.smtp_error!r})"
    if isinstance(exc, smtplib.SMTPException):
        return f"smtp: {type(exc).__name__}: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc}"
    if isinstance(exc, OSError):
        return f"connection: {type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _scrub(text: str, password: SecretStr | None) -> str:
    """``text`` without the password in any form a server or library might echo back."""
    if password is not None:
        secret = password.get_secret_value()
        if secret:
            for form in (secret, base64.b64encode(secret.encode()).decode()):
                text = text.replace(form, "***")
    return text[:ERROR_LIMIT]


def _message_id(message: OutboxMessage, sender: str) -> str:
    # The same id on every attempt, so a recipient who got an earlier, partly refused attempt
    # can see the retry is the same message.
    domain = sender.rpartition("@")[2] or "localhost"
    stamp = int(message.created_at.timestamp())
    return f"<upkeep-outbox-{message.id}-{stamp}@{domain}>"


def _send_one(message: OutboxMessage, smtp: SmtpSettings) -> None:
    """Deliver one message or raise; any refused recipient is a failure."""
    missing = [a for a in message.attachments if not Path(a).is_file()]
    if missing:
        raise DeliveryError(f"attachment missing: {', '.join(missing)}")
    client = _UpkeepClient(**_client_options(smtp))
    try:
        result = client.send(
            to=list(message.recipients),
            subject=message.subject,
            contents=_Bodies(message.text_body, message.html_body),
            attachments=list(message.attachments) or None,
            message_id=_message_id(message, smtp.sender),
        )
    finally:
        _close_quietly(client)
    if result is False:
        raise DeliveryError("smtp: the server disconnected and the message was not sent")
    if isinstance(result, dict) and result:
        raise DeliveryError(_describe_refused(result))
    if not isinstance(result, dict):
        raise DeliveryError(f"smtp: unexpected result from yagmail: {type(result).__name__}")


def _close_quietly(client: _UpkeepClient) -> None:
    # After a failed TLS handshake QUIT itself fails; that must not hide the real error.
    try:
        client.close()
    except Exception as exc:
        log.debug("closing the SMTP connection failed: %s", type(exc).__name__)


def _claim(session: Session, message: OutboxMessage) -> bool:
    """Count this attempt, unless another delivery took the message since it was read."""
    now = utcnow()
    result = session.exec(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.id) == message.id,
            col(OutboxMessage.status) == OutboxStatus.PENDING,
            col(OutboxMessage.attempts) == message.attempts,
        )
        .values(attempts=message.attempts + 1, last_attempt_at=now)
    )
    session.commit()
    session.refresh(message)
    return result.rowcount == 1


def deliver_pending(*, session: Session, smtp: SmtpSettings, limit: int = 50) -> DeliveryReport:
    """Try to send up to ``limit`` pending messages, oldest first, with yagmail.

    Each attempt is counted (``attempts``, ``last_attempt_at``) and committed before sending.
    Success marks the message ``sent`` with ``sent_at``; any failure (server down, TLS or
    login refused, a recipient refused, yagmail giving up) leaves it ``pending`` with
    ``last_error``. Each message's outcome is committed on its own, so one failure never loses
    another's ``sent`` state and a sent message is never sent again. Delivery is at least
    once: if the process dies between the server accepting a message and the commit, the next
    run sends it again. A retry after partly refused recipients goes to every recipient.
    """
    report = DeliveryReport()
    pending = session.exec(
        select(OutboxMessage)
        .where(col(OutboxMessage.status) == OutboxStatus.PENDING)
        .order_by(col(OutboxMessage.created_at), col(OutboxMessage.id))
        .limit(limit)
    ).all()
    if pending and smtp.tls == TlsMode.NONE:
        log.warning(
            "sending mail over plain SMTP to %s:%s (UPKEEP_SMTP_TLS=none): only for a local relay",
            smtp.host,
            smtp.port,
        )
    for message in pending:
        assert message.id is not None
        if not _claim(session, message):
            report.skipped.append(message.id)
            continue
        try:
            _send_one(message, smtp)
        except Exception as exc:
            error = _scrub(_describe_error(exc), smtp.password)
            message.last_error = error
            session.add(message)
            session.commit()
            report.failed[message.id] = error
            log.warning(
                "outbox message %s (%s) not delivered, attempt %s: %s",
                message.id,
                message.kind,
                message.attempts,
                error,
            )
            continue
        message.status = OutboxStatus.SENT
        message.sent_at = utcnow()
        message.last_error = None
        session.add(message)
        session.commit()
        report.sent.append(message.id)
        log.info(
            "outbox message %s (%s) sent to %d recipient(s)",
            message.id,
            message.kind,
            len(message.recipients),
        )
    return report
