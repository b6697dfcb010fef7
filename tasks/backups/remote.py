"""Backups that live on another host: listed and fetched over SFTP, taken over SSH.

A backup source with ``host:`` keeps its backups on that inventory host (``location`` is a
directory there) and, for files and PostgreSQL, takes new ones there too. By default upkeep
fetches the backup over SFTP (the same verified host key and login as the inspection) into a
scratch directory on the machine running upkeep, removed afterwards, and verifies that copy
with exactly the checks a local backup gets. A files source with ``scratch_host:`` is restored
on that host instead (:func:`verify_files_on_host`), so a large archive need not travel.
For restic, ``host`` is where ``restic backup`` runs; the repository (``location``) is one
that upkeep can reach too (``rest:``, ``s3:``, ``sftp:`` or a shared path), and is checked
and restored from here.

Commands come from the fixed catalogue below; every value in one is quoted with
:func:`shlex.quote`. Secrets (the restic repository and password) go over the channel's stdin,
never into a command line, so neither the remote process list nor any log shows them.

Remote file backups use GNU tar and ``sha256sum``; the manifest is computed from the archive
that was just written (``tar --to-command``), so it vouches for exactly the bytes archived even
when files change during the backup. File names holding a newline cannot be listed in a
manifest line; such a name makes the manifest unreadable and the verification says so.
"""

from __future__ import annotations

import secrets
import shlex
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, cast

import paramiko

from upkeep.domain.checks.base import RawResult
from upkeep.tasks.backups.base import (
    SCRATCH_PREFIX,
    STALE_SCRATCH,
    CheckResult,
    FaultLike,
    Reason,
    VerificationError,
    VerificationResult,
    free_space_ok,
    is_no_space,
    manifest_checks,
    newest,
    raise_for_files,
    safe_relative,
    tail,
    unused_stem,
    utcnow,
)
from upkeep.tasks.backups.files import MANIFEST_SUFFIX, manifest_for, parse_backup_name
from upkeep.tasks.backups.postgresql import classify_dump_error
from upkeep.tasks.backups.restic import (
    classify_restic_error,
    failure_message,
    parse_backup_summary,
    repo_label,
    source_unread,
)
from upkeep.tasks.ssh import SshError, SshSession

BACKUP_TIMEOUT_S = 6 * 3600.0
"""A full backup may take hours; past this the command is stopped and the source is at fault."""

# Exit codes the catalogue scripts use to say what went wrong before any tool ran.
EXIT_NO_SOURCE = 66
EXIT_EXISTS = 73

_PERMISSION = ("permission denied", "operation not permitted")


# --- the catalogue ------------------------------------------------------------------------


def files_backup_command(source: str, dest: str, stem: str, *, compress: bool = True) -> str:
    """A tar archive of ``source`` as ``dest/stem.tar[.gz]`` with its ``.sha256`` manifest.

    Both files are written as ``.partial`` and renamed (manifest first) when complete, as a
    local backup is; a failed run leaves nothing behind. Hard links are archived as files
    (``--hard-dereference``): ``--to-command`` skips link members, and every name in the
    archive must have its manifest line. GNU tar's exit 1 ("file changed as
    we read it") is accepted: the manifest is computed from the archive itself.
    """
    ext = ".tar.gz" if compress else ".tar"
    z = "z" if compress else ""
    return "\n".join(
        [
            "set -u",
            "umask 077",
            f"src={shlex.quote(source)}",
            f"dest={shlex.quote(dest)}",
            f"stem={shlex.quote(stem)}",
            f'arc="$dest/$stem{ext}"; man="$dest/$stem.sha256"',
            f'[ -d "$src" ] && [ -r "$src" ] || {{ echo "upkeep: cannot read $src" >&2; '
            f"exit {EXIT_NO_SOURCE}; }}",
            'mkdir -p -- "$dest" || exit 1',
            f'for f in "$arc" "$man"; do [ ! -e "$f" ] || {{ echo "upkeep: $f exists" >&2; '
            f"exit {EXIT_EXISTS}; }}; done",
            'trap \'rm -f -- "$arc.partial" "$man.partial"\' EXIT',
            f'tar --format=pax --hard-dereference -C "$src" -c{z}f "$arc.partial" .; rc=$?',
            '[ "$rc" -le 1 ] || exit "$rc"',
            f'tar -x{z}f "$arc.partial" --to-command=\'h=$(sha256sum) || exit 1; '
            'printf "%s  %s\\n" "${h%% *}" "$TAR_FILENAME"\' > "$man.partial" || exit 1',
            'mv -- "$man.partial" "$man" && mv -- "$arc.partial" "$arc" || exit 1',
            "trap - EXIT",
            'printf "%s\\n" "$arc"',
        ]
    )


def pg_dump_command(database: str, dest: str, stem: str) -> str:
    """``pg_dump -Fc`` of ``database`` (a name or a libpq connection string without a password:
    authentication is the host's own, peer or ``.pgpass``) to ``dest/stem.dump``."""
    return "\n".join(
        [
            "set -u",
            "umask 077",
            f"dest={shlex.quote(dest)}",
            f'out="$dest/"{shlex.quote(stem + ".dump")}',
            'mkdir -p -- "$dest" || exit 1',
            f'[ ! -e "$out" ] || {{ echo "upkeep: $out exists" >&2; exit {EXIT_EXISTS}; }}',
            "trap 'rm -f -- \"$out.partial\"' EXIT",
            "pg_dump --format=custom --no-password "
            f'--dbname={shlex.quote(database)} --file="$out.partial" || exit $?',
            'mv -- "$out.partial" "$out" || exit 1',
            "trap - EXIT",
            'printf "%s\\n" "$out"',
        ]
    )


def restic_backup_command(source: str) -> str:
    """``restic backup --json`` of ``source``; the repository and the password are the first
    two lines of stdin."""
    return "\n".join(
        [
            "set -u",
            "IFS= read -r RESTIC_REPOSITORY || exit 64",
            "IFS= read -r RESTIC_PASSWORD || exit 64",
            "export RESTIC_REPOSITORY RESTIC_PASSWORD",
            "unset RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND",
            f"exec restic backup --json -- {shlex.quote(source)}",
        ]
    )


# --- pure decisions -------------------------------------------------------------------------


def classify_failure(result: RawResult) -> Reason:
    """Why a remote file backup failed: the source could not be read, the disk is full, or
    the command itself failed."""
    text = result.stderr.lower()
    if is_no_space(text):
        return "no_space"
    if result.exit_code == EXIT_NO_SOURCE or any(m in text for m in _PERMISSION):
        return "source_unreadable"
    return "backup_command_failed"


# --- the host -------------------------------------------------------------------------------


class BackupHost:
    """One SSH session to the host holding a source's backups; SFTP opened on first use.

    Every failure is a :class:`VerificationError` with ``fault="system"``: a host that cannot
    be reached or read says nothing about the backup.
    """

    def __init__(self, session: SshSession) -> None:
        self.session = session
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def name(self) -> str:
        return self.session.target.name

    def _fail(self, reason: Reason, message: str, exc: BaseException) -> VerificationError:
        return VerificationError(
            "system", reason, f"{self.name}: {message}", evidence=f"{type(exc).__name__}: {exc}"
        )

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = self.session.open_sftp()
            except (SshError, OSError, paramiko.SSHException) as exc:
                raise self._fail("source_unreadable", "SFTP is not available", exc) from exc
        return self._sftp

    def listdir(self, path: str) -> list[str]:
        """Names of the regular files in ``path``; a missing directory has none."""
        try:
            entries = self.sftp().listdir_attr(path)
        except FileNotFoundError:
            return []
        except (OSError, paramiko.SSHException) as exc:
            raise self._fail("source_unreadable", f"cannot list {path}", exc) from exc
        return [e.filename for e in entries if e.st_mode is not None and stat.S_ISREG(e.st_mode)]

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is a directory on the host (False when it does not exist)."""
        try:
            mode = self.sftp().stat(path).st_mode
        except FileNotFoundError:
            return False
        except (OSError, paramiko.SSHException) as exc:
            raise self._fail("source_unreadable", f"cannot stat {path}", exc) from exc
        return mode is not None and stat.S_ISDIR(mode)

    def size(self, path: str) -> int | None:
        try:
            return self.sftp().stat(path).st_size
        except FileNotFoundError:
            return None
        except (OSError, paramiko.SSHException) as exc:
            raise self._fail("source_unreadable", f"cannot stat {path}", exc) from exc

    def fetch(self, remote: str, local: Path) -> int:
        """Copy ``remote`` to ``local`` (which must not exist); returns the byte count.

        Checks the free space first, and that the copy has the size the host reported (a
        connection lost mid-transfer is a system fault, not a truncated backup)."""
        size = self.size(remote)
        if size is None:
            raise VerificationError(
                "system", "no_backup", f"{self.name}:{remote} does not exist", evidence=remote
            )
        free_space_ok(local.parent, size)
        try:
            self.sftp().get(remote, str(local))
        except (OSError, paramiko.SSHException) as exc:
            local.unlink(missing_ok=True)
            if is_no_space(exc):
                raise self._fail("no_space", f"no space for {local}", exc) from exc
            raise self._fail("source_unreadable", f"copying {remote} failed", exc) from exc
        got = local.stat().st_size
        if got != size:
            local.unlink(missing_ok=True)
            raise VerificationError(
                "system",
                "source_unreadable",
                f"{self.name}:{remote} changed while it was copied ({size} → {got} bytes)",
                evidence=remote,
            )
        return got

    def run(
        self, command: str, *, what: str, stdin: bytes | None = None, timeout: float | None = None
    ) -> RawResult:
        """Run one catalogue command; an SSH failure (not a non-zero exit) is a system fault."""
        try:
            return self.session.run(
                command, timeout=BACKUP_TIMEOUT_S if timeout is None else timeout, stdin=stdin
            )
        except SshError as exc:
            raise self._fail("backup_command_failed", f"{what} did not complete", exc) from exc

    def close(self) -> None:
        if self._sftp is not None:
            with suppress(OSError, paramiko.SSHException):
                self._sftp.close()
            self._sftp = None


def next_stem(host: BackupHost, dest: str, system: str, suffixes: tuple[str, ...]) -> str:
    """``<system>-<stamp>`` not yet taken in ``dest`` on the host (cf. :func:`unused_stem`)."""
    existing = set(host.listdir(dest))
    return unused_stem(existing.__contains__, system, suffixes, utcnow())


def command_failed(
    host: BackupHost, what: str, result: RawResult, reason: Reason
) -> VerificationError:
    return VerificationError(
        "system",
        reason,
        f"{what} on {host.name} failed (exit {result.exit_code})",
        evidence=tail(result.stderr),
    )


# --- taking backups on the host --------------------------------------------------------------


def take_files_backup(
    host: BackupHost, source: str, dest: str, system: str, *, compress: bool = True
) -> str:
    """A new tar archive + manifest of ``source`` in ``dest`` on the host; its remote path."""
    ext = ".tar.gz" if compress else ".tar"
    stem = next_stem(host, dest, system, (ext, MANIFEST_SUFFIX))
    result = host.run(
        files_backup_command(source, dest, stem, compress=compress), what="the file backup"
    )
    if result.exit_code != 0:
        raise command_failed(host, f"tar of {source}", result, classify_failure(result))
    return result.stdout.strip().splitlines()[-1]


def take_pg_dump(host: BackupHost, database: str, dest: str, system: str) -> str:
    """A new ``pg_dump -Fc`` of ``database`` in ``dest`` on the host; its remote path."""
    stem = next_stem(host, dest, system, (".dump",))
    result = host.run(pg_dump_command(database, dest, stem), what="pg_dump")
    if result.exit_code != 0:
        raise command_failed(host, "pg_dump", result, classify_dump_error(result.stderr))
    return result.stdout.strip().splitlines()[-1]


def take_restic_backup(host: BackupHost, source: str, repo: str, *, password: str) -> str:
    """``restic backup`` of ``source`` on the host into ``repo``; the new snapshot's id.

    restic's exit 3 (some files unreadable; an incomplete snapshot was saved) is a system
    fault like any unreadable source: the snapshot is not trusted.
    """
    if "\n" in repo or "\n" in password:
        raise VerificationError("system", "backup_command_failed", "a newline in repo or password")
    result = host.run(
        restic_backup_command(source),
        what="restic backup",
        stdin=f"{repo}\n{password}\n".encode(),
    )
    if source_unread(result.exit_code, result.stderr):
        raise command_failed(host, f"restic backup of {source}", result, "source_unreadable")
    if result.exit_code != 0:
        _, reason = classify_restic_error(result.stderr, "backup_command_failed")
        if reason in ("wrong_password", "location_missing"):
            raise VerificationError(
                "system",
                reason,
                f"{host.name}: " + failure_message("backup", reason, repo_label(repo)),
                evidence=tail(result.stderr),
            )
        raise command_failed(host, "restic backup", result, reason)
    try:
        return parse_backup_summary(result.stdout).snapshot_id
    except ValueError as exc:
        raise command_failed(host, "restic backup", result, "backup_command_failed") from exc


# --- finding and fetching ---------------------------------------------------------------------


def latest(
    host: BackupHost,
    dest: str,
    system: str,
    parse: Callable[[str], tuple[str, datetime] | None],
) -> tuple[str, datetime] | None:
    """(remote path, taken at) of the newest backup of ``system`` in ``dest``; None if none."""
    found = newest(host.listdir(dest), parse, system)
    if found is None:
        return None
    return f"{dest.rstrip('/')}/{found[0]}", found[1]


def fetch_files_backup(host: BackupHost, archive: str, staging: Path) -> Path:
    """Copy a remote archive and the manifest beside it into ``staging``; the local archive.

    A missing manifest is not fetched, so the verification reports it as the backup's fault.
    """
    local = fetch_file(host, archive, staging)
    manifest = manifest_for(Path(archive)).as_posix()
    if host.size(manifest) is not None:
        host.fetch(manifest, manifest_for(local))
    return local


def fetch_file(host: BackupHost, remote: str, staging: Path) -> Path:
    local = staging / remote.rsplit("/", 1)[-1]
    host.fetch(remote, local)
    return local


# --- restoring on a scratch host ------------------------------------------------------------

EXIT_NO_ARCHIVE = 66
# Files in the restored tree that the manifest does not name, as "@@unlisted <path>" lines.
# A second name of a listed file (a hard link in the archive) is vouched for by its inode.
_UNLISTED_AWK = "\n".join(
    [
        r'FILENAME == ARGV[1] { sub(/^\\?[0-9a-fA-F]+ [ *]/, ""); sub(/^\.\//, "");',
        "  listed[$0] = 1; next }",
        '{ i = $1; sub(/^[0-9]+ /, ""); n++; name[n] = $0; ino[n] = i;',
        "  if ($0 in listed) ok[i] = 1 }",
        "END { for (k = 1; k <= n; k++)",
        '  if (!(name[k] in listed) && !(ino[k] in ok)) print "@@unlisted " name[k] }',
    ]
)
EXIT_NO_MANIFEST = 67
EXIT_EXTRACT_FAILED = 74
EXIT_NO_SPACE = 75


def files_verify_command(
    archive: str,
    manifest: str,
    parent: str,
    expected: Iterable[str],
    *,
    remove_after: str = "",
) -> str:
    """Restore ``archive`` into ``parent/upkeep-scratch-XXXXXXXX`` on the host and check it.

    The archive is read once: ``tee`` feeds ``sha256sum`` (the recorded checksum) and
    ``tar -x`` together. Free space is checked first against the archive's own size (a
    compressed archive may need more; a restore that then fills the disk fails part-way with
    ENOSPC, which is reported as no space and cleaned up like any other failure).
    Prints ``@@key value`` lines (see :func:`parse_verify_output`) and ``sha256sum -c`` lines;
    exits 0 when the restore ran (the checks are judged by the caller), else with one of the
    ``EXIT_*`` codes. The scratch directory (and ``remove_after``, an uploaded copy) is
    removed on every exit, also on SIGTERM/SIGHUP; scratch directories of killed runs older
    than two hours are removed first. ``expected`` must be safe relative paths.
    """
    z = "z" if archive.endswith(".gz") else ""
    stale_minutes = int(STALE_SCRATCH.total_seconds() // 60)
    checks = [
        f'if [ -e "$dir/root"/{shlex.quote(p)} ] || [ -L "$dir/root"/{shlex.quote(p)} ]; '
        f"then echo @@present {shlex.quote(p)}; else echo @@absent {shlex.quote(p)}; fi"
        for p in expected
    ]
    return "\n".join(
        [
            "set -u",
            "umask 077",
            f"arc={shlex.quote(archive)}; man={shlex.quote(manifest)}",
            f"parent={shlex.quote(parent)}; upload={shlex.quote(remove_after)}",
            'case $man in /*) ;; *) man="$PWD/$man" ;; esac',
            "dir=",
            "cleanup() {",
            '  if [ -n "$dir" ]; then chmod -R u+rwx -- "$dir" 2>/dev/null; rm -rf -- "$dir"; fi',
            '  if [ -n "$upload" ]; then rm -rf -- "$upload"; fi',
            "}",
            "trap cleanup EXIT",
            "trap 'exit 143' INT TERM HUP",
            f'[ -r "$arc" ] || {{ echo "upkeep: cannot read $arc" >&2; exit {EXIT_NO_ARCHIVE}; }}',
            f'[ -r "$man" ] || {{ echo "upkeep: no manifest $man" >&2; exit {EXIT_NO_MANIFEST}; }}',
            'mkdir -p -- "$parent" || exit 1',
            f"find \"$parent\" -maxdepth 1 -name '{SCRATCH_PREFIX}*' -mmin +{stale_minutes}"
            " -exec rm -rf -- {} + 2>/dev/null",
            f'dir=$(mktemp -d "$parent/{SCRATCH_PREFIX}XXXXXXXX") || exit 1',
            'echo "@@scratch $dir"',
            'size=$(wc -c < "$arc"); echo "@@archive-bytes $size"',
            "avail=$(df -Pk \"$parent\" | awk 'NR == 2 { print $4 }')",
            'if [ $(( size / 1024 * 11 / 10 )) -gt "$avail" ]; then',
            '  echo "upkeep: no space in $parent: the archive is $size bytes, $avail KiB free" >&2',
            f"  exit {EXIT_NO_SPACE}",
            "fi",
            # One read of the archive: tee feeds sha256sum (through a FIFO, in parallel) and tar.
            'mkfifo "$dir/tee" && mkdir "$dir/root" || exit 1',
            'sha256sum < "$dir/tee" > "$dir/sum" &',
            f'tee "$dir/tee" < "$arc" | tar -x{z}f - -C "$dir/root" --no-same-owner '
            "--no-same-permissions; rc=$?",
            "wait",
            'echo "@@archive-sha256 $(cut -d" " -f1 "$dir/sum")"',
            f'[ "$rc" -eq 0 ] || exit {EXIT_EXTRACT_FAILED}',
            'echo "@@files $(find "$dir/root" -type f | wc -l) $(find "$dir/root" -type f '
            "-printf '%s\\n' | awk '{ s += $1 } END { printf \"%d\", s }')\"",
            "echo @@extracted",
            '(cd "$dir/root" && LC_ALL=C sha256sum -c -- "$man" 2>/dev/null); echo "@@sha-exit $?"',
            '(cd "$dir/root" && find . -type f -printf \'%i %P\\n\') > "$dir/found" || exit 1',
            f'LC_ALL=C awk \'{_UNLISTED_AWK}\' "$man" "$dir/found"',
            *checks,
        ]
    )


@dataclass
class RemoteRestore:
    """What :func:`files_verify_command` printed."""

    scratch: str = ""
    archive_bytes: int = 0
    archive_sha256: str = ""
    files: int = 0
    total_size: int = 0
    extracted: bool = False
    ok: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)


def parse_verify_output(stdout: str) -> RemoteRestore:
    """Read the ``@@`` lines (``@@unlisted``: a file the manifest does not name) and
    ``sha256sum -c`` verdicts (``name: OK``, ``name: FAILED``,
    ``name: FAILED open or read``) of one remote restore."""
    out = RemoteRestore()
    for line in stdout.splitlines():
        if line.startswith("@@"):
            key, _, value = line[2:].partition(" ")
            if key == "scratch":
                out.scratch = value
            elif key == "archive-bytes":
                out.archive_bytes = int(value.strip() or 0)
            elif key == "archive-sha256":
                out.archive_sha256 = value.strip()
            elif key == "files":
                count, _, size = value.partition(" ")
                out.files, out.total_size = int(count), int(size)
            elif key == "extracted":
                out.extracted = True
            elif key == "present":
                out.present.append(value)
            elif key == "absent":
                out.absent.append(value)
            elif key == "unlisted":
                out.unlisted.append(value)
            continue
        for suffix, bucket in (
            (": FAILED open or read", out.missing),
            (": FAILED", out.mismatched),
            (": OK", out.ok),
        ):
            if line.endswith(suffix):
                bucket.append(line[: -len(suffix)].removeprefix("./"))
                break
    return out


def classify_tar_error(stderr: str) -> tuple[FaultLike, Reason]:
    """Whose fault a failed remote ``tar -x`` is, from its messages."""
    low = stderr.lower()
    if is_no_space(low):
        return "system", "no_space"
    if "unexpected end of file" in low or "unexpected eof" in low:
        return "backup", "truncated"
    if any(m in low for m in ("permission denied", "cannot open", "cannot mkdir")):
        return "system", "restore_failed"
    return "backup", "corrupt"


def judge_restore(
    restored: RemoteRestore, *, label: str, expected: Sequence[str]
) -> list[CheckResult]:
    """The checks of a remote restore, raising VerificationError for a failed one (the same
    verdicts as :func:`tasks.backups.files.verify`)."""
    listed = len(restored.ok) + len(restored.mismatched) + len(restored.missing)
    if restored.files == 0:
        raise VerificationError("backup", "empty", f"{label} holds no files", evidence=label)
    checks = [
        CheckResult(
            "archive readable", True, f"{restored.files} files, {restored.total_size} bytes"
        ),
        *manifest_checks(listed, restored.missing, restored.mismatched, restored.unlisted),
    ]
    absent = [p for p in expected if p not in restored.present]
    checks += [
        CheckResult(f"expected {p}", p not in absent, "missing" if p in absent else "present")
        for p in expected
    ]
    raise_for_files(checks, restored.missing, restored.mismatched, restored.unlisted, absent)
    return checks


def mkdir_command(path: str) -> str:
    return f"mkdir -p -- {shlex.quote(path)}"


def remove_command(path: str) -> str:
    """Remove an upload or scratch directory that upkeep made (the caller built its path)."""
    return f"chmod -R u+rwx -- {shlex.quote(path)} 2>/dev/null; rm -rf -- {shlex.quote(path)}"


def _upload(src: BackupHost, dst: BackupHost, remote: str, target: str) -> None:
    """Stream ``remote`` on ``src`` to ``target`` on ``dst`` (nothing is kept here)."""
    try:
        with src.sftp().open(remote, "rb") as f:
            f.prefetch()
            dst.sftp().putfo(cast(IO[bytes], f), target, confirm=True)
    except FileNotFoundError as exc:
        raise VerificationError(
            "system", "no_backup", f"{src.name}:{remote} does not exist", evidence=remote
        ) from exc
    except (OSError, paramiko.SSHException) as exc:
        if is_no_space(exc):
            raise dst._fail("no_space", f"no space for {target}", exc) from exc
        raise dst._fail("source_unreadable", f"copying {src.name}:{remote} failed", exc) from exc


def verify_files_on_host(
    scratch: BackupHost,
    archive: str,
    parent: str,
    *,
    expected: Sequence[str] = (),
    backup_host: BackupHost | None = None,
) -> VerificationResult:
    """Restore and check a remote file backup on ``scratch`` (a host), in ``parent`` there.

    The archive is on ``backup_host`` (default: the scratch host itself, so nothing is
    copied); from another host it is streamed to the scratch host first, through upkeep,
    into an upload directory that is removed with the scratch directory. The verdicts are
    those of a local restore; check commands do not run on a customer's host.
    """
    started = time.monotonic()
    src = backup_host or scratch
    label = f"{src.name}:{archive}"
    relative = [safe_relative(p) for p in expected]
    if None in relative:
        bad = [p for p, r in zip(expected, relative, strict=True) if r is None]
        raise VerificationError(
            "system", "check_failed", f"expected files must be relative paths: {bad[:5]}"
        )
    expected = [r for r in relative if r is not None]
    manifest = manifest_for(Path(archive)).as_posix()
    upload = ""
    try:
        if src is not scratch:
            upload = f"{parent.rstrip('/')}/{SCRATCH_PREFIX}upload-{secrets.token_hex(6)}"
            made = scratch.run(mkdir_command(upload), what="creating the upload directory")
            if made.exit_code != 0:
                raise command_failed(scratch, "mkdir", made, "restore_failed")
            copy = f"{upload}/{archive.rsplit('/', 1)[-1]}"
            copy_manifest = manifest_for(Path(copy)).as_posix()
            _upload(src, scratch, archive, copy)
            if src.size(manifest) is not None:
                _upload(src, scratch, manifest, copy_manifest)
            archive, manifest = copy, copy_manifest
        result = scratch.run(
            files_verify_command(archive, manifest, parent, expected, remove_after=upload),
            what="the restore test",
        )
        upload = ""  # the script removed it
    finally:
        if upload:
            with suppress(VerificationError):
                scratch.run(remove_command(upload), what="removing the upload", timeout=600)
    code = result.exit_code
    if code == EXIT_NO_MANIFEST:
        raise VerificationError(
            "backup", "missing_manifest", f"no manifest beside {label}", evidence=manifest
        )
    if code == EXIT_NO_ARCHIVE:
        raise command_failed(scratch, f"reading {archive}", result, "source_unreadable")
    if code == EXIT_NO_SPACE:
        raise command_failed(scratch, f"the restore into {parent}", result, "no_space")
    if code == EXIT_EXTRACT_FAILED:
        fault, reason = classify_tar_error(result.stderr)
        raise VerificationError(
            fault,
            reason,
            f"{label}: tar -x failed on {scratch.name}",
            evidence=tail(result.stderr),
        )
    if code != 0:
        raise command_failed(scratch, "the restore test", result, "restore_failed")
    restored = parse_verify_output(result.stdout)
    checks = judge_restore(restored, label=label, expected=expected)
    parsed = parse_backup_name(archive.rsplit("/", 1)[-1])
    return VerificationResult(
        kind="files",
        backup=label,
        taken_at=parsed[1] if parsed else utcnow(),
        size_bytes=restored.archive_bytes,
        checksum=restored.archive_sha256,
        checks=checks,
        restored_to=f"{scratch.name}:{restored.scratch}",
        duration_s=round(time.monotonic() - started, 3),
    )
