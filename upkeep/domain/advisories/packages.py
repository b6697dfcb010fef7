"""The package manager's side of a patch cycle, pure: which version a host would install, the
command that installs exactly the versions chosen, and why an install failed.

Every command comes from a fixed catalogue; the package names and versions put into one are
checked against the package format's grammar first (a value that does not fit is refused with
a ``ValueError`` naming it) and then quoted with :func:`shlex.quote`. Running the commands is
the tasks' business; nothing here does I/O.

* dpkg (Debian, Ubuntu): ``apt-cache policy`` for the candidates, ``apt-get install
  name=version`` to install; ``apt-get update`` is never run here (refreshing the lists is a
  separate decision).
* rpm (RHEL family): ``dnf repoquery`` for the candidates, ``dnf install``/``dnf downgrade``
  of ``name-[epoch:]version-release``.
* apk (Alpine): ``apk policy`` for the candidates, ``apk add name=version`` to install; the
  indexes are used as they are (no ``apk update``). Written from apk-tools' source
  (``src/app_policy.c``, ``src/commit.c``, v2.14.9); no Alpine host was at hand to capture.

Installs run as root: directly when the SSH user is root, else through ``sudo -n``, which
fails at once when no password-less rule allows it instead of waiting for a password.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from upkeep.domain.advisories import Family
from upkeep.domain.advisories.versions import UnsupportedFamily, compare, validate

__all__ = [
    "DNF_QUERY_FORMAT",
    "candidates_command",
    "install_command",
    "install_failure",
    "parse_candidates",
]

DNF_QUERY_FORMAT = "%{name}\\t%{epoch}\\t%{version}\\t%{release}\\t%{arch}\\n"
"""The ``--qf`` argument of ``dnf repoquery`` that :func:`parse_candidates` reads: name,
epoch, version, release, arch, tab-separated (dnf 4 turns ``\\t`` and ``\\n`` into the
characters and adds a newline of its own; dnf 5 adds none, so the ``\\n`` is needed there)."""

_END = "@@ end"
"""The last line the rpm candidates command prints, followed by dnf's exit code."""

_DPKG_NAME = re.compile(r"[a-z0-9][a-z0-9+._-]*")
# apk-tools' package name characters (src/ctype.c PKGNAME), first one alphanumeric
_APK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]*")
_RPM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9+._-]*")
_VERSION = re.compile(r"[A-Za-z0-9.+~:_-]+")

# Run as root: the user's own shell when it is root, else sudo without a password prompt.
_AS_ROOT = 'if [ "$(id -u)" -eq 0 ]; then set --; else set -- sudo -n; fi; "$@" '
# LC_ALL=C: apt's and dnf's messages in English (dnf translates its "Error:" prefix too),
# so that install_failure can read them and a report shows the same words on every host.
_APT_INSTALL = (
    "env LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
    "-o DPkg::Lock::Timeout=60 "
    "-o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef"
)
_DNF = "env LC_ALL=C dnf -y"
_APK_ADD = "apk add --no-interactive"

_APT_ERROR = re.compile(r"^E: (?P<text>.+)$")
_DNF_ERROR = re.compile(r"^Error: ?(?P<text>.*)$")
_APK_ERROR = re.compile(r"^ERROR: (?P<text>.+)$")
_APK_POLICY_HEADER = re.compile(r"^(?P<name>\S+) policy:$")
_APK_POLICY_VERSION = re.compile(r"^  (?P<version>\S+):$")
_APK_INSTALLED = "lib/apk/db/installed"
_POLICY_HEADER = re.compile(r"^(?P<name>[^\s:]+(?::[^\s:]+)?):$")
_POLICY_NOTICE = re.compile(r"^[NW]: ")
_UNABLE_TO_LOCATE = re.compile(r"^N: Unable to locate package (?P<name>\S+)$")
_SHORT = 300


def _unsupported(family: str) -> UnsupportedFamily:
    return UnsupportedFamily(f"no package manager commands for package family {family!r}")


def _check_family(family: str) -> None:
    if family not in ("dpkg", "rpm", "apk"):
        raise _unsupported(family)


def _check_name(family: Family, name: str) -> None:
    pattern = {"dpkg": _DPKG_NAME, "rpm": _RPM_NAME, "apk": _APK_NAME}[family]
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise ValueError(f"not a valid {family} package name: {name!r}")


def _check_version(family: Family, version: str) -> None:
    if not isinstance(version, str) or not _VERSION.fullmatch(version) or version[0] == "-":
        raise ValueError(f"not a valid {family} package version: {version!r}")
    validate(family, version)


def _names(family: Family, names: Sequence[str]) -> str:
    if isinstance(names, str) or not names:
        raise ValueError("no package names given")
    for name in names:
        _check_name(family, name)
    return " ".join(shlex.quote(name) for name in names)


def candidates_command(family: Family, names: list[str]) -> str:
    """The read-only command asking the host's package manager which version it would install
    for each of ``names``; :func:`parse_candidates` reads what it prints.

    dpkg: ``LC_ALL=C apt-cache policy -- names`` (it reads the package lists as they are; the
    caller must check its exit status, an apt that cannot read its lists exits non-zero).
    rpm: ``dnf -q repoquery --latest-limit=1`` in :data:`DNF_QUERY_FORMAT`, then ``@@ end``
    and dnf's exit status, which is also the command's (dnf may refresh its metadata first,
    as every dnf command does). apk: ``apk policy -- names`` (read-only, from the indexes
    cached by the last ``apk update``). A name that is not a valid package name of
    ``family`` is refused with ``ValueError``.
    """
    _check_family(family)
    quoted = _names(family, names)
    if family == "dpkg":
        return f"LC_ALL=C apt-cache policy -- {quoted}"
    if family == "apk":
        return f"apk policy -- {quoted}"
    return (
        f"LC_ALL=C dnf -q repoquery --latest-limit=1 --qf {shlex.quote(DNF_QUERY_FORMAT)} "
        f'-- {quoted}; upkeep_rc=$?; echo "{_END} $upkeep_rc"; exit $upkeep_rc'
    )


def parse_candidates(family: Family, stdout: str, names: list[str]) -> dict[str, str | None]:
    """Name -> the version the package manager would install, as :func:`install_command`
    takes it; None when it has none for that name.

    dpkg: the ``Candidate:`` of ``apt-cache policy``; ``(none)`` (a package known only from
    its installed copy, or only as a virtual package) and a name apt does not know at all
    (missing from the output, or ``N: Unable to locate package``) give None. rpm:
    ``[epoch:]version-release`` (no epoch when it is 0), the highest over the architectures
    listed; source packages are not candidates; a name not listed gives None. apk: the
    highest version ``apk policy`` lists as installed (``lib/apk/db/installed``) or offered by
    an untagged repository (one tagged ``@testing`` is used only when pinned, which the
    install command does not do); a name apk does not know prints nothing and gives None.
    Output that is
    not what :func:`candidates_command` prints (a ``Candidate:`` line before any package,
    a package without one, a row with the wrong number of fields, no ``@@ end`` after dnf, a
    failed dnf) raises ``ValueError``.
    """
    _check_family(family)
    _names(family, names)
    if family == "dpkg":
        found = _apt_policy(stdout)
    elif family == "apk":
        found = _apk_policy(stdout)
    else:
        found = _dnf_repoquery(stdout)
    return {name: found.get(name) for name in names}


def _apk_policy(stdout: str) -> dict[str, str | None]:
    """``apk policy`` (src/app_policy.c): ``NAME policy:``, then per version ``  VERSION:``
    and, indented by four, ``lib/apk/db/installed`` when installed and one line per
    repository offering it, ``[@tag ]URL``."""
    found: dict[str, str | None] = {}
    name: str | None = None
    version: str | None = None
    for number, raw in enumerate(stdout.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        header = _APK_POLICY_HEADER.match(line)
        if header:
            name, version = header["name"], None
            found.setdefault(name, None)
            continue
        listed = _APK_POLICY_VERSION.match(line)
        if listed and name is not None:
            version = listed["version"]
            try:
                _check_version("apk", version)
            except ValueError as exc:
                raise ValueError(f"line {number}: {name}: {exc}") from None
            continue
        if line.startswith("    ") and version is not None and name is not None:
            where = line.strip()
            if where.startswith("@"):
                continue  # a tagged repository: used only when pinned
            best = found[name]
            if best is None or compare("apk", version, best) > 0:
                found[name] = version
            continue
        raise ValueError(f"line {number}: not apk policy output: {line[:80]!r}")
    return found


def _apt_policy(stdout: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    current: str | None = None
    seen_candidate = True
    for number, raw in enumerate(stdout.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        if line[0] not in " \t":
            header = _POLICY_HEADER.match(line)
            if header:
                if not seen_candidate:
                    raise ValueError(f"line {number}: package {current!r} has no Candidate line")
                current, seen_candidate = header["name"], False
                continue
            unknown = _UNABLE_TO_LOCATE.match(line)
            if unknown:
                found[unknown["name"]] = None
                continue
            if _POLICY_NOTICE.match(line):
                continue
            raise ValueError(f"line {number}: not apt-cache policy output: {line[:80]!r}")
        field, _, value = line.strip().partition(":")
        if field != "Candidate":
            continue
        if current is None:
            raise ValueError(f"line {number}: a Candidate line before any package")
        if seen_candidate:
            raise ValueError(f"line {number}: a second Candidate line for {current!r}")
        value = value.strip()
        if value != "(none)":
            try:
                _check_version("dpkg", value)
            except ValueError as exc:
                raise ValueError(f"line {number}: {current}: {exc}") from None
        found[current] = None if value == "(none)" else value
        seen_candidate = True
    if not seen_candidate:
        raise ValueError(f"package {current!r} has no Candidate line (truncated?)")
    return found


def _dnf_repoquery(stdout: str) -> dict[str, str | None]:
    lines = [line.rstrip("\r") for line in stdout.splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[-1].startswith(_END):
        raise ValueError(f"the output ends before {_END!r} (truncated?)")
    status = lines[-1][len(_END) :].strip()
    if status != "0":
        raise ValueError(f"dnf repoquery exited {status or '?'}")
    best: dict[str, str] = {}
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise ValueError(f"line {number}: not name, epoch, version, release, arch")
        name, epoch, version, release, arch = (f.strip() for f in fields)
        if arch in ("src", "nosrc"):
            continue
        if epoch in ("", "0", "(none)"):
            evr = f"{version}-{release}"
        elif epoch.isdigit():
            evr = f"{epoch}:{version}-{release}"
        else:
            raise ValueError(f"line {number}: {name}: epoch {epoch!r} is not a number")
        try:
            _check_name("rpm", name)
            _check_version("rpm", evr)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if name not in best or compare("rpm", evr, best[name]) > 0:
            best[name] = evr
    return dict(best)


def install_command(
    family: Family, items: list[tuple[str, str]], *, downgrade: bool = False
) -> str:
    """The command installing exactly these ``(name, version)`` pairs, non-interactively, as
    root (directly when the SSH user is root, else through ``sudo -n``).

    dpkg: ``apt-get install -y name=version ...`` with no recommends, the installed
    configuration files kept (``--force-confold``, ``--force-confdef``), at most 60 s of
    waiting for the dpkg lock, and ``--allow-downgrades`` when ``downgrade``; the package
    lists are used as they are (no ``apt-get update``). rpm: ``dnf -y install``
    (``dnf -y downgrade`` when ``downgrade``) of ``name-[epoch:]version-release``. Both run
    with ``LC_ALL=C``. apk: ``apk add --no-interactive -- name=version ...`` (apk prints only
    English; ``=`` pins the exact version, so a downgrade needs no other option, and the
    constraint is recorded in ``/etc/apk/world`` as apk does for every ``add``). No items, or
    a name or version that does not fit ``family``'s grammar: ``ValueError`` naming it.
    """
    _check_family(family)
    if not items:
        raise ValueError("nothing to install: no (name, version) pairs given")
    specs = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            raise ValueError(f"not a (name, version) pair: {item!r}")
        name, version = item
        _check_name(family, name)
        _check_version(family, version)
        specs.append(f"{name}-{version}" if family == "rpm" else f"{name}={version}")
    quoted = " ".join(shlex.quote(spec) for spec in specs)
    if family == "apk":
        return f"{_AS_ROOT}{_APK_ADD} -- {quoted}"
    if family == "dpkg":
        allow = " --allow-downgrades" if downgrade else ""
        return f"{_AS_ROOT}{_APT_INSTALL}{allow} -- {quoted}"
    verb = "downgrade" if downgrade else "install"
    return f"{_AS_ROOT}{_DNF} {verb} -- {quoted}"


def install_failure(stdout: str, stderr: str, exit_status: int) -> str:
    """One short line saying why an install failed: apt's ``E:`` lines (or dnf's ``Error:``
    lines, with the line after a bare ``Error:``; or apk's ``ERROR:`` lines, with the two
    indented lines after one ending in ``:``, e.g. ``unable to select packages:``), joined
    with ``; ``; else the last non-empty line of stderr; else ``exited N``."""
    text = f"{stderr}\n{stdout}"
    lines = [line.rstrip() for line in text.splitlines()]
    reasons: list[str] = []
    for n, line in enumerate(lines):
        apt = _APT_ERROR.match(line)
        if apt:
            reasons.append(apt["text"].strip())
            continue
        apk = _APK_ERROR.match(line)
        if apk:
            said = apk["text"].strip()
            if said.endswith(":"):
                following: list[str] = []
                for later in lines[n + 1 :]:
                    if not later.startswith(" ") or len(following) == 2:
                        break
                    following.append(later.strip())
                said = " ".join([said, *following])
            reasons.append(said)
            continue
        dnf = _DNF_ERROR.match(line)
        if dnf:
            said = dnf["text"].strip()
            if not said:
                following = [x.strip() for x in lines[n + 1 :] if x.strip()]
                said = " ".join(following[:2])
            if said:
                reasons.append(said)
    if reasons:
        return _short("; ".join(dict.fromkeys(reasons)))
    tail = [line.strip() for line in stderr.splitlines() if line.strip()]
    if tail:
        return _short(tail[-1])
    if exit_status == -1:
        return "ended without an exit status"
    return f"exited {exit_status}"


def _short(text: str) -> str:
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"
