"""The approval page for flow tests (a pytest plugin): the real application served by uvicorn
on a free loopback port in this process, reached over real HTTP, and the links mailed to the
test SMTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.polling import answers, wait_until
from tests.smtp_fixtures import SmtpServer
from upkeep.demo import CSRF_RE, LINK_RE
from upkeep.demo.sshd import free_loopback_port
from upkeep.settings import Settings, get_settings, reset_settings
from upkeep.web.server import bind, server


def links_sent(smtp: SmtpServer, email: str) -> list[str]:
    """The approval-page links mailed to ``email``, oldest first (one per mail)."""
    found: list[str] = []
    for mail in list(smtp.handler.received):
        if email in mail.rcpt_tos:
            body = mail.message().get_body(preferencelist=("plain",))
            assert body is not None
            found += LINK_RE.findall(body.get_content())[:1]
    return found


def wait_for_link(smtp: SmtpServer, email: str, nth: int = 1, timeout: float = 60) -> str:
    links = wait_until(
        f"link #{nth} mailed to {email}",
        lambda: found if len(found := links_sent(smtp, email)) >= nth else None,
        timeout,
    )
    return str(links[nth - 1])


@dataclass
class Page:
    settings: Settings
    url: str

    def client(self) -> httpx.Client:
        """A browser-like client: keeps the page's cookie, sends no Origin of its own."""
        return httpx.Client(timeout=120, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "the page offers no form"
    return found.group(1)


def decide(client: httpx.Client, link: str, decision: str, comment: str = "") -> httpx.Response:
    """Open the link and press Approve or Reject, as a browser would."""
    page = client.get(link)
    assert page.status_code == 200, page.text
    return client.post(
        link,
        data={"csrf": csrf_of(page.text), "decision": decision, "comment": comment},
        headers={"origin": link.split("/a/")[0]},
    )


@pytest.fixture
def approval_page(flow_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """The approval page of ``flow_env``'s database on a free port (links in mail point
    to it); stopped after the test."""
    monkeypatch.setenv("UPKEEP_APPROVALS_PORT", str(free_loopback_port()))
    monkeypatch.setenv("UPKEEP_APPROVALS_ANSWER_WAIT_SECONDS", "60")
    reset_settings()
    settings = get_settings()
    sock = bind(settings)
    srv = server(settings)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = settings.approvals.base_url
    wait_until("the approval page", lambda: answers(f"{url}/healthz"), 30)
    try:
        yield Page(settings, url)
    finally:
        srv.should_exit = True
        thread.join(timeout=15)
        sock.close()
