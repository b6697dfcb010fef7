"""What the commands print and how they stop: Rich consoles, escaping, the exit on a bad
setting or database. Shared by the CLI and the demo (below both, so neither imports the other)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import Session

from upkeep.db import SchemaOutOfDate, engine_for, ensure_schema, session_scope
from upkeep.settings import Settings, SettingsError, get_settings
from upkeep.tasks.records import run_results

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SEVERITY_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow", "info": "cyan"}


def esc(value: object) -> str:
    """``value`` as text Rich prints as it is: names, comments and host output may hold ``[``."""
    return escape(str(value))


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {esc(message)}", markup=True)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        fail(str(exc), 2)


def engine_or_exit(settings: Settings, *, migrate: bool = True) -> sa.Engine:
    engine = engine_for(settings.db_url)
    try:
        ensure_schema(engine, auto_upgrade=migrate)
    except SchemaOutOfDate as exc:
        fail(str(exc), 2)
    except sa.exc.OperationalError as exc:
        fail(f"cannot open the database {engine.url.render_as_string()}: {exc.orig}", 2)
    return engine


@contextmanager
def db_session(settings: Settings | None = None) -> Iterator[Session]:
    settings = settings or settings_or_exit()
    with session_scope(engine_or_exit(settings)) as session:
        yield session


def severity_text(severity: str | None) -> str:
    if not severity:
        return "[green]ok[/]"
    style = SEVERITY_STYLE.get(severity)
    return f"[{style}]{esc(severity)}[/]" if style else esc(severity)


def print_run_summary(session: Session, run_id: int) -> None:
    """A table per host: check, subject, value, threshold, severity."""
    for result, host in run_results(session=session, run_id=run_id):
        state = (
            "reachable"
            if result.reachable
            else f"[bold red]NOT REACHED[/] ({esc(result.error_kind)})"
        )
        table = Table(
            "check",
            "subject",
            "value",
            "threshold",
            "severity",
            "message",
            title=f"{esc(host.name)} ({esc(host.address)}:{host.port}) — {state}",
            title_justify="left",
        )
        for m in result.measurements:
            table.add_row(
                esc(m["check"]),
                esc(m.get("subject", "")),
                esc(m.get("value", "")),
                esc(m.get("threshold", "")),
                severity_text(m.get("severity")),
                esc(m.get("message", "")) if m.get("severity") else "",
            )
        out.print(table)
