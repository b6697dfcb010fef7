"""Security advisories against installed packages, pure: the types every part shares.

* :mod:`.osv` reads OSV records (osv.dev, Debian, Ubuntu, AlmaLinux, Rocky) into
  :class:`Advisory`;
* :mod:`.inventory` reads what a host has installed (``dpkg`` status, an ``rpm -qa`` query,
  ``/etc/os-release``) into :class:`Installed` packages and a :class:`Platform`;
* :mod:`.versions` compares versions with the libraries made for each format (python-debian's
  dpkg order, rpm-version's EVR order), never as strings;
* :mod:`.match` says which installed package an advisory concerns and explains each match.

No I/O here: reading files and exports is :mod:`upkeep.tasks.advisories`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Family = Literal["dpkg", "rpm", "apk"]


@dataclass(frozen=True)
class Installed:
    """One installed binary package."""

    name: str
    version: str
    """dpkg: ``[epoch:]upstream[-revision]``; rpm: ``[epoch:]version-release``."""
    arch: str = ""
    source: str = ""
    """The source package (dpkg ``Source``; rpm: the name of the source RPM). Empty: the
    binary's own name."""
    source_version: str = ""
    """The source package's version: dpkg gives it in parentheses after ``Source`` when it
    differs (a binNMU ``+bN`` exists only on the binary). Empty: the binary's version."""

    @property
    def source_name(self) -> str:
        return self.source or self.name

    @property
    def source_ver(self) -> str:
        return self.source_version or self.version


@dataclass(frozen=True)
class Platform:
    """What ``/etc/os-release`` says, as OSV names it."""

    ecosystem: str
    """``Debian:12``, ``Ubuntu:22.04:LTS``, ``AlmaLinux:9``, ``Rocky Linux:9``, ``Alpine:v3.19``."""
    family: Family
    pretty: str = ""


@dataclass(frozen=True)
class Affected:
    """One ``affected`` entry of a record: a package in one ecosystem and its ranges."""

    ecosystem: str
    name: str
    introduced: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    """Fixed versions from the ECOSYSTEM ranges; empty: no fix published."""
    binaries: tuple[tuple[str, str], ...] = ()
    """Ubuntu's ``ecosystem_specific.binaries``: (binary name, fixed binary version)."""
    versions: tuple[str, ...] = ()
    """Explicitly listed affected versions (osv.dev's own records)."""


@dataclass(frozen=True)
class Advisory:
    id: str
    modified: datetime
    summary: str = ""
    severity: str | None = None
    aliases: tuple[str, ...] = ()
    affected: tuple[Affected, ...] = ()


@dataclass(frozen=True)
class Match:
    """One (installed package, advisory) pair, explained."""

    advisory: str
    ecosystem: str
    package: str
    """The installed binary package."""
    installed_version: str
    source: str
    compared_name: str
    """The name looked up in the record: the source package (Debian), the binary (Ubuntu's
    binaries, RHEL family)."""
    compared_version: str
    """The installed version that was compared: the source version (Debian) or the binary's."""
    fixed_version: str | None
    """None: the record names no fixed version yet."""
    severity: str | None = None
    how: str = ""
    """How it matched, in words (which name, which version, against which fix)."""
    aliases: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "installed_version": self.installed_version,
            "source": self.source,
            "compared_name": self.compared_name,
            "compared_version": self.compared_version,
            "advisory": self.advisory,
            "aliases": list(self.aliases),
            "ecosystem": self.ecosystem,
            "fixed_version": self.fixed_version,
            "severity": self.severity,
            "how": self.how,
        }
