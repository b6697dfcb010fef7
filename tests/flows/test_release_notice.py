"""The customer's notice of a release: queued in the outbox when the release is declared,
due ``notice_hours`` before the window, delivered by the approval watchdog's outbox round
once due (not before), to a real SMTP server."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session

from tests.flow_fixtures import host_entry
from upkeep.domain.releases import Declared
from upkeep.flows.watchdog import approval_watchdog
from upkeep.tasks.releases import declare_release

pytestmark = pytest.mark.flows


def test_the_notice_goes_out_when_due_and_not_before(
    engine, load_inventory, smtp_server, tmp_path: Path
) -> None:
    load_inventory(
        [host_entry("app1", None, system="shop"), host_entry("app2", None, system="shop")],
        systems=[
            {
                "name": "shop",
                "smoke_checks": [{"name": "h", "url": "https://shop.acme.example/health"}],
                "release": {
                    "release_command": "/opt/shop/switch {version}",
                    "rollback_command": "/opt/shop/switch --previous",
                    "notice_hours": 48,
                    "rollback_limit_minutes": 45,
                },
            }
        ],
    )
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 test report")
    window = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=5)).strftime(
        "%Y-%m-%d %H:%M"
    )
    with Session(engine) as s:
        row, notice = declare_release(
            session=s,
            declared=Declared(
                "ACME", "shop", "2.4.1", "- <b>faster</b> search", window, report,
                impact="the shop may answer slowly for a minute",
            ),
            declared_by="Eve Engineer",
        )  # fmt: skip
        s.commit()
        assert notice is not None and notice.not_before is not None
        due = notice.not_before
        assert due == row.window_at - timedelta(hours=48)

    approval_watchdog(now=due - timedelta(minutes=1))
    assert smtp_server.handler.received == []  # not before it is due

    approval_watchdog(now=due + timedelta(seconds=1))
    (mail,) = smtp_server.handler.received
    message = mail.message()
    assert mail.rcpt_tos == ["it@acme.example"]
    assert message["Subject"] == f"[upkeep] Release notice: shop 2.4.1 on {window} CET (ACME)"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "- <b>faster</b> search" in text  # the plain part says it as written
    assert "the shop may answer slowly for a minute" in text
    assert "first on app1" in text and "within 45.0 minutes" in text
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "&lt;b&gt;faster&lt;/b&gt;" in html and "<b>faster</b>" not in html  # autoescaped
