"""PostgreSQL backups: ``pg_dump`` custom format, verified by a restore into a scratch database.

Credentials: the connection URL is turned into libpq ``PG*`` environment variables for the
child process (:func:`libpq_env`), never into argv. argv is world-readable
(``/proc/<pid>/cmdline``, ``ps``); a process's environment is readable only by its user and
root (``/proc/<pid>/environ`` is mode 0400), and upkeep never logs it. The caller's own
``PG*`` variables are dropped so that a stray ``PGPASSWORD`` or ``PGSERVICE`` cannot redirect
a run.

Verification restores into ``upkeep_scratch_<unix time>_<random>`` on the *scratch server*
(normally a throwaway cluster, never the source database: refused when the scratch URL names
the source database), checks it, and always drops it ``WITH (FORCE)``. The unix time in the
name lets :func:`cleanup_stale_databases` drop leftovers of killed runs without touching a
verification that is still running.

Row counts: a contract states a *minimum* per table. When ``source_url`` is given, the
source's current count is reported next to the restored one as information only: the source
keeps changing after the dump, so a difference is expected; only "restored < minimum" fails.
"""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from upkeep.tasks.backups.base import (
    NO_COMMANDS,
    CheckCommands,
    CheckResult,
    Reason,
    UnsafeTarget,
    VerificationError,
    VerificationResult,
    clean_env,
    command_checks,
    is_no_space,
    latest_in,
    parse_stamped_name,
    raise_for_commands,
    run_tool,
    sha256_file,
    unused_stem,
    utcnow,
)

log = logging.getLogger(__name__)

SCRATCH_DB_PREFIX = "upkeep_scratch_"
_SCRATCH_DB_RE = re.compile(r"^upkeep_scratch_(?P<ts>\d{9,11})_[0-9a-f]{8}$")
_NAME_RE = re.compile(r"^(?P<name>.+)-(?P<ts>\d{8}T\d{6}Z)\.dump$")
CONNECT_TIMEOUT = 10
CHECK_TIMEOUT_MS = 60_000

# libpq connection keywords and the environment variables that carry them.
_ENV_FOR_KEYWORD = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "requiressl": "PGREQUIRESSL",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "client_encoding": "PGCLIENTENCODING",
}
_SERVER_TROUBLE = (
    "could not connect",
    "connection to server",
    "server closed the connection",
    "terminating connection",
    "the database system is",
    "password authentication failed",
    "no pg_hba.conf entry",
)
_DUMP_SOURCE_TROUBLE = (
    *_SERVER_TROUBLE,
    "connection refused",
    "authentication failed",
    "no password supplied",
    "permission denied",
    "does not exist",
)


# --- URLs and environment -------------------------------------------------------------------


def conninfo(url: str) -> dict[str, str]:
    """libpq keywords of a ``postgresql://`` URL (a SQLAlchemy ``+driver`` suffix is ignored)."""
    url = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)
    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def libpq_url(url: str) -> str:
    return re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)


def libpq_env(url: str, *, dbname: str | None = None) -> dict[str, str]:
    """The child-process environment for ``url``: the caller's environment without ``PG*``,
    plus one ``PG*`` variable per URL keyword. Raises ValueError for a keyword libpq has no
    environment variable for (it would otherwise be dropped silently)."""
    params = conninfo(url)
    if dbname is not None:
        params["dbname"] = dbname
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    extra = {}
    for key, value in params.items():
        env_name = _ENV_FOR_KEYWORD.get(key)
        if env_name is None:
            raise ValueError(f"connection parameter {key!r} cannot be passed to pg tools")
        extra[env_name] = value
    return clean_env(extra, drop_prefixes=("PG",))


def _target(url: str) -> tuple[str, str, str]:
    p = conninfo(url)
    return p.get("host", "localhost"), p.get("port", "5432"), p.get("dbname", p.get("user", ""))


def describe(url: str) -> str:
    """``host:port/db`` of a URL, without user or password: safe for evidence and logs."""
    host, port, db = _target(url)
    return f"{host}:{port}/{db}"


# --- argv builders (reusable over SSH) ------------------------------------------------------


def dump_argv(target: str) -> list[str]:
    """pg_dump of the database named by the ``PG*`` environment into ``target``."""
    return ["pg_dump", "--format=custom", "--no-password", f"--file={target}"]


def list_argv(dump: str) -> list[str]:
    return ["pg_restore", "--list", dump]


def restore_argv(dump: str, dbname: str) -> list[str]:
    return [
        "pg_restore",
        "--no-owner",
        "--no-privileges",
        "--no-password",
        f"--dbname={dbname}",
        dump,
    ]


# --- names ---------------------------------------------------------------------------------


def parse_backup_name(filename: str) -> tuple[str, datetime] | None:
    """``("crm", taken_at)`` for ``crm-20250301T020000Z.dump``; None otherwise."""
    return parse_stamped_name(_NAME_RE, filename)


def latest_backup(dest_dir: Path, name: str | None = None) -> tuple[Path, datetime] | None:
    """The newest ``*.dump`` in ``dest_dir`` by the timestamp in its name, or None."""
    return latest_in(dest_dir, parse_backup_name, name)


# --- pure parsers --------------------------------------------------------------------------


@dataclass(frozen=True)
class TocEntry:
    dump_id: int
    kind: str
    """``TABLE``, ``TABLE DATA``, ``INDEX``, ``SEQUENCE SET``, …"""
    rest: str


_TOC_LINE = re.compile(r"^(?P<id>\d+);\s+\d+\s+\d+\s+(?P<body>.+)$")
_MULTIWORD_KINDS = (
    "TABLE DATA",
    "SEQUENCE SET",
    "SEQUENCE OWNED BY",
    "DEFAULT ACL",
    "FK CONSTRAINT",
    "MATERIALIZED VIEW DATA",
    "MATERIALIZED VIEW",
    "BLOB DATA",
    "LARGE OBJECT",
    "CHECK CONSTRAINT",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "FOREIGN TABLE",
    "EVENT TRIGGER",
    "ROW SECURITY",
    "SCHEMA",
)


def parse_toc(text: str) -> list[TocEntry]:
    """The entries of ``pg_restore --list`` output (comment lines skipped)."""
    entries = []
    for line in text.splitlines():
        m = _TOC_LINE.match(line.strip())
        if m is None:
            continue
        body = m["body"]
        kind = next(
            (k for k in _MULTIWORD_KINDS if body == k or body.startswith(k + " ")),
            body.split(" ", 1)[0],
        )
        entries.append(TocEntry(int(m["id"]), kind, body[len(kind) :].strip()))
    return entries


def classify_pg_restore_error(stderr: str, *, size: int) -> tuple[str, Reason]:
    """(fault, reason) for a failed ``pg_restore`` from its stderr: server trouble and a full
    disk are the system's; a short, cut or garbled dump is the backup's."""
    low = stderr.lower()
    if is_no_space(low):
        return "system", "no_space"
    if any(m in low for m in _SERVER_TROUBLE):
        return "system", "restore_failed"
    if size == 0:
        return "backup", "empty"
    if any(
        m in low
        for m in ("too short", "end of file", "unexpected eof", "could not read from input")
    ):
        return "backup", "truncated"
    if any(
        m in low
        for m in (
            "not appear to be a valid archive",
            "did not find magic",
            "could not uncompress",
            "corrupt",
            "unrecognized data block",
            "invalid",
            "unsupported version",
        )
    ):
        return "backup", "corrupt"
    return "backup", "restore_failed"


# --- taking a backup -----------------------------------------------------------------------


def classify_dump_error(stderr: str) -> Reason:
    """Why ``pg_dump`` failed, here or on a backup host: no space, the source could not be
    read (server down, login refused, no such database, no permission), or anything else."""
    low = stderr.lower()
    if is_no_space(low):
        return "no_space"
    if any(m in low for m in _DUMP_SOURCE_TROUBLE):
        return "source_unreadable"
    return "backup_command_failed"


def take_backup(source_url: str, dest_dir: Path, name: str, *, now: datetime | None = None) -> Path:
    """``pg_dump -Fc`` of ``source_url`` to ``<dest_dir>/<name>-<UTC stamp>.dump``.

    Written as ``.partial`` and renamed when complete. Raises VerificationError:
    system/source_unreadable (cannot connect, no permission), system/no_space,
    system/backup_command_failed (anything else pg_dump refuses).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / (unused_stem(dest_dir, name, (".dump",), now or utcnow()) + ".dump")
    partial = target.with_name(target.name + ".partial")
    run = run_tool(dump_argv(str(partial)), env=libpq_env(source_url), timeout=None)
    if run.returncode != 0:
        partial.unlink(missing_ok=True)
        raise VerificationError(
            "system",
            classify_dump_error(run.stderr),
            f"pg_dump of {describe(source_url)} failed (exit {run.returncode})",
            evidence=run.stderr,
        )
    partial.replace(target)
    log.info("pg_dump of %s to %s", describe(source_url), target)
    return target


# --- scratch databases ---------------------------------------------------------------------


def scratch_db_name(now: float | None = None) -> str:
    return f"{SCRATCH_DB_PREFIX}{int(time.time() if now is None else now)}_{secrets.token_hex(4)}"


def _connect(url: str, **kwargs: Any) -> Any:
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return psycopg.connect(libpq_url(url), **kwargs)


def _drop_database(server_url: str, dbname: str) -> None:
    if not dbname.startswith(SCRATCH_DB_PREFIX):
        raise UnsafeTarget(f"refusing to drop {dbname!r}: not a scratch database")
    with _connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def cleanup_stale_databases(
    scratch_server_url: str,
    older_than: timedelta = timedelta(hours=6),
    *,
    now: float | None = None,
) -> list[str]:
    """Drop ``upkeep_scratch_<time>_<random>`` databases older than ``older_than`` (killed
    runs); younger ones may belong to a running verification. Returns the dropped names."""
    limit = (time.time() if now is None else now) - older_than.total_seconds()
    with _connect(scratch_server_url, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'upkeep\\_scratch\\_%'"
            ).fetchall()
        ]
    dropped = []
    for name in names:
        m = _SCRATCH_DB_RE.match(name)
        if m and int(m["ts"]) < limit:
            _drop_database(scratch_server_url, name)
            log.info("dropped stale scratch database %s", name)
            dropped.append(name)
    return dropped


# --- verifying -----------------------------------------------------------------------------


def _row_count(conn: Any, table: str) -> int | None:
    """Rows in ``table`` (a name as the contract gives it), or None when there is no such
    relation."""
    regclass = conn.execute("SELECT to_regclass(%s)::text", (table,)).fetchone()[0]
    if regclass is None:
        return None
    # regclass::text is PostgreSQL's own quoting of an existing relation.
    return int(
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(regclass))).fetchone()[0]
    )


def _table_checks(conn: Any, tables: Mapping[str, int]) -> tuple[list[CheckResult], dict[str, int]]:
    checks, counts = [], {}
    for table, minimum in tables.items():
        count = _row_count(conn, table)
        if count is None:
            checks.append(CheckResult(f"table {table}", False, "missing"))
            continue
        counts[table] = count
        ok = count >= minimum
        checks.append(
            CheckResult(f"table {table}", ok, f"{count} rows" + ("" if ok else f" < {minimum}"))
        )
    conn.rollback()
    return checks, counts


def _sql_checks(conn: Any, queries: Sequence[str]) -> list[CheckResult]:
    checks = []
    for query in queries:
        label = "sql " + " ".join(query.split())[:80]
        try:
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(f"SET LOCAL statement_timeout = {CHECK_TIMEOUT_MS}")
            rows = conn.execute(query).fetchall()
            if len(rows) != 1 or len(rows[0]) != 1 or not isinstance(rows[0][0], bool):
                checks.append(
                    CheckResult(label, False, f"did not return one boolean: {rows[:2]!r}")
                )
            else:
                checks.append(CheckResult(label, rows[0][0], str(rows[0][0]).lower()))
        except Exception as exc:  # a trusted query that fails is a failed check, not a crash
            checks.append(CheckResult(label, False, f"error: {str(exc).strip()[:300]}"))
        finally:
            conn.rollback()
    return checks


def _source_comparison(source_url: str, restored: Mapping[str, int]) -> list[CheckResult]:
    """Information only: the source's current row counts next to the restored ones."""
    try:
        with _connect(source_url) as conn:
            conn.execute("SET TRANSACTION READ ONLY")
            out = []
            for table, count in restored.items():
                now_count = _row_count(conn, table)
                if now_count is None:
                    out.append(CheckResult(f"source {table}", True, "not in the source now"))
                    continue
                same = "equal" if now_count == count else f"source now {now_count}"
                out.append(CheckResult(f"source {table}", True, f"restored {count}, {same}"))
            conn.rollback()
            return out
    except Exception as exc:
        return [CheckResult("source comparison", True, f"source not readable: {str(exc)[:200]}")]


def verify(
    dump: Path,
    scratch_server_url: str,
    *,
    tables: Mapping[str, int],
    sql_checks: Sequence[str] = (),
    source_url: str | None = None,
    commands: CheckCommands = NO_COMMANDS,
) -> VerificationResult:
    """Restore ``dump`` into a new scratch database on ``scratch_server_url`` and check it.

    Order: ``pg_restore --list`` (a 0-byte, cut or garbled dump fails here: backup/empty,
    truncated, corrupt); create the scratch database; ``pg_restore`` (non-zero exit:
    backup/truncated|corrupt|restore_failed, or system/* when the server or its disk is at
    fault); each table in ``tables`` exists with at least its row count and each SQL check
    (one boolean, read-only transaction, on the scratch database only) is true and each of
    ``commands`` (argv lists, run with the ``PG*`` variables of the scratch database and
    nothing else of upkeep's environment) exits 0, else backup/check_failed naming what failed.
    The scratch database is dropped whatever happens.
    Raises UnsafeTarget when the scratch URL names the source database.
    """
    started = time.monotonic()
    if source_url is not None and _target(source_url) == _target(scratch_server_url):
        raise UnsafeTarget(f"scratch server URL names the source database {describe(source_url)}")
    if not dump.is_file():
        raise VerificationError("system", "no_backup", f"{dump} does not exist")
    size = dump.stat().st_size
    if size == 0:
        raise VerificationError("backup", "empty", f"{dump.name} is 0 bytes", evidence=dump.name)

    listed = run_tool(list_argv(str(dump)), env=clean_env({}, ("PG",)), timeout=600)
    if listed.returncode != 0:
        fault, reason = classify_pg_restore_error(listed.stderr, size=size)
        raise VerificationError(
            fault,  # type: ignore[arg-type]
            reason,
            f"pg_restore --list rejects {dump.name}",
            evidence=f"{dump.name}: {listed.stderr}",
        )
    toc = parse_toc(listed.stdout)
    if not any(e.kind in ("TABLE", "TABLE DATA") for e in toc):
        raise VerificationError(
            "backup",
            "empty",
            f"{dump.name} holds no tables",
            evidence=f"{dump.name}: {len(toc)} TOC entries, none a table",
        )
    checks = [
        CheckResult(
            "dump readable",
            True,
            f"{len(toc)} TOC entries, {sum(e.kind == 'TABLE DATA' for e in toc)} with table data",
        )
    ]

    dbname = scratch_db_name()
    try:
        with _connect(scratch_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except Exception as exc:
        raise VerificationError(
            "system",
            "no_space" if is_no_space(str(exc)) else "restore_failed",
            f"cannot create a scratch database on {describe(scratch_server_url)}",
            evidence=str(exc),
        ) from exc
    try:
        restored_checks, counts = _restore_and_check(
            dump, size, scratch_server_url, dbname, tables, sql_checks, commands
        )
        checks += restored_checks
        if source_url is not None:
            checks += _source_comparison(source_url, counts)
    finally:
        try:
            _drop_database(scratch_server_url, dbname)
        except Exception:
            log.warning("could not drop scratch database %s", dbname, exc_info=True)
    return VerificationResult(
        kind="postgresql",
        backup=str(dump),
        taken_at=_taken_at(dump),
        size_bytes=size,
        checksum=sha256_file(dump),
        checks=checks,
        restored_to=f"{describe(scratch_server_url).rsplit('/', 1)[0]}/{dbname}",
        duration_s=round(time.monotonic() - started, 3),
    )


def _taken_at(dump: Path) -> datetime:
    parsed = parse_backup_name(dump.name)
    return parsed[1] if parsed else datetime.fromtimestamp(dump.stat().st_mtime, UTC)


def _restore_and_check(
    dump: Path,
    size: int,
    server_url: str,
    dbname: str,
    tables: Mapping[str, int],
    sql_checks: Sequence[str],
    commands: CheckCommands = NO_COMMANDS,
) -> tuple[list[CheckResult], dict[str, int]]:
    run = run_tool(
        restore_argv(str(dump), dbname), env=libpq_env(server_url, dbname=dbname), timeout=None
    )
    if run.returncode != 0:
        fault, reason = classify_pg_restore_error(run.stderr, size=size)
        raise VerificationError(
            fault,  # type: ignore[arg-type]
            reason,
            f"pg_restore of {dump.name} failed (exit {run.returncode})",
            evidence=f"{dump.name}: {run.stderr}",
        )
    checks = [CheckResult("restore", True, f"into {dbname}")]
    with _connect(server_url, dbname=dbname) as conn:
        table_checks, counts = _table_checks(conn, tables)
        checks += table_checks + _sql_checks(conn, sql_checks)
    failed = [c for c in checks if not c.ok]
    ran: list[CheckResult] = []
    if commands:
        pg_env = {
            k: v for k, v in libpq_env(server_url, dbname=dbname).items() if k.startswith("PG")
        }
        with tempfile.TemporaryDirectory(prefix="upkeep-check-") as cwd:
            ran = command_checks(commands, cwd=Path(cwd), env=pg_env)
        checks += ran
    if failed:
        failed += [c for c in ran if not c.ok]
        raise VerificationError(
            "backup",
            "check_failed",
            "failed: " + ", ".join(c.name for c in failed[:5]),
            evidence="; ".join(f"{c.name}: {c.detail}" for c in failed[:20]),
            checks=checks,
        )
    raise_for_commands(ran, checks)  # only commands failed: a missing tool is the system's
    return checks, counts
