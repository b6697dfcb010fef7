"""The Prefect UI's resume form, driven in a real browser like an approver would use it."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.polling import wait_until

CONTROL = "following::*[self::select or self::textarea or self::input][1]"


def chromium(
    *, window: tuple[int, int] = (1366, 900), javascript: bool = True, phone: Any = None
) -> Any:
    """Debian's headless Chromium driven through Debian's chromedriver (installed by
    scripts/setup; no driver or browser is ever downloaded). ``javascript=False``: switched
    off as an administrator's policy does; ``phone``: Chromium's device metrics to emulate
    (a headless window is at least 500 pixels wide)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={window[0]},{window[1]}",
    ):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    if phone:
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": phone})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def open_resume_form(browser: Any, ui_url: str, run_id: str) -> WebElement:
    """Open the run's page, press *Resume*, and return the form's modal."""
    browser.get(f"{ui_url}/runs/flow-run/{run_id}")
    button = wait_until(
        "the run page's Resume button",
        lambda: next(
            (b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Resume"),
            None,
        ),
        60,
    )
    button.click()
    return wait_until(
        "the resume form with its description",
        lambda: next(
            (
                m
                for m in browser.find_elements(By.CSS_SELECTOR, ".p-modal")
                if "Submit" in text_of(m) and len(text_of(m)) > 200
            ),
            None,
        ),
        30,
    )


def text_of(element: WebElement) -> str:
    """All the text in the element, scrolled out of view or not."""
    return str(element.get_attribute("textContent") or "")


def form_field(modal: WebElement, label: str) -> WebElement:
    """The control (select, textarea or input) that follows the field's label."""
    return modal.find_element(By.XPATH, f".//*[normalize-space(text())='{label}']/{CONTROL}")


def choices(modal: WebElement, label: str) -> list[str]:
    control = form_field(modal, label)
    assert control.tag_name == "select", f"{label} is a {control.tag_name}, not a choice"
    return [
        o.get_attribute("value") or "" for o in Select(control).options if o.get_attribute("value")
    ]


def fill(modal: WebElement, values: dict[str, str]) -> None:
    """Fill the form: a choice is selected by its value, text is typed."""
    for label, value in values.items():
        control = form_field(modal, label)
        if control.tag_name == "select":
            Select(control).select_by_value(value)
        else:
            control.clear()
            control.send_keys(value)


def submit(browser: Any, modal: WebElement) -> str:
    """Press *Submit*; return the text of the toast the UI shows."""
    next(
        b for b in modal.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Submit"
    ).click()
    return str(
        wait_until(
            "the UI's answer to the resume",
            lambda: " ".join(
                t.text for t in browser.find_elements(By.CSS_SELECTOR, "[class*='toast']") if t.text
            ),
            30,
        )
    )
