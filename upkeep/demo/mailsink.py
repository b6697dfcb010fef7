"""A local SMTP server that keeps every message as an .eml file (for the demo)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from upkeep.demo.prefect_server import free_port


class _SaveHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.saved: list[Path] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        path = self.directory / f"message-{len(self.saved) + 1:03d}.eml"
        path.write_bytes(envelope.original_content or envelope.content)
        self.saved.append(path)
        return "250 Message accepted for delivery"


class MailSink:
    """aiosmtpd on 127.0.0.1:<free port>; messages land in ``directory``."""

    def __init__(self, directory: Path) -> None:
        from aiosmtpd.controller import Controller

        directory.mkdir(parents=True, exist_ok=True)
        self.handler = _SaveHandler(directory)
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def saved(self) -> list[Path]:
        return self.handler.saved

    def __enter__(self) -> MailSink:
        self.controller.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.controller.stop()
