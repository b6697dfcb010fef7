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
import re
import shlex
import smtplib
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.mime.text import MIMEText
from email.utils import make_msgid
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import yagmail
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from pydantic import SecretStr
from sqlalchemy import or_, update
from sqlmodel import Session, col, select
from yagmail.headers import resolve_addresses
from yagmail.message import prepare_message

from upkeep.db import open_session
from upkeep.domain.backups import SourceOutcome
from upkeep.domain.inspection_report import InspectionReport
from upkeep.domain.markup import markdown_html, markdown_plain
from upkeep.models import OutboxMessage, OutboxStatus, utcnow
from upkeep.settings import SmtpSettings, TlsMode
from upkeep.tasks.records import get_contract
from upkeep.tasks.render import template_env

log = logging.getLogger(__name__)

TEXT_TEMPLATE = "email/inspection_report.txt.j2"
HTML_TEMPLATE = "email/inspection_report.html.j2"
ERROR_LIMIT = 2000


# ---------------------------------------------------------------------------------------------
# Rendering


def report_subject(report: InspectionReport) -> str:
    """One-line subject: contract, customer, score, the worst counts, the window and the run."""
    c = report.counts
    parts = [f"score {report.overall_score}/100"]
    if c["critical"] or c["major"]:
        parts.append(f"{c['critical']} critical, {c['major']} major")
    if report.unreached:
        parts.append(f"{len(report.unreached)} host(s) not reached")
    subject = f"[upkeep] Inspection {report.contract.code} ({report.customer.name}): " + ", ".join(
        parts
    )
    # Which inspection: the window and the run, so two reports of one contract differ.
    if report.run.window:
        subject += f" · {report.run.window}"
    subject += f" · run {report.run.id}"
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


BACKUP_TEXT_TEMPLATE = "email/backup_report.txt.j2"
BACKUP_HTML_TEMPLATE = "email/backup_report.html.j2"


def render_backup_email(
    *,
    templates_dir: str | Path,
    contract_code: str,
    run_id: int,
    outcomes: Sequence[SourceOutcome | Mapping[str, Any]],
    drill: bool,
    report_name: str,
) -> tuple[str, str, str]:
    """(subject, text, html) of the mail about a backup verification or drill run.

    ``outcomes`` are the flow's per-source outcomes (or mappings of their fields). From
    ``email/backup_report.txt.j2`` and ``.html.j2`` (autoescaped,
    ``StrictUndefined``); the subject names the contract, the run and how many failed.
    """
    what = "Disaster-recovery drill" if drill else "Backup verification"
    typed = [SourceOutcome.model_validate(o) for o in outcomes]
    bad = [o for o in typed if not o.good]
    context: dict[str, Any] = {
        "what": what,
        "contract_code": contract_code,
        "outcomes": [
            {k: getattr(o, k) or "" for k in ("system", "kind", "outcome", "fault", "reason")}
            | {"message": o.message}
            for o in typed
        ],
        "system_fault": any(o.fault == "system" for o in bad),
        "report_name": report_name,
    }
    text, html = _render_pair(templates_dir, BACKUP_TEXT_TEMPLATE, BACKUP_HTML_TEMPLATE, context)
    verdict = f"{len(bad)} FAILED" if bad else "all backups restored"
    return _one_line(f"[upkeep] {what} {contract_code} · run {run_id}: {verdict}"), text, html


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
    not_before: datetime | None = None,
) -> OutboxMessage:
    """Store one message as ``pending`` in the caller's transaction (not delivered before
    ``not_before`` when given); sends nothing."""
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
        not_before=not_before,
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
    _deliver(
        smtp,
        recipients=list(message.recipients),
        subject=message.subject,
        bodies=_Bodies(message.text_body, message.html_body),
        attachments=list(message.attachments),
        message_id=_message_id(message, smtp.sender),
    )


def _deliver(
    smtp: SmtpSettings,
    *,
    recipients: list[str],
    subject: str,
    bodies: _Bodies,
    attachments: list[str] | None = None,
    message_id: str | None = None,
) -> None:
    """Send one message over a fresh connection or raise; any refused recipient is a failure."""
    client = _UpkeepClient(**_client_options(smtp))
    try:
        result = client.send(
            to=recipients,
            subject=subject,
            contents=bodies,
            attachments=attachments or None,
            message_id=message_id,
        )
    finally:
        # yagmail keeps a message it gave up on in memory for a later retry; upkeep retries
        # on its own terms, and an approval mail's body (its code) must not linger anywhere.
        client.unsent.clear()
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


def deliver_pending(
    *, session: Session, smtp: SmtpSettings, limit: int = 50, now: datetime | None = None
) -> DeliveryReport:
    """Try to send up to ``limit`` pending messages that are due (``not_before`` passed),
    oldest first, with yagmail.

    Each attempt is counted (``attempts``, ``last_attempt_at``) and committed before sending.
    Success marks the message ``sent`` with ``sent_at``; any failure (server down, TLS or
    login refused, a recipient refused, yagmail giving up) leaves it ``pending`` with
    ``last_error``. Each message's outcome is committed on its own, so one failure never loses
    another's ``sent`` state and a sent message is never sent again. Delivery is at least
    once: if the process dies between the server accepting a message and the commit, the next
    run sends it again. A retry after partly refused recipients goes to every recipient.
    """
    report = DeliveryReport()
    due = now or utcnow()
    pending = session.exec(
        select(OutboxMessage)
        .where(
            col(OutboxMessage.status) == OutboxStatus.PENDING,
            or_(col(OutboxMessage.not_before).is_(None), col(OutboxMessage.not_before) <= due),
        )
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


# ---------------------------------------------------------------------------------------------
# Approval mails: one-time codes, sent at once and never through the outbox

APPROVAL_TEXT_TEMPLATE = "email/approval_request.txt.j2"
APPROVAL_HTML_TEMPLATE = "email/approval_request.html.j2"
NOTICE_TEXT_TEMPLATE = "email/gate_notice.txt.j2"
NOTICE_HTML_TEMPLATE = "email/gate_notice.html.j2"

APPROVAL_ROLES = ("approver", "backup approver")
NOTICE_KINDS = ("expired", "escalated")

_RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]*")
# Characters that stay literal inside double quotes in a POSIX shell.
_DOUBLE_QUOTE_SAFE = re.compile(r"[^\"$`\\!\r\n]*")


def _one_line(text: str) -> str:
    # Header values come from inventory and user input: no line breaks, whatever they hold.
    return " ".join(text.split())


def _run_id_from_url(run_url: str) -> str | None:
    """The last path segment of a Prefect UI flow-run link (``.../runs/flow-run/<id>``)."""
    last = urlsplit(run_url).path.rstrip("/").rpartition("/")[2]
    return last if _RUN_ID.fullmatch(last) else None


def _shell_arg(value: str) -> str:
    """``value`` quoted for the ``upkeep`` command line shown in the mail."""
    if _DOUBLE_QUOTE_SAFE.fullmatch(value):
        return f'"{value}"'
    return shlex.quote(value)


def mail_subject(prefix: str, contract_code: str, subject: str, run_id: str | None) -> str:
    """``[upkeep] Approval needed: ACME · inspection plan ACME 2026-Q4 (revision 2) · run
    0a1b2c3d``: contract, what is asked (process, period, round) and the run, so two gates
    of one contract are told apart in an inbox. One line, whatever the inventory holds."""
    run = f" · run {run_id[:8]}" if run_id and _RUN_ID.fullmatch(run_id) else ""
    return _one_line(f"[upkeep] {prefix}: {contract_code} · {subject}{run}")


def _render_pair(
    templates_dir: str | Path, text_name: str, html_name: str, context: dict[str, Any]
) -> tuple[str, str]:
    directory = Path(templates_dir)
    text = template_env(directory, html=False).get_template(text_name).render(**context)
    html = template_env(directory, html=True).get_template(html_name).render(**context)
    return text, html


def render_approval_email(
    *,
    templates_dir: str | Path,
    person_name: str,
    role: str,
    gate: str,
    contract_code: str,
    subject: str,
    evidence_markdown: str,
    run_url: str,
    deadline_text: str,
    code: str,
    requested_by: str,
    flow_run_id: str | None = None,
    decide_url: str = "",
) -> tuple[str, str, str]:
    """(subject, text, html) of the mail asking ``person_name`` to decide a gate.

    ``decide_url`` is the person's own link to the approval page (it works without the
    code); when given, the mail offers it first.

    ``role`` is ``"approver"`` or ``"backup approver"`` (the gate was escalated because nobody
    decided in time). Both bodies show what is asked, the evidence, who started the run, the
    deadline, the link to the flow run, the code and how to answer in the UI or with
    ``upkeep approve`` / ``upkeep reject``. The evidence is Markdown upkeep built (every name in
    it escaped with ``md_escape``): the HTML part shows it rendered (tables as tables, raw HTML
    as text, see :func:`tasks.markup.markdown_html`), the text part as Markdown with the
    escapes dropped. The subject names the contract, what is asked and the run, never the
    code. ``flow_run_id`` defaults to the last segment of ``run_url``. From
    ``email/approval_request.txt.j2`` and ``.html.j2``; the HTML is autoescaped, both use
    ``StrictUndefined``.
    """
    if role not in APPROVAL_ROLES:
        raise ValueError(f"role must be one of {', '.join(APPROVAL_ROLES)}, not {role!r}")
    escalated = role == "backup approver"
    run_id = flow_run_id or _run_id_from_url(run_url) or "<flow run id>"
    context: dict[str, Any] = {
        "person_name": person_name,
        "role": role,
        "escalated": escalated,
        "gate": gate,
        "contract_code": contract_code,
        "subject": subject,
        "evidence_text": markdown_plain(evidence_markdown),
        "evidence_html": markdown_html(evidence_markdown),
        "run_url": run_url,
        "flow_run_id": run_id,
        "deadline_text": deadline_text,
        "code": code,
        "requested_by": requested_by,
        "as_arg": _shell_arg(person_name),
        "decide_url": decide_url,
    }
    text, html = _render_pair(
        templates_dir, APPROVAL_TEXT_TEMPLATE, APPROVAL_HTML_TEMPLATE, context
    )
    prefix = "Escalated approval" if escalated else "Approval needed"
    return mail_subject(prefix, contract_code, subject, run_id), text, html


def render_gate_notice(
    *,
    templates_dir: str | Path,
    kind: str,
    contract_code: str,
    subject: str,
    run_url: str,
    detail: str,
    recipients_role: str,
) -> tuple[str, str, str]:
    """(subject, text, html) of a notice about a gate that carries no code.

    ``kind`` ``"expired"``: nobody decided in time and the run was ended; ``"escalated"``: an
    FYI to the original approvers that the gate went to the backup approvers. ``detail`` is
    shown as given (e.g. when the gate was opened and its deadline); ``recipients_role`` says
    why the reader gets the notice. Safe for the outbox: no secret in it. From
    ``email/gate_notice.txt.j2`` and ``.html.j2`` (autoescaped, ``StrictUndefined``).
    """
    if kind not in NOTICE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(NOTICE_KINDS)}, not {kind!r}")
    context: dict[str, Any] = {
        "kind": kind,
        "contract_code": contract_code,
        "subject": subject,
        "run_url": run_url,
        "detail": detail,
        "recipients_role": recipients_role,
    }
    text, html = _render_pair(templates_dir, NOTICE_TEXT_TEMPLATE, NOTICE_HTML_TEMPLATE, context)
    prefix = "Approval expired" if kind == "expired" else "Approval escalated"
    return mail_subject(prefix, contract_code, subject, _run_id_from_url(run_url)), text, html


def send_now(
    *, smtp: SmtpSettings, recipients: list[str], subject: str, text: str, html: str
) -> None:
    """Deliver one message now, bypassing the outbox; raise :class:`DeliveryError` on failure.

    For mails carrying a one-time code: nothing is stored, so on failure the caller discards
    the code's hash and issues a new code later. Same client, TLS verification and login as
    :func:`deliver_pending`. Any failure (config, connection, TLS, login, yagmail giving up,
    any recipient refused) raises :class:`DeliveryError` whose message never holds the
    password or the body; the body is never logged. A recipient the server accepted may have
    received the mail even when another one was refused.
    """
    if not recipients:
        raise DeliveryError("config: a message needs at least one recipient")
    if any(not r.strip() or _has_control_chars(r) for r in recipients):
        raise DeliveryError("config: a recipient address is empty or has a line break in it")
    if smtp.tls == TlsMode.NONE:
        log.warning(
            "sending mail over plain SMTP to %s:%s (UPKEEP_SMTP_TLS=none): only for a local relay",
            smtp.host,
            smtp.port,
        )
    try:
        _deliver(
            smtp,
            recipients=list(recipients),
            subject=_one_line(subject),
            bodies=_Bodies(text, html),
            message_id=_fresh_message_id(smtp.sender),
        )
    except Exception as exc:
        # No chaining: the original exception and its frames are not needed and would carry
        # the message (with its code) along wherever the error is logged.
        raise DeliveryError(_scrub(_describe_error(exc), smtp.password)) from None
    log.info("mail %r sent at once to %d recipient(s)", _one_line(subject), len(recipients))


def _has_control_chars(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _fresh_message_id(sender: str) -> str:
    # yagmail's default id is a hash of from, to and subject: a second code for the same gate
    # would repeat it, and clients that drop duplicate Message-IDs would hide the new code.
    domain = sender.rpartition("@")[2] or "localhost"
    return make_msgid(idstring="upkeep-approval", domain=domain)


def queue_and_deliver(
    *,
    smtp: SmtpSettings,
    contract_id: int | None,
    kind: str,
    subject: str,
    recipients: list[str],
    text_body: str,
    html_body: str,
    attachments: list[str] | tuple[str, ...] = (),
) -> DeliveryReport:
    """Queue one message, then deliver everything pending: this one and any left by earlier
    runs. A message that cannot go out stays in the outbox with its error."""
    with open_session() as db:
        queue_message(
            session=db,
            contract_id=contract_id,
            kind=kind,
            subject=subject,
            recipients=recipients,
            text_body=text_body,
            html_body=html_body,
            attachments=attachments,
        )
    with open_session() as db:
        return deliver_pending(session=db, smtp=smtp)


@dataclass(frozen=True)
class Mail:
    """One message to a contract's recipients, rendered."""

    subject: str
    text: str
    html: str
    attachments: tuple[str, ...] = ()


def render_mail(
    templates_dir: Path,
    template: str,
    subject: str,
    context: Mapping[str, Any],
    attachments: Sequence[str] = (),
) -> Mail:
    """``email/<template>.txt.j2`` and ``email/<template>.html.j2`` (autoescaped) rendered
    with ``context``."""
    text = template_env(templates_dir, html=False).get_template(f"email/{template}.txt.j2")
    html = template_env(templates_dir, html=True).get_template(f"email/{template}.html.j2")
    return Mail(subject, text.render(**context), html.render(**context), tuple(attachments))


def mail_recipients(
    contract_code: str, kind: str, compose: Callable[[], Mail], *, smtp: SmtpSettings
) -> dict[str, Any]:
    """Mail a contract's report recipients: the one way a process sends its report.

    ``compose`` is called only when the contract has recipients. The message is queued in the
    outbox first, then everything pending is delivered; without recipients only what earlier
    runs left is delivered. A failure stays in the outbox for the next run and is logged,
    never raised. Returns ``{"sent", "failed", "queued"}``.
    """
    with open_session() as db:
        # a run's report goes out even if its contract left the inventory meanwhile
        contract = get_contract(session=db, code=contract_code, active_only=False)
        recipients, contract_id = list(contract.report_recipients), contract.id
    if recipients:
        mail = compose()
        delivery = queue_and_deliver(
            smtp=smtp,
            contract_id=contract_id,
            kind=kind,
            subject=mail.subject,
            recipients=recipients,
            text_body=mail.text,
            html_body=mail.html,
            attachments=mail.attachments,
        )
    else:
        _run_log().warning("contract %s has no report recipients", contract_code)
        with open_session() as db:
            delivery = deliver_pending(session=db, smtp=smtp)
    if delivery.failed:
        _run_log().warning(
            "mail not delivered, kept in the outbox for the next run: %s", delivery.failed
        )
    return {"sent": delivery.sent, "failed": delivery.failed, "queued": bool(recipients)}


def _run_log() -> Any:
    try:
        return get_run_logger()
    except MissingContextError:
        return log
