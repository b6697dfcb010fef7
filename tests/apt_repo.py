"""A real local apt repository for the patch tests, and the OSV record that concerns it.

``local_apt_repo`` (module scope) builds the harmless package ``upkeep-canary`` (Architecture
``all``, one file ``/usr/share/doc/upkeep-canary/VERSION`` holding its version, no maintainer
scripts) at two versions, 1.0-1 (the "old, vulnerable" one) and 1.1-1, indexes them with
``dpkg-scanpackages`` in a flat repository under /tmp, registers that repository with apt in
a list file of its own and refreshes only that source (the machine's other package lists are
neither read from the network nor changed), then installs 1.0-1. Teardown purges the package,
removes the list file, the package lists apt made of that source and the repository, whether
the test passed or not. It needs root (it installs a package): without, the tests are skipped.

Use it from a test module by importing its function (the fixture is named
``local_apt_repo``; the function has another name so that a test's ``local_apt_repo``
argument does not shadow the import), or list ``tests.apt_repo`` in ``pytest_plugins``::

    from tests.apt_repo import LocalAptRepo, local_apt_repo_fixture  # noqa: F401

    def test_something(local_apt_repo: LocalAptRepo) -> None:
        assert local_apt_repo.installed_version() == local_apt_repo.old

``canary`` (import ``canary_fixture`` too) is the same repository for one test, with the old
version installed again afterwards. ``canary_advisory(ecosystem)`` is an OSV record saying
upkeep-canary is affected before 1.1-1; ``canary_store`` (import ``canary_store_fixture``)
syncs its Debian 12 record into the test's advisory store.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.polling import wait_until

CANARY = "upkeep-canary"
OLD = "1.0-1"
NEW = "1.1-1"
LOCK_TIMEOUT = "DPkg::Lock::Timeout=60"
"""apt waits at most this long for another dpkg or apt user (another test, unattended-upgrades)
to let go of the dpkg lock, then fails instead of hanging."""

REPO_LOCK = (
    Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
) / "upkeep-test-apt-repo.lock"
REPO_LOCK_WAIT = 900.0
"""Test modules using the repository run one after the other, across processes (two xdist
workers, two checkouts): each holds this lock from setup to teardown, so that one's teardown
never purges the package under another's test. A module waits at most this long for it."""

SOURCES_D = Path("/etc/apt/sources.list.d")
_APT_QUOTED = set('\\|{}[]<>"^~_=!@#$%^&*')
"""What apt's URItoFileName quotes as %xx in the name of a package list (apt's strutl.cc)."""
LISTS = Path("/var/lib/apt/lists")
CONTROL = """\
Package: {name}
Version: {version}
Architecture: all
Maintainer: upkeep tests <upkeep-tests@localhost>
Section: misc
Priority: optional
Description: harmless test package of upkeep's patch tests
 One file, /usr/share/doc/{name}/VERSION, holding the package's version.
 Installed and removed again by upkeep's tests (tests/apt_repo.py).
"""


@dataclass(frozen=True)
class LocalAptRepo:
    """The package the tests patch, its two versions and where its repository is."""

    name: str
    old: str
    new: str
    repo_dir: Path
    list_file: Path

    def installed_version(self) -> str | None:
        """The version dpkg has installed (configured), None when it is not installed."""
        return installed_version(self.name)

    def restore_old(self) -> None:
        """Install the old version again if a test left another one."""
        if self.installed_version() != self.old:
            _run("apt-get", "install", "-y", "-q", "--allow-downgrades", f"{self.name}={self.old}")


def installed_version(name: str) -> str | None:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}\\t${Version}", name],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return None  # dpkg has never heard of it (or forgot it after a purge)
    status, _, version = done.stdout.partition("\t")
    return version if status == "installed" else None


def canary_advisory(ecosystem: str) -> dict[str, Any]:
    """An OSV record (a JSON object) saying ``upkeep-canary`` is affected in ``ecosystem``
    (``Debian:12``) from the start of time until 1.1-1, severity ``high``."""
    return {
        "schema_version": "1.6.0",
        "id": "UPKEEP-TEST-0001",
        "modified": "2026-11-01T00:00:00Z",
        "published": "2026-11-01T00:00:00Z",
        "summary": f"{CANARY}: test advisory, fixed in {NEW}",
        "details": (
            f"A made-up vulnerability in upkeep's test package {CANARY}: versions before {NEW} "
            "are affected. Used by upkeep's tests only."
        ),
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": CANARY},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": NEW}]}],
            }
        ],
        # osv.py reads the record's own severity word from database_specific.severity.
        "database_specific": {"severity": "high"},
    }


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        said = f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{said}")
    return done


def _build(repo: Path, name: str, version: str) -> None:
    root = repo / f"build-{version}"
    doc = root / "usr" / "share" / "doc" / name
    control = root / "DEBIAN"
    for directory in (control, doc):
        directory.mkdir(parents=True)
    for directory in (root, control, doc, doc.parent, doc.parent.parent, root / "usr"):
        directory.chmod(0o755)
    (control / "control").write_text(CONTROL.format(name=name, version=version))
    (doc / "VERSION").write_text(f"{version}\n")
    for path in (control / "control", doc / "VERSION"):
        path.chmod(0o644)
    _run(
        "dpkg-deb",
        "--root-owner-group",
        "--build",
        str(root),
        str(repo / f"{name}_{version}_all.deb"),
    )
    shutil.rmtree(root)


def _purge(name: str) -> None:
    known = subprocess.run(["dpkg-query", "-W", name], capture_output=True)
    if known.returncode == 0:
        # dpkg --purge, with apt's bounded wait for the dpkg lock.
        _run("apt-get", "purge", "-y", "-q", "-o", LOCK_TIMEOUT, name)


def _list_files(repo: Path) -> list[Path]:
    """apt's lists of the source ``file:<repo> ./``, named as apt names them: the URI with
    the characters apt quotes (``_`` among them) as ``%xx``, '/' as '_', then ``_._``."""
    quoted = "".join(
        f"%{ord(c):02x}" if c in _APT_QUOTED or not c.isprintable() else c for c in str(repo)
    )
    prefix = quoted.replace("/", "_") + "_._"
    return [p for d in (LISTS, LISTS / "partial") for p in d.glob(f"{glob.escape(prefix)}*")]


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _lists() -> dict[str, tuple[int, int]]:
    """Each package list apt holds: name -> (size, modification time)."""
    return {
        p.name: (p.stat().st_size, p.stat().st_mtime_ns)
        for p in LISTS.iterdir()
        if p.is_file() and p.name != "lock"
    }


@contextmanager
def _exclusive(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing), waiting at most
    ``timeout`` seconds for whoever holds it; the kernel releases it if the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:

        def taken() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        wait_until(
            f"the local apt repository's lock {path} (another test module holds it)",
            taken,
            timeout=timeout,
        )
        yield
    finally:
        os.close(fd)


@contextmanager
def apt_repo() -> Iterator[LocalAptRepo]:
    """The repository with upkeep-canary 1.0-1 installed from it; everything undone after."""
    for tool in ("apt-get", "dpkg-deb", "dpkg-query"):
        if shutil.which(tool) is None:
            pytest.skip(f"a local apt repository needs {tool} (a Debian or Ubuntu machine)")
    if shutil.which("dpkg-scanpackages") is None:
        pytest.fail("dpkg-scanpackages is missing: ./scripts/setup installs dpkg-dev")
    if os.geteuid() != 0:
        pytest.skip("installing a test package from a local apt repository needs root")
    with _exclusive(REPO_LOCK, REPO_LOCK_WAIT):
        yield from _apt_repo_locked()


def _apt_repo_locked() -> Iterator[LocalAptRepo]:
    if installed_version(CANARY) is not None:
        pytest.fail(f"{CANARY} is already installed (left by a killed run?): dpkg --purge it")
    # Not pytest's tmp_path: apt's file method reads the repository as the _apt user, and
    # pytest's base directory is private to root.
    repo = Path(tempfile.mkdtemp(prefix="upkeep-apt-"))
    repo.chmod(0o755)
    made: set[str] = set()  # the package lists apt-get update made of our source
    list_file = SOURCES_D / f"upkeep-test-{secrets.token_hex(4)}.list"
    problems: list[str] = []
    try:
        for version in (OLD, NEW):
            _build(repo, CANARY, version)
        # --multiversion: both versions in the index (by default only the newest is kept);
        # run inside the repository so that each Filename is ./<file>.deb.
        index = _run("dpkg-scanpackages", "--multiversion", ".", "/dev/null", cwd=repo)
        (repo / "Packages").write_text(index.stdout)
        list_file.write_text(f"deb [trusted=yes] file:{repo} ./\n")
        others = _lists()
        _run(
            "apt-get",
            "update",
            "-q",
            "-o",
            f"Dir::Etc::sourcelist=sources.list.d/{list_file.name}",
            "-o",
            "Dir::Etc::sourceparts=-",
            "-o",
            "APT::Get::List-Cleanup=0",
            "-o",
            LOCK_TIMEOUT,
        )
        after = _lists()
        made = after.keys() - others.keys()
        ours = {p.name for p in _list_files(repo)}
        if {k: v for k, v in after.items() if k not in made} != others or made != ours:
            raise RuntimeError(
                f"apt-get update of {list_file} alone changed other package lists, or made "
                f"other lists than those of its source: {sorted(made)} (expected {sorted(ours)})"
            )
        _run(
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            LOCK_TIMEOUT,
            f"{CANARY}={OLD}",
        )
        yield LocalAptRepo(name=CANARY, old=OLD, new=NEW, repo_dir=repo, list_file=list_file)
    finally:
        for step in (
            lambda: _purge(CANARY),
            lambda: list_file.unlink(missing_ok=True),
            lambda: _unlink([LISTS / name for name in made] + _list_files(repo)),
            lambda: shutil.rmtree(repo, ignore_errors=True),
        ):
            try:
                step()
            except Exception as exc:  # every step runs; the failures are reported together
                problems.append(str(exc))
        if problems:
            raise RuntimeError("cleaning up the local apt repository: " + "; ".join(problems))


@pytest.fixture(name="steady_packages")
def steady_packages_fixture() -> Iterator[None]:
    """The machine's package set does not change during the test: it holds the repository's
    lock, so no test module installs or purges upkeep-canary meanwhile. For tests that compare
    two scans of this machine (import it as ``steady_packages_fixture``)."""
    with _exclusive(REPO_LOCK, REPO_LOCK_WAIT):
        yield


@pytest.fixture(scope="module", name="local_apt_repo")
def local_apt_repo_fixture() -> Iterator[LocalAptRepo]:
    """upkeep-canary 1.0-1 installed from a local apt repository that also has 1.1-1."""
    with apt_repo() as repo:
        yield repo


@pytest.fixture(name="canary")
def canary_fixture(local_apt_repo: LocalAptRepo) -> Iterator[LocalAptRepo]:
    """The test package at its old version before and after the test, pass or fail (import
    it with ``local_apt_repo_fixture``)."""
    assert local_apt_repo.installed_version() == local_apt_repo.old
    yield local_apt_repo
    local_apt_repo.restore_old()


@pytest.fixture(name="canary_store")
def canary_store_fixture(engine: Any, tmp_path: Path) -> Path:
    """The advisory store holds the canary's Debian 12 record (and nothing else); the file."""
    from sqlmodel import Session

    from upkeep.tasks.advisory_store import sync

    path = tmp_path / "canary.json"
    path.write_text(json.dumps(canary_advisory("Debian:12")))
    with Session(engine) as s:
        sync(s, [str(path)])
    return path
