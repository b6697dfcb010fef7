"""The approval page's routes: show a gate to the person its link names, take their decision.

``GET /a/{token}`` shows what is asked (the gate's evidence rendered as HTML, the contract and
customer, the deadline in the contract's timezone, who approved so far and how many approvals
are still needed) and, while the link may still decide, a form with Approve and Reject.
``POST /a/{token}`` checks the origin and the CSRF value, claims the link, and sends the
decision to the waiting run with a one-time code minted for it
(:func:`~upkeep.tasks.approval_links.mint_code`): the flow judges it by the same rules as any
answer. The page then says what the flow made of it. No JavaScript anywhere.

Rate limits (in memory, per process): failures (unknown or dead links, bad CSRF, foreign
origin) per client address, decisions per gate. A working link is never refused by the
address limit, so nobody else's failed attempts can lock the real approver out.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from upkeep.approvals_cli import ApprovalCliError, Outcome, send_answer
from upkeep.domain.approval_form import format_deadline
from upkeep.domain.links import (
    LinkState,
    LinkView,
    RateLimit,
    csrf_ok,
    csrf_value,
    form_problem,
    link_state,
    still_needed,
)
from upkeep.domain.markup import markdown_html
from upkeep.models import utcnow
from upkeep.settings import Settings
from upkeep.tasks.approval_links import (
    LinkPage,
    claim,
    drop_code,
    mint_code,
    read_link,
    read_link_by_digest,
    release,
)
from upkeep.tasks.render import template_env
from upkeep.web.guard import TOO_LARGE, BodyTooLarge, Guard

LOG = logging.getLogger("upkeep.approvals")
COOKIE = "upkeep_csrf"
WINDOW = 600.0
DEAD = {LinkState.DECIDED, LinkState.EXPIRED, LinkState.SUPERSEDED, LinkState.CLOSED}


@dataclass
class Limits:
    failures: RateLimit
    gate_posts: RateLimit


def create_app(settings: Settings) -> Guard:
    """The approval page for ``settings`` (its database, Prefect API from the environment)."""
    page_settings = settings.approvals
    secret = (
        page_settings.secret.get_secret_value().encode()
        if page_settings.secret is not None
        else secrets.token_bytes(32)
    )
    base = urlsplit(page_settings.base_url)
    secure = base.scheme == "https"
    limits = Limits(
        failures=RateLimit(page_settings.failures_per_address, WINDOW),
        gate_posts=RateLimit(page_settings.posts_per_gate, WINDOW),
    )
    env = template_env(settings.templates_dir)
    css = (settings.templates_dir / "web" / "approvals.css").read_text()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(BodyTooLarge)
    def too_large(request: Request, exc: BodyTooLarge) -> Response:
        # a streamed body over the limit surfaces in the route (request.body()): answer 413
        # here, before Starlette turns the exception into a 500
        return PlainTextResponse(TOO_LARGE.decode(), status_code=413)

    def render(status: int, template: str = "web/approval.html.j2", **context: Any) -> Response:
        html = env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status)

    def message(status: int, headline: str, detail: str = "") -> Response:
        return render(status, "web/message.html.j2", headline=headline, detail=detail)

    def address(request: Request) -> str:
        return request.client.host if request.client else "-"

    def failed(request: Request, status: int, headline: str, detail: str = "") -> Response:
        """A refused request: counted against the client's address."""
        key = address(request)
        limits.failures.hit(key)
        if limits.failures.exceeded(key):
            return too_many(limits.failures.retry_after(key))
        return message(status, headline, detail)

    def too_many(retry_after: int) -> Response:
        response = message(
            429,
            "Too many attempts",
            f"Please try again in {max(1, retry_after // 60 + 1)} minute(s).",
        )
        response.headers["retry-after"] = str(retry_after)
        return response

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            return request.headers.get("sec-fetch-site", "same-origin") in (
                "same-origin",
                "none",
            )
        if origin == "null":
            # A browser posts "Origin: null" from a page whose referrer policy is no-referrer
            # (ours); its Sec-Fetch-Site still tells our own form from another site's.
            return request.headers.get("sec-fetch-site") == "same-origin"
        own = f"{request.url.scheme}://{request.url.netloc}"
        allowed = {own.lower(), f"{base.scheme}://{base.netloc}".lower()}
        return origin.lower() in allowed

    def show(
        request: Request,
        page: LinkPage,
        view: LinkView,
        *,
        status: int = 200,
        notice: str = "",
        error: str = "",
        outcome: Outcome | None = None,
        comment: str = "",
    ) -> Response:
        cookie = request.cookies.get(COOKIE)
        fresh = not cookie or len(cookie) > 100
        if fresh:
            cookie = secrets.token_urlsafe(24)
        assert cookie is not None
        approvals = [(a.who, format_deadline(a.at, page.timezone)) for a in page.approvals]
        response = render(
            status,
            page=page,
            view=view,
            evidence_html=markdown_html(page.evidence),
            deadline=format_deadline(page.facts.deadline, page.timezone),
            requested=format_deadline(page.requested_at, page.timezone),
            approvals=approvals,
            needed=still_needed(page.required, len(page.approvals)),
            csrf=csrf_value(secret, cookie, page.token_digest),
            notice=notice,
            error=error,
            outcome=outcome,
            comment=comment,
        )
        if fresh:
            response.set_cookie(
                COOKIE,
                cookie,
                httponly=True,
                samesite="strict",
                secure=secure,
                path="/a/",
            )
        return response

    @app.get("/", response_class=HTMLResponse)
    def home() -> Response:
        return message(
            200,
            "upkeep approvals",
            "Open the personal link from your approval e-mail to see what is asked.",
        )

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/static/approvals.css")
    def stylesheet() -> Response:
        return Response(css, media_type="text/css")

    @app.get("/a/{token}")
    def view_link(request: Request, token: str) -> Response:
        page = read_link(token)
        if page is None:
            return failed(request, 404, *UNKNOWN)
        view = link_state(page.facts, utcnow())
        notice = ""
        if view.state is LinkState.PENDING and page.refused_after_use is not None:
            # the decision sent earlier was refused after the page stopped waiting
            release(page.link_id)
            notice = f"Your last decision was refused: {page.refused_after_use}"
            page = read_link(token) or page
            view = link_state(page.facts, utcnow())
        if view.state in DEAD:
            return message(410, view.headline, view.detail)
        return show(request, page, view, notice=notice)

    @app.post("/a/{token}")
    async def decide(request: Request, token: str) -> Response:
        if not same_origin(request):
            return failed(request, 403, *FOREIGN)
        try:
            form = _form(await request.body(), request.headers.get("content-type", ""))
        except ValueError as exc:
            return failed(request, 400, "This form could not be read", str(exc))
        page = await run_in_threadpool(read_link, token)
        if page is None:
            return failed(request, 404, *UNKNOWN)
        if not csrf_ok(secret, request.cookies.get(COOKIE), page.token_digest, form.get("csrf")):
            return failed(request, 403, *STALE_FORM)
        view = link_state(page.facts, utcnow())
        if view.state in DEAD:
            return failed(request, 410, view.headline, view.detail)
        if not view.open:
            return message(409, view.headline, view.detail)
        decision, comment = form.get("decision", ""), form.get("comment", "")
        problem = form_problem(decision, comment)
        if problem is not None:
            keep = comment if len(comment) <= 4000 else ""
            return show(request, page, view, status=400, error=problem, comment=keep)
        gate_key = f"gate:{page.approval_id}"
        if limits.gate_posts.exceeded(gate_key):
            return too_many(limits.gate_posts.retry_after(gate_key))
        limits.gate_posts.hit(gate_key)
        return await run_in_threadpool(send, request, page, decision, comment)

    def send(request: Request, page: LinkPage, decision: str, comment: str) -> Response:
        if not claim(page, decision, address(request)):
            return message(409, "Your decision was already sent", "Reload the page to see it.")
        code, code_id = mint_code(page)
        run_input = {
            "decision": decision,
            "approver": page.person,
            "code": code,
            "comment": comment,
        }
        try:
            outcome = send_answer(
                settings,
                page.approval_id,
                page.flow_run_id,
                run_input,
                page_settings.answer_wait_seconds,
                person=page.person,
            )
        except ApprovalCliError as exc:
            unsent(page, code_id, str(exc))
            return message(503, "Your decision could not be sent", f"{exc}.")
        except Exception as exc:  # noqa: BLE001 - the Prefect API or the database is away
            LOG.exception("gate %s: the decision could not be sent", page.approval_id)
            unsent(page, code_id, f"{type(exc).__name__}: {exc}")
            return message(503, *ENGINE_AWAY)
        if outcome.status == "refused":
            drop_code(code_id)
            release(page.link_id)
        fresh = read_link_by_digest(page.token_digest) or page
        view = link_state(fresh.facts, utcnow())
        return show(request, fresh, view, outcome=outcome, status=200)

    def unsent(page: LinkPage, code_id: int, reason: str) -> None:
        """The decision never reached the run: the link works again, the record says why."""
        drop_code(code_id)
        release(page.link_id, page, reason)

    return Guard(app, max_body=page_settings.max_body_bytes, hsts=secure)


UNKNOWN = (
    "This link is not valid",
    "Check that the whole link from your e-mail was opened; a link that was changed or cut "
    "off does not work.",
)
ENGINE_AWAY = (
    "Your decision could not be sent",
    "The service provider's process engine did not answer. Nothing was recorded; please try "
    "again in a few minutes.",
)
FOREIGN = ("Refused", "The decision did not come from this page.")
STALE_FORM = (
    "This form has expired",
    "Open the link from your e-mail again and decide on the fresh page. Nothing was recorded.",
)


def _form(body: bytes, content_type: str) -> dict[str, str]:
    """The posted form (``application/x-www-form-urlencoded``, as the page sends it)."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise ValueError("The form was not sent as the page sends it.")
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("The form was not readable.") from None
    return {k: v[0] for k, v in fields.items() if v}
