"""The annual service plan: files the customer can read and import, mailed at the year's start."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from upkeep.flows.annual_plan import AnnualPlanParams, send_annual_plan
from upkeep.inventory import apply_inventory, load_inventory_file

pytestmark = pytest.mark.flows

GOOD = Path(__file__).parent.parent / "fixtures" / "inventory" / "good.yaml"


def test_annual_plan_is_written_and_mailed(engine, flow_env, smtp_server) -> None:
    with Session(engine) as s:
        apply_inventory(s, load_inventory_file(GOOD))
        s.commit()
    outcome = send_annual_plan(AnnualPlanParams(contract="ACME-OPS", year=2027))
    assert outcome.planned["Health inspection"] == 4
    assert outcome.planned["Service report"] == 12
    ics = Path(outcome.ics).read_text()
    assert ics.startswith("BEGIN:VCALENDAR") and ics.count("BEGIN:VEVENT") >= 4 + 12 + 12
    assert "DTSTART:20270106T010000Z" in ics  # the blackout moved 5 Jan 02:00 CET to 6 Jan
    html = Path(outcome.html).read_text()
    assert "ACME" in html and "freeze" in html
    (mail,) = smtp_server.handler.wait_for(1)
    assert sorted(mail.rcpt_tos) == ["it@acme.example", "paul@provider.example"]
    names = {p.get_filename() for p in mail.message().iter_attachments()}
    assert names == {Path(outcome.html).name, Path(outcome.ics).name}
