"""Run the approval page: on its own (``upkeep approvals serve``) or beside ``upkeep serve``.

The listening socket is bound first, in the calling thread, so a taken port is a clear error
naming ``UPKEEP_APPROVALS_PORT`` instead of a thread that dies quietly. uvicorn's own access
log is off (it would print the links' tokens); :mod:`upkeep.web.guard` logs each request with
the token replaced. ``X-Forwarded-For``/``-Proto`` are believed only from
``UPKEEP_APPROVALS_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading

import uvicorn

from upkeep.settings import Settings
from upkeep.web.app import create_app


class PageError(RuntimeError):
    pass


def bind(settings: Settings) -> socket.socket:
    page = settings.approvals
    family = socket.AF_INET6 if ":" in page.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((page.host, page.port))
    except OSError as exc:
        sock.close()
        raise PageError(
            f"the approval page cannot listen on {page.host}:{page.port} ({exc.strerror}): "
            "set UPKEEP_APPROVALS_HOST / UPKEEP_APPROVALS_PORT to a free address"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _log_requests() -> None:
    logger = logging.getLogger("upkeep.approvals")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s approvals %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def server(settings: Settings) -> uvicorn.Server:
    _log_requests()
    config = uvicorn.Config(
        create_app(settings),
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.approvals.trusted_proxies,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def serve_forever(settings: Settings) -> None:
    """``upkeep approvals serve``: until interrupted."""
    sock = bind(settings)
    server(settings).run(sockets=[sock])


def serve_in_thread(settings: Settings) -> threading.Thread:
    """Beside ``upkeep serve``: a daemon thread (it ends with the process)."""
    sock = bind(settings)
    srv = server(settings)
    thread = threading.Thread(
        target=srv.run, kwargs={"sockets": [sock]}, name="approval-page", daemon=True
    )
    thread.start()
    return thread
