"""Parsing shared by the disk and inode checks: POSIX ``df -P`` plus /proc/mounts."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from upkeep.domain.checks._common import section, to_int
from upkeep.domain.checks.base import ParseError

PSEUDO_FSTYPES = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fuse.gvfsd-fuse",
        "fuse.lxcfs",
        "fuse.portal",
        "fusectl",
        "hugetlbfs",
        "iso9660",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
        "udf",
        "aufs",
        "nfsd",
        "selinuxfs",
        "zram",
    }
)
"""Filesystem types that hold no customer data or are read-only images (snaps, ISOs)."""

PSEUDO_DEVICES = frozenset(
    {"tmpfs", "devtmpfs", "udev", "none", "overlay", "shm", "proc", "sysfs", "run", "cgroup"}
)
"""Device names that mark a pseudo filesystem when /proc/mounts gave no type."""

_OCTAL = re.compile(r"\\([0-7]{3})")


class DfRow(BaseModel):
    device: str
    fstype: str | None
    mountpoint: str
    total: int = Field(ge=0)
    used: int = Field(ge=0)
    free: int = Field(ge=0)
    used_pct: int = Field(ge=0, le=100)


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_types(lines: list[str]) -> dict[str, str]:
    """Mount point to filesystem type from /proc/mounts lines (the last mount wins)."""
    types: dict[str, str] = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            types[_unescape(fields[1])] = fields[2]
    return types


def _row(line: str, types: dict[str, str]) -> DfRow | None:
    fields = line.split(None, 5)
    if len(fields) != 6:
        raise ParseError(f"not a df -P row: {line[:80]!r}")
    device, total, used, free, pct, mountpoint = fields
    total_n, used_n, free_n = (to_int(v, "df count") for v in (total, used, free))
    if pct == "-" or total_n == 0:
        return None  # no accounting here (inodes on btrfs/vfat, empty pseudo filesystems)
    if not pct.endswith("%"):
        raise ParseError(f"df use column {pct!r} is not a percentage")
    return DfRow(
        device=device,
        fstype=types.get(mountpoint),
        mountpoint=mountpoint,
        total=total_n,
        used=used_n,
        free=free_n,
        used_pct=to_int(pct[:-1], "df use%"),
    )


def parse_df(stdout: str) -> tuple[list[DfRow], list[str]]:
    """Rows worth grading and the mount points left out (pseudo or without accounting).

    Expects an ``@@ df`` section holding ``df -P`` output (header first) and an ``@@ mounts``
    section holding /proc/mounts, which may be empty when /proc is not readable.
    """
    _, df_lines = section(stdout, "df")
    _, mount_lines = section(stdout, "mounts")
    df_lines = [line for line in df_lines if line.strip()]
    if not df_lines or not df_lines[0].startswith("Filesystem"):
        raise ParseError("df printed no header line")
    types = mount_types(mount_lines)
    rows: list[DfRow] = []
    ignored: list[str] = []
    for line in df_lines[1:]:
        row = _row(line, types)
        if row is None:
            ignored.append(line.split(None, 5)[5])
        elif (row.fstype in PSEUDO_FSTYPES) or (
            row.fstype is None and row.device in PSEUDO_DEVICES
        ):
            ignored.append(row.mountpoint)
        else:
            rows.append(row)
    return rows, ignored
