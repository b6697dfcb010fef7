"""The advisory store: OSV records synced into upkeep's database (``upkeep advisories sync``)
from exports on disk or on a mirror, and read back one ecosystem at a time for matching.

A sync reads a whole source and validates every record before it writes anything: a record
that cannot be read fails the source, naming it, and nothing of that source is stored. Each
source is its own transaction. A record is written only when it is new or its ``modified`` is
newer than the stored one, so syncing the same export again changes nothing.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlmodel import Session, col, select

from upkeep.domain.advisories import Advisory
from upkeep.domain.advisories.osv import parse_record
from upkeep.models.advisory import AdvisoryRecord
from upkeep.models.base import utcnow
from upkeep.tasks.advisories import AdvisorySourceError, Record, read_records

MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
"""osv.dev's largest per-ecosystem export is well below this; more is not an export."""
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=15.0)
_ID_LENGTH = 128
_SOURCE_LENGTH = 1000
_CHUNK = 500
"""Ids per ``IN (...)`` query: well below SQLite's limit on bound parameters."""


class SyncError(AdvisorySourceError):
    """A source could not be synced (nothing of it was stored); ``done`` says what the
    sources before it stored."""

    def __init__(self, message: str, done: SyncReport) -> None:
        super().__init__(message)
        self.done = done


@dataclass
class SyncReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    """Records in the sources that the store already had at the same or a newer ``modified``."""
    sources: list[str] = field(default_factory=list)
    """The sources synced, in order."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def sync(session: Session, sources: Sequence[str]) -> SyncReport:
    """Store the records of ``sources`` (paths to ``.json`` files, directories, zip exports,
    or http(s) URLs of a ``.json`` file or a zip export). Commits after each source; raises
    :class:`SyncError` naming the source (and file or zip member) that cannot be read, with
    that source rolled back and the earlier ones kept."""
    report = SyncReport()
    for source in sources:
        try:
            added, updated, unchanged = _sync_one(session, source)
            session.commit()
        except AdvisorySourceError as exc:
            session.rollback()
            raise SyncError(str(exc), report) from None
        except BaseException:
            session.rollback()
            raise
        report.added += added
        report.updated += updated
        report.unchanged += unchanged
        report.sources.append(source)
    return report


def load_store(session: Session, ecosystem: str) -> list[Advisory]:
    """The stored records with an ``affected`` entry in ``ecosystem`` (``Debian:12``),
    ordered by id."""
    query = select(AdvisoryRecord.id, AdvisoryRecord.ecosystems, AdvisoryRecord.data)
    if ecosystem.isascii():
        # A coarse filter in SQL that SQLite and PostgreSQL both run (the JSON list as text);
        # the exact test is the one below.
        needle = _like_escape(json.dumps(ecosystem))
        query = query.where(
            sa.cast(col(AdvisoryRecord.ecosystems), sa.Text).like(f"%{needle}%", escape="\\")
        )
    found = []
    for record_id, ecosystems, data in session.exec(query.order_by(col(AdvisoryRecord.id))):
        if ecosystem not in ecosystems:
            continue
        try:
            found.append(parse_record(dict(data)))
        except ValueError as exc:
            raise AdvisorySourceError(
                f"advisory store, record {record_id}: {exc} (sync its source again)"
            ) from None
    return found


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _sync_one(session: Session, source: str) -> tuple[int, int, int]:
    with _local_copy(source) as (path, origin_of):
        newest: dict[str, Record] = {}
        try:
            for record in read_records(path):
                _check_fits(record, origin_of)
                known = newest.get(record.advisory.id)
                if known is None or record.advisory.modified > known.advisory.modified:
                    newest[record.advisory.id] = record
        except AdvisorySourceError as exc:
            raise AdvisorySourceError(origin_of(str(exc))) from None
        stored = _stored_modified(session, list(newest))
        added = updated = unchanged = 0
        now = utcnow()
        for record_id, record in newest.items():
            advisory = record.advisory
            ecosystems = sorted({a.ecosystem for a in advisory.affected})
            origin = origin_of(record.origin)[:_SOURCE_LENGTH]
            known_modified = stored.get(record_id)
            if known_modified is None:
                session.add(
                    AdvisoryRecord(
                        id=record_id,
                        modified=advisory.modified,
                        ecosystems=ecosystems,
                        data=record.data,
                        source=origin,
                        synced_at=now,
                    )
                )
                added += 1
            elif advisory.modified > known_modified:
                row = session.get_one(AdvisoryRecord, record_id)
                row.modified = advisory.modified
                row.ecosystems = ecosystems
                row.data = record.data
                row.source = origin
                row.synced_at = now
                session.add(row)
                updated += 1
            else:
                unchanged += 1
        session.flush()
    return added, updated, unchanged


def _check_fits(record: Record, origin_of: Callable[[str], str]) -> None:
    if len(record.advisory.id) > _ID_LENGTH:
        raise AdvisorySourceError(
            f"{origin_of(record.origin)}: a record id longer than {_ID_LENGTH} characters"
        )


def _stored_modified(session: Session, ids: list[str]) -> dict[str, datetime]:
    stored: dict[str, datetime] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = session.exec(
            select(AdvisoryRecord.id, AdvisoryRecord.modified).where(
                col(AdvisoryRecord.id).in_(chunk)
            )
        )
        stored.update((record_id, modified) for record_id, modified in rows)
    return stored


@contextmanager
def _local_copy(source: str) -> Iterator[tuple[Path, Callable[[str], str]]]:
    """The source as a local path, and how to say a local origin as the source names it (a
    download's temporary path becomes its URL)."""
    if not is_url(source):
        yield Path(source), lambda origin: origin
        return
    suffix = Path(urlsplit(source).path).suffix
    if suffix not in (".json", ".zip"):
        raise AdvisorySourceError(f"{source}: a URL source must name a .json file or a .zip export")
    with tempfile.TemporaryDirectory(prefix="upkeep-advisories-") as tmp:
        path = Path(tmp) / f"download{suffix}"
        _download(source, path)
        yield path, lambda origin: origin.replace(str(path), source)


def _download(url: str, target: Path) -> None:
    try:
        with httpx.stream("GET", url, timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as response:
            if url.startswith("https://") and response.url.scheme != "https":
                raise AdvisorySourceError(f"{url}: redirected to {response.url}, not https")
            response.raise_for_status()
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_DOWNLOAD_BYTES:
                raise AdvisorySourceError(f"{url}: {declared} bytes, more than a source may be")
            size = 0
            with target.open("wb") as out:
                for chunk in response.iter_bytes(1024 * 1024):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise AdvisorySourceError(
                            f"{url}: more than {MAX_DOWNLOAD_BYTES} bytes, more than a source "
                            "may be"
                        )
                    out.write(chunk)
    except httpx.HTTPStatusError as exc:
        status = exc.response
        raise AdvisorySourceError(
            f"{url}: HTTP {status.status_code} {status.reason_phrase}"
        ) from None
    except httpx.TimeoutException:
        raise AdvisorySourceError(f"{url}: timed out") from None
    except httpx.HTTPError as exc:
        raise AdvisorySourceError(f"{url}: cannot download ({exc})") from None
