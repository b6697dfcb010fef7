"""What every response of the approval page gets, as one ASGI middleware: strict security
headers, a bound on the request body, and an access log that never shows a link's token."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from upkeep.domain.links import redact

ACCESS = logging.getLogger("upkeep.approvals.access")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
TOO_LARGE = b"Request too large."


class BodyTooLarge(Exception):
    pass


class Guard:
    """Security headers on every response (HSTS too when served over https), 413 for a body
    over ``max_body`` bytes (announced or streamed), and one access-log line per request
    with the token replaced (uvicorn's own access log is off)."""

    def __init__(self, app: ASGIApp, *, max_body: int, hsts: bool) -> None:
        self.app = app
        self.max_body = max_body
        self.headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = {"code": 0}

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            announced = _content_length(scope)
            if announced is not None and announced > self.max_body:
                await self._too_large(send_guarded)
                return
            received = {"n": 0}

            async def receive_bounded() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    received["n"] += len(message.get("body", b""))
                    if received["n"] > self.max_body:
                        raise BodyTooLarge
                return message

            try:
                await self.app(scope, receive_bounded, send_guarded)
            except BodyTooLarge:
                if status["code"] == 0:
                    await self._too_large(send_guarded)
        finally:
            client = scope.get("client") or ("-", 0)
            ACCESS.info(
                '%s "%s %s" %s %.0fms',
                client[0],
                scope.get("method", "-"),
                redact(scope.get("path", "")),
                status["code"] or "-",
                (time.monotonic() - started) * 1000,
            )

    async def _too_large(self, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(TOO_LARGE)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": TOO_LARGE})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
