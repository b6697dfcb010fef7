"""A host's package inventory read over SSH: the catalogue command, its parser, and what
changed between two inventories. Pure: running the command is :mod:`upkeep.tasks.inventory_scan`.

:data:`INVENTORY_COMMAND` is fixed text (the query formats are constants, shell-quoted); it
prints one ``@@ <name> [args]`` section per fact and ends with ``@@ end``, so a truncated
output is refused rather than read as a host with fewer packages.
"""

from __future__ import annotations

import re
import shlex
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cmp_to_key

from upkeep.domain.advisories import Family, Installed, Platform
from upkeep.domain.advisories.inventory import (
    DPKG_QUERY_FORMAT,
    RPM_QUERY_FORMAT,
    parse_apk_installed,
    parse_dpkg_query,
    parse_os_release,
    parse_rpm_query,
)
from upkeep.domain.advisories.versions import compare
from upkeep.domain.checks._common import sections
from upkeep.domain.checks.base import ParseError

__all__ = [
    "APK_DATABASE",
    "APK_KERNELS_AWK",
    "DPKG_KERNELS_FORMAT",
    "INVENTORY_COMMAND",
    "RPM_KERNELS_FORMAT",
    "Changed",
    "Changes",
    "Scan",
    "changes",
    "parse_scan",
]

DPKG_KERNELS_FORMAT = "${Package}\\t${Version}\\t${db:Status-Status}\\n"
RPM_KERNELS_FORMAT = "%{NAME}\\t%{VERSION}-%{RELEASE}.%{ARCH}\\n"
"""``uname -r`` of an RPM kernel is its ``VERSION-RELEASE.ARCH``."""
APK_DATABASE = "/lib/apk/db/installed"
APK_KERNELS_AWK = (
    "/^P:linux-/ { name = substr($0, 3) } "
    '/^V:/ { if (name != "") print name "\t" substr($0, 3); name = "" } '
    '/^$/ { name = "" }'
)
"""awk over :data:`APK_DATABASE`: ``name<TAB>version`` of each installed ``linux-*`` package;
:func:`_apk_kernels` keeps the kernel flavours (``linux-lts``, ``linux-virt``, ...)."""
# Alpine's kernel packages are linux-<flavour>; uname -r of linux-lts 6.6.14-r0 is
# 6.6.14-0-lts (aports main/linux-lts: the release is pkgver-pkgrel-flavour).
_APK_KERNEL_FLAVOURS = frozenset(
    {"lts", "virt", "edge", "stable", "rpi", "rpi2", "rpi4", "vanilla", "hardened", "virthardened"}
)
_APK_KERNEL_VERSION = re.compile(r"(?P<version>\d[0-9A-Za-z._]*)-r(?P<revision>\d+)")

_NOTIFY_REBOOT = "/usr/share/update-notifier/notify-reboot-required"

# Each branch prints its own section header so the parser knows which tool answered. The
# package listing's exit code is printed after it: dpkg-query or rpm failing half way must
# not pass for a host with fewer packages. needs-restarting -r exits 1 when a reboot is
# needed, 0 when not. Without it, a missing /var/run/reboot-required means "no reboot" only
# where update-notifier's hook writes the file for every package that needs one (Ubuntu);
# Debian writes it at most for kernels (unattended-upgrades), so there it proves nothing.
# Alpine has neither: its hosts answer "unknown", with the running kernel compared with the
# installed ones. apk's database is read as it is (no apk command: apk info has no format).
INVENTORY_COMMAND = (
    "echo '@@ os-release'; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release; "
    "echo '@@ uname-r'; uname -r; "
    "if command -v dpkg-query >/dev/null 2>&1; then "
    "echo '@@ kernels dpkg'; "
    f"dpkg-query -W -f={shlex.quote(DPKG_KERNELS_FORMAT)} 'linux-image-*' 2>/dev/null; "
    "echo '@@ packages-dpkg'; "
    f"dpkg-query -W -f={shlex.quote(DPKG_QUERY_FORMAT)}; "
    'echo "@@ packages-rc $?"; '
    "elif command -v rpm >/dev/null 2>&1; then "
    "echo '@@ kernels rpm'; "
    f"rpm -q --qf {shlex.quote(RPM_KERNELS_FORMAT)} kernel kernel-core 2>/dev/null; "
    "echo '@@ packages-rpm'; "
    f"rpm -qa --qf {shlex.quote(RPM_QUERY_FORMAT)}; "
    'echo "@@ packages-rc $?"; '
    "elif command -v apk >/dev/null 2>&1; then "
    "echo '@@ kernels apk'; "
    f"awk {shlex.quote(APK_KERNELS_AWK)} {APK_DATABASE} 2>/dev/null; "
    "echo '@@ packages-apk'; "
    f"cat {APK_DATABASE}; "
    'echo "@@ packages-rc $?"; '
    "else echo '@@ packages-none'; fi; "
    "if [ -e /var/run/reboot-required ]; then "
    "echo '@@ reboot required'; cat /var/run/reboot-required; "
    "echo '@@ reboot-pkgs'; cat /var/run/reboot-required.pkgs 2>/dev/null; "
    "elif command -v needs-restarting >/dev/null 2>&1; then "
    "upkeep_nr=$(needs-restarting -r 2>&1); "
    'echo "@@ reboot needs-restarting $?"; printf \'%s\\n\' "$upkeep_nr"; '
    f"elif [ -x {_NOTIFY_REBOOT} ]; then echo '@@ reboot none'; "
    "else echo '@@ reboot unknown'; fi; "
    "echo '@@ end'"
)
"""The one command an inventory scan runs (read-only, any POSIX shell)."""

_NOT_INSTALLED = re.compile(r"package \S+ is not installed")
_INSTALLED_STATES = frozenset({"installed", "triggers-pending", "triggers-awaited"})


@dataclass(frozen=True)
class Scan:
    """What one host has installed, as :data:`INVENTORY_COMMAND` printed it."""

    platform: Platform
    packages: list[Installed]
    running_kernel: str
    installed_kernels: list[str]
    """Kernel releases as ``uname -r`` prints them (``6.1.0-18-amd64``,
    ``5.14.0-427.13.1.el9_4.x86_64``, ``6.6.14-0-lts``), in the package manager's order."""
    reboot_required: bool | None
    """None: the host has no way to tell (no marker file writer, no needs-restarting)."""
    reboot_detail: str = ""
    taken_at: datetime | None = None
    """When the command finished on the host (set by the task that ran it)."""


@dataclass(frozen=True)
class Changed:
    """One package at another version: ``old`` and ``new`` share name and architecture."""

    old: Installed
    new: Installed


@dataclass(frozen=True)
class Changes:
    """What differs between two inventories of one host, each list sorted by name and arch."""

    added: list[Installed] = field(default_factory=list)
    removed: list[Installed] = field(default_factory=list)
    upgraded: list[Changed] = field(default_factory=list)
    downgraded: list[Changed] = field(default_factory=list)
    since: datetime | None = None
    """When the inventory compared with was taken."""
    platform_before: str = ""
    """The earlier inventory's ecosystem when it differs from this one's (a reinstalled host):
    then nothing is paired, every package counts as removed and added."""

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.upgraded or self.downgraded)

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "upgraded": len(self.upgraded),
            "downgraded": len(self.downgraded),
        }

    def lines(self) -> list[str]:
        """One line per change, for a report: ``+ name arch version``, ``- ...``,
        ``^ name arch old -> new`` (upgrade), ``v name arch old -> new`` (downgrade)."""

        def label(p: Installed) -> str:
            return f"{p.name}{':' + p.arch if p.arch else ''}"

        return (
            [f"^ {label(c.new)} {c.old.version} -> {c.new.version}" for c in self.upgraded]
            + [f"v {label(c.new)} {c.old.version} -> {c.new.version}" for c in self.downgraded]
            + [f"+ {label(p)} {p.version}" for p in self.added]
            + [f"- {label(p)} {p.version}" for p in self.removed]
        )


_Parts = dict[str, list[tuple[list[str], list[str]]]]


def _one(parts: _Parts, name: str) -> tuple[list[str], list[str]]:
    found = parts.get(name, [])
    if len(found) != 1:
        raise ParseError(f"section {name!r}: expected one, found {len(found)}")
    return found[0]


def _dpkg_kernels(lines: list[str]) -> list[str]:
    kernels = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) != 3:
            raise ParseError(f"section 'kernels' line {number}: not Package, Version, Status")
        package, _, state = (c.strip() for c in columns)
        if state not in _INSTALLED_STATES or not package.startswith("linux-image-"):
            continue
        release = package.removeprefix("linux-image-").removeprefix("unsigned-")
        # Meta packages (linux-image-amd64, -generic) and debug symbols are not kernels.
        if not release[:1].isdigit() or release.endswith("-dbg"):
            continue
        release = release.removesuffix("-unsigned")
        if release not in kernels:
            kernels.append(release)
    return kernels


def _rpm_kernels(lines: list[str]) -> list[str]:
    kernels = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or _NOT_INSTALLED.fullmatch(line.strip()):
            continue
        columns = line.split("\t")
        if len(columns) != 2 or not columns[1].strip()[:1].isdigit():
            raise ParseError(f"section 'kernels' line {number}: not NAME, VERSION-RELEASE.ARCH")
        release = columns[1].strip()
        if release not in kernels:
            kernels.append(release)
    return kernels


def _apk_kernels(lines: list[str]) -> list[str]:
    kernels = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) != 2:
            raise ParseError(f"section 'kernels' line {number}: not name, version")
        name, version = (c.strip() for c in columns)
        flavour = name.removeprefix("linux-")
        if flavour not in _APK_KERNEL_FLAVOURS:
            continue  # linux-firmware-*, linux-headers, linux-lts-dev, linux-pam, ...
        found = _APK_KERNEL_VERSION.fullmatch(version)
        if not found:
            raise ParseError(f"section 'kernels' line {number}: {name} version {version!r}")
        release = f"{found['version']}-{found['revision']}-{flavour}"
        if release not in kernels:
            kernels.append(release)
    return kernels


def _reboot(parts: _Parts, running: str, kernels: list[str]) -> tuple[bool | None, str]:
    args, body = _one(parts, "reboot")
    text = "\n".join(line for line in body if line.strip())
    kind = args[0] if args else ""
    if kind == "required":
        pkgs = [p.strip() for p in _one(parts, "reboot-pkgs")[1] if p.strip()]
        detail = "/var/run/reboot-required: " + (text or "present")
        if pkgs:
            detail += f" (packages: {', '.join(dict.fromkeys(pkgs))})"
        return True, detail
    if kind == "needs-restarting":
        if len(args) != 2 or not args[1].isdigit():
            raise ParseError(f"section 'reboot': needs-restarting gave no exit code: {args}")
        code = int(args[1])
        said = f"needs-restarting -r exited {code}" + (f": {text}" if text else "")
        if code in (0, 1):
            return code == 1, said
        return None, said
    if kind == "none":
        return False, "no /var/run/reboot-required (update-notifier writes it when one is needed)"
    if kind == "unknown":
        detail = "no /var/run/reboot-required writer and no needs-restarting: cannot tell"
        if kernels and running not in kernels:
            detail += (
                f"; the running kernel {running} is not among the installed ones "
                f"({', '.join(kernels)})"
            )
        return None, detail
    raise ParseError(f"section 'reboot': unknown marker {kind!r}")


_FAMILY_OF_SECTION: dict[str, Family] = {
    "packages-dpkg": "dpkg",
    "packages-rpm": "rpm",
    "packages-apk": "apk",
}
_PARSERS = {"dpkg": parse_dpkg_query, "rpm": parse_rpm_query, "apk": parse_apk_installed}
_KERNELS = {"dpkg": _dpkg_kernels, "rpm": _rpm_kernels, "apk": _apk_kernels}


def parse_scan(stdout: str) -> Scan:
    """Read what :data:`INVENTORY_COMMAND` printed.

    Raises :class:`~upkeep.domain.checks.base.ParseError` (a ``ValueError``) naming the
    section when the output is truncated (no ``@@ end``), a section is missing or repeated,
    the package listing failed or is empty, or the package tool does not fit the family
    ``/etc/os-release`` names (an os-release with no OSV ecosystem is refused the same way).
    """
    parts: _Parts = defaultdict(list)
    for words, body in sections(stdout):
        parts[words[0]].append((words[1:], body))
    if "end" not in parts:
        raise ParseError("the output ends before '@@ end' (truncated?)")
    try:
        platform = parse_os_release("\n".join(_one(parts, "os-release")[1]))
    except ValueError as exc:
        raise ParseError(f"section 'os-release': {exc}") from exc
    running = [line.strip() for line in _one(parts, "uname-r")[1] if line.strip()]
    if len(running) != 1:
        raise ParseError(f"section 'uname-r': expected one kernel release, got {len(running)}")
    if "packages-none" in parts:
        raise ParseError(
            f"section 'packages-none': {platform.ecosystem} has neither dpkg-query, rpm nor apk"
        )
    listed = [name for name in ("packages-dpkg", "packages-rpm", "packages-apk") if name in parts]
    if len(listed) != 1:
        raise ParseError("expected one 'packages-dpkg', 'packages-rpm' or 'packages-apk' section")
    family: Family = _FAMILY_OF_SECTION[listed[0]]
    rc_args = _one(parts, "packages-rc")[0]
    if rc_args != ["0"]:
        raise ParseError(f"section {listed[0]!r}: the listing exited {' '.join(rc_args) or '?'}")
    if platform.family != family:
        raise ParseError(
            f"section {listed[0]!r}: {platform.ecosystem} uses {platform.family} packages, "
            f"but the host answered with {family}"
        )
    listing = "\n".join(_one(parts, listed[0])[1])
    try:
        packages = _PARSERS[family](listing)
    except ValueError as exc:
        raise ParseError(f"section {listed[0]!r}: {exc}") from exc
    if not packages:
        raise ParseError(f"section {listed[0]!r}: no installed package listed")
    kernel_args, kernel_body = _one(parts, "kernels")
    if kernel_args != [family]:
        raise ParseError(f"section 'kernels': expected {family}, got {kernel_args}")
    kernels = _KERNELS[family](kernel_body)
    required, detail = _reboot(parts, running[0], kernels)
    return Scan(
        platform=platform,
        packages=packages,
        running_kernel=running[0],
        installed_kernels=kernels,
        reboot_required=required,
        reboot_detail=detail,
    )


def _key(p: Installed) -> tuple[str, str]:
    return (p.name, p.arch)


def changes(old: Iterable[Installed], new: Iterable[Installed], family: Family) -> Changes:
    """What changed from ``old`` to ``new``, packages keyed by (name, arch).

    A key with one version on each side is upgraded or downgraded by ``family``'s version
    order (``1:1.0`` above ``2.0``; ``1.0~rc1`` below ``1.0``); versions that order equal are
    no change. Where a side holds several versions of one key (RPM installs kernels side by
    side) versions are not paired: those only in ``new`` are added, those only in ``old``
    removed. Each list is sorted by name, arch, then version in ``family``'s order.
    """
    before: dict[tuple[str, str], list[Installed]] = defaultdict(list)
    after: dict[tuple[str, str], list[Installed]] = defaultdict(list)
    for p in old:
        before[_key(p)].append(p)
    for p in new:
        after[_key(p)].append(p)
    added: list[Installed] = []
    removed: list[Installed] = []
    upgraded: list[Changed] = []
    downgraded: list[Changed] = []
    for key in sorted(before.keys() | after.keys()):
        was, now = before.get(key, []), after.get(key, [])
        if len(was) == 1 and len(now) == 1:
            order = compare(family, was[0].version, now[0].version)
            if order < 0:
                upgraded.append(Changed(was[0], now[0]))
            elif order > 0:
                downgraded.append(Changed(was[0], now[0]))
            continue
        old_versions = {p.version for p in was}
        new_versions = {p.version for p in now}
        added += [p for p in now if p.version not in old_versions]
        removed += [p for p in was if p.version not in new_versions]

    def in_order(a: Installed, b: Installed) -> int:
        if _key(a) != _key(b):
            return -1 if _key(a) < _key(b) else 1
        return compare(family, a.version, b.version)

    return Changes(
        added=sorted(added, key=cmp_to_key(in_order)),
        removed=sorted(removed, key=cmp_to_key(in_order)),
        upgraded=upgraded,
        downgraded=downgraded,
    )
