"""An approver answers the plan gate of a served inspection in the Prefect UI, in Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from tests.production.stack import Api, ServeUpkeep
from tests.production.ui import choices, fill, form_field, open_resume_form, submit, text_of

pytestmark = pytest.mark.production


def test_an_approver_approves_the_plan_in_the_prefect_ui_and_the_served_run_completes(
    serve_upkeep: ServeUpkeep, prod_api: Api, browser: Any
) -> None:
    served = serve_upkeep("UIGATE")
    run_id = prod_api.start("inspection", "uigate")
    prod_api.wait_paused(run_id, timeout=180)
    code = served.mailbox.wait_code("alice@customer.example")

    modal = open_resume_form(browser, prod_api.url.removesuffix("/api"), run_id)
    assert "web1" in text_of(modal), "the form does not show the plan"
    assert form_field(modal, "Code").tag_name in ("textarea", "input")
    # Who may answer is a choice of the contract's people: a stranger's name cannot be given.
    assert choices(modal, "Approver") == ["Alice Owner", "Bob Backup"]
    fill(modal, {"Decision": "approve", "Approver": "Alice Owner", "Code": code})
    toast = submit(browser, modal)
    assert "resumed" in toast.lower(), toast

    prod_api.wait_state(run_id, "COMPLETED", timeout=180)
    listed = served.upkeep("approvals", "list")
    assert listed.returncode == 0, listed.stderr
    assert "Alice Owner" in listed.stdout and "approve" in listed.stdout
