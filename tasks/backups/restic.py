"""restic repositories: integrity check, restore of the latest snapshot, file checks.

Secrets: the repository password is an argument (the caller loads it from a Prefect Secret or
the environment) and reaches restic only through the child's ``RESTIC_PASSWORD`` environment
variable; the repository location goes through ``RESTIC_REPOSITORY`` because REST/S3 URLs may
carry credentials. Neither is ever in argv or a log line. The caller's ``RESTIC_*`` variables
are dropped (a ``RESTIC_PASSWORD_COMMAND`` would otherwise win), and ``RESTIC_CACHE_DIR`` is a
temporary directory removed after each call.

Restic restores absolute source paths below the target: ``/srv/www/a`` backed up and restored
to ``T`` is ``T/srv/www/a``. Expected files are named as on the source (absolute), or relative
to one of the snapshot's backed-up paths.

JSON parsing is pure (tested on captured restic 0.14 output in tests/fixtures/backups/restic).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from upkeep.tasks.backups.base import (
    NO_COMMANDS,
    CheckCommands,
    CheckResult,
    FaultLike,
    Reason,
    Scratch,
    VerificationError,
    VerificationResult,
    clean_env,
    command_checks,
    free_space_ok,
    is_no_space,
    raise_for_commands,
    remove_tree,
    run_tool,
    safe_relative,
)

log = logging.getLogger(__name__)

_TIME_RE = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?(?P<tz>Z|[+-]\d{2}:\d{2})$"
)
_SUBSET_RE = re.compile(r"^(\d+/\d+|\d+(\.\d+)?%|\d+[KMGT]?)$")
_WRONG_PASSWORD = ("wrong password or no key found",)
_UNREACHABLE = (
    "connection refused",
    "no route to host",
    "timeout",
    "timed out",
    "no such host",
    "temporary failure in name resolution",
    "network is unreachable",
    "connection reset",
)
_SYSTEM_TROUBLE = (
    "already locked",
    "permission denied",
    "unable to create lock",
)
_NO_REPO = ("is there a repository at the following location", "unable to open config file")


# --- pure parsers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    paths: tuple[str, ...]
    hostname: str


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    files_new: int
    files_changed: int
    files_unmodified: int
    total_files_processed: int
    total_bytes_processed: int
    data_added: int


def parse_restic_time(text: str) -> datetime:
    """restic's RFC 3339 time with nanoseconds (``…:45.575621897Z``) as an aware UTC datetime."""
    m = _TIME_RE.match(text.strip())
    if m is None:
        raise ValueError(f"not a restic time: {text!r}")
    frac = (m["frac"] or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m["tz"] == "Z" else m["tz"]
    return datetime.fromisoformat(f"{m['base']}.{frac}{tz}").astimezone(UTC)


def _json_lines(stdout: str) -> list[dict[str, object]]:
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def parse_backup_summary(stdout: str) -> BackupSummary:
    """The summary of ``restic backup --json`` (the last ``message_type: summary`` line)."""
    summaries = [m for m in _json_lines(stdout) if m.get("message_type") == "summary"]
    if not summaries:
        raise ValueError("no summary line in restic backup output")
    s = summaries[-1]

    def num(key: str) -> int:
        value = s.get(key, 0)
        return int(value) if isinstance(value, int | float) else 0

    snapshot_id = s.get("snapshot_id")
    if not isinstance(snapshot_id, str) or not snapshot_id:
        raise ValueError("restic backup summary has no snapshot_id")
    return BackupSummary(
        snapshot_id=snapshot_id,
        files_new=num("files_new"),
        files_changed=num("files_changed"),
        files_unmodified=num("files_unmodified"),
        total_files_processed=num("total_files_processed"),
        total_bytes_processed=num("total_bytes_processed"),
        data_added=num("data_added"),
    )


def parse_snapshots(stdout: str) -> list[Snapshot]:
    """``restic snapshots --json`` as Snapshots, oldest first."""
    data = json.loads(stdout)
    if not isinstance(data, list):
        raise ValueError("restic snapshots --json did not return a list")
    snaps = [
        Snapshot(
            id=str(s["id"]),
            short_id=str(s.get("short_id") or str(s["id"])[:8]),
            time=parse_restic_time(str(s["time"])),
            paths=tuple(str(p) for p in s.get("paths") or ()),
            hostname=str(s.get("hostname", "")),
        )
        for s in data
    ]
    return sorted(snaps, key=lambda s: (s.time, s.id))


def parse_restore_size(stdout: str) -> tuple[int, int]:
    """(total bytes, file count) of ``restic stats --json --mode restore-size``."""
    data = json.loads(stdout)
    return int(data["total_size"]), int(data.get("total_file_count", 0))


def classify_restic_error(stderr: str, step_reason: Reason) -> tuple[FaultLike, Reason]:
    """(fault, reason) of a failed restic command, from its stderr.

    The system's: a full disk (no_space), a password that opens no key (wrong_password), a
    repository that cannot be reached (network, lock, permission: source_unreadable, which is
    tried again), no repository at the location (location_missing). Anything else (pack hash
    mismatch, unreadable blob) is the backup's, with ``step_reason``.
    """
    low = stderr.lower()
    if is_no_space(low):
        return "system", "no_space"
    if any(m in low for m in _WRONG_PASSWORD):
        return "system", "wrong_password"
    if any(m in low for m in (*_UNREACHABLE, *_SYSTEM_TROUBLE)):
        return "system", "source_unreadable"
    if any(m in low for m in _NO_REPO):
        return "system", "location_missing"
    return "backup", step_reason


def repo_label(repo: str) -> str:
    """The repository without URL credentials (``rest:https://u:p@h/`` → ``…//h/``)."""
    return re.sub(r"//[^@/]*@", "//", repo)


def source_unread(code: int, stderr: str) -> bool:
    """Whether ``restic backup`` could not read its source: exit 3 (some files unreadable; an
    incomplete snapshot was saved) or no source path exists."""
    low = stderr.lower()
    return code == 3 or (
        code != 0 and "do not exist" in low and not any(m in low for m in _NO_REPO)
    )


def failure_message(step: str, reason: Reason, repository: str) -> str:
    """What a failed restic ``step`` means, in words: the cause when it is known."""
    if reason == "wrong_password":
        return f"wrong password for the restic repository {repository}"
    if reason == "location_missing":
        return f"restic repository missing: there is none at {repository}"
    if reason == "source_unreadable":
        return f"the restic repository {repository} cannot be reached or locked (restic {step})"
    return f"restic {step} failed"


def no_space_evidence(stderr: str, keep: int = 5) -> str:
    """The first lines of ``stderr`` that say the disk is full, and restic's last line.

    restic goes on after each failed file, and follow-up errors ("UtimesNano: no such file")
    can fill the tail that evidence keeps; the cause is at the start.
    """
    lines = stderr.strip().splitlines()
    full = [line for line in lines if is_no_space(line)][:keep]
    last = lines[-1:] if lines and lines[-1] not in full else []
    return "\n".join([*full, *last]) or stderr


# --- argv builders (reusable over SSH) ------------------------------------------------------


def init_argv() -> list[str]:
    return ["restic", "init"]


def backup_argv(paths: Sequence[str], *, tags: Sequence[str] = ()) -> list[str]:
    argv = ["restic", "backup", "--json"]
    for tag in tags:
        argv += ["--tag", tag]
    return [*argv, "--", *paths]


def snapshots_argv(*, latest: bool = True) -> list[str]:
    return ["restic", "snapshots", "--json", *(["--latest", "1"] if latest else [])]


def check_argv(read_data_subset: str | None = None) -> list[str]:
    """``restic check --read-data`` (every pack) or ``--read-data-subset=…`` (n/m, x%, size)."""
    if read_data_subset is None:
        return ["restic", "check", "--read-data"]
    if not _SUBSET_RE.match(read_data_subset):
        raise ValueError(f"bad read-data subset: {read_data_subset!r}")
    return ["restic", "check", f"--read-data-subset={read_data_subset}"]


def stats_argv(snapshot_id: str) -> list[str]:
    return ["restic", "stats", "--json", "--mode", "restore-size", snapshot_id]


def restore_argv(snapshot_id: str, target: str) -> list[str]:
    return ["restic", "restore", snapshot_id, "--target", target]


# --- running --------------------------------------------------------------------------------


class _Restic:
    """One repository with its password and a private cache directory for this call."""

    def __init__(self, repo: Path | str, password: str) -> None:
        if not password:
            raise ValueError("restic repository password is empty")
        self.repo = str(repo)
        self.password = password
        self.cache: str | None = None

    def __enter__(self) -> _Restic:
        self.cache = tempfile.mkdtemp(prefix="upkeep-restic-cache-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cache:
            remove_tree(Path(self.cache))

    def run(self, argv: list[str], *, timeout: float | None = None) -> tuple[int, str, str]:
        env = clean_env(
            {
                "RESTIC_REPOSITORY": self.repo,
                "RESTIC_PASSWORD": self.password,
                "RESTIC_CACHE_DIR": self.cache or tempfile.gettempdir(),
            },
            drop_prefixes=("RESTIC_",),
        )
        done = run_tool(argv, env=env, timeout=timeout)
        return done.returncode, done.stdout, done.stderr

    def repo_label(self) -> str:
        return repo_label(self.repo)

    def fail(self, step: str, stderr: str, reason: Reason, *, where: str = "") -> VerificationError:
        fault, why = classify_restic_error(stderr, reason)
        return VerificationError(
            fault,
            why,
            failure_message(step, why, self.repo_label()) + (f" ({where})" if where else ""),
            evidence=no_space_evidence(stderr) if why == "no_space" else stderr,
        )


def init_repo(repo: Path | str, *, password: str) -> None:
    """Create a repository (tests and first-time setup)."""
    with _Restic(repo, password) as r:
        code, _, err = r.run(init_argv(), timeout=120)
        if code != 0:
            raise r.fail("init", err, "backup_command_failed")


def take_backup(
    source_dir: Path, repo: Path | str, *, password: str, tags: Sequence[str] = ()
) -> str:
    """``restic backup`` of ``source_dir``; returns the new snapshot's id.

    Raises VerificationError: system/source_unreadable when restic could not read the source
    (exit 3: a snapshot was saved but is incomplete; its id is in the evidence),
    system/no_space, system/location_missing (no repository), system/wrong_password,
    system/backup_command_failed.
    """
    with _Restic(repo, password) as r:
        code, out, err = r.run(backup_argv([str(source_dir.resolve())], tags=tags))
    if source_unread(code, err):
        evidence = err
        with contextlib.suppress(ValueError):
            evidence += f"\nincomplete snapshot {parse_backup_summary(out).snapshot_id}"
        raise VerificationError(
            "system", "source_unreadable", f"restic could not read {source_dir}", evidence=evidence
        )
    if code != 0:
        _, reason = classify_restic_error(err, "backup_command_failed")
        raise VerificationError(
            "system",  # taking a backup that fails says nothing about the backups there
            reason,
            failure_message("backup", reason, r.repo_label()),
            evidence=err,
        )
    summary = parse_backup_summary(out)
    log.info("restic snapshot %s of %s", summary.snapshot_id, source_dir)
    return summary.snapshot_id


def _snapshots(r: _Restic, *, latest: bool = True) -> list[Snapshot]:
    code, out, err = r.run(snapshots_argv(latest=latest), timeout=300)
    if code != 0:
        raise r.fail("snapshots", err, "restore_failed")
    return parse_snapshots(out)


def latest_snapshot(repo: Path | str, *, password: str) -> tuple[str, datetime] | None:
    """(full id, taken_at UTC) of the newest snapshot, or None for an empty repository."""
    with _Restic(repo, password) as r:
        snaps = _snapshots(r)
    return (snaps[-1].id, snaps[-1].time) if snaps else None


def _restic_expected(
    root: Path, paths: Sequence[str], expected: Sequence[str]
) -> list[CheckResult]:
    out = []
    for name in expected:
        candidates = []
        if name.startswith("/"):
            rel = safe_relative(name.lstrip("/"))
            candidates = [root / rel] if rel else []
        else:
            rel = safe_relative(name)
            if rel:
                candidates = [root / p.lstrip("/") / rel for p in paths]
        ok = any(c.exists() or c.is_symlink() for c in candidates)
        out.append(CheckResult(f"expected {name}", ok, "present" if ok else "missing"))
    return out


def _count_files(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                files += 1
                size += p.stat().st_size
    return files, size


def verify(
    repo: Path | str,
    scratch_parent: Path,
    *,
    password: str,
    expected: Sequence[str] = (),
    read_data_subset: str | None = None,
    snapshot_id: str | None = None,
    source_dir: Path | None = None,
    commands: CheckCommands = NO_COMMANDS,
) -> VerificationResult:
    """Check the repository's integrity, restore a snapshot (default: the latest) into a
    scratch directory and check the files.

    ``restic check --read-data`` (or ``--read-data-subset``) failing is backup/corrupt with
    restic's output tail (or the system's fault :func:`classify_restic_error` names: wrong
    password, no repository, unreachable); no snapshot is system/no_backup; a restore that
    does not fit is system/no_space (checked before restoring via ``restic stats --mode
    restore-size``); a restore without files is backup/empty; an expected path not restored
    is backup/missing_file; a check command (run in the restored copy of the snapshot's path, or
    of the restore root when the snapshot has several) that fails is backup/check_failed.
    The scratch directory is gone when this returns or raises.
    """
    started = time.monotonic()
    with _Restic(repo, password) as r:
        code, out, err = r.run(check_argv(read_data_subset))
        if code != 0:
            raise r.fail("check", err + "\n" + out, "corrupt")
        checks = [CheckResult("restic check", True, "read-data " + (read_data_subset or "all"))]
        snaps = _snapshots(r) if snapshot_id is None else []
        if snapshot_id is not None:
            snaps = [s for s in _snapshots(r, latest=False) if snapshot_id in (s.id, s.short_id)]
        if not snaps:
            raise VerificationError("system", "no_backup", f"no snapshot in {r.repo_label()}")
        snap = snaps[-1]
        code, out, err = r.run(stats_argv(snap.id), timeout=600)
        if code != 0:
            raise r.fail("stats", err, "restore_failed")
        needed, file_count = parse_restore_size(out)
        scratch_parent.mkdir(parents=True, exist_ok=True)
        free_space_ok(scratch_parent, needed)
        with Scratch(scratch_parent, source=source_dir) as root:
            code, _, err = r.run(restore_argv(snap.id, str(root)))
            if code != 0:
                raise r.fail("restore", err, "restore_failed", where=f"into {root}")
            files, size = _count_files(root)
            checks.append(CheckResult("restore", files > 0, f"{files} files, {size} bytes"))
            checks += _restic_expected(root, snap.paths, expected)
            tree = root / snap.paths[0].lstrip("/") if len(snap.paths) == 1 else root
            ran = command_checks(commands, cwd=tree if tree.is_dir() else root)
            checks += ran
            restored_to = str(root)
    if files == 0:
        raise VerificationError(
            "backup",
            "empty",
            f"snapshot {snap.short_id} restored no files",
            evidence=f"restore-size reports {file_count} entries",
            checks=checks,
        )
    missing = [
        c.name.removeprefix("expected ")
        for c in checks
        if not c.ok and c.name.startswith("expected ")
    ]
    if missing:
        raise VerificationError(
            "backup",
            "missing_file",
            f"not in snapshot {snap.short_id}: {', '.join(missing[:5])}",
            evidence=", ".join(missing[:20]),
            checks=checks,
        )
    raise_for_commands(ran, checks)
    return VerificationResult(
        kind="restic",
        backup=snap.id,
        taken_at=snap.time,
        size_bytes=needed,
        checksum=snap.id,
        checks=checks,
        restored_to=restored_to,
        duration_s=round(time.monotonic() - started, 3),
    )
