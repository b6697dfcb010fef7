"""Version order per package format, and OSV's ECOSYSTEM range semantics.

dpkg (Debian, Ubuntu) order is python-debian's ``version_compare``; RPM (RHEL family) order is
rpm-version's ``evr_compare``, epoch-aware. Both are checked against ``dpkg --compare-versions``
and rpm's own ``rpm.vercmp`` in ``tests/e2e/test_version_order_tools.py``. Versions are never
compared as strings or as semantic versions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import rpm_version
from debian.debian_support import version_compare

from upkeep.domain.advisories import Family

__all__ = ["UnsupportedFamily", "affected", "compare", "validate"]


class UnsupportedFamily(Exception):
    """No version order is implemented for this package format (Alpine's apk, for now)."""


# dpkg's own syntax errors (``dpkg --compare-versions`` exits 2 on them) plus the characters
# python-debian refuses; a version not starting with a digit is only a warning to dpkg.
_DPKG_UPSTREAM = re.compile(r"[A-Za-z0-9.+~:-]+")
_DPKG_REVISION = re.compile(r"[A-Za-z0-9.+~]+")
# rpmbuild allows these in Version and Release; neither may contain '-'.
_RPM_EVR = re.compile(
    r"(?:(?P<epoch>\d+):)?(?P<version>[A-Za-z0-9._+~^]+)(?:-(?P<release>[A-Za-z0-9._+~^]+))?"
)


def _dpkg_problem(version: str) -> str | None:
    if not version:
        return "it is empty"
    if any(c.isspace() for c in version):
        return "it contains white space"
    rest = version
    if ":" in version:
        epoch, rest = version.split(":", 1)
        if not epoch.isdigit():
            return "its epoch is not a number"
        if not rest:
            return "nothing follows the epoch"
    upstream, revision = rest, None
    if "-" in rest:
        upstream, revision = rest.rsplit("-", 1)
        if not revision:
            return "its revision is empty"
        if not upstream:
            return "its upstream version is empty"
    if not _DPKG_UPSTREAM.fullmatch(upstream):
        return "its upstream version has a character dpkg does not allow"
    if revision is not None and not _DPKG_REVISION.fullmatch(revision):
        return "its revision has a character dpkg does not allow"
    return None


def _rpm_problem(version: str) -> str | None:
    if not version:
        return "it is empty"
    if any(c.isspace() for c in version):
        return "it contains white space"
    if not _RPM_EVR.fullmatch(version):
        return "it is not [epoch:]version[-release] with RPM's characters"
    return None


@lru_cache(maxsize=1 << 16)
def validate(family: Family, version: str) -> None:
    """Raise ``ValueError`` naming ``version`` when it is not a valid version of ``family``."""
    if family == "dpkg":
        problem = _dpkg_problem(version)
    elif family == "rpm":
        problem = _rpm_problem(version)
    else:
        raise _unsupported(family)
    if problem:
        raise ValueError(f"malformed {family} version {version!r}: {problem}")


def _unsupported(family: str) -> UnsupportedFamily:
    if family == "apk":
        return UnsupportedFamily("Alpine (apk) version order is not supported yet")
    return UnsupportedFamily(f"no version order for package family {family!r}")


@lru_cache(maxsize=1 << 18)
def compare(family: Family, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, equal to or after ``b`` in ``family``'s order.

    dpkg: ``[epoch:]upstream[-revision]`` (a tilde sorts before anything, even the end).
    rpm: ``[epoch:]version[-release]``; a version without epoch has epoch 0, so
    ``1:2.0-1`` > ``2.0-1``. apk raises :class:`UnsupportedFamily` rather than guess.
    A malformed version raises ``ValueError`` naming it. Cached: a matching run compares the
    same few thousand versions again and again (bench/advisories.py).
    """
    validate(family, a)
    validate(family, b)
    result = version_compare(a, b) if family == "dpkg" else rpm_version.evr_compare(a, b)
    return (result > 0) - (result < 0)


def affected(family: Family, version: str, introduced: Sequence[str], fixed: Sequence[str]) -> bool:
    """Whether ``version`` lies in one OSV ECOSYSTEM range, given as its events.

    ``introduced`` and ``fixed`` are the range's ``introduced`` and ``fixed`` event versions.
    As the OSV schema evaluates a range: the events are sorted by version (``introduced: "0"``
    is the start of time), then walked in order; an ``introduced`` at or below ``version``
    opens the affected span, a ``fixed`` at or below it closes it. So one introduced/fixed pair
    means ``introduced <= version < fixed``, and a range with no ``fixed`` event affects every
    version from its ``introduced`` on. A range with only ``fixed`` events is read as introduced
    at ``0`` (a record that left out the start), and one with no event at all is an error.
    """
    if not introduced and not fixed:
        raise ValueError("an OSV range needs at least one event (introduced or fixed)")
    validate(family, version)
    starts = list(introduced) or ["0"]
    events: list[tuple[str, bool]] = [(v, True) for v in starts] + [(v, False) for v in fixed]
    for event_version, _ in events:
        if event_version != "0":
            validate(family, event_version)

    def at_or_below(event_version: str) -> bool:
        return event_version == "0" or compare(family, event_version, version) <= 0

    # Only the events at or below the version matter; the last of them (in version order)
    # decides. Among equal versions a fixed event comes after an introduced one.
    below = [(v, opens) for v, opens in events if at_or_below(v)]
    if not below:
        return False
    last_version, last_opens = below[0]
    for event_version, opens in below[1:]:
        order = _order(family, event_version, last_version)
        if order > 0 or (order == 0 and not opens):
            last_version, last_opens = event_version, opens
    return last_opens


def _order(family: Family, a: str, b: str) -> int:
    if a == "0" or b == "0":
        return (a != "0") - (b != "0")
    return compare(family, a, b)
