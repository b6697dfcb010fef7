"""Matching installed packages against real OSV records: Debian by source name and source
version, Ubuntu by the record's binaries, the RHEL family by binary name and epoch-aware EVR;
a record for another release never matches.

The installed packages are written as dpkg and rpm report them on real hosts (libssl3 from
source openssl; libc6 from glibc; a binNMU carries ``+bN`` on the binary only; AlmaLinux 9's
``openssl-libs-1:3.0.7-27.el9``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from upkeep.domain.advisories import Advisory, Installed, Platform
from upkeep.domain.advisories.match import family_of, match
from upkeep.domain.advisories.osv import parse_record

OSV = Path(__file__).parents[1] / "fixtures" / "advisories" / "osv"
DEBIAN_11 = Platform("Debian:11", "dpkg")
DEBIAN_12 = Platform("Debian:12", "dpkg")
DEBIAN_13 = Platform("Debian:13", "dpkg")
JAMMY = Platform("Ubuntu:22.04:LTS", "dpkg")
ALMA_9 = Platform("AlmaLinux:9", "rpm")


def raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(next(OSV.rglob(f"{name}.json")).read_text())
    return data


def record(name: str) -> Advisory:
    return parse_record(raw(name))


def every_record() -> list[Advisory]:
    return [parse_record(json.loads(p.read_text())) for p in sorted(OSV.rglob("*.json"))]


def libssl3(version: str) -> Installed:
    return Installed("libssl3", version, "amd64", source="openssl")


@pytest.mark.parametrize(
    ("ecosystem", "family"),
    [
        ("Debian:12", "dpkg"),
        ("Ubuntu:22.04:LTS", "dpkg"),
        ("AlmaLinux:9", "rpm"),
        ("Rocky Linux:9", "rpm"),
        ("Red Hat:enterprise_linux:9::baseos", "rpm"),
        ("Alpine:v3.19", "apk"),
    ],
)
def test_family_of(ecosystem: str, family: str) -> None:
    assert family_of(ecosystem) == family


def test_family_of_an_unknown_ecosystem_is_refused() -> None:
    with pytest.raises(ValueError, match="'PyPI'"):
        family_of("PyPI")


def test_debian_binary_matches_by_its_source_package() -> None:
    (found,) = match([libssl3("3.0.11-1~deb12u1")], DEBIAN_12, [record("DSA-5532-1")])
    assert found.package == "libssl3"
    assert found.source == "openssl"
    assert found.compared_name == "openssl"
    assert found.compared_version == "3.0.11-1~deb12u1"
    assert found.fixed_version == "3.0.11-1~deb12u2"
    assert found.how == (
        "Debian source openssl 3.0.11-1~deb12u1 < fixed 3.0.11-1~deb12u2"
        " (installed as binary libssl3 3.0.11-1~deb12u1)"
    )


def test_debian_binary_name_alone_never_matches() -> None:
    # A package named like the record's source but built from another source (a third-party
    # or renamed package), and one with the record's name only as its binary name.
    not_openssl = Installed("openssl", "3.0.11-1~deb12u1", source="openssl-thirdparty")
    assert match([not_openssl], DEBIAN_12, [record("DSA-5532-1")]) == []
    ssh = Installed("openssh", "1:9.2p1-2+deb12u1", source="openssh-portable")
    assert match([ssh], DEBIAN_12, [record("DSA-5586-1")]) == []


def test_debian_source_version_decides_not_the_binary_version() -> None:
    # gcc-defaults style: the binary's version is unrelated to its source's (cpp 4:12.2.0-3
    # from gcc-defaults 1.203). Here the binary version is above the fix, the source below.
    odd = Installed("libssl3", "3.0.99-1", source="openssl", source_version="3.0.11-1~deb12u1")
    (found,) = match([odd], DEBIAN_12, [record("DSA-5532-1")])
    assert found.compared_version == "3.0.11-1~deb12u1"
    assert found.installed_version == "3.0.99-1"
    fixed = Installed("libssl3", "3.0.1-1", source="openssl", source_version="3.0.11-1~deb12u2")
    assert match([fixed], DEBIAN_12, [record("DSA-5532-1")]) == []


def test_binnmu_compares_the_source_version() -> None:
    libc6 = Installed("libc6", "2.36-9+deb12u2+b1", source="glibc", source_version="2.36-9+deb12u2")
    (found,) = match([libc6], DEBIAN_12, [record("DSA-5514-1")])
    assert found.compared_name == "glibc"
    assert found.compared_version == "2.36-9+deb12u2"
    assert found.installed_version == "2.36-9+deb12u2+b1"
    assert found.fixed_version == "2.36-9+deb12u3"
    assert "glibc 2.36-9+deb12u2 < fixed 2.36-9+deb12u3" in found.how
    assert "libc6 2.36-9+deb12u2+b1" in found.how


def test_binnmu_of_the_fixed_source_does_not_match() -> None:
    libc6 = Installed("libc6", "2.36-9+deb12u3+b1", source="glibc", source_version="2.36-9+deb12u3")
    same_name = Installed("glibc", "2.36-9+deb12u3+b2", source_version="2.36-9+deb12u3")
    assert match([libc6, same_name], DEBIAN_12, [record("DSA-5514-1")]) == []


def test_binnmu_with_the_binary_named_as_its_source_says_the_binary_version() -> None:
    glibc = Installed("glibc", "2.36-9+deb12u2+b2", source_version="2.36-9+deb12u2")
    (found,) = match([glibc], DEBIAN_12, [record("DSA-5514-1")])
    assert found.compared_version == "2.36-9+deb12u2"
    assert found.how.endswith("(binary version 2.36-9+deb12u2+b2)")


@pytest.mark.parametrize(
    ("installed", "matches"),
    [
        ("3.0.11-1~deb12u1", True),  # the tilde version before the fix
        ("3.0.9-1", True),
        ("3.0.11-1~deb12u2", False),  # exactly the fixed version
        ("3.0.11-1~deb12u3", False),
        ("3.0.11-1", False),  # the unstable upload the tilde sorts before
    ],
)
def test_tilde_versions(installed: str, matches: bool) -> None:
    found = match([libssl3(installed)], DEBIAN_12, [record("DSA-5532-1")])
    assert bool(found) is matches


def test_epoch_in_debian_versions() -> None:
    old = Installed("openssh-server", "1:9.2p1-2+deb12u1", source="openssh")
    new = Installed("openssh-client", "1:9.2p1-2+deb12u2", source="openssh")
    (found,) = match([old, new], DEBIAN_12, [record("DSA-5586-1")])
    assert (found.package, found.fixed_version) == ("openssh-server", "1:9.2p1-2+deb12u2")
    # 9.9 without the epoch sorts below every 1: version: still affected
    no_epoch = Installed("openssh-server", "9.9p1-1", source="openssh")
    assert [m.package for m in match([no_epoch], DEBIAN_12, [record("DSA-5586-1")])] == [
        "openssh-server"
    ]


def test_a_debian_13_entry_never_matches_a_debian_12_host() -> None:
    # DSA-6015-1: bookworm fixed in 3.0.17-1~deb12u3, trixie in 3.5.1-1+deb13u1. A bookworm
    # host at its fixed version is below trixie's fix, and must not be flagged by it.
    fixed_on_12 = libssl3("3.0.17-1~deb12u3")
    assert match([fixed_on_12], DEBIAN_12, [record("DSA-6015-1")]) == []
    (on_13,) = match([fixed_on_12], DEBIAN_13, [record("DSA-6015-1")])
    assert (on_13.ecosystem, on_13.fixed_version) == ("Debian:13", "3.5.1-1+deb13u1")


def test_a_record_for_other_releases_only_matches_nothing() -> None:
    old = libssl3("1.1.1n-0+deb11u5")
    assert match([old], DEBIAN_13, [record("DSA-5514-1"), record("DSA-5532-1")]) == []
    nginx = Installed("nginx", "1.2.1-2.2+wheezy2")
    assert match([nginx], DEBIAN_12, [record("DSA-3029-1")]) == []
    assert [m.advisory for m in match([nginx], Platform("Debian:7", "dpkg"), every_record())] == [
        "DSA-3029-1"
    ]


def test_no_prefix_matching_of_ecosystems() -> None:
    libc6 = Installed("libc6", "2.31-13+deb11u6", source="glibc")
    assert match([libc6], Platform("Debian:1", "dpkg"), [record("DSA-5514-1")]) == []
    client = Installed("openssh-client", "1:8.9p1-3ubuntu0.7", source="openssh")
    assert match([client], Platform("Ubuntu:22.04", "dpkg"), [record("USN-6859-1")]) == []
    assert match([client], Platform("Ubuntu:22", "dpkg"), [record("USN-6859-1")]) == []


def test_a_record_with_several_releases_uses_each_hosts_own_fix() -> None:
    glibc = record("DSA-5514-1")
    on_11 = Installed("libc6", "2.31-13+deb11u6", source="glibc")
    on_12 = Installed("libc6", "2.36-9+deb12u1", source="glibc")
    (m11,) = match([on_11], DEBIAN_11, [glibc])
    (m12,) = match([on_12], DEBIAN_12, [glibc])
    assert (m11.ecosystem, m11.fixed_version) == ("Debian:11", "2.31-13+deb11u7")
    assert (m12.ecosystem, m12.fixed_version) == ("Debian:12", "2.36-9+deb12u3")
    # at bullseye's fixed version, bullseye's entry no longer matches (bookworm's is not read)
    assert match([Installed("libc6", "2.31-13+deb11u7", source="glibc")], DEBIAN_11, [glibc]) == []


def test_ubuntu_matches_the_records_binaries_by_binary_version() -> None:
    installed = [
        Installed("openssh-client", "1:8.9p1-3ubuntu0.7", "amd64", source="openssh"),
        Installed("openssh-server", "1:8.9p1-3ubuntu0.10", "amd64", source="openssh"),
        Installed("openssh-sftp-server", "1:8.9p1-3ubuntu0.6", "amd64", source="openssh"),
    ]
    found = match(installed, JAMMY, [record("USN-6859-1")])
    assert [(m.package, m.compared_name, m.compared_version, m.fixed_version) for m in found] == [
        ("openssh-client", "openssh-client", "1:8.9p1-3ubuntu0.7", "1:8.9p1-3ubuntu0.10"),
        ("openssh-sftp-server", "openssh-sftp-server", "1:8.9p1-3ubuntu0.6", "1:8.9p1-3ubuntu0.10"),
    ]
    assert found[0].how == (
        "Ubuntu binary openssh-client 1:8.9p1-3ubuntu0.7 < fixed 1:8.9p1-3ubuntu0.10"
        " (a binary the record lists for source openssh)"
    )


def test_ubuntu_binaries_decide_not_the_source_name() -> None:
    # a binary of source openssh that the record does not list is not matched by the source
    unlisted = Installed("openssh-client-ssh1", "1:8.9p1-3ubuntu0.1", source="openssh")
    assert match([unlisted], JAMMY, [record("USN-6859-1")]) == []


def test_ubuntu_binary_fixed_version_is_the_binarys_own() -> None:
    data = raw("USN-6859-1")
    # derived: a binary whose fixed version differs from the source's (as meta packages do)
    data["affected"][0]["ecosystem_specific"]["binaries"] = [
        {"binary_name": "ssh", "binary_version": "1:8.9p1-3ubuntu0.11"}
    ]
    ssh = Installed("ssh", "1:8.9p1-3ubuntu0.10", "all", source="openssh")
    (found,) = match([ssh], JAMMY, [parse_record(data)])
    assert found.fixed_version == "1:8.9p1-3ubuntu0.11"


def test_ubuntu_without_binaries_falls_back_to_the_source() -> None:
    data = raw("USN-6859-1")
    for entry in data["affected"]:  # derived: an Ubuntu entry without the binaries list
        del entry["ecosystem_specific"]["binaries"]
    client = Installed("openssh-client", "1:8.9p1-3ubuntu0.7", source="openssh")
    (found,) = match([client], JAMMY, [parse_record(data)])
    assert (found.compared_name, found.compared_version) == ("openssh", "1:8.9p1-3ubuntu0.7")
    assert found.how.startswith("Ubuntu source openssh 1:8.9p1-3ubuntu0.7 < fixed")


def test_almalinux_binary_rpm_names_epoch_aware() -> None:
    installed = [
        Installed("openssl", "1:3.0.7-27.el9", "x86_64", source="openssl"),
        Installed("openssl-libs", "1:3.0.7-27.el9", "x86_64", source="openssl"),
        Installed("openssl-devel", "1:3.0.7-28.el9_4", "x86_64", source="openssl"),
        Installed("openssl-fips-provider", "3.0.7-2.el9", "x86_64", source="openssl"),
    ]
    found = match(installed, ALMA_9, [record("ALSA-2024_6783")])
    assert [(m.package, m.compared_version, m.fixed_version) for m in found] == [
        ("openssl", "1:3.0.7-27.el9", "1:3.0.7-28.el9_4"),
        ("openssl-libs", "1:3.0.7-27.el9", "1:3.0.7-28.el9_4"),
    ]
    assert found[0].severity == "moderate"
    assert found[0].aliases == ("CVE-2024-6119",)
    assert found[0].how == (
        "AlmaLinux package openssl 1:3.0.7-27.el9 < fixed 1:3.0.7-28.el9_4 (RPM order, epoch-aware)"
    )


def test_almalinux_fixed_version_without_epoch_reads_the_installed_epoch() -> None:
    data = raw("ALSA-2024_6783")
    for entry in data["affected"]:  # derived: the same record with the epoch left out
        entry["ranges"][0]["events"][1]["fixed"] = "3.0.7-28.el9_4"
    without_epoch = parse_record(data)
    old = Installed("openssl-libs", "1:3.0.7-27.el9", "x86_64", source="openssl")
    (found,) = match([old], ALMA_9, [without_epoch])
    assert found.fixed_version == "3.0.7-28.el9_4"  # as the record writes it
    assert "read as 1:3.0.7-28.el9_4, the installed epoch" in found.how
    # RPM's plain order would call 1:3.0.7-27.el9 newer than 3.0.7-28.el9_4 and hide it
    current = Installed("openssl-libs", "1:3.0.7-28.el9_4", "x86_64", source="openssl")
    assert match([current], ALMA_9, [without_epoch]) == []


def test_almalinux_package_without_epoch() -> None:
    server = Installed("openssh-server", "8.7p1-38.el9", "x86_64", source="openssh")
    agent = Installed("pam_ssh_agent_auth", "0.10.4-5.38.el9_4.1", "x86_64", source="openssh")
    found = match([server, agent], ALMA_9, [record("ALSA-2024_4312")])
    assert [(m.package, m.fixed_version, m.severity) for m in found] == [
        ("openssh-server", "8.7p1-38.el9_4.1", "important")
    ]


def test_almalinux_source_name_alone_never_matches() -> None:
    # RHEL records name binary RPMs; a binary of source rpm "openssl" not listed is not matched
    compat = Installed("openssl-compat", "1:1.1.1k-1.el9", "x86_64", source="openssl")
    assert match([compat], ALMA_9, [record("ALSA-2024_6783")]) == []


def test_a_record_with_no_fixed_version() -> None:
    data = raw("DSA-5532-1")
    data["affected"][0]["ranges"][0]["events"] = [{"introduced": "0"}]  # derived: no fix yet
    (found,) = match([libssl3("3.0.11-1~deb12u2")], DEBIAN_12, [parse_record(data)])
    assert found.fixed_version is None
    assert "no fixed version published" in found.how
    assert found.as_json()["fixed_version"] is None


def test_a_record_with_no_fixed_version_from_an_introduced_version() -> None:
    data = raw("DSA-5532-1")
    data["affected"][0]["ranges"][0]["events"] = [{"introduced": "3.0.0-1"}]  # derived
    advisory = parse_record(data)
    assert [m.package for m in match([libssl3("3.0.11-1~deb12u1")], DEBIAN_12, [advisory])] == [
        "libssl3"
    ]
    assert match([libssl3("1.1.1w-0+deb11u1")], DEBIAN_12, [advisory]) == []


def test_an_entry_without_ranges_or_versions_affects_every_version() -> None:
    data = raw("DSA-5532-1")
    del data["affected"][0]["ranges"]  # derived: the package named, nothing more
    (found,) = match([libssl3("3.0.11-1~deb12u9")], DEBIAN_12, [parse_record(data)])
    assert found.fixed_version is None
    assert "no fixed version published" in found.how


def test_explicitly_listed_versions_match_without_a_range() -> None:
    data = raw("USN-6859-1")
    for entry in data["affected"]:  # derived: only the versions list, as some osv.dev records
        del entry["ranges"]
        del entry["ecosystem_specific"]["binaries"]
    advisory = parse_record(data)
    listed = Installed("openssh-client", "1:8.9p1-3ubuntu0.4", source="openssh")
    (found,) = match([listed], JAMMY, [advisory])
    assert "is listed as affected" in found.how
    not_listed = Installed("openssh-client", "1:8.9p1-3ubuntu0.2", source="openssh")
    assert match([not_listed], JAMMY, [advisory]) == []


def test_matches_are_sorted_by_package_then_advisory_and_deduplicated() -> None:
    installed = [
        libssl3("3.0.11-1~deb12u1"),
        Installed("openssl", "3.0.11-1~deb12u1", "amd64"),
        Installed("libc6", "2.36-9+deb12u1", "amd64", source="glibc"),
        Installed("libc6", "2.36-9+deb12u1", "i386", source="glibc"),
    ]
    found = match(installed, DEBIAN_12, every_record() + [record("DSA-5532-1")])
    assert [(m.package, m.advisory) for m in found] == [
        ("libc6", "DSA-5514-1"),
        ("libssl3", "DSA-5532-1"),
        ("libssl3", "DSA-6015-1"),
        ("openssl", "DSA-5532-1"),
        ("openssl", "DSA-6015-1"),
    ]


def test_a_backports_version_is_said_so() -> None:
    # a buster backport kept after the upgrade to bullseye: below bullseye's fix
    bpo = Installed("openssh-client", "1:8.4p1-5~bpo10+1", source="openssh")
    (found,) = match([bpo], DEBIAN_11, [record("DSA-5586-1")])
    assert found.fixed_version == "1:8.4p1-5+deb11u3"
    assert "installed from backports, which this record may not cover" in found.how


def test_a_malformed_installed_version_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'3.0 11'"):
        match([libssl3("3.0 11")], DEBIAN_12, [record("DSA-5532-1")])


def test_match_as_json_keys() -> None:
    (found,) = match([libssl3("3.0.11-1~deb12u1")], DEBIAN_12, [record("DSA-5532-1")])
    assert found.as_json() == {
        "package": "libssl3",
        "installed_version": "3.0.11-1~deb12u1",
        "source": "openssl",
        "compared_name": "openssl",
        "compared_version": "3.0.11-1~deb12u1",
        "advisory": "DSA-5532-1",
        "aliases": ["CVE-2023-5363"],
        "ecosystem": "Debian:12",
        "fixed_version": "3.0.11-1~deb12u2",
        "severity": None,
        "how": (
            "Debian source openssl 3.0.11-1~deb12u1 < fixed 3.0.11-1~deb12u2"
            " (installed as binary libssl3 3.0.11-1~deb12u1)"
        ),
    }
    json.dumps(found.as_json())  # serialisable as it is


# Alpine: records name the origin (aport); the record below is written in the format of
# Alpine's OSV records on osv.dev (ecosystem Alpine:vX.Y, one ECOSYSTEM range from 0, the CVE
# in upstream), not copied from one.

ALPINE_319 = Platform("Alpine:v3.19", "apk")
ALPINE_OPENSSL: dict[str, Any] = {
    "id": "ALPINE-CVE-2024-0727",
    "modified": "2024-03-01T00:00:00Z",
    "upstream": ["CVE-2024-0727"],
    "affected": [
        {
            "package": {"ecosystem": "Alpine:v3.19", "name": "openssl"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.4-r5"}]}
            ],
        },
        {
            "package": {"ecosystem": "Alpine:v3.18", "name": "openssl"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.4-r5"}]}
            ],
        },
    ],
}


def alpine_openssl(name: str, version: str) -> Installed:
    return Installed(name, version, "x86_64", source="openssl")


def test_alpine_subpackages_match_by_their_origin_at_their_own_version() -> None:
    installed = [
        alpine_openssl("libssl3", "3.1.4-r4"),
        alpine_openssl("libcrypto3", "3.1.4-r4"),
        Installed("musl", "1.2.4_git20230717-r4", "x86_64"),
    ]
    found = match(installed, ALPINE_319, [parse_record(ALPINE_OPENSSL)])
    assert [(m.package, m.compared_name, m.compared_version) for m in found] == [
        ("libcrypto3", "openssl", "3.1.4-r4"),
        ("libssl3", "openssl", "3.1.4-r4"),
    ]
    assert found[0].fixed_version == "3.1.4-r5"
    assert found[0].how == (
        "Alpine origin openssl 3.1.4-r4 < fixed 3.1.4-r5 (installed as subpackage libcrypto3 "
        "3.1.4-r4)"
    )


def test_alpine_fixed_and_later_versions_do_not_match() -> None:
    for version in ("3.1.4-r5", "3.1.4-r6", "3.1.10-r0"):
        assert (
            match([alpine_openssl("libssl3", version)], ALPINE_319, [parse_record(ALPINE_OPENSSL)])
            == []
        )


def test_alpine_package_that_is_its_own_origin_matches_by_name() -> None:
    found = match(
        [Installed("openssl", "3.1.4-r3", "x86_64")], ALPINE_319, [parse_record(ALPINE_OPENSSL)]
    )
    assert [(m.package, m.how) for m in found] == [
        ("openssl", "Alpine origin openssl 3.1.4-r3 < fixed 3.1.4-r5")
    ]


def test_alpine_record_of_another_release_never_matches() -> None:
    record_3_18_only = dict(ALPINE_OPENSSL, affected=ALPINE_OPENSSL["affected"][1:])
    installed = [alpine_openssl("libssl3", "3.1.4-r4")]
    assert match(installed, ALPINE_319, [parse_record(record_3_18_only)]) == []
    assert match(installed, Platform("Alpine:v3.20", "apk"), [parse_record(ALPINE_OPENSSL)]) == []


def test_alpine_binary_name_alone_never_matches() -> None:
    # libssl3 named as if it were the origin: only the origin is looked up
    record_by_binary = json.loads(json.dumps(ALPINE_OPENSSL).replace('"openssl"', '"libssl3"'))
    assert (
        match([alpine_openssl("libssl3", "3.1.4-r4")], ALPINE_319, [parse_record(record_by_binary)])
        == []
    )
