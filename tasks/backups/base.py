"""What every backup kind shares: the verdict, the error taxonomy, scratch space, tool runs.

A verification either returns a :class:`VerificationResult` (the backup restored and every
check passed) or raises :class:`VerificationError` whose ``fault`` says who has to act:
``"backup"`` (the backup itself is bad: truncated, corrupt, incomplete) or ``"system"`` (we
could not judge it: no space, tool missing, server unreachable). ``reason`` is a short
machine-readable word from :data:`Reason`; ``evidence`` is the tail of the tool's stderr and the
names involved, never a secret.

The same situation gets the same verdict for every kind: no backup where backups should be
(``no_backup``), a backup directory or restic repository that does not exist
(``location_missing``) and a password that does not open the repository (``wrong_password``)
are the *system's* fault: the backup job, its storage or upkeep's settings must be fixed, and
there is no backup to call damaged.

Commands are built by small functions returning argv lists;
:func:`run_tool` is the only place that runs them locally (remote backups: ``remote.py``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple

from upkeep.models.enums import Fault

log = logging.getLogger(__name__)

BackupKind = Literal["files", "postgresql", "restic"]
FaultLike = Fault | Literal["backup", "system"]
"""A fault as raisers write it (the enum or its string value); stored as :class:`Fault`."""
Reason = Literal[
    "truncated",
    "corrupt",
    "checksum_mismatch",
    "missing_file",
    "unlisted_file",
    "size_mismatch",
    "empty",
    "missing_manifest",
    "restore_failed",
    "check_failed",
    "source_unreadable",
    "backup_command_failed",
    "no_space",
    "no_backup",
    "location_missing",
    "wrong_password",
]

SCRATCH_PREFIX = "upkeep-scratch-"
"""Every scratch directory's name starts with this; :func:`cleanup_stale` removes only those."""
STALE_SCRATCH = timedelta(hours=2)
"""A scratch directory untouched this long was left by a killed run (a running one is younger);
the next verification removes it, here or on a scratch host."""

EVIDENCE_LIMIT = 2000
NO_SPACE_MARKERS = ("no space left on device", "could not extend file", "disk full")


class CheckResult(NamedTuple):
    """One line of a verification: what was checked, whether it passed, and the detail."""

    name: str
    ok: bool
    detail: str = ""


class VerificationError(Exception):
    """The backup could not be shown to restore. ``fault`` says whose problem it is."""

    def __init__(
        self,
        fault: FaultLike,
        reason: Reason,
        message: str = "",
        *,
        evidence: str = "",
        checks: Sequence[CheckResult] = (),
    ) -> None:
        self.fault = Fault(fault)
        self.reason: Reason = reason
        self.message = message or reason.replace("_", " ")
        self.evidence = tail(evidence)
        self.checks: list[CheckResult] = list(checks)
        super().__init__(f"{fault}/{reason}: {self.message}")


class UnsafeTarget(ValueError):
    """A restore target that could overwrite the source: refused before anything runs."""


@dataclass
class VerificationResult:
    """A backup that restored and passed every check.

    ``checks`` may hold lines with ``ok=False``: observations that do not fail the restore;
    :attr:`warnings` lists them.
    """

    kind: BackupKind
    backup: str
    """The archive or dump path, or the restic snapshot id."""
    taken_at: datetime
    size_bytes: int
    checksum: str
    """SHA-256 of the backup file; for restic the snapshot id (restic checks its own hashes)."""
    checks: list[CheckResult] = field(default_factory=list)
    restored_to: str = ""
    """Where the restore went (removed again by now): a scratch path or database name."""
    duration_s: float = 0.0

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]


def tail(text: str, limit: int = EVIDENCE_LIMIT) -> str:
    """The last ``limit`` characters of ``text``, stripped; tools print the cause last."""
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def utcnow() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    """``YYYYmmddTHHMMSSZ`` of an aware datetime, in UTC."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: backups are stamped in UTC")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def unused_stem(
    dest_dir: Path | Callable[[str], bool], name: str, suffixes: Sequence[str], moment: datetime
) -> str:
    """``<name>-<stamp>`` naming no existing file with any of ``suffixes``.

    ``dest_dir`` is a local directory, or a function telling whether a file name is taken
    (for a directory on another host).

    Stamps have one-second resolution; a second backup within the same second would
    overwrite the first (and the archived copy its versions point at), so it takes the next
    free second instead: names stay unique and in time order.
    """
    taken = dest_dir if callable(dest_dir) else (lambda n: (dest_dir / n).exists())
    while True:
        stem = f"{name}-{stamp(moment)}"
        if not any(taken(stem + sfx) for sfx in suffixes):
            return stem
        moment += timedelta(seconds=1)


def newest(
    names: Iterable[str],
    parse: Callable[[str], tuple[str, datetime] | None],
    system: str | None = None,
) -> tuple[str, datetime] | None:
    """The newest name that ``parse`` reads as a backup (of ``system``, if given), with its
    time; None if there is none. Works on any listing: a local directory or one over SFTP."""
    found = []
    for name in names:
        parsed = parse(name)
        if parsed is not None and (system is None or parsed[0] == system):
            found.append((parsed[1], name))
    if not found:
        return None
    taken_at, name = max(found)
    return name, taken_at


def latest_in(
    dest_dir: Path,
    parse: Callable[[str], tuple[str, datetime] | None],
    system: str | None = None,
) -> tuple[Path, datetime] | None:
    """The newest backup file in a local directory (see :func:`newest`); None if none."""
    if not dest_dir.is_dir():
        return None
    found = newest((e.name for e in dest_dir.iterdir() if e.is_file()), parse, system)
    return (dest_dir / found[0], found[1]) if found else None


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def parse_stamped_name(pattern: re.Pattern[str], filename: str) -> tuple[str, datetime] | None:
    """``(name, taken_at)`` of a backup file named ``<name>-<stamp><suffix>`` as ``pattern``
    (groups ``name`` and ``ts``) describes; None for any other name or an impossible date."""
    m = pattern.match(filename)
    if m is None:
        return None
    try:
        return m["name"], parse_stamp(m["ts"])
    except ValueError:
        return None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_no_space(text_or_exc: str | BaseException) -> bool:
    """True when a tool's message or an OSError says the disk is full."""
    if isinstance(text_or_exc, OSError) and text_or_exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(text_or_exc).lower()
    return any(m in text for m in NO_SPACE_MARKERS)


def free_space_ok(path: Path, needed_bytes: int, *, margin: float = 1.1) -> int:
    """Return the free bytes at ``path`` if ``needed_bytes`` (plus a 10 % margin) fit there.

    Raises VerificationError(system/no_space) otherwise, so that a restore that cannot fit
    fails before it writes anything.
    """
    free = shutil.disk_usage(path).free
    if needed_bytes * margin > free:
        raise VerificationError(
            "system",
            "no_space",
            f"restore needs {needed_bytes} bytes (+{round((margin - 1) * 100)} %), {free} free",
            evidence=f"{path}: {free} bytes free, {needed_bytes} needed",
        )
    return free


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def refuse_inside(target: Path, source: Path | None) -> None:
    """Raise UnsafeTarget if ``target`` is ``source``, inside it, or contains it."""
    if source is None:
        return
    t, s = target.resolve(), source.resolve()
    if _is_within(t, s) or _is_within(s, t):
        raise UnsafeTarget(f"never restore over the source: {target} overlaps {source}")


def _force_remove(func: Callable[..., Any], path: str, _exc: Any) -> None:
    # restored trees may hold read-only directories (restic keeps modes): make them writable.
    parent = os.path.dirname(path)
    for p in (parent, path):
        with contextlib.suppress(OSError):
            os.chmod(p, stat.S_IRWXU)
    with contextlib.suppress(FileNotFoundError):
        func(path)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it, also read-only directories; missing is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, onerror=_force_remove)


class Scratch:
    """A fresh directory ``<parent>/upkeep-scratch-<random>``, removed on any exit.

    Removal runs on exceptions and KeyboardInterrupt too; runs killed harder than that leave
    directories that :func:`cleanup_stale` removes later. ``source`` (when given) must not
    overlap the parent: a restore never goes over the data it is a backup of.
    """

    def __init__(
        self, parent: Path, *, source: Path | None = None, prefix: str = SCRATCH_PREFIX
    ) -> None:
        if not prefix.startswith(SCRATCH_PREFIX):
            raise ValueError(f"scratch prefix must start with {SCRATCH_PREFIX!r}")
        refuse_inside(parent, source)
        self.parent = parent
        self.prefix = prefix
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.parent.mkdir(parents=True, exist_ok=True)
        path = self.parent / f"{self.prefix}{secrets.token_hex(6)}"
        path.mkdir(mode=0o700)
        self.path = path
        return path

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.path is not None:
            try:
                remove_tree(self.path)
            except OSError:
                log.warning("could not remove scratch directory %s", self.path, exc_info=True)
            self.path = None


def cleanup_stale(
    parent: Path,
    prefix: str = SCRATCH_PREFIX,
    older_than: timedelta = timedelta(hours=6),
    *,
    now: float | None = None,
) -> list[Path]:
    """Remove scratch directories of killed runs: named ``prefix*`` and untouched for longer
    than ``older_than`` (a running verification's directory is younger). Returns what went."""
    if not prefix.startswith(SCRATCH_PREFIX):
        raise ValueError(f"refusing to clean names not starting with {SCRATCH_PREFIX!r}")
    if not parent.is_dir():
        return []
    limit = (time.time() if now is None else now) - older_than.total_seconds()
    removed = []
    for entry in parent.iterdir():
        if not entry.name.startswith(prefix) or entry.is_symlink() or not entry.is_dir():
            continue
        if entry.stat().st_mtime < limit:
            remove_tree(entry)
            log.info("removed stale scratch directory %s", entry)
            removed.append(entry)
    return removed


@dataclass(frozen=True)
class ToolRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def clean_env(extra: Mapping[str, str], drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """The caller's environment without variables starting with ``drop_prefixes``, plus
    ``extra``: a tool sees only the credentials meant for this run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}
    env.update(extra)
    env.setdefault("LC_ALL", "C.UTF-8")
    return env


def run_tool(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    cwd: Path | None = None,
) -> ToolRun:
    """Run one command (argv list, no shell) and capture its output; never raises for a
    non-zero exit. A missing executable or a timeout is a system fault."""
    argv = list(argv)
    try:
        done = subprocess.run(
            argv,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError as exc:
        raise VerificationError(
            "system", "backup_command_failed", f"{argv[0]} is not installed", evidence=str(exc)
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise VerificationError(
            "system",
            "backup_command_failed",
            f"{Path(argv[0]).name} timed out after {timeout} s",
            evidence=str(exc.stderr or "")[-EVIDENCE_LIMIT:],
        ) from exc
    return ToolRun(argv, done.returncode, done.stdout, done.stderr)


def safe_relative(name: str) -> str | None:
    """``name`` as a clean relative POSIX path, or None if it is absolute or climbs out."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or not parts or ".." in parts:
        return None
    return "/".join(parts)


def name_list(names: Sequence[str], limit: int = 10) -> str:
    """``": a, b, c (+7)"`` for a check's detail; empty for no names."""
    if not names:
        return ""
    more = f" (+{len(names) - limit})" if len(names) > limit else ""
    return ": " + ", ".join(names[:limit]) + more


def manifest_checks(
    listed: int, missing: Sequence[str], mismatched: Sequence[str], unlisted: Sequence[str] | int
) -> list[CheckResult]:
    """The three manifest lines of a file restore: ``listed`` manifest entries, of which
    ``missing`` were not restored and ``mismatched`` differ; ``unlisted`` restored files (names,
    or only their number) that the manifest does not name."""
    extra = unlisted if isinstance(unlisted, int) else len(unlisted)
    return [
        CheckResult(
            "manifest files present",
            not missing,
            f"{listed - len(missing)}/{listed}" + name_list(missing),
        ),
        CheckResult(
            "manifest checksums",
            not mismatched,
            f"{listed - len(missing) - len(mismatched)} match" + name_list(mismatched),
        ),
        CheckResult(
            "files not in manifest",
            not extra,
            "none"
            if not extra
            else f"{extra}" + ("" if isinstance(unlisted, int) else name_list(unlisted)),
        ),
    ]


def raise_for_files(
    checks: list[CheckResult],
    missing: Sequence[str],
    mismatched: Sequence[str],
    unlisted: Sequence[str],
    absent: Sequence[str],
) -> None:
    """The verdict of a file restore, in this order: manifest files not restored, files that
    differ from the manifest, files in the archive that the manifest does not list (nothing
    vouches for their content: the archive or the manifest was altered or cut), contract-
    expected files missing (each backup/…)."""
    for names, reason, message in (
        (missing, "missing_file", f"{len(missing)} manifest files not in the archive"),
        (mismatched, "checksum_mismatch", f"{len(mismatched)} files differ from the manifest"),
        (
            unlisted,
            "unlisted_file",
            f"{len(unlisted)} files in the archive are not in the manifest"
            + name_list(unlisted, 5),
        ),
        (absent, "missing_file", f"expected files missing: {', '.join(absent[:5])}"),
    ):
        if names:
            raise VerificationError(
                "backup",
                reason,  # type: ignore[arg-type]
                message,
                evidence=", ".join(names[:20]),
                checks=checks,
            )


def expected_checks(root: Path, expected: Sequence[str]) -> list[CheckResult]:
    """One check per contract-expected path (relative to ``root``): present after restore."""
    out = []
    for name in expected:
        rel = safe_relative(name)
        if rel is None:
            out.append(CheckResult(f"expected {name}", False, "not a relative path"))
            continue
        path = root / rel
        ok = path.exists() or path.is_symlink()
        out.append(CheckResult(f"expected {rel}", ok, "present" if ok else "missing"))
    return out


COMMAND_TIMEOUT_S = 300.0
_COMMAND_ENV = ("PATH", "HOME", "LANG", "TZ", "TMPDIR")


@dataclass(frozen=True)
class CheckCommands:
    """The contract's "a command that must succeed" checks: argv lists and a time limit each."""

    argvs: tuple[tuple[str, ...], ...] = ()
    timeout: float = COMMAND_TIMEOUT_S

    @classmethod
    def from_lines(cls, lines: Sequence[str], timeout: float = COMMAND_TIMEOUT_S) -> CheckCommands:
        """Split each line like a shell would (quotes, no expansion); no shell runs them."""
        return cls(tuple(tuple(shlex.split(line)) for line in lines), timeout)

    def __bool__(self) -> bool:
        return bool(self.argvs)


NO_COMMANDS = CheckCommands()


def command_checks(
    commands: CheckCommands,
    *,
    cwd: Path,
    env: Mapping[str, str] = {},  # noqa: B006 (never mutated)
) -> list[CheckResult]:
    """Run each contract-given check command (an argv list, no shell) in the restored copy.

    The command runs with ``cwd`` (the restored tree), ``UPKEEP_RESTORE_DIR`` set to it, and
    only ``env`` (e.g. the ``PG*`` variables of the scratch database) beyond a minimal
    environment: none of upkeep's own settings or secrets. Passing means exit status 0; the
    check's detail is the exit status and the tail of stderr (or stdout).
    """
    base = {k: os.environ[k] for k in _COMMAND_ENV if k in os.environ}
    base.update({"LC_ALL": "C.UTF-8", "UPKEEP_RESTORE_DIR": str(cwd)})
    base.update(env)
    out = []
    for argv in commands.argvs:
        label = "command " + " ".join(argv)
        label = label if len(label) <= 80 else label[:79] + "…"
        try:
            run = run_tool(argv, env=base, timeout=commands.timeout, cwd=cwd)
        except VerificationError as exc:
            out.append(CheckResult(label, False, exc.message))
            continue
        said = (run.stderr.strip() or run.stdout.strip())[-300:]
        detail = f"exit {run.returncode}" + (f": {said}" if said else "")
        out.append(CheckResult(label, run.returncode == 0, detail))
    return out


def raise_for_commands(checks: Sequence[CheckResult], everything: Sequence[CheckResult]) -> None:
    """VerificationError(backup/check_failed) naming the failed check commands, if any."""
    failed = [c for c in checks if not c.ok]
    if failed:
        missing_tool = all(c.detail.endswith("is not installed") for c in failed)
        raise VerificationError(
            "system" if missing_tool else "backup",
            "check_failed",
            "check command failed: " + ", ".join(c.name.removeprefix("command ") for c in failed),
            evidence="; ".join(f"{c.name}: {c.detail}" for c in failed[:20]),
            checks=everything,
        )
