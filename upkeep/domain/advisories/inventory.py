"""What a host has installed, from captured text: dpkg, rpm, apk, ``/etc/os-release``. Pure.

Each parser takes the exact text a command printed (or a file held) and returns typed facts;
malformed input raises ``ValueError`` naming the line or stanza, never a partial inventory.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

from upkeep.domain.advisories import Installed, Platform

__all__ = [
    "DPKG_QUERY_FORMAT",
    "RPM_QUERY_FORMAT",
    "UnsupportedPlatform",
    "parse_apk_installed",
    "parse_dpkg_query",
    "parse_dpkg_status",
    "parse_os_release",
    "parse_rpm_query",
]

DPKG_QUERY_FORMAT = "${Package}\\t${Version}\\t${Architecture}\\t${Source}\\t${db:Status-Status}\\n"
"""The ``-f`` argument of ``dpkg-query -W`` that :func:`parse_dpkg_query` reads."""

RPM_QUERY_FORMAT = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n"
"""The ``--qf`` argument of ``rpm -qa`` that :func:`parse_rpm_query` reads."""

# The package states in which dpkg counts a package as configured (they satisfy Depends):
# its files at this version are on the host. "triggers-pending" is common on a host whose
# last apt run has not finished its triggers yet.
_INSTALLED_STATES = frozenset({"installed", "triggers-pending", "triggers-awaited"})
_SOURCE = re.compile(r"(?P<name>[^\s()]+)(?:\s+\((?P<version>[^\s()]+)\))?")
_FIELD = re.compile(r"(?P<name>[!-9;-~][!-9;-~]*):(?P<value>.*)")
_APK_FIELD = re.compile(r"(?P<name>[A-Za-z]):(?P<value>.*)")


class UnsupportedPlatform(ValueError):
    """``/etc/os-release`` names a distribution that has no OSV ecosystem here."""


def _source(value: str, where: str) -> tuple[str, str]:
    """``name`` or ``name (version)`` -> (name, version or "")."""
    value = value.strip()
    if not value:
        return "", ""
    found = _SOURCE.fullmatch(value)
    if not found:
        raise ValueError(f"{where}: Source {value!r} is not 'name' or 'name (version)'")
    return found["name"], found["version"] or ""


def _stanzas(text: str) -> list[tuple[int, dict[str, str]]]:
    """deb822 paragraphs as (first line number, fields); continuation lines are folded in."""
    stanzas: list[tuple[int, dict[str, str]]] = []
    fields: dict[str, str] = {}
    start = 0
    last = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            if fields:
                stanzas.append((start, fields))
            fields, last = {}, ""
            continue
        if line[0] in " \t":
            if not last:
                raise ValueError(f"line {number}: a continuation line with no field before it")
            fields[last] += "\n" + line.strip()
            continue
        found = _FIELD.fullmatch(line)
        if not found:
            raise ValueError(f"line {number}: not a 'Field: value' line: {line[:80]!r}")
        if not fields:
            start = number
        last = found["name"]
        fields[last] = found["value"].strip()
    if fields:
        stanzas.append((start, fields))
    return stanzas


def parse_dpkg_status(text: str) -> list[Installed]:
    """The installed packages in a copy of ``/var/lib/dpkg/status``.

    One deb822 stanza per package; kept are those whose ``Status`` (``want flag state``) has
    the state ``installed`` (or ``triggers-pending``/``triggers-awaited``, which dpkg counts as
    configured). ``Source`` may be ``name (version)`` when the source version differs from the
    binary's (a binNMU ``5.2.15-2+b8`` built from source ``5.2.15-2``). A stanza without
    ``Package`` or ``Status``, or an installed one without ``Version``, raises ``ValueError``
    naming it (``/var/lib/dpkg/available`` has no ``Status``: the wrong file is refused).
    """
    installed: list[Installed] = []
    for line, fields in _stanzas(text):
        package = fields.get("Package", "")
        where = f"stanza at line {line}" + (f" (Package {package})" if package else "")
        if not package:
            raise ValueError(f"{where}: no Package field")
        status = fields.get("Status")
        if status is None:
            raise ValueError(f"{where}: no Status field (is this /var/lib/dpkg/status?)")
        words = status.split()
        if len(words) != 3:
            raise ValueError(f"{where}: Status {status!r} is not 'want flag state'")
        if words[2] not in _INSTALLED_STATES:
            continue
        version = fields.get("Version", "")
        if not version:
            raise ValueError(f"{where}: no Version field")
        source, source_version = _source(fields.get("Source", ""), where)
        installed.append(
            Installed(
                name=package,
                version=version,
                arch=fields.get("Architecture", ""),
                source=source,
                source_version=source_version,
            )
        )
    return installed


def _rows(text: str, names: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped columns) of each non-blank tab-separated line; a line without
    exactly ``len(names)`` columns raises ``ValueError`` naming it and the columns expected."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) != len(names):
            raise ValueError(
                f"line {number}: {len(columns)} tab-separated columns, expected "
                f"{len(names)} ({', '.join(names)}): {line[:80]!r}"
            )
        yield number, [c.strip() for c in columns]


def parse_dpkg_query(text: str) -> list[Installed]:
    """The installed packages in the output of::

        dpkg-query -W \\
          -f='${Package}\\t${Version}\\t${Architecture}\\t${Source}\\t${db:Status-Status}\\n'

    One line per package, five tab-separated columns: binary name, version, architecture,
    ``Source`` and the package state. ``Source`` is empty when the source package has the
    binary's name and version, ``name`` when only the name differs, ``name (version)`` when
    the version differs too (a binNMU). Kept are the states dpkg counts as configured
    (``installed``, ``triggers-pending``, ``triggers-awaited``); ``dpkg-query -W`` also lists
    removed packages (``config-files``, ``not-installed``), which are left out. A line
    without exactly five columns raises ``ValueError`` naming it.
    """
    installed: list[Installed] = []
    for number, columns in _rows(text, ("Package", "Version", "Architecture", "Source", "Status")):
        package, version, arch, source_field, state = columns
        where = f"line {number} (Package {package})"
        if not package:
            raise ValueError(f"line {number}: no package name")
        if state not in _INSTALLED_STATES:
            continue
        if not version:
            raise ValueError(f"{where}: no version")
        source, source_version = _source(source_field, where)
        installed.append(
            Installed(
                name=package,
                version=version,
                arch=arch,
                source=source,
                source_version=source_version,
            )
        )
    return installed


def _source_rpm(value: str, where: str) -> tuple[str, str]:
    """``glibc-2.34-100.el9_4.2.src.rpm`` -> (``glibc``, ``2.34-100.el9_4.2``)."""
    if value in ("", "(none)"):
        return "", ""
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if value.endswith(suffix):
            parts = value[: -len(suffix)].rsplit("-", 2)
            if len(parts) == 3 and all(parts):
                return parts[0], f"{parts[1]}-{parts[2]}"
    raise ValueError(f"{where}: source RPM {value!r} is not name-version-release.src.rpm")


def parse_rpm_query(text: str) -> list[Installed]:
    """The installed packages in the output of::

        rpm -qa --qf '%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n'

    One line per package, six tab-separated columns. ``EPOCHNUM`` prints 0 for a package
    without epoch (``%{EPOCH}`` would print ``(none)``, also accepted). The version is
    ``E:V-R`` when the epoch is above 0, else ``V-R``; the source is the source RPM's name
    without ``-version-release.src.rpm``, and its ``V-R`` is kept as ``source_version`` only
    where it differs from the binary's (the file name carries no epoch). ``gpg-pubkey``
    entries are imported signing keys, not packages, and are left out; ``(none)`` as
    architecture or source RPM reads as empty. A line without exactly six columns, or with a
    non-numeric epoch, raises ``ValueError`` naming it.
    """
    installed: list[Installed] = []
    names = ("NAME", "EPOCHNUM", "VERSION", "RELEASE", "ARCH", "SOURCERPM")
    for number, columns in _rows(text, names):
        name, epoch, version, release, arch, source_rpm = columns
        where = f"line {number} (package {name})"
        if not name:
            raise ValueError(f"line {number}: no package name")
        if name == "gpg-pubkey":
            continue
        if epoch == "(none)":
            epoch = "0"
        if not epoch.isdigit():
            raise ValueError(f"{where}: epoch {epoch!r} is not a number")
        if not version or not release or "(none)" in (version, release):
            raise ValueError(f"{where}: no version or release")
        vr = f"{version}-{release}"
        source, source_vr = _source_rpm(source_rpm, where)
        installed.append(
            Installed(
                name=name,
                version=f"{int(epoch)}:{vr}" if int(epoch) > 0 else vr,
                arch="" if arch == "(none)" else arch,
                source=source,
                source_version="" if source_vr == vr else source_vr,
            )
        )
    return installed


def parse_apk_installed(text: str) -> list[Installed]:
    """The installed packages in a copy of apk's database, ``/lib/apk/db/installed``.

    One block per package, blocks separated by blank lines, each line one letter, ``:`` and a
    value (apk-tools' ``src/database.c``). Read are ``P`` (name), ``V`` (version), ``A``
    (architecture) and ``o`` (origin: the aport, i.e. the source package, whose version every
    subpackage shares: ``libssl3`` and ``libcrypto3`` from ``openssl``); the file lists
    (``F``, ``R``, ``Z``, ...) repeat and are skipped. Every package in this file is installed
    (apk keeps no removed entries). A line that is not ``X:value``, or a block without ``P``
    or ``V``, raises ``ValueError`` naming it.
    """
    installed: list[Installed] = []
    fields: dict[str, str] = {}
    start = 0

    def close() -> None:
        if not fields:
            return
        name = fields.get("P", "")
        where = f"block at line {start}" + (f" (P:{name})" if name else "")
        if not name:
            raise ValueError(f"{where}: no P: (package name) line")
        if not fields.get("V"):
            raise ValueError(f"{where}: no V: (version) line")
        origin = fields.get("o", "")
        installed.append(
            Installed(
                name=name,
                version=fields["V"],
                arch=fields.get("A", ""),
                source="" if origin == name else origin,
            )
        )

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            close()
            fields = {}
            continue
        found = _APK_FIELD.fullmatch(line)
        if not found:
            raise ValueError(f"line {number}: not an apk database 'X:value' line: {line[:80]!r}")
        if not fields:
            start = number
        if found["name"] in "PVAo":
            if found["name"] in fields:
                raise ValueError(f"line {number}: a second {found['name']}: line in one block")
            fields[found["name"]] = found["value"].strip()
        else:
            fields.setdefault("", "")  # a block of only file lines is still a block
    close()
    return installed


def _os_release_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise ValueError(f"os-release line {number}: not KEY=value: {line[:80]!r}")
        try:
            words = shlex.split(value, comments=False, posix=True)
        except ValueError as error:
            raise ValueError(f"os-release line {number}: {error}: {line[:80]!r}") from None
        fields[key] = " ".join(words)
    return fields


def parse_os_release(text: str) -> Platform:
    """The OSV ecosystem and package family of the host whose ``/etc/os-release`` this is.

    ============  =======================================  ======
    ID            ecosystem                                family
    ============  =======================================  ======
    debian        ``Debian:<major>`` (VERSION_ID ``12``)   dpkg
    ubuntu        ``Ubuntu:<VERSION_ID>``, ``:LTS`` added   dpkg
                  when VERSION says LTS (``Ubuntu:22.04:LTS``)
    almalinux     ``AlmaLinux:<major>``                    rpm
    rocky         ``Rocky Linux:<major>``                  rpm
    rhel          ``Red Hat:<major>``                      rpm
    alpine        ``Alpine:v<major>.<minor>``              apk
    ============  =======================================  ======

    Any other ID raises :class:`UnsupportedPlatform` naming it and its ``ID_LIKE``: a
    derivative (CentOS Stream, Linux Mint, ...) is not matched against its parent's records,
    whose versions are not its own. No ``VERSION_ID`` (Debian testing) raises ``ValueError``.
    """
    fields = _os_release_fields(text)
    os_id = fields.get("ID", "linux").lower()
    pretty = fields.get("PRETTY_NAME", "")
    version_id = fields.get("VERSION_ID", "")
    like = fields.get("ID_LIKE", "")
    if os_id not in ("debian", "ubuntu", "almalinux", "rocky", "rhel", "alpine"):
        hint = f" (ID_LIKE {like!r})" if like else ""
        raise UnsupportedPlatform(
            f"os-release ID {os_id!r}{hint} has no OSV ecosystem here; supported: debian, "
            "ubuntu, almalinux, rocky, rhel, alpine"
        )
    if not re.fullmatch(r"\d+(\.\d+)*", version_id):
        raise ValueError(
            f"os-release ID {os_id!r} has VERSION_ID {version_id!r}, not a release number "
            "(a testing or rolling release has no OSV ecosystem)"
        )
    parts = version_id.split(".")
    major = parts[0]
    if os_id == "debian":
        return Platform(f"Debian:{major}", "dpkg", pretty)
    if os_id == "ubuntu":
        lts = ":LTS" if re.search(r"\bLTS\b", fields.get("VERSION", "")) else ""
        return Platform(f"Ubuntu:{version_id}{lts}", "dpkg", pretty)
    if os_id == "alpine":
        if len(parts) < 2:
            raise ValueError(f"os-release ID 'alpine' has VERSION_ID {version_id!r}, no minor")
        return Platform(f"Alpine:v{parts[0]}.{parts[1]}", "apk", pretty)
    name = {"almalinux": "AlmaLinux", "rocky": "Rocky Linux", "rhel": "Red Hat"}[os_id]
    return Platform(f"{name}:{major}", "rpm", pretty)
