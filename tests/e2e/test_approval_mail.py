"""Approval mails with one-time codes, sent at once (no outbox) to real SMTP servers."""

from __future__ import annotations

import logging
import re
import time

import pytest

from tests.smtp_fixtures import (
    SENDER,
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpServer,
    StartSmtp,
    free_port,
)
from upkeep.domain.codes import new_code
from upkeep.domain.inspection import InspectionPlan, PlanHost, render_plan_markdown
from upkeep.domain.markup import md_escape
from upkeep.settings import TEMPLATES_DIR, TlsMode
from upkeep.tasks.notify import DeliveryError, render_approval_email, render_gate_notice, send_now

pytestmark = pytest.mark.e2e

TEMPLATES = TEMPLATES_DIR
RUN_ID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
RUN_URL = f"http://127.0.0.1:4200/runs/flow-run/{RUN_ID}"
HOSTILE_HOST = "web-1 <script>alert('x')</script>"
# Evidence is Markdown upkeep builds: every inventory value in it goes through md_escape.
EVIDENCE = f"## Plan\n\n| host | checks |\n|---|---|\n| {md_escape(HOSTILE_HOST)} | disk |\n"


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
    # The plan as Markdown (escapes dropped) in the text part, rendered in the HTML part,
    # with the host name as text in a table cell.
    assert "## Plan" in text_part and f"| {HOSTILE_HOST} | disk |" in text_part
    assert "<script>" not in html_part and "## Plan" not in html_part
    assert re.search(r"<h2[^>]*>Plan</h2>", html_part)
    assert re.search(
        r"<td[^>]*>web-1 &lt;script&gt;alert\('x'\)&lt;/script&gt;</td>\s*<td[^>]*>disk</td>",
        html_part,
    )


def test_escalation_says_why_the_backup_gets_it() -> None:
    subject, text, html = approval_mail(new_code(), role="backup approver")

    assert subject.startswith("[upkeep] Escalated approval: ACME-1")
    assert subject.endswith(f"· run {RUN_ID[:8]}")
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


XSS_LINK = "<a href=https://evil.example>Mallory</a>"


def hostile_plan() -> InspectionPlan:
    return InspectionPlan(
        contract="ACME-1",
        contract_id=1,
        contract_name="Acme *main* [contract](javascript:alert(1))",
        customer="ACME & Söhne <GmbH>",
        timezone="Europe/Berlin",
        window="2025-Q1",
        hosts=[
            PlanHost(id=1, name="web-1", address="10.0.0.1", port=22, role="web", tags=["prod"]),
            PlanHost(id=2, name=XSS_LINK, address="10.0.0.2", port=2222, role="db|primary"),
        ],
        checks=[("disk", "Disk space"), ("updates", "Pending updates")],
        thresholds={},
        approvers=[{"name": XSS_LINK, "email": "mallory@example.com"}],
        requires_approval=True,
        preflight={"web-1": "ok", XSS_LINK: "cannot log in: <b>auth</b> refused"},
    )


def test_the_plan_arrives_rendered_with_every_name_escaped(smtp_server: SmtpServer) -> None:
    """The real plan renderer, the real mail renderer, a real SMTP server: the HTML part
    shows the plan as a table and every hostile name as text."""
    code = new_code()
    plan = hostile_plan()
    mail = render_approval_email(
        templates_dir=TEMPLATES,
        person_name=XSS_LINK,
        role="approver",
        gate="inspection-plan",
        contract_code=plan.contract,
        subject="health inspection plan ACME-1 2025-Q1 (revision 1)",
        evidence_markdown=render_plan_markdown(plan),
        run_url=RUN_URL,
        deadline_text="2025-01-18 10:00 CET (Europe/Berlin)",
        code=code,
        requested_by="<i>Eve</i>",
    )

    send(smtp_server, ["mallory@example.com"], mail)

    (received,) = smtp_server.handler.wait_for(1)
    message = received.message()
    assert message["Subject"] == (
        "[upkeep] Approval needed: ACME-1 · health inspection plan ACME-1 2025-Q1 "
        f"(revision 1) · run {RUN_ID[:8]}"
    )
    html_part = message.get_body(preferencelist=("html",))
    plain = message.get_body(preferencelist=("plain",))
    assert html_part is not None and plain is not None
    html, text = html_part.get_content(), plain.get_content()
    # Rendered: a heading, the facts as a list, the hosts as a table with one row each.
    assert re.search(r"<h3[^>]*>Health inspection plan · ACME &amp; Söhne &lt;GmbH&gt;", html)
    assert "<li><strong>Window:</strong> 2025-Q1 (Europe/Berlin)</li>" in html
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S) for row in rows]
    cells = [c for c in cells if len(c) == 5]
    assert cells == [
        ["web-1", "10.0.0.1:22", "web", "prod", "ok"],
        [
            "&lt;a href=https://evil.example&gt;Mallory&lt;/a&gt;",
            "10.0.0.2:2222",
            "db|primary",
            "",
            "cannot log in: &lt;b&gt;auth&lt;/b&gt; refused",
        ],
    ]
    # No name became markup: not a link, not bold, not italic, not a script.
    assert "<a href=https://evil" not in html and 'href="https://evil' not in html
    assert 'href="javascript' not in html and "<em>" not in html and "<b>" not in html
    assert "<i>" not in html and "&lt;i&gt;Eve&lt;/i&gt;" in html
    assert "Hello &lt;a href=https://evil.example&gt;Mallory&lt;/a&gt;," in html
    assert "Acme *main* [contract](javascript:alert(1))" in html  # shown, not rendered
    # The text part reads as typed.
    assert f"Hello {XSS_LINK}," in text
    assert f"| {XSS_LINK} | 10.0.0.2:2222 | db|primary |" in text
    assert code in html and code in text
