"""``upkeep advisories check``: each host's latest scan against the synced records, as an
operator runs it after ``scan`` and ``sync``. The test host is this machine over a real sshd,
so its scanned inventory must give exactly the matches of its own dpkg database read offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_advisories_cli import EXPORT, needs_debian_12
from tests.e2e.test_cli import upkeep
from tests.e2e.test_inventory_scan import load_one_host
from upkeep.demo.sshd import ThrowawaySshd

pytestmark = pytest.mark.e2e


def pairs(stdout: str) -> set[tuple[str, str, str]]:
    return {
        (m["package"], m["advisory"], m["compared_version"])
        for m in (json.loads(line) for line in stdout.splitlines() if line.strip())
    }


@needs_debian_12
def test_check_matches_the_scanned_inventory_like_the_offline_match(
    data_dir: Path, tmp_path: Path, sshd: ThrowawaySshd, client_key
) -> None:
    env = {"UPKEEP_SSH_KEY_FILE": str(client_key.private)}
    load_one_host(tmp_path, data_dir, sshd, env)

    never = upkeep("advisories", "check", "--contract", "ACME", data_dir=data_dir, env=env)
    assert never.returncode == 1 and "never scanned: web1" in never.stderr

    assert upkeep("hosts", "trust", "web1", "--yes", data_dir=data_dir, env=env).returncode == 0
    scanned = upkeep("advisories", "scan", "--contract", "ACME", data_dir=data_dir, env=env)
    assert scanned.returncode == 0, scanned.stderr
    synced = upkeep("advisories", "sync", str(EXPORT), data_dir=data_dir, env=env)
    assert synced.returncode == 0, synced.stderr

    checked = upkeep(
        "advisories", "check", "--contract", "ACME", "--json", data_dir=data_dir, env=env
    )
    assert checked.returncode == 0, checked.stderr
    lines = [json.loads(line) for line in checked.stdout.splitlines() if line.strip()]
    assert all(m["host"] == "web1" and m["ecosystem"] == "Debian:12" for m in lines)
    offline = upkeep(
        "advisories",
        "match",
        "--dpkg-status",
        "/var/lib/dpkg/status",
        "--os-release",
        "/etc/os-release",
        "--json",
        data_dir=data_dir,
        env=env,
    )
    assert offline.returncode == 0, offline.stderr
    assert pairs(checked.stdout) == pairs(offline.stdout)
    # this machine's packages are older than some of the records' fixes: not a vacuous match
    assert pairs(checked.stdout), "no match at all: the comparison above proves nothing"
