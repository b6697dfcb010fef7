"""Pure parts of remote backups and check commands: names, failure causes, the catalogue."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from upkeep.domain.checks.base import RawResult
from upkeep.tasks.backups import files, postgresql
from upkeep.tasks.backups.base import CheckCommands, VerificationError, newest, unused_stem
from upkeep.tasks.backups.remote import (
    EXIT_NO_SOURCE,
    classify_failure,
    classify_tar_error,
    files_backup_command,
    files_verify_command,
    judge_restore,
    parse_verify_output,
    pg_dump_command,
    restic_backup_command,
)
from upkeep.tasks.backups.restic import no_space_evidence


def test_newest_picks_the_latest_backup_of_that_system_only() -> None:
    names = [
        "web-20261101T010000Z.tar.gz",
        "web-20261103T010000Z.tar.gz",
        "web-20261103T010000Z.sha256",
        "web-20261104T010000Z.tar.gz.partial",
        "webshop-20261105T010000Z.tar.gz",
        "notes.txt",
    ]
    assert newest(names, files.parse_backup_name, "web") == (
        "web-20261103T010000Z.tar.gz",
        datetime(2026, 11, 3, 1, tzinfo=UTC),
    )
    assert newest(names, files.parse_backup_name, "db") is None
    assert newest(["db-20261101T010000Z.dump"], postgresql.parse_backup_name, "db") is not None


def test_unused_stem_accepts_a_name_test_for_remote_directories() -> None:
    taken = {"web-20261103T010000Z.tar.gz"}
    moment = datetime(2026, 11, 3, 1, tzinfo=UTC)
    assert unused_stem(taken.__contains__, "web", (".tar.gz",), moment) == "web-20261103T010001Z"


@pytest.mark.parametrize(
    ("code", "stderr", "reason"),
    [
        (EXIT_NO_SOURCE, "upkeep: cannot read /srv/x\n", "source_unreadable"),
        (2, "tar: ./secret: Cannot open: Permission denied\n", "source_unreadable"),
        (2, "tar: /b/x.tar.gz.partial: Cannot write: No space left on device\n", "no_space"),
        (127, "sh: 1: tar: not found\n", "backup_command_failed"),
    ],
)
def test_remote_failures_are_classified(code: int, stderr: str, reason: str) -> None:
    assert classify_failure(RawResult("x", code, "", stderr)) == reason


def _single_quoted(script: str) -> list[bool]:
    """Per character: is it inside a single-quoted string (as sh reads it, roughly)?"""
    inside, in_double, flags = False, False, []
    for ch in script:
        if ch == "'" and not in_double:
            inside = not inside
            flags.append(True)
            continue
        if ch == '"' and not inside:
            in_double = not in_double
        flags.append(inside)
    return flags


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (
            'pg_dump: error: connection to server at "127.0.0.1", port 5 failed: Connection '
            "refused\n",
            "source_unreadable",
        ),
        ('pg_dump: error: FATAL:  database "no_such_db" does not exist\n', "source_unreadable"),
        ("pg_dump: error: could not write to output file: No space left on device\n", "no_space"),
        ('pg_dump: error: invalid output format "x" specified\n', "backup_command_failed"),
    ],
)
def test_pg_dump_failures_are_classified_alike_here_and_on_a_host(stderr: str, reason: str) -> None:
    assert postgresql.classify_dump_error(stderr) == reason


def test_catalogue_scripts_quote_every_value_and_parse() -> None:
    odd = "/srv/it's $(reboot); `id`"
    scripts = [
        files_backup_command(odd, "/b", "web-20261103T010000Z"),
        pg_dump_command("dbname=shop host='/run/x y'", odd, "db-20261103T010000Z"),
        restic_backup_command(odd),
        files_verify_command(f"{odd}/a.tar.gz", f"{odd}/a.sha256", odd, ["it's $(reboot)"]),
    ]
    for script in scripts:
        quoted = _single_quoted(script)
        hits = [i for i in range(len(script)) if script.startswith("$(reboot)", i)]
        assert hits and all(quoted[i] for i in hits), script
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_restic_no_space_evidence_keeps_the_cause_not_the_follow_ups() -> None:
    stderr = (
        "ignoring error for /a: open /t/a: no space left on device\n"
        + "ignoring error for /a: UtimesNano: no such file or directory\n" * 200
        + "Fatal: There were 400 errors\n"
    )
    evidence = no_space_evidence(stderr)
    assert evidence.splitlines() == [
        "ignoring error for /a: open /t/a: no space left on device",
        "Fatal: There were 400 errors",
    ]


def test_check_commands_split_like_a_shell_without_running_one() -> None:
    cmds = CheckCommands.from_lines(["test -f 'etc/my app.conf'", "psql -Atc 'select 1'"], 60)
    assert cmds.argvs == (("test", "-f", "etc/my app.conf"), ("psql", "-Atc", "select 1"))
    assert cmds.timeout == 60 and cmds and not CheckCommands()


REMOTE = Path(__file__).parents[1] / "fixtures" / "backups" / "remote"


def test_parse_a_good_remote_restore() -> None:
    out = parse_verify_output((REMOTE / "verify-good.out").read_text())
    assert out.scratch.startswith("/tmp/cap/scratch/upkeep-scratch-")
    assert (out.archive_bytes, out.files, out.total_size) == (308, 2, 4)
    assert out.archive_sha256.startswith("411e5e47") and out.extracted
    assert out.ok == ["etc/a", "b c"] and not out.mismatched and not out.missing
    assert (out.present, out.absent) == (["etc/a"], ["etc/nope"])
    with pytest.raises(VerificationError) as info:
        judge_restore(out, label="web1:/b/x.tar.gz", expected=["etc/a", "etc/nope"])
    assert (info.value.fault, info.value.reason) == ("backup", "missing_file")
    assert "etc/nope" in info.value.message
    checks = judge_restore(out, label="web1:/b/x.tar.gz", expected=["etc/a"])
    assert all(c.ok for c in checks)


def test_parse_a_remote_restore_with_a_mismatch_and_a_missing_file() -> None:
    out = parse_verify_output((REMOTE / "verify-mismatch-missing.out").read_text())
    assert (out.ok, out.mismatched, out.missing) == (["b c"], ["etc/a"], ["etc/gone"])
    with pytest.raises(VerificationError) as info:
        judge_restore(out, label="web1:/b/x.tar.gz", expected=[])
    # a file the archive lacks is reported before a checksum that differs, as locally
    assert (info.value.reason, info.value.evidence) == ("missing_file", "etc/gone")
    assert not next(c for c in info.value.checks if c.name == "manifest checksums").ok


def test_a_file_the_remote_manifest_does_not_list_is_a_backup_fault() -> None:
    out = parse_verify_output((REMOTE / "verify-unlisted.out").read_text())
    assert out.ok == ["etc/a", "linked", "b c"] and out.unlisted == ["extra"]
    with pytest.raises(VerificationError) as info:
        judge_restore(out, label="web1:/b/x.tar.gz", expected=[])
    assert (info.value.fault, info.value.reason) == ("backup", "unlisted_file")
    assert "extra" in info.value.message and info.value.evidence == "extra"
    unlisted = next(c for c in info.value.checks if c.name == "files not in manifest")
    assert not unlisted.ok and unlisted.detail == "1: extra"


@pytest.mark.parametrize(
    ("stderr", "verdict"),
    [
        (
            "\ngzip: stdin: unexpected end of file\ntar: Child returned status 1\n"
            "tar: Error is not recoverable: exiting now\n",
            ("backup", "truncated"),
        ),
        (
            "\ngzip: stdin: invalid compressed data--crc error\n\ngzip: stdin: invalid "
            "compressed data--length error\ntar: This does not look like a tar archive\n"
            "tar: Skipping to next header\ntar: Child returned status 1\n",
            ("backup", "corrupt"),
        ),
        (
            "tar: ./f123.txt: Cannot open: No space left on device\n",
            ("system", "no_space"),
        ),
        ("tar: ./etc: Cannot mkdir: Permission denied\n", ("system", "restore_failed")),
    ],
)
def test_tar_failures_are_classified(stderr: str, verdict: tuple[str, str]) -> None:
    assert classify_tar_error(stderr) == verdict
