"""A disk that fills up in the middle of a restore: a real ENOSPC from the kernel, not a mock.

The scratch parent is a small tmpfs mounted for the test. The backups hold a few hundred tiny
files: their sizes add up to a few KiB, so the pre-restore free-space check passes, but every
non-empty file costs a whole page on tmpfs (or one inode, when ``nr_inodes`` is the limit), so
the real restore runs out of room part-way. The verdict must be system/no_space, and the
half-restored scratch directory must be gone afterwards.

Needs root (``mount -t tmpfs``); skipped otherwise.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.backup_fixtures import RESTIC_PASSWORD, MountTmpfs
from upkeep.tasks.backups import files, restic
from upkeep.tasks.backups.base import SCRATCH_PREFIX, VerificationError, free_space_ok

pytestmark = pytest.mark.e2e

FILE_COUNT = 400
"""Tiny files in the backup: 400 pages (1.6 MiB) on tmpfs, far more than the mounts below."""
FILE_BYTES = 48
SMALL_TMPFS = "size=512k"
"""128 pages of 4 KiB: ~25 KiB of file data passes the free-space check, 400 files do not fit."""
FEW_INODES = "size=4m,nr_inodes=64"
"""Plenty of bytes, but only 64 inodes for 400 files and their directories."""


def _many_tiny_files(root: Path) -> Path:
    """``FILE_COUNT`` files of ``FILE_BYTES`` distinct bytes each, in 8 directories."""
    for i in range(FILE_COUNT):
        d = root / f"d{i % 8}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}.txt").write_bytes(f"{i:04d}".encode().ljust(FILE_BYTES, b"."))
    return root


def _assert_nothing_left(mount: Path) -> None:
    assert [p.name for p in mount.iterdir() if p.name.startswith(SCRATCH_PREFIX)] == []
    assert list(mount.iterdir()) == []
    assert shutil.disk_usage(mount).used == 0, "the half-restored files still take up room"


@pytest.mark.parametrize("options", [SMALL_TMPFS, FEW_INODES], ids=["pages", "inodes"])
def test_files_restore_that_fills_the_disk_is_no_space(
    mount_tmpfs: MountTmpfs, tmp_path: Path, options: str
) -> None:
    source = _many_tiny_files(tmp_path / "source")
    archive = files.take_backup(source, tmp_path / "backups", "tiny")
    mount = mount_tmpfs(options)
    free_space_ok(mount, FILE_COUNT * FILE_BYTES)  # the pre-restore check sees only sizes

    with pytest.raises(VerificationError) as info:
        files.verify(archive, mount)

    err = info.value
    assert (err.fault, err.reason) == ("system", "no_space"), err
    assert archive.name in err.message
    assert f"{mount}/{SCRATCH_PREFIX}" in err.message  # the scratch directory that filled up
    assert "No space left on device" in err.evidence
    _assert_nothing_left(mount)


@pytest.fixture(scope="module")
def tiny_restic_repo(tmp_path_factory: pytest.TempPathFactory, restic_bin: str) -> Path:
    """A restic repository with one snapshot of ``FILE_COUNT`` tiny files."""
    root = tmp_path_factory.mktemp("restic-tiny")
    source = _many_tiny_files(root / "source")
    restic.init_repo(root / "repo", password=RESTIC_PASSWORD)
    restic.take_backup(source, root / "repo", password=RESTIC_PASSWORD)
    return root / "repo"


@pytest.mark.parametrize("options", [SMALL_TMPFS, FEW_INODES], ids=["pages", "inodes"])
def test_restic_restore_that_fills_the_disk_is_no_space(
    mount_tmpfs: MountTmpfs, tiny_restic_repo: Path, options: str
) -> None:
    mount = mount_tmpfs(options)
    free_space_ok(mount, FILE_COUNT * FILE_BYTES)

    with pytest.raises(VerificationError) as info:
        restic.verify(tiny_restic_repo, mount, password=RESTIC_PASSWORD)

    err = info.value
    assert (err.fault, err.reason) == ("system", "no_space"), err.evidence
    assert err.message.startswith(f"restic restore failed (into {mount}/{SCRATCH_PREFIX}")
    assert RESTIC_PASSWORD not in err.evidence
    _assert_nothing_left(mount)
    # restic 0.14 prints "…: no space left on device" per file, then (with inodes used up)
    # "UtimesNano: no such file or directory" for each again: the evidence keeps the cause.
    assert "no space left on device" in err.evidence.lower()
    # restic names the files it could not write below the scratch directory
    assert f"{mount}/{SCRATCH_PREFIX}" in err.evidence
