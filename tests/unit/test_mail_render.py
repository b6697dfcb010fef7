"""Mail bodies from templates only: hostile names in the backup mail and the gate notices."""

from __future__ import annotations

from upkeep.settings import TEMPLATES_DIR
from upkeep.tasks.notify import (
    mail_subject,
    render_approval_email,
    render_backup_email,
    render_gate_notice,
)

TEMPLATES = TEMPLATES_DIR
XSS = "<script>alert(1)</script>"


def test_backup_mail_is_rendered_from_templates_and_escaped() -> None:
    outcomes = [
        {"system": "files-web", "kind": "files", "outcome": "good", "fault": None},
        {
            "system": f"db {XSS}",
            "kind": "postgresql",
            "outcome": "bad",
            "fault": "backup",
            "reason": "corrupt",
            "message": "<a href=x>truncated</a> dump",
        },
    ]
    subject, text, html = render_backup_email(
        templates_dir=TEMPLATES,
        contract_code="ACME & <Co>",
        run_id=42,
        outcomes=outcomes,
        drill=False,
        report_name="backups-ACME-42.html",
    )
    assert subject == "[upkeep] Backup verification ACME & <Co> · run 42: 1 FAILED"
    assert f"- db {XSS} (postgresql): bad — the backup is at fault (corrupt)" in text
    assert "<a href=x>truncated</a> dump" in text  # plain text is not escaped
    assert XSS not in html and "<a href=x>" not in html
    assert "db &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "corrupt: &lt;a href=x&gt;truncated&lt;/a&gt; dump" in html
    assert "ACME &amp; &lt;Co&gt;" in html
    assert "<table" in html and html.count("<tr>") == 3  # header + one row per source
    assert "The full report is attached (backups-ACME-42.html)." in html


def test_backup_mail_for_a_drill_that_passed() -> None:
    subject, text, html = render_backup_email(
        templates_dir=TEMPLATES,
        contract_code="ACME",
        run_id=7,
        outcomes=[{"system": "s", "kind": "files", "outcome": "good"}],
        drill=True,
        report_name="r.html",
    )
    assert subject == "[upkeep] Disaster-recovery drill ACME · run 7: all backups restored"
    assert "system fault" not in text and "system fault" not in html


def test_subjects_tell_runs_apart() -> None:
    one = mail_subject("Approval needed", "ACME", "plan ACME 2026-Q4 (revision 1)", "0a1b2c3d-4e5f")
    two = mail_subject("Approval needed", "ACME", "plan ACME 2026-Q4 (revision 1)", "9f8e7d6c-0000")
    assert one == "[upkeep] Approval needed: ACME · plan ACME 2026-Q4 (revision 1) · run 0a1b2c3d"
    assert one != two
    assert mail_subject("X", "A\r\nBcc: e@x", "s\nt", None) == "[upkeep] X: A Bcc: e@x · s t"


def test_gate_notice_names_the_run_and_escapes_the_subject() -> None:
    subject, _, html = render_gate_notice(
        templates_dir=TEMPLATES,
        kind="expired",
        contract_code="ACME",
        subject=f"plan {XSS}",
        run_url="http://ui.example/runs/flow-run/0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        detail=XSS,
        recipients_role="approver",
    )
    assert subject.endswith("· run 0a1b2c3d")
    assert XSS not in html and "&lt;script&gt;" in html


def test_approval_mail_offers_the_personal_link_first_and_keeps_the_code() -> None:
    link = "https://approve.provider.example/a/" + "Ab_-" * 10 + "xyz"
    subject, text, html = render_approval_email(
        templates_dir=TEMPLATES_DIR,
        person_name="Alice Owner",
        role="approver",
        gate="inspection-plan",
        contract_code="ACME",
        subject="plan <b>Q4</b>",
        evidence_markdown="| host |\n|---|\n| web1 |",
        run_url="http://prefect.internal/runs/flow-run/abc",
        deadline_text="2026-12-04 09:00 CET (Europe/Berlin)",
        code="ABCDE-FGHJK",
        requested_by="eve",
        decide_url=link,
    )
    assert text.index(link) < text.index("ABCDE-FGHJK")
    assert "How to answer without the link\n------------------------------\n" in text
    assert f'href="{link}"' in html and "ABCDE-FGHJK" in html
    assert "<b>Q4</b>" not in html and link not in subject and "ABCDE" not in subject


def test_approval_mail_without_a_page_link_reads_as_before() -> None:
    _, text, html = render_approval_email(
        templates_dir=TEMPLATES_DIR,
        person_name="Alice Owner",
        role="backup approver",
        gate="inspection-plan",
        contract_code="ACME",
        subject="plan",
        evidence_markdown="web1",
        run_url="http://prefect.internal/runs/flow-run/abc",
        deadline_text="soon",
        code="ABCDE-FGHJK",
        requested_by="eve",
    )
    assert "/a/" not in text and "Review and decide" not in html
    assert "How to answer\n-------------\n" in text
