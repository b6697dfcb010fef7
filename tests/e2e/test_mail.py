"""Outbox delivery against real SMTP servers (aiosmtpd on loopback)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.smtp_fixtures import (
    SENDER,
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpServer,
    StartSmtp,
    free_port,
)
from upkeep.models import OutboxMessage, OutboxStatus
from upkeep.settings import TlsMode
from upkeep.tasks.notify import deliver_pending, queue_message

pytestmark = pytest.mark.e2e

TEXT = "Plain text body\nsecond line"
HTML = "<html><body><h1>Report</h1><p>html body</p></body></html>"


@pytest.fixture
def attachment(tmp_path: Path) -> Path:
    path = tmp_path / "inspection-ACME-1-2025-01-15.html"
    path.write_text("<html><body>the full report</body></html>", encoding="utf-8")
    return path


def queue(
    engine: sa.Engine,
    recipients: list[str],
    attachments: list[Path] | None = None,
    subject: str = "Inspection ACME",
) -> int:
    with Session(engine) as session:
        message = queue_message(
            session=session,
            contract_id=None,
            kind="inspection_report",
            subject=subject,
            recipients=recipients,
            text_body=TEXT,
            html_body=HTML,
            attachments=attachments or [],
        )
        session.commit()
        assert message.id is not None
        return message.id


def stored(engine: sa.Engine, message_id: int) -> OutboxMessage:
    with Session(engine) as session:
        message = session.get(OutboxMessage, message_id)
        assert message is not None
        return message


def deliver(engine: sa.Engine, server: SmtpServer, **overrides: object):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return deliver_pending(session=session, smtp=server.settings(**overrides))


def test_delivers_text_html_and_attachment(
    engine: sa.Engine, smtp_server: SmtpServer, attachment: Path
) -> None:
    recipients = ["ops@example.com", "Chef@Customer.example"]
    message_id = queue(engine, recipients, [attachment], subject="Inspektion Müller GmbH")

    result = deliver(engine, smtp_server)

    assert result.sent == [message_id] and result.failed == {}
    (received,) = smtp_server.handler.wait_for(1)
    assert received.mail_from == SENDER
    assert received.rcpt_tos == recipients
    mail = received.message()
    assert mail["Subject"] == "Inspektion Müller GmbH"
    assert mail["From"].addresses[0].addr_spec == SENDER
    plain = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert plain is not None and plain.get_content().strip() == TEXT
    assert html is not None and "<h1>Report</h1>" in html.get_content()
    assert html.get_content_type() == "text/html"
    attachments = list(mail.iter_attachments())
    assert [a.get_filename() for a in attachments] == [attachment.name]
    assert attachments[0].get_content_disposition() == "attachment"
    assert b"the full report" in attachments[0].get_payload(decode=True)

    row = stored(engine, message_id)
    assert row.status == OutboxStatus.SENT
    assert row.attempts == 1
    assert row.sent_at is not None and row.last_attempt_at is not None
    assert row.last_error is None


def test_server_down_then_up_delivers_exactly_once(
    engine: sa.Engine, start_smtp: StartSmtp
) -> None:
    port = free_port()
    message_id = queue(engine, ["ops@example.com"])
    down = SmtpServer(host="127.0.0.1", port=port, handler=None)  # type: ignore[arg-type]

    first = deliver(engine, down)

    assert first.sent == [] and list(first.failed) == [message_id]
    row = stored(engine, message_id)
    assert row.status == OutboxStatus.PENDING
    assert row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith("connection:")

    server = start_smtp(port=port)
    second = deliver(engine, server)
    third = deliver(engine, server)

    assert second.sent == [message_id]
    assert third.sent == [] and third.failed == {} and third.attempted == 0
    assert len(server.handler.wait_for(1)) == 1
    row = stored(engine, message_id)
    assert row.status == OutboxStatus.SENT
    assert row.attempts == 2
    assert row.last_error is None


def test_one_failure_does_not_stop_the_others(
    engine: sa.Engine, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    broken = queue(engine, ["ops@example.com"], [tmp_path / "gone.html"])
    fine = queue(engine, ["ops@example.com"])

    result = deliver(engine, smtp_server)

    assert result.sent == [fine]
    assert result.failed[broken].startswith("attachment missing:")
    assert stored(engine, broken).status == OutboxStatus.PENDING
    assert stored(engine, fine).status == OutboxStatus.SENT
    assert len(smtp_server.handler.wait_for(1)) == 1


def test_partly_refused_recipients_are_not_sent(engine: sa.Engine, start_smtp: StartSmtp) -> None:
    server = start_smtp(refuse={"nobody@example.net"})
    message_id = queue(engine, ["ops@example.com", "nobody@example.net"])

    result = deliver(engine, server)

    assert result.sent == []
    row = stored(engine, message_id)
    assert row.status == OutboxStatus.PENDING
    assert row.sent_at is None
    assert row.last_error is not None
    assert row.last_error.startswith("refused recipients: nobody@example.net (550")
    assert "ops@example.com" not in row.last_error
    # The accepted recipient did get it: the server saw one message, for ops only.
    (received,) = server.handler.wait_for(1)
    assert received.rcpt_tos == ["ops@example.com"]


def test_all_recipients_refused_is_a_failure(engine: sa.Engine, start_smtp: StartSmtp) -> None:
    server = start_smtp(refuse={"nobody@example.net"})
    message_id = queue(engine, ["nobody@example.net"])

    deliver(engine, server)

    row = stored(engine, message_id)
    assert row.status == OutboxStatus.PENDING
    assert row.last_error is not None and "nobody@example.net" in row.last_error
    assert server.handler.received == []


def test_starttls_with_an_untrusted_certificate_is_refused(
    engine: sa.Engine, smtp_tls_server: SmtpServer
) -> None:
    message_id = queue(engine, ["ops@example.com"])

    result = deliver(engine, smtp_tls_server, tls=TlsMode.STARTTLS)

    assert result.sent == []
    row = stored(engine, message_id)
    assert row.status == OutboxStatus.PENDING
    assert row.last_error is not None and row.last_error.startswith("tls:")
    assert "CERTIFICATE_VERIFY_FAILED" in row.last_error
    assert smtp_tls_server.handler.received == []


def test_starttls_with_the_ca_file_logs_in_and_delivers(
    engine: sa.Engine, smtp_tls_server: SmtpServer
) -> None:
    message_id = queue(engine, ["ops@example.com"])

    result = deliver(
        engine,
        smtp_tls_server,
        tls=TlsMode.STARTTLS,
        ca_file=smtp_tls_server.ca_file,
        user=SMTP_USER,
        password=SMTP_PASSWORD,
    )

    assert result.sent == [message_id]
    (received,) = smtp_tls_server.handler.wait_for(1)
    assert received.tls and received.authenticated
    assert stored(engine, message_id).status == OutboxStatus.SENT


def test_implicit_tls_with_the_ca_file_delivers(engine: sa.Engine, start_smtp: StartSmtp) -> None:
    server = start_smtp(implicit_tls=True)
    message_id = queue(engine, ["ops@example.com"])

    untrusted = deliver(engine, server, tls=TlsMode.SSL)
    trusted = deliver(engine, server, tls=TlsMode.SSL, ca_file=server.ca_file)

    assert untrusted.failed[message_id].startswith("tls:")
    assert trusted.sent == [message_id]
    assert len(server.handler.wait_for(1)) == 1


def test_password_never_in_errors_or_logs(
    engine: sa.Engine, smtp_tls_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-" + SMTP_PASSWORD
    message_id = queue(engine, ["ops@example.com"])

    result = deliver(
        engine,
        smtp_tls_server,
        tls=TlsMode.STARTTLS,
        ca_file=smtp_tls_server.ca_file,
        user=SMTP_USER,
        password=wrong,
    )

    row = stored(engine, message_id)
    assert row.status == OutboxStatus.PENDING
    assert row.last_error is not None and row.last_error.startswith("auth:")
    assert result.failed[message_id] == row.last_error
    assert "not delivered" in caplog.text
    columns = repr([getattr(row, name) for name in OutboxMessage.model_fields])
    for text in (row.last_error, caplog.text, columns):
        assert wrong not in text
        assert SMTP_PASSWORD not in text
    assert smtp_tls_server.handler.received == []


def test_no_password_in_clear(engine: sa.Engine, smtp_server: SmtpServer) -> None:
    message_id = queue(engine, ["ops@example.com"])

    deliver(engine, smtp_server, user=SMTP_USER, password=SMTP_PASSWORD)

    row = stored(engine, message_id)
    assert row.status == OutboxStatus.PENDING
    assert row.last_error is not None and row.last_error.startswith("config:")
    assert smtp_server.handler.received == []


def test_queue_message_only_stores(engine: sa.Engine) -> None:
    message_id = queue(engine, ["ops@example.com"])

    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage)).all()
    assert [(r.id, r.status, r.attempts, r.sent_at) for r in rows] == [
        (message_id, OutboxStatus.PENDING, 0, None)
    ]
