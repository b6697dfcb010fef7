"""The approval page of a served inspection in Chromium, opened from the mailed link.

The approver's browser is a phone (390x844, emulated by Chromium) with JavaScript switched
off: the page must work without it. The rejection with HTML and script in its comment is sent
from a browser with JavaScript on, so an injected script would run there.

Screenshots for the README are written only when ``UPKEEP_SCREENSHOTS`` names a directory
(``UPKEEP_SCREENSHOTS=docs/screenshots``), so a test run never rewrites the repository.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from sqlmodel import Session, select

from tests.polling import wait_until
from tests.production import ui
from tests.production.stack import Api, Served, ServeUpkeep
from tests.production.ui import open_resume_form, text_of
from upkeep.models import Approval

pytestmark = pytest.mark.production

ALICE = "alice@customer.example"
RUN = 240.0
PHONE = {"width": 390, "height": 844, "pixelRatio": 2}
DESKTOP = (1280, 900)
HOSTILE = '<script>alert("x")</script><b>bold</b> & next week'


def chromium(*, javascript: bool, phone: bool) -> Any:
    """Chromium as the ``browser`` fixture starts it, phone-sized (390x844) if ``phone``."""
    driver = ui.chromium(window=DESKTOP, javascript=javascript, phone=PHONE if phone else None)
    driver.set_page_load_timeout(120)  # a decision waits for the flow's verdict (60 s at most)
    return driver


@pytest.fixture(scope="module")
def phone() -> Iterator[Any]:
    """A phone-sized Chromium without JavaScript."""
    driver = chromium(javascript=False, phone=True)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> None:
    """The whole page as ``name`` in ``$UPKEEP_SCREENSHOTS``, when that is set."""
    directory = os.environ.get("UPKEEP_SCREENSHOTS")
    if not directory:
        return
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": clip},
    )
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / name).write_bytes(base64.b64decode(shot["data"]))


def wider_than_the_phone(driver: Any) -> list[str]:
    """Elements reaching past the phone's right edge (the page would scroll sideways),
    measured with element rects, no script; a table scrolls inside its own box."""
    width = PHONE["width"]
    # a page without a working viewport meta is laid out 980 wide and shown shrunk
    assert driver.find_element(By.TAG_NAME, "html").rect["width"] == width
    out = []
    for element in driver.find_elements(By.CSS_SELECTOR, "body *:not(.evidence table *)"):
        rect = element.rect
        if rect["width"] and rect["x"] + rect["width"] > width + 0.5:
            out.append(f"<{element.tag_name} id={element.get_attribute('id')!r}> {rect}")
    return out


def gate_decision(served: Served) -> list[tuple[str | None, str | None]]:
    """(decision, approver) of each of the served instance's gates, oldest first."""
    engine = sa.create_engine(f"sqlite:///{served.workdir / 'data' / 'upkeep.db'}")
    try:
        with Session(engine) as s:
            return [(g.decision, g.approver) for g in s.exec(select(Approval))]
    finally:
        engine.dispose()


def press(driver: Any, button_id: str) -> None:
    """Press a form's button from the keyboard: in phone emulation chromedriver's click is a
    touch tap that never returns when the page has no JavaScript; the browser submits the form
    with the button's name and value all the same."""
    driver.find_element(By.ID, button_id).send_keys(Keys.ENTER)


def shown(driver: Any, css: str, timeout: float = 90) -> Any:
    """The element once the page the browser is loading shows it (a key press returns before
    the form's answer arrives; a decision waits for the flow's verdict)."""
    return wait_until(
        f"the page to show {css}",
        lambda: next(iter(driver.find_elements(By.CSS_SELECTOR, css)), None),
        timeout,
    )


def outcome(driver: Any) -> str:
    """The headline of the page's answer to a decision."""
    return str(shown(driver, "#outcome h2").text)


def test_javascript_is_off_in_the_phone_browser(phone: Any) -> None:
    phone.get("data:text/html,<title>off</title><script>document.title='on'</script>")
    assert phone.title == "off"


def test_an_approver_approves_on_a_phone_without_javascript_and_the_run_completes(
    serve_upkeep: ServeUpkeep, prod_api: Api, phone: Any
) -> None:
    served = serve_upkeep("PAGEPHONE", name="Web shop operations")
    run_id = prod_api.start("inspection", "pagephone")
    link = served.mailbox.wait_link(ALICE, timeout=RUN)
    assert link.startswith(f"{served.page_url}/a/"), link
    prod_api.wait_paused(run_id, timeout=RUN)

    phone.get(link)
    assert "web1" in phone.find_element(By.ID, "evidence").text
    assert phone.find_element(By.ID, "contract").text == "PAGEPHONE · Web shop operations"
    assert phone.find_element(By.ID, "customer").text == "PAGEPHONE GmbH"
    assert phone.find_element(By.ID, "deadline").text.endswith("(Europe/Berlin)")
    assert "0 of 1 needed" in phone.find_element(By.ID, "approvals").text
    assert wider_than_the_phone(phone) == []
    screenshot(phone, "approval-page-phone.png")
    if os.environ.get("UPKEEP_SCREENSHOTS"):
        desktop = chromium(javascript=False, phone=False)
        try:
            desktop.get(link)  # only a look: opening the page decides nothing
            screenshot(desktop, "approval-page-desktop.png")
        finally:
            desktop.quit()

    # Reject without a reason: the form comes back with the error, nothing is sent.
    press(phone, "reject")
    assert "a rejection needs a reason" in shown(phone, "#error").text
    assert phone.find_elements(By.ID, "outcome") == []
    assert prod_api.state(run_id)[0] == "PAUSED"
    assert gate_decision(served) == [(None, None)]

    press(phone, "approve")
    assert outcome(phone) == "Accepted: the request is approved"
    assert phone.find_elements(By.ID, "decide") == []  # nothing left to click
    assert wider_than_the_phone(phone) == []
    screenshot(phone, "approval-page-decided-phone.png")
    prod_api.wait_state(run_id, "COMPLETED", timeout=RUN)
    assert gate_decision(served) == [("approve", "Alice Owner")]


def test_a_rejection_with_html_and_script_stays_text_where_it_is_shown_later(
    serve_upkeep: ServeUpkeep, prod_api: Api, browser: Any
) -> None:
    served = serve_upkeep("PAGEHTML")
    run_id = prod_api.start("inspection", "pagehtml")
    link = served.mailbox.wait_link(ALICE, timeout=RUN)
    prod_api.wait_paused(run_id, timeout=RUN)

    browser.get(link)
    browser.find_element(By.ID, "comment").send_keys(HOSTILE)
    browser.find_element(By.ID, "reject").click()
    assert outcome(browser) == "Accepted: the request is rejected"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 - the property raises when no alert is open
    assert browser.find_elements(By.XPATH, "//b[normalize-space()='bold']") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#outcome script") == []
    assert HOSTILE in browser.find_element(By.ID, "outcome").text  # the comment on record
    assert gate_decision(served)[0] == ("reject", "Alice Owner")

    # The engineer's revision form in the Prefect UI quotes the rejection, as typed.
    wait_until("the revision gate", lambda: len(gate_decision(served)) == 2, timeout=RUN)
    prod_api.wait_paused(run_id, timeout=RUN)
    modal = open_resume_form(browser, prod_api.url.removesuffix("/api"), run_id)
    assert f"Alice Owner: {HOSTILE}" in text_of(modal)
    assert modal.find_elements(By.TAG_NAME, "script") == []
    assert modal.find_elements(By.XPATH, ".//b[normalize-space()='bold']") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018

    # The engineer resubmits quoting the customer; the revised plan is mailed with a new link.
    note = f"moved as asked: {HOSTILE}"
    result = prod_api.answer(
        run_id, {"action": "resubmit", "engineer": "Eve", "note": note}, timeout=RUN
    )
    assert result["status"] == "ACCEPT", result
    revised = served.mailbox.wait_link(ALICE, 2, timeout=RUN)
    assert revised != link

    browser.get(revised)
    evidence = browser.find_element(By.ID, "evidence")
    assert "revision 2" in evidence.text
    assert note in evidence.text
    assert evidence.find_elements(By.TAG_NAME, "script") == []
    assert evidence.find_elements(By.XPATH, ".//b[normalize-space()='bold']") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018

    # The first link died with its plan.
    browser.get(link)
    assert browser.find_elements(By.ID, "decide") == []
    assert browser.find_element(By.ID, "message").text
