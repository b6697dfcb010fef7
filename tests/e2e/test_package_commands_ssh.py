"""The patch cycle's package-manager commands run over real SSH against this machine (the sshd
test hosts are it), on the test package of a real local apt repository: the candidate apt
would install, an upgrade, a downgrade, a version that does not exist, and the inventory scan
seeing each installed version; and the canary's OSV record matching the old version only."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.apt_repo import (  # local_apt_repo_fixture: the local_apt_repo fixture
    LocalAptRepo,
    canary_advisory,
    local_apt_repo_fixture,  # noqa: F401
)
from upkeep.demo.sshd import ThrowawaySshd
from upkeep.domain.advisories.match import match
from upkeep.domain.advisories.packages import (
    candidates_command,
    install_command,
    install_failure,
    parse_candidates,
)
from upkeep.domain.advisories.scan import INVENTORY_COMMAND, Scan, parse_scan
from upkeep.domain.checks.base import RawResult
from upkeep.settings import SshSettings
from upkeep.tasks.advisories import load_advisories
from upkeep.tasks.ssh import SshSession, SshTarget

pytestmark = pytest.mark.e2e

INSTALL_TIMEOUT = 180
"""apt-get reads every package list of the machine and may wait up to 60 s for the dpkg lock."""


@pytest.fixture
def session(
    sshd: ThrowawaySshd,
    ssh_settings: SshSettings,
    known_hosts_for: Callable[..., Path],
    target_of: Callable[[ThrowawaySshd], SshTarget],
) -> Iterator[SshSession]:
    with SshSession(target_of(sshd), ssh_settings, known_hosts_for(sshd)) as opened:
        yield opened


def installed_by_scan(session: SshSession, name: str) -> tuple[Scan, list[str]]:
    result = session.run(INVENTORY_COMMAND, timeout=60)
    assert result.exit_code == 0, result.stderr
    scan = parse_scan(result.stdout)
    return scan, [p.version for p in scan.packages if p.name == name]


def install(
    session: SshSession, items: list[tuple[str, str]], *, downgrade: bool = False
) -> RawResult:
    return session.run(install_command("dpkg", items, downgrade=downgrade), timeout=INSTALL_TIMEOUT)


def test_apt_would_install_the_newest_version_of_the_local_repository(
    local_apt_repo: LocalAptRepo, session: SshSession
) -> None:
    names = [local_apt_repo.name, "no-such-package-xyz"]
    result = session.run(candidates_command("dpkg", names))
    assert result.exit_code == 0, result.stderr
    assert parse_candidates("dpkg", result.stdout, names) == {
        local_apt_repo.name: local_apt_repo.new,
        "no-such-package-xyz": None,
    }


def test_upgrade_then_downgrade_each_seen_by_dpkg_the_file_and_the_inventory_scan(
    local_apt_repo: LocalAptRepo, session: SshSession
) -> None:
    canary, old, new = local_apt_repo.name, local_apt_repo.old, local_apt_repo.new
    version_file = Path(f"/usr/share/doc/{canary}/VERSION")
    assert local_apt_repo.installed_version() == old
    assert installed_by_scan(session, canary)[1] == [old]

    upgraded = install(session, [(canary, new)])
    assert upgraded.exit_code == 0, install_failure(upgraded.stdout, upgraded.stderr, -2)
    assert local_apt_repo.installed_version() == new
    assert version_file.read_text() == f"{new}\n"
    assert installed_by_scan(session, canary)[1] == [new]

    # Without --allow-downgrades apt refuses to go back, and says why.
    refused = install(session, [(canary, old)])
    assert refused.exit_code != 0
    assert "downgrade" in install_failure(refused.stdout, refused.stderr, refused.exit_code)
    assert local_apt_repo.installed_version() == new

    downgraded = install(session, [(canary, old)], downgrade=True)
    assert downgraded.exit_code == 0, install_failure(downgraded.stdout, downgraded.stderr, -2)
    assert local_apt_repo.installed_version() == old
    assert version_file.read_text() == f"{old}\n"
    assert installed_by_scan(session, canary)[1] == [old]


def test_a_version_that_does_not_exist_fails_and_the_reason_names_it(
    local_apt_repo: LocalAptRepo, session: SshSession
) -> None:
    before = local_apt_repo.installed_version()
    failed = install(session, [(local_apt_repo.name, "9.9-9")])
    assert failed.exit_code == 100
    reason = install_failure(failed.stdout, failed.stderr, failed.exit_code)
    assert reason == f"Version '9.9-9' for '{local_apt_repo.name}' was not found"
    assert local_apt_repo.installed_version() == before


def test_the_canary_record_loads_and_matches_the_old_version_only(
    local_apt_repo: LocalAptRepo, session: SshSession, tmp_path: Path
) -> None:
    scan, versions = installed_by_scan(session, local_apt_repo.name)
    record = tmp_path / "UPKEEP-TEST-0001.json"
    record.write_text(json.dumps(canary_advisory(scan.platform.ecosystem)))
    loaded = load_advisories([record])
    advisory = loaded.advisories["UPKEEP-TEST-0001"]
    assert advisory.severity == "high"
    assert advisory.affected[0].fixed == (local_apt_repo.new,)

    canary = [p for p in scan.packages if p.name == local_apt_repo.name]
    assert [p.version for p in canary] == versions == [local_apt_repo.installed_version()]
    at_old = [replace(p, version=local_apt_repo.old) for p in canary]
    at_new = [replace(p, version=local_apt_repo.new) for p in canary]
    found = match(at_old, scan.platform, [advisory])
    assert [(m.package, m.advisory, m.fixed_version) for m in found] == [
        (local_apt_repo.name, "UPKEEP-TEST-0001", local_apt_repo.new)
    ]
    assert match(at_new, scan.platform, [advisory]) == []
