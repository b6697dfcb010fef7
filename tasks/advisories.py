"""Reading advisory records: OSV JSON files, directories of them, and the per-ecosystem
``all.zip`` exports osv.dev and the distributions publish (customers' networks are often
air-gapped: the operator mirrors the exports and points upkeep at the copies).

Plain functions (the CLI and the flows call them); the records are parsed by
:mod:`upkeep.domain.advisories.osv`. A record that cannot be read stops the load with an error
naming the file (and the member of a zip): nothing half-read is matched against.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from upkeep.domain.advisories import Advisory
from upkeep.domain.advisories.osv import parse_record

MAX_RECORD_BYTES = 16 * 1024 * 1024
"""A single OSV record larger than this is not a record (a zip bomb, a wrong file)."""


class AdvisorySourceError(ValueError):
    """An advisory source cannot be read; the message names it."""


@dataclass
class Loaded:
    """The records read, newest version of each id kept."""

    advisories: dict[str, Advisory] = field(default_factory=dict)
    files: int = 0
    replaced: int = 0
    """Records read again under the same id; the one with the newer ``modified`` was kept."""

    def add(self, advisory: Advisory) -> None:
        known = self.advisories.get(advisory.id)
        if known is not None:
            self.replaced += 1
            if known.modified >= advisory.modified:
                return
        self.advisories[advisory.id] = advisory


@dataclass(frozen=True)
class Record:
    """One record as read: where it came from, its JSON, and what it says."""

    origin: str
    """The file, or ``export.zip!member``."""
    data: dict[str, Any]
    advisory: Advisory


def _records(text: str, origin: str) -> Iterator[Record]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AdvisorySourceError(f"{origin}: not JSON ({exc.msg}, line {exc.lineno})") from None
    items = data if isinstance(data, list) else [data]
    for item in items:
        if not isinstance(item, dict):
            raise AdvisorySourceError(f"{origin}: not an OSV record (a JSON object)")
        try:
            advisory = parse_record(item)
        except ValueError as exc:
            raise AdvisorySourceError(f"{origin}: {exc}") from None
        yield Record(origin, item, advisory)


def _from_zip(path: Path) -> Iterator[tuple[str, str]]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise AdvisorySourceError(f"{path}: not a zip export") from None
    with archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.endswith(".json"):
                continue
            origin = f"{path}!{info.filename}"
            if info.file_size > MAX_RECORD_BYTES:
                raise AdvisorySourceError(f"{origin}: {info.file_size} bytes is not a record")
            with archive.open(info) as member:
                raw = member.read(MAX_RECORD_BYTES + 1)
            if len(raw) > MAX_RECORD_BYTES:
                raise AdvisorySourceError(f"{origin}: larger than its header says")
            yield origin, raw.decode("utf-8", errors="replace")


def _texts(source: Path) -> Iterator[tuple[str, str]]:
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
        for path in files:
            if path.suffix == ".json":
                yield str(path), path.read_text(encoding="utf-8", errors="replace")
            elif path.suffix == ".zip":
                yield from _from_zip(path)
        return
    if not source.exists():
        raise AdvisorySourceError(f"{source}: no such file or directory")
    if source.suffix == ".zip":
        yield from _from_zip(source)
        return
    if source.stat().st_size > MAX_RECORD_BYTES:
        raise AdvisorySourceError(f"{source}: too large for one OSV record")
    yield str(source), source.read_text(encoding="utf-8", errors="replace")


def read_records(source: Path) -> Iterator[Record]:
    """Every record of one source (a file, a directory, a zip export), each with where it
    came from. Raises :class:`AdvisorySourceError` naming the file or zip member that cannot
    be read."""
    for origin, text in _texts(Path(source)):
        yield from _records(text, origin)


def load_advisories(sources: Iterable[Path]) -> Loaded:
    """Every record in ``sources`` (files, directories searched recursively for ``*.json``
    and ``*.zip``, zip exports). Raises :class:`AdvisorySourceError` naming the first
    source, file or zip member that cannot be read."""
    loaded = Loaded()
    for source in sources:
        for origin, text in _texts(Path(source)):
            loaded.files += 1
            for record in _records(text, origin):
                loaded.add(record.advisory)
    return loaded
