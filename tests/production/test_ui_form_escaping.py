"""Hostile inventory text in the resume form of a served run, seen in Chromium.

The form's description is Markdown that the Prefect UI renders with HTML; upkeep escapes
every name in it. In the real UI the contract's and the approver's names, which hold an HTML
link, must show as text: no link to the attacker's site anywhere in the form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.production.stack import Api, ServeUpkeep
from tests.production.ui import fill, open_resume_form, submit, text_of

pytestmark = pytest.mark.production

EVIL_CONTRACT = "<a href=https://evil.example/contract>Click me</a> *ops*"
EVIL_APPROVER = "<a href=https://evil.example/alice>Alice</a>"


def test_hostile_names_show_as_text_in_the_prefect_ui_resume_form(
    serve_upkeep: ServeUpkeep, prod_api: Api, browser: Any, tmp_path: Path
) -> None:
    served = serve_upkeep(
        "UIESC",
        name=EVIL_CONTRACT,
        approvers=[{"name": EVIL_APPROVER, "email": "alice@customer.example"}],
    )
    run_id = prod_api.start("inspection", "uiesc")
    prod_api.wait_paused(run_id, timeout=180)
    code = served.mailbox.wait_code("alice@customer.example")

    modal = open_resume_form(browser, prod_api.url.removesuffix("/api"), run_id)
    browser.save_screenshot(str(tmp_path / "resume-form.png"))
    links = [a.get_attribute("href") or "" for a in modal.find_elements(By.TAG_NAME, "a")]
    assert not [h for h in links if "evil.example" in h], links
    assert modal.find_elements(By.TAG_NAME, "em") == []  # *ops* stayed text
    shown = text_of(modal)
    assert EVIL_CONTRACT in shown  # the plan's contract line, as typed
    assert f"Who may still decide: {EVIL_APPROVER}." in shown
    assert "(Europe/Berlin)" in shown  # the deadline in the contract's timezone

    fill(modal, {"Decision": "approve", "Approver": EVIL_APPROVER, "Code": code})
    assert "resumed" in submit(browser, modal).lower()
    prod_api.wait_state(run_id, "COMPLETED", timeout=180)
