"""File backups: a tar archive (optionally gzip) with a SHA-256 manifest beside it.

Layout in the backup directory, for a backup named ``web1`` taken at 2025-03-01 02:00 UTC::

    web1-20250301T020000Z.tar.gz     the archive; members are paths relative to the source
    web1-20250301T020000Z.sha256     ``sha256sum`` format: "<hex>  <relative path>" per file

The manifest sits BESIDE the archive, not inside it: a manifest inside would vanish together
with the files it should vouch for, and a truncated archive would take it along. Beside the
archive, a manifest entry whose file is missing from the archive is detectable, and
``sha256sum -c web1-….sha256`` run in an extracted copy checks it without upkeep.

The backup time is the timestamp in the name (``YYYYmmddTHHMMSSZ``, UTC), not the file's mtime:
copies (rsync, object storage) change mtimes but keep names.

Archives are written and read with Python's ``tarfile`` + ``hashlib`` (no external ``tar``):
the checksums are computed from exactly the bytes that went into the archive, and extraction
uses the ``data`` filter (no absolute paths, no ``..``, no device files, no links pointing
outside the restore directory).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import stat
import tarfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

from upkeep.tasks.backups.base import (
    NO_COMMANDS,
    CheckCommands,
    CheckResult,
    Scratch,
    VerificationError,
    VerificationResult,
    command_checks,
    expected_checks,
    free_space_ok,
    is_no_space,
    latest_in,
    manifest_checks,
    parse_stamped_name,
    raise_for_commands,
    raise_for_files,
    refuse_inside,
    safe_relative,
    sha256_file,
    unused_stem,
    utcnow,
)

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tar")
MANIFEST_SUFFIX = ".sha256"
_NAME_RE = re.compile(r"^(?P<name>.+)-(?P<ts>\d{8}T\d{6}Z)(?P<ext>\.tar(?:\.gz)?)$")
_BLOCK = 512


# --- names -------------------------------------------------------------------------------


def parse_backup_name(filename: str) -> tuple[str, datetime] | None:
    """``("web1", taken_at)`` for ``web1-20250301T020000Z.tar.gz``; None for other names."""
    return parse_stamped_name(_NAME_RE, filename)


def manifest_for(archive: Path) -> Path:
    """The manifest beside ``archive``: same stem, ``.sha256``."""
    name = archive.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return archive.with_name(name[: -len(suffix)] + MANIFEST_SUFFIX)
    raise ValueError(f"not a tar archive name: {archive}")


def latest_backup(dest_dir: Path, name: str | None = None) -> tuple[Path, datetime] | None:
    """The newest archive in ``dest_dir`` by the timestamp in its name (of backup ``name``
    if given), or None when there is none. Half-written ``.partial`` files never count."""
    return latest_in(dest_dir, parse_backup_name, name)


# --- manifest ------------------------------------------------------------------------------


def _escape(path: str) -> tuple[str, str]:
    if "\\" in path or "\n" in path:
        return "\\", path.replace("\\", "\\\\").replace("\n", "\\n")
    return "", path


def _unescape(path: str) -> str:
    out, i = [], 0
    while i < len(path):
        c = path[i]
        if c == "\\" and i + 1 < len(path):
            nxt = path[i + 1]
            out.append({"n": "\n", "\\": "\\"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def format_manifest(entries: dict[str, str]) -> str:
    """``sha256sum`` output for ``{relative path: hex digest}``, sorted by path."""
    lines = []
    for path in sorted(entries):
        prefix, shown = _escape(path)
        lines.append(f"{prefix}{entries[path]}  {shown}\n")
    return "".join(lines)


_MANIFEST_LINE = re.compile(r"^(?P<esc>\\?)(?P<hex>[0-9a-fA-F]{64}) [ *](?P<path>.+)$")


def parse_manifest(text: str) -> dict[str, str]:
    """``{relative path: lowercase hex}`` from ``sha256sum`` output (text or ``*`` binary
    mode, escaped names). Raises ValueError naming the first bad line."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _MANIFEST_LINE.match(line)
        if m is None:
            raise ValueError(f"manifest line {number} is not '<sha256>  <path>': {line[:80]!r}")
        path = _unescape(m["path"]) if m["esc"] else m["path"]
        rel = safe_relative(path)
        if rel is None:
            raise ValueError(f"manifest line {number} names an unsafe path: {path[:80]!r}")
        entries[rel] = m["hex"].lower()
    return entries


# --- taking a backup ----------------------------------------------------------------------


class _HashingReader:
    """Feeds tarfile while hashing exactly the bytes it copies into the archive."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.h.update(data)
        return data


def _walk(source: Path) -> Iterator[Path]:
    """Every entry below ``source`` in a stable order; unreadable directories raise."""

    def onerror(exc: OSError) -> None:
        raise exc

    for dirpath, dirnames, filenames in os.walk(source, onerror=onerror):
        dirnames.sort()
        base = Path(dirpath)
        for d in dirnames:
            yield base / d
        for f in sorted(filenames):
            yield base / f


def take_backup(
    source_dir: Path,
    dest_dir: Path,
    name: str,
    *,
    compress: bool = True,
    now: datetime | None = None,
) -> Path:
    """Archive ``source_dir`` as ``<dest_dir>/<name>-<UTC stamp>.tar[.gz]`` plus the manifest.

    Regular files, directories and symlinks are archived (sockets, FIFOs and devices are
    skipped); every regular file is listed in the manifest with the SHA-256 of the bytes that
    went into the archive. Both files appear atomically (written as ``.partial``, renamed;
    the manifest first), so an archive whose name parses always has its manifest.

    Raises VerificationError(system/source_unreadable) for an unreadable source and
    VerificationError(system/no_space) when the destination fills up.
    """
    if not source_dir.is_dir():
        raise VerificationError("system", "source_unreadable", f"{source_dir} is not a directory")
    refuse_inside(dest_dir, source_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".tar.gz" if compress else ".tar"
    stem = unused_stem(dest_dir, name, (suffix, MANIFEST_SUFFIX), now or utcnow())
    archive = dest_dir / (stem + suffix)
    manifest = dest_dir / (stem + MANIFEST_SUFFIX)
    part_archive = archive.with_name(archive.name + ".partial")
    part_manifest = manifest.with_name(manifest.name + ".partial")
    try:
        entries = _write_archive(source_dir, part_archive, compress)
        part_manifest.write_text(format_manifest(entries), encoding="utf-8")
        part_manifest.replace(manifest)
        part_archive.replace(archive)
    except VerificationError:
        _unlink(part_archive, part_manifest)
        raise
    except OSError as exc:
        _unlink(part_archive, part_manifest)
        if is_no_space(exc):
            raise VerificationError(
                "system", "no_space", f"{dest_dir} is full", evidence=str(exc)
            ) from exc
        raise VerificationError(
            "system", "backup_command_failed", f"writing {archive.name} failed", evidence=str(exc)
        ) from exc
    log.info("file backup %s: %d files", archive, len(entries))
    return archive


def _unlink(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _write_archive(source: Path, target: Path, compress: bool) -> dict[str, str]:
    entries: dict[str, str] = {}
    pax = tarfile.PAX_FORMAT
    with (
        tarfile.open(target, "w:gz", format=pax)
        if compress
        else tarfile.open(target, "w", format=pax)
    ) as tar:
        try:
            walked = list(_walk(source))
        except OSError as exc:
            raise VerificationError(
                "system", "source_unreadable", f"cannot list {source}", evidence=str(exc)
            ) from exc
        for path in walked:
            rel = path.relative_to(source).as_posix()
            try:
                st = path.lstat()
                if stat.S_ISREG(st.st_mode):
                    with path.open("rb") as f:
                        info = tar.gettarinfo(arcname=rel, fileobj=f)
                        # every name carries its own bytes, also a second name of a hard-linked
                        # file (a link member has none, and its manifest line no checksum).
                        info.type, info.linkname = tarfile.REGTYPE, ""
                        info.size = os.fstat(f.fileno()).st_size
                        reader = _HashingReader(f)
                        tar.addfile(info, reader)  # type: ignore[arg-type]
                    entries[rel] = reader.h.hexdigest()
                elif stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    tar.addfile(tar.gettarinfo(str(path), arcname=rel))
                else:
                    log.info("skipping special file %s", path)
            except PermissionError as exc:
                raise VerificationError(
                    "system", "source_unreadable", f"cannot read {rel}", evidence=str(exc)
                ) from exc
    return entries


# --- verifying -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Listing:
    members: list[tarfile.TarInfo]
    total_size: int


def _open_stream(archive: Path) -> IO[bytes]:
    if archive.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(archive, "rb"))
    return archive.open("rb")


def _classify_read_error(exc: BaseException, archive: Path) -> VerificationError:
    """Map what tarfile/gzip/zlib raise on a damaged archive to truncated/corrupt/empty."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, EOFError) or any(
        m in lowered
        for m in ("unexpected end of data", "truncated", "ended before", "empty header")
    ):
        reason = "truncated"
    elif "empty file" in lowered:
        reason = "empty"
    else:
        reason = "corrupt"
    return VerificationError(
        "backup",
        reason,  # type: ignore[arg-type]
        f"{archive.name}: {type(exc).__name__}: {text}",
        evidence=f"{archive.name}: {text}",
    )


_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError)


def _list_archive(archive: Path) -> _Listing:
    """Read the whole archive once, without writing anything: every header, the end-of-archive
    marker and (for gzip) the compressed stream up to its CRC. Catches truncation and
    corruption before any restore starts, and yields the size the restore needs."""
    try:
        with _open_stream(archive) as stream:
            with tarfile.open(fileobj=stream, mode="r:") as tar:
                members = tar.getmembers()
                end = tar.offset
            # tarfile stops silently at a damaged or missing header after the first one;
            # a complete archive has two zero blocks there.
            stream.seek(end)
            marker = stream.read(2 * _BLOCK)
            while stream.read(1 << 20):  # drain: gzip checks its CRC and length at the end
                pass
    except _READ_ERRORS as exc:
        raise _classify_read_error(exc, archive) from exc
    if len(marker) < 2 * _BLOCK:
        raise VerificationError(
            "backup",
            "truncated",
            f"{archive.name} ends after {len(members)} members without the end-of-archive marker",
            evidence=f"{archive.name}: {end + len(marker)} bytes of tar data",
        )
    if marker.strip(b"\0"):
        raise VerificationError(
            "backup",
            "corrupt",
            f"{archive.name}: unreadable tar header after member {len(members)}",
            evidence=f"{archive.name}: bad header at offset {end}",
        )
    return _Listing(members, sum(m.size for m in members if m.isfile()))


def _extract(archive: Path, target: Path) -> list[CheckResult]:
    """Extract with the ``data`` filter. Symlinks pointing outside the tree (``/etc/localtime``
    → ``/usr/share/…``) are legitimate in a backup but not restored; they are reported."""
    skipped: list[str] = []

    def member_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, dest)
        except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
            if member.issym():
                skipped.append(member.name)
                return None
            raise

    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(target, filter=member_filter)  # noqa: S202 (filtered above)
    except tarfile.FilterError as exc:
        raise VerificationError(
            "backup",
            "corrupt",
            f"{archive.name} holds an unsafe member: {exc}",
            evidence=f"{archive.name}: {exc}",
        ) from exc
    except OSError as exc:
        if is_no_space(exc):
            raise VerificationError(
                "system",
                "no_space",
                f"restore of {archive.name} filled {target}",
                evidence=str(exc),
            ) from exc
        raise
    except _READ_ERRORS as exc:
        raise _classify_read_error(exc, archive) from exc
    if not skipped:
        return []
    shown = ", ".join(skipped[:5]) + (" …" if len(skipped) > 5 else "")
    return [CheckResult("symlinks outside the tree", True, f"{len(skipped)} not restored: {shown}")]


def _manifest_checks(
    root: Path, manifest: dict[str, str], archived: set[str], linked: set[str]
) -> tuple[list[CheckResult], list[str], list[str], list[str]]:
    """Hash every restored file the manifest names. ``archived`` are the archive's regular
    files, ``linked`` its hard links (their bytes are those of a regular member). Returns
    (checks, missing, mismatched, unlisted)."""
    missing, mismatched = [], []
    for rel, digest in sorted(manifest.items()):
        path = root / rel
        if rel not in archived | linked or not path.is_file():
            missing.append(rel)
        elif sha256_file(path) != digest:
            mismatched.append(rel)
    unlisted = sorted(archived - manifest.keys())
    checks = manifest_checks(len(manifest), missing, mismatched, unlisted)
    return checks, missing, mismatched, unlisted


def verify(
    archive: Path,
    scratch_parent: Path,
    *,
    expected: Sequence[str] = (),
    source_dir: Path | None = None,
    commands: CheckCommands = NO_COMMANDS,
) -> VerificationResult:
    """Restore ``archive`` into a scratch directory under ``scratch_parent`` and check it.

    Passes when the archive reads to its end, every manifest entry was restored with its
    SHA-256, every file in the archive is in the manifest, and every ``expected`` path
    (relative to the archive root) exists. Raises VerificationError: backup/missing_manifest,
    empty, truncated, corrupt, missing_file, checksum_mismatch, unlisted_file; system/no_space
    (checked before extracting, and on ENOSPC); system/no_backup (no such file). Each of
    ``commands`` (argv lists) runs in the restored tree and must exit 0, else
    backup/check_failed. The scratch directory is gone when this returns or raises.
    ``source_dir``, when given, must not overlap ``scratch_parent``.
    """
    started = time.monotonic()
    if not archive.is_file():
        raise VerificationError("system", "no_backup", f"{archive} does not exist")
    manifest_path = manifest_for(archive)
    if not manifest_path.is_file():
        raise VerificationError(
            "backup",
            "missing_manifest",
            f"no {manifest_path.name} beside {archive.name}",
            evidence=manifest_path.name,
        )
    try:
        manifest = parse_manifest(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(
            "backup", "corrupt", f"{manifest_path.name} is unreadable", evidence=str(exc)
        ) from exc
    size = archive.stat().st_size
    if size == 0:
        raise VerificationError(
            "backup", "empty", f"{archive.name} is 0 bytes", evidence=archive.name
        )

    listing = _list_archive(archive)
    files = {m.name.removeprefix("./") for m in listing.members if m.isfile()}
    linked = {m.name.removeprefix("./") for m in listing.members if m.islnk()}
    if not files:
        raise VerificationError(
            "backup",
            "empty",
            f"{archive.name} holds no files",
            evidence=f"{archive.name}: {len(listing.members)} members, 0 files",
        )
    checks = [
        CheckResult(
            "archive readable", True, f"{len(listing.members)} members, {listing.total_size} bytes"
        )
    ]
    scratch_parent.mkdir(parents=True, exist_ok=True)
    free_space_ok(scratch_parent, listing.total_size)
    with Scratch(scratch_parent, source=source_dir) as root:
        checks += _extract(archive, root)
        restored, missing, mismatched, unlisted = _manifest_checks(root, manifest, files, linked)
        checks += restored
        checks += expected_checks(root, expected)
        ran = command_checks(commands, cwd=root)
        checks += ran
        restored_to = str(root)
    absent = [
        c.name.removeprefix("expected ")
        for c in checks
        if c.name.startswith("expected ") and not c.ok
    ]
    raise_for_files(checks, missing, mismatched, unlisted, absent)
    raise_for_commands(ran, checks)
    parsed = parse_backup_name(archive.name)
    taken_at = parsed[1] if parsed else datetime.fromtimestamp(archive.stat().st_mtime, UTC)
    return VerificationResult(
        kind="files",
        backup=str(archive),
        taken_at=taken_at,
        size_bytes=size,
        checksum=sha256_file(archive),
        checks=checks,
        restored_to=restored_to,
        duration_s=round(time.monotonic() - started, 3),
    )
