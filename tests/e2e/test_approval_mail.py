"""Approval mails with one-time codes, sent at once (no outbox) to real SMTP servers."""

from __future__ import annotations

import logging
import time

import pytest

from tasks.codes import new_code
from tasks.notify import DeliveryError, render_approval_email, render_gate_notice, send_now
from tests.smtp_fixtures import (
    SENDER,
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpServer,
    StartSmtp,
    free_port,
)
from upkeep.settings import PROJECT_ROOT, TlsMode

pytestmark = pytest.mark.e2e

TEMPLATES = PROJECT_ROOT / "templates"
RUN_ID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
RUN_URL = f"http://127.0.0.1:4200/runs/flow-run/{RUN_ID}"
EVIDENCE = "## Plan\n\n| host | checks |\n|---|---|\n| web-1 <script>alert('x')</script> | disk |\n"


def approval_mail(code: str, role: str = "approver") -> tuple[str, str, str]:
    return render_approval_email(
        templates_dir=TEMPLATES,
        person_name="Dana Owner",
        role=role,
        gate="inspection-plan",
        contract_code="ACME-1",
        subject="Approve the inspection plan for ACME-1",
        evidence_markdown=EVIDENCE,
        run_url=RUN_URL,
        deadline_text="2025-01-18 10:00 CET",
        code=code,
        requested_by="Eve Engineer",
    )


def send(
    server: SmtpServer, recipients: list[str], mail: tuple[str, str, str], **overrides: object
) -> None:
    subject, text, html = mail
    send_now(
        smtp=server.settings(**overrides),
        recipients=recipients,
        subject=subject,
        text=text,
        html=html,
    )


def test_send_now_delivers_the_approval_mail(smtp_server: SmtpServer) -> None:
    code = new_code()
    mail = approval_mail(code)

    send(smtp_server, ["dana@example.com"], mail)

    (received,) = smtp_server.handler.wait_for(1)
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["dana@example.com"]
    message = received.message()
    assert message["Subject"] == mail[0]
    assert "ACME-1" in message["Subject"] and code not in message["Subject"]
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    text_part, html_part = plain.get_content(), html.get_content()
    for part in (text_part, html_part):
        assert code in part
        assert RUN_URL in part
        assert "Eve Engineer" in part
        assert "2025-01-18 10:00 CET" in part
        assert "works once, for this gate only" in part
    assert f'upkeep approve {RUN_ID} --as "Dana Owner" --code {code}' in text_part
    assert f"upkeep approve {RUN_ID} --as &#34;Dana Owner&#34; --code {code}" in html_part
    assert "upkeep reject" in text_part and "--comment" in text_part
    # Markdown as is in the text part, escaped preformatted text in the HTML part.
    assert "<script>alert('x')</script>" in text_part
    assert "<script>" not in html_part
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html_part
    assert "<pre" in html_part and "## Plan" in html_part


def test_escalation_says_why_the_backup_gets_it() -> None:
    subject, text, html = approval_mail(new_code(), role="backup approver")

    assert subject.startswith("[upkeep] Escalated approval: ACME-1")
    assert "escalated to you as backup approver because nobody decided in time" in text
    assert "escalated to you as backup approver</strong> because nobody decided in time" in html


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="role"):
        approval_mail(new_code(), role="boss")


def test_a_name_with_shell_characters_is_quoted_safely() -> None:
    code = new_code()
    _, text, _ = render_approval_email(
        templates_dir=TEMPLATES,
        person_name='Bob "$(rm -rf /)" Smith',
        role="approver",
        gate="inspection-plan",
        contract_code="ACME-1",
        subject="s",
        evidence_markdown="",
        run_url=RUN_URL,
        deadline_text="d",
        code=code,
        requested_by="r",
    )
    assert f"--as 'Bob \"$(rm -rf /)\" Smith' --code {code}" in text


def test_server_down_raises_quickly_without_the_body(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    code = new_code()
    down = SmtpServer(host="127.0.0.1", port=free_port(), handler=None)  # type: ignore[arg-type]
    started = time.monotonic()

    with pytest.raises(DeliveryError) as caught:
        send(down, ["dana@example.com"], approval_mail(code))

    assert time.monotonic() - started < 3
    error = str(caught.value)
    assert error.startswith("connection:")
    assert code not in error and "Evidence" not in error and "Dana Owner" not in error
    # Not chained to the SMTP exception, whose frames hold the message.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert code not in caplog.text


def test_a_refused_recipient_is_a_failure_naming_it(start_smtp: StartSmtp) -> None:
    server = start_smtp(refuse={"nobody@example.net"})
    code = new_code()

    with pytest.raises(DeliveryError) as caught:
        send(server, ["dana@example.com", "nobody@example.net"], approval_mail(code))

    error = str(caught.value)
    assert error.startswith("refused recipients: nobody@example.net (550")
    assert "dana@example.com" not in error and code not in error


def test_all_recipients_refused_is_a_failure(start_smtp: StartSmtp) -> None:
    server = start_smtp(refuse={"nobody@example.net"})

    with pytest.raises(DeliveryError, match="nobody@example.net"):
        send(server, ["nobody@example.net"], approval_mail(new_code()))
    assert server.handler.received == []


def test_no_recipients_or_a_header_injection_is_refused(smtp_server: SmtpServer) -> None:
    mail = approval_mail(new_code())
    with pytest.raises(DeliveryError, match="recipient"):
        send(smtp_server, [], mail)
    with pytest.raises(DeliveryError, match="recipient"):
        send(smtp_server, ["dana@example.com\r\nBcc: eve@example.net"], mail)
    assert smtp_server.handler.received == []


def test_each_mail_gets_its_own_message_id(smtp_server: SmtpServer) -> None:
    # A second code for the same gate has the same sender, recipient and subject; clients
    # that drop duplicate Message-IDs must still show it.
    send(smtp_server, ["dana@example.com"], approval_mail(new_code()))
    send(smtp_server, ["dana@example.com"], approval_mail(new_code()))

    first, second = smtp_server.handler.wait_for(2)
    assert first.message()["Message-ID"] != second.message()["Message-ID"]


def test_starttls_verified_login_and_no_password_in_errors(
    smtp_tls_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mail = approval_mail(new_code())
    tls = {"tls": TlsMode.STARTTLS, "ca_file": smtp_tls_server.ca_file, "user": SMTP_USER}

    with pytest.raises(DeliveryError) as untrusted:
        send(smtp_tls_server, ["dana@example.com"], mail, tls=TlsMode.STARTTLS)
    wrong = "Wr0ng-" + SMTP_PASSWORD
    with pytest.raises(DeliveryError) as refused:
        send(smtp_tls_server, ["dana@example.com"], mail, password=wrong, **tls)
    send(smtp_tls_server, ["dana@example.com"], mail, password=SMTP_PASSWORD, **tls)

    assert str(untrusted.value).startswith("tls:")
    assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)
    assert str(refused.value).startswith("auth:")
    for text in (str(refused.value), caplog.text):
        assert wrong not in text and SMTP_PASSWORD not in text
    (received,) = smtp_tls_server.handler.wait_for(1)
    assert received.tls and received.authenticated


def test_no_password_over_plain_smtp(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryError, match="^config:"):
        send(
            smtp_server,
            ["dana@example.com"],
            approval_mail(new_code()),
            user=SMTP_USER,
            password=SMTP_PASSWORD,
        )
    assert smtp_server.handler.received == []


def test_the_body_is_never_logged(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code = new_code()

    send(smtp_server, ["dana@example.com"], approval_mail(code))

    smtp_server.handler.wait_for(1)
    assert "sent at once" in caplog.text
    assert code not in caplog.text and "Evidence" not in caplog.text


def test_the_expiry_notice_renders_and_sends(smtp_server: SmtpServer) -> None:
    subject, text, html = render_gate_notice(
        templates_dir=TEMPLATES,
        kind="expired",
        contract_code="ACME-1",
        subject="Approve the <b>plan</b>",
        run_url=RUN_URL,
        detail="Opened 2025-01-15 10:00 CET; deadline 2025-01-18 10:00 CET.",
        recipients_role="approver",
    )

    send(smtp_server, ["dana@example.com", "eve@example.com"], (subject, text, html))

    (received,) = smtp_server.handler.wait_for(1)
    assert received.rcpt_tos == ["dana@example.com", "eve@example.com"]
    message = received.message()
    assert message["Subject"] == subject
    assert subject.startswith("[upkeep] Approval expired: ACME-1")
    plain = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert plain is not None and html_part is not None
    for part in (plain.get_content(), html_part.get_content()):
        assert "expired" in part and "nobody decided in time" in part
        assert "the flow run was ended" in part
        assert "deadline 2025-01-18 10:00 CET" in part
        assert RUN_URL in part
    assert "&lt;b&gt;plan&lt;/b&gt;" in html_part.get_content()


def test_the_escalation_notice_renders() -> None:
    subject, text, html = render_gate_notice(
        templates_dir=TEMPLATES,
        kind="escalated",
        contract_code="ACME-1",
        subject="Approve the plan",
        run_url=RUN_URL,
        detail="Escalated to Bob Backup at 2025-01-18 10:00 CET.",
        recipients_role="approver",
    )
    assert subject.startswith("[upkeep] Approval escalated: ACME-1")
    assert "escalated to the backup approver(s)" in text
    assert "Bob Backup" in text and "Bob Backup" in html


def test_an_unknown_notice_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        render_gate_notice(
            templates_dir=TEMPLATES,
            kind="approved",
            contract_code="ACME-1",
            subject="s",
            run_url=RUN_URL,
            detail="",
            recipients_role="approver",
        )
