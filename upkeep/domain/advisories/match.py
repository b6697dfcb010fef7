"""Which installed packages an advisory concerns, each match explained.

The rules, per affected entry of a record:

* The entry's ecosystem must equal the host's exactly (``Debian:12``, ``Ubuntu:22.04:LTS``,
  ``AlmaLinux:9``): a record for another release never matches, and there is no prefix
  matching (``Debian:1`` is not ``Debian:12``, ``Ubuntu:22.04`` is not ``Ubuntu:22.04:LTS``).
* An entry with Ubuntu's ``binaries`` list is matched by the installed **binary** name, and
  the installed binary version is compared with that binary's fixed version.
* Other dpkg entries (Debian's, and Ubuntu's without binaries) name the **source** package:
  looked up by the installed package's source name and compared with its source version (a
  binNMU ``+bN`` exists only on the binary, so ``libc6 2.36-9+deb12u3+b1`` is source
  ``glibc 2.36-9+deb12u3``). A binary name alone never matches a Debian record.
* RPM entries name binary RPMs: matched by name, compared by full EVR. AlmaLinux and Rocky
  write the epoch in fixed versions where the package has one (``1:3.0.7-28.el9_4``); when a
  record leaves it out but the installed package has one, the fixed version is read with the
  installed epoch. RPM would otherwise rank any ``1:`` version above every fix without epoch
  and hide a vulnerable package; errata name the build that fixes, not a new epoch.
* Alpine entries (``Alpine:v3.19``) name the **origin** package, the aport every subpackage
  is built from at one version (``libssl3`` and ``libcrypto3`` from ``openssl``): looked up
  by the installed package's origin (its own name when it is its own origin) and compared at
  the installed version in apk's order.
* An entry with no fixed version (only ``introduced``, or neither ranges nor versions)
  matches every version it covers; the match says no fix is published.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cmp_to_key

from upkeep.domain.advisories import Advisory, Affected, Family, Installed, Match, Platform
from upkeep.domain.advisories.versions import affected as in_range
from upkeep.domain.advisories.versions import compare

__all__ = ["family_of", "match"]

_FAMILIES: dict[str, Family] = {
    "Debian": "dpkg",
    "Ubuntu": "dpkg",
    "AlmaLinux": "rpm",
    "Rocky Linux": "rpm",
    "Red Hat": "rpm",
    "Alpine": "apk",
}


def family_of(ecosystem: str) -> Family:
    """The package format of an OSV ecosystem (``Debian:12`` -> ``dpkg``)."""
    distro = ecosystem.split(":", 1)[0]
    try:
        return _FAMILIES[distro]
    except KeyError:
        raise ValueError(f"no package family known for the ecosystem {ecosystem!r}") from None


def match(
    installed: Iterable[Installed], platform: Platform, advisories: Iterable[Advisory]
) -> list[Match]:
    """Every (installed package, advisory) pair where the package is affected, sorted by
    package then advisory; a package installed for two architectures at one version is one
    match. A malformed installed version raises ``ValueError`` naming it."""
    by_binary: dict[str, list[Installed]] = defaultdict(list)
    by_source: dict[str, list[Installed]] = defaultdict(list)
    for package in installed:
        by_binary[package.name].append(package)
        by_source[package.source_name].append(package)

    found: dict[tuple[str, str, str], Match] = {}
    for advisory in advisories:
        for entry in advisory.affected:
            if entry.ecosystem != platform.ecosystem:
                continue
            for found_match in _entry_matches(
                advisory, entry, platform.family, by_binary, by_source
            ):
                found.setdefault(
                    (found_match.package, found_match.installed_version, advisory.id), found_match
                )
    return sorted(found.values(), key=lambda m: (m.package, m.advisory, m.installed_version, m.how))


def _entry_matches(
    advisory: Advisory,
    entry: Affected,
    family: Family,
    by_binary: dict[str, list[Installed]],
    by_source: dict[str, list[Installed]],
) -> Iterator[Match]:
    if entry.binaries:
        for binary, binary_fixed in entry.binaries:
            fixed = (binary_fixed,) if binary_fixed else entry.fixed
            for package in by_binary.get(binary, ()):
                verdict = _verdict(family, package.version, entry.introduced, fixed, ())
                if verdict is not None:
                    yield _match(
                        advisory, entry, package, "binary", binary, package.version, verdict
                    )
    elif family == "apk":
        for package in by_source.get(entry.name, ()):
            version = package.version  # subpackages share their origin's version
            verdict = _verdict(family, version, entry.introduced, entry.fixed, entry.versions)
            if verdict is not None:
                yield _match(advisory, entry, package, "origin", entry.name, version, verdict)
    elif family == "dpkg":
        for package in by_source.get(entry.name, ()):
            version = package.source_ver
            verdict = _verdict(family, version, entry.introduced, entry.fixed, entry.versions)
            if verdict is not None:
                yield _match(advisory, entry, package, "source", entry.name, version, verdict)
    else:
        for package in by_binary.get(entry.name, ()):
            verdict = _rpm_verdict(package.version, entry)
            if verdict is not None:
                yield _match(
                    advisory, entry, package, "package", entry.name, package.version, verdict
                )


@dataclass(frozen=True)
class _Verdict:
    """An affected version: the fix to upgrade to (None: none published), whether the record
    lists the version explicitly, and a note on how the record was read."""

    fixed: str | None
    listed: bool = False
    note: str = ""


def _verdict(
    family: Family,
    version: str,
    introduced: Sequence[str],
    fixed: Sequence[str],
    versions: Sequence[str],
) -> _Verdict | None:
    """``None`` when ``version`` is not affected; else the lowest fixed version above it."""

    def cmp(a: str, b: str) -> int:
        return compare(family, a, b)

    order = cmp_to_key(cmp)
    try:
        if introduced or fixed:
            if in_range(family, version, introduced, fixed):
                above = [f for f in fixed if compare(family, f, version) > 0]
                return _Verdict(min(above, key=order) if above else None)
        elif not versions:
            return _Verdict(None)  # listed as affected with neither ranges nor versions
        if any(compare(family, version, listed) == 0 for listed in versions):
            return _Verdict(min(fixed, key=order) if fixed else None, listed=True)
    except ValueError as exc:
        raise ValueError(f"cannot compare {version!r}: {exc}") from None
    return None


def _rpm_verdict(installed: str, entry: Affected) -> _Verdict | None:
    """:func:`_verdict` in RPM order, the record's versions without epoch read with the
    installed package's epoch (see the module's docstring)."""
    epoch, sep, _ = installed.partition(":")
    if not (sep and epoch.isdigit()):
        return _verdict("rpm", installed, entry.introduced, entry.fixed, entry.versions)
    as_written: dict[str, str] = {}

    def read(version: str) -> str:
        if version == "0" or ":" in version:
            return version
        as_written[f"{epoch}:{version}"] = version
        return f"{epoch}:{version}"

    verdict = _verdict(
        "rpm",
        installed,
        [read(v) for v in entry.introduced],
        [read(v) for v in entry.fixed],
        [read(v) for v in entry.versions],
    )
    if verdict is None or verdict.fixed not in as_written:
        return verdict
    written = as_written[verdict.fixed]
    note = f"the record's fixed version has no epoch: read as {verdict.fixed}, the installed epoch"
    return replace(verdict, fixed=written, note=note)


def _match(
    advisory: Advisory,
    entry: Affected,
    package: Installed,
    kind: str,
    name: str,
    version: str,
    verdict: _Verdict,
) -> Match:
    return Match(
        advisory=advisory.id,
        ecosystem=entry.ecosystem,
        package=package.name,
        installed_version=package.version,
        source=package.source_name,
        compared_name=name,
        compared_version=version,
        fixed_version=verdict.fixed,
        severity=advisory.severity,
        how=_explain(entry, package, kind, name, version, verdict),
        aliases=advisory.aliases,
    )


def _explain(
    entry: Affected, package: Installed, kind: str, name: str, version: str, verdict: _Verdict
) -> str:
    """``Debian source openssl 3.0.11-1~deb12u1 < fixed 3.0.11-1~deb12u2 (installed as binary
    libssl3 3.0.11-1~deb12u1)``."""
    said = f"{entry.ecosystem.split(':', 1)[0]} {kind} {name} {version}"
    if verdict.listed:
        said += " is listed as affected"
        said += f", fixed {verdict.fixed}" if verdict.fixed else "; no fixed version published"
    elif verdict.fixed is None:
        said += " is affected; no fixed version published"
    else:
        said += f" < fixed {verdict.fixed}"
    notes: list[str] = []
    if kind in ("source", "origin") and package.name != name:
        notes.append(
            f"installed as {'binary' if kind == 'source' else 'subpackage'} "
            f"{package.name} {package.version}"
        )
    elif kind == "source" and package.version != version:
        notes.append(f"binary version {package.version}")
    elif kind == "binary":
        notes.append(f"a binary the record lists for source {entry.name}")
    elif kind == "package":
        notes.append("RPM order, epoch-aware")
    if verdict.note:
        notes.append(verdict.note)
    if "~bpo" in version:
        notes.append("installed from backports, which this record may not cover")
    return said + (f" ({'; '.join(notes)})" if notes else "")
