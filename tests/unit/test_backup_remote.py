"""Pure parts of remote backups and check commands: names, failure causes, the catalogue."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest

from tasks.backups import files, postgresql
from tasks.backups.base import CheckCommands, unused_stem
from tasks.backups.remote import (
    EXIT_NO_SOURCE,
    classify_failure,
    files_backup_command,
    newest,
    pg_dump_command,
    restic_backup_command,
)
from tasks.backups.restic import no_space_evidence
from tasks.checks.base import RawResult


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


def test_catalogue_scripts_quote_every_value_and_parse() -> None:
    odd = "/srv/it's $(reboot); `id`"
    scripts = [
        files_backup_command(odd, "/b", "web-20261103T010000Z"),
        pg_dump_command("dbname=shop host='/run/x y'", odd, "db-20261103T010000Z"),
        restic_backup_command(odd),
    ]
    for script in scripts:
        assert "$(reboot)" not in script.replace("'/srv/it'\"'\"'s $(reboot); `id`'", "")
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
