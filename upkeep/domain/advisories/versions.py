"""Version order per package format, and OSV's ECOSYSTEM range semantics.

dpkg (Debian, Ubuntu) order is python-debian's ``version_compare``; RPM (RHEL family) order is
rpm-version's ``evr_compare``, epoch-aware. Both are checked against ``dpkg --compare-versions``
and rpm's own ``rpm.vercmp`` in ``tests/e2e/test_version_order_tools.py``. apk (Alpine) order
is univers' ``AlpineLinuxVersion`` (Gentoo's order, which apk's follows), with what apk-tools
adds to it handled here (:func:`_apk_compare`), checked against apk-tools' own test vectors in
``tests/unit/test_advisory_versions_apk.py``. Versions are never compared as strings or as
semantic versions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import rpm_version
from debian.debian_support import version_compare
from univers.versions import AlpineLinuxVersion

from upkeep.domain.advisories import Family

__all__ = ["UnsupportedFamily", "affected", "compare", "validate"]


class UnsupportedFamily(Exception):
    """No version order is implemented for this package format."""


# dpkg's own syntax errors (``dpkg --compare-versions`` exits 2 on them) plus the characters
# python-debian refuses; a version not starting with a digit is only a warning to dpkg.
_DPKG_UPSTREAM = re.compile(r"[A-Za-z0-9.+~:-]+")
_DPKG_REVISION = re.compile(r"[A-Za-z0-9.+~]+")
# rpmbuild allows these in Version and Release; neither may contain '-'.
_RPM_EVR = re.compile(
    r"(?:(?P<epoch>\d+):)?(?P<version>[A-Za-z0-9._+~^]+)(?:-(?P<release>[A-Za-z0-9._+~^]+))?"
)
# apk-tools' grammar (src/version.c): digit{.digit}...{letter}{_suf{#}}...{~hash}{-r#}, the
# suffixes alpha, beta, pre, rc (before the release), cvs, svn, git, hg, p (after it), the
# commit hash in lower-case hex.
_APK_SUFFIXES = ("alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p")
_APK_VERSION = re.compile(
    r"(?P<first>\d+)(?P<core>(?:\.\d+)*[a-z]?(?:_(?:" + "|".join(_APK_SUFFIXES) + r")\d*)*)"
    r"(?:~(?P<hash>[0-9a-f]+))?(?:-r(?P<revision>\d+))?"
)
# Gentoo's suffixes (and so univers') stop at alpha < beta < pre < rc < (none) < p; apk puts
# cvs < svn < git < hg between the release and p. Rewritten into Gentoo suffixes that keep
# that order: _p followed by a pre-release suffix sorts above the release and below _p, and
# apk's own _pN becomes _pN_p so that it stays above _p_rc (hg).
_APK_SUFFIX = re.compile(r"_(?P<name>cvs|svn|git|hg|p)(?P<number>\d*)(?![a-z])")
_AS_GENTOO = {"cvs": "p_alpha", "svn": "p_beta", "git": "p_pre", "hg": "p_rc"}


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


def _apk_problem(version: str) -> str | None:
    if not version:
        return "it is empty"
    if not _APK_VERSION.fullmatch(version):
        return (
            "it is not digit{.digit}...{letter}{_suffix{#}}...{~hash}{-r#} "
            f"(apk's suffixes: {', '.join(_APK_SUFFIXES)})"
        )
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
    elif family == "apk":
        problem = _apk_problem(version)
    else:
        raise _unsupported(family)
    if problem:
        raise ValueError(f"malformed {family} version {version!r}: {problem}")


def _unsupported(family: str) -> UnsupportedFamily:
    return UnsupportedFamily(f"no version order for package family {family!r}")


@lru_cache(maxsize=1 << 18)
def compare(family: Family, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, equal to or after ``b`` in ``family``'s order.

    dpkg: ``[epoch:]upstream[-revision]`` (a tilde sorts before anything, even the end).
    rpm: ``[epoch:]version[-release]``; a version without epoch has epoch 0, so
    ``1:2.0-1`` > ``2.0-1``. apk: ``version[_suffix...][~hash][-rN]`` (``1.2.4_git20230717-r4``,
    ``9.6_p1-r0``; ``_rc1`` before the release, ``_git``/``_p`` after it). Another family
    raises :class:`UnsupportedFamily`. A malformed version raises ``ValueError`` naming it.
    Cached: a matching run compares the same few thousand versions again and again
    (bench/advisories.py).
    """
    validate(family, a)
    validate(family, b)
    if family == "apk":
        return _apk_compare(a, b)
    result = version_compare(a, b) if family == "dpkg" else rpm_version.evr_compare(a, b)
    return (result > 0) - (result < 0)


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def _apk_compare(a: str, b: str) -> int:
    """apk-tools' order (``apk_version_compare``), univers comparing all but the tail.

    univers (Gentoo's order) compares the version up to the hash and revision. What apk adds
    is handled here, each as apk-tools' src/version.c does it:

    * the first number is compared as a number, so its leading zeros go (univers refuses
      ``006`` and ``021109-r3``; apk has ``006 > 1.0.0``);
    * the suffixes cvs, svn, git and hg, unknown to Gentoo, are rewritten into Gentoo
      suffixes in the same order (see ``_AS_GENTOO``);
    * the commit hash (``1.0~1234-r1``, apk-tools 3) is compared as text, and a version with
      one sorts above the same version without;
    * the revision is compared as a number, and a version with ``-rN`` (even ``-r0``) sorts
      above the same version without one (univers would take ``-r0`` as no revision).

    Known differences left (apk-tools' artefacts, no Alpine package has them): apk compares
    a dotted part with a leading zero as text (``1.010 > 1.01``, Gentoo strips trailing zeros:
    equal), and a suffix without a number before another suffix as apk's tokens fall
    (``1_pre_git1 > 1_pre2`` in apk).
    """
    parsed_a, parsed_b = _APK_VERSION.fullmatch(a), _APK_VERSION.fullmatch(b)
    assert parsed_a and parsed_b  # validated by the caller
    order = _sign(
        _univers_compare(
            _as_gentoo(parsed_a["first"], parsed_a["core"]),
            _as_gentoo(parsed_b["first"], parsed_b["core"]),
        )
    )
    if order:
        return order
    hash_a, hash_b = parsed_a["hash"], parsed_b["hash"]
    if hash_a is not None or hash_b is not None:
        if hash_a is None or hash_b is None:
            return 1 if hash_a is not None else -1
        if hash_a != hash_b:
            return -1 if hash_a < hash_b else 1
    revision_a, revision_b = parsed_a["revision"], parsed_b["revision"]
    if revision_a is None or revision_b is None:
        return (revision_a is not None) - (revision_b is not None)
    return _sign(int(revision_a) - int(revision_b))


def _univers_compare(a: str, b: str) -> int:
    """univers' order of two Alpine versions as :func:`_as_gentoo` wrote them."""
    left, right = AlpineLinuxVersion(a), AlpineLinuxVersion(b)
    return (left > right) - (left < right)


def _as_gentoo(first: str, core: str) -> str:
    def rewrite(found: re.Match[str]) -> str:
        name, number = found["name"], found["number"]
        if name == "p":
            return f"_p{number}_p"
        return f"_{_AS_GENTOO[name]}{number}"

    return str(int(first)) + _APK_SUFFIX.sub(rewrite, core)


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
