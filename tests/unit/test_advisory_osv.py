"""Reading real OSV records (Debian, osv.dev, Ubuntu, AlmaLinux) into Advisory, and refusing
malformed ones with a message that names the record or the missing field."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from upkeep.domain.advisories import Affected
from upkeep.domain.advisories.osv import parse_record, parse_text

OSV = Path(__file__).parents[1] / "fixtures" / "advisories" / "osv"


def raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(next(OSV.rglob(f"{name}.json")).read_text())
    return data


def test_every_fixture_record_parses() -> None:
    ids = sorted(parse_text(p.read_text(), str(p)).id for p in OSV.rglob("*.json"))
    assert ids == [
        "ALSA-2024:4312",
        "ALSA-2024:6783",
        "DSA-3029-1",
        "DSA-5514-1",
        "DSA-5532-1",
        "DSA-5586-1",
        "DSA-6015-1",
        "UBUNTU-CVE-2024-6387",
        "USN-6859-1",
    ]


def test_debian_record_with_two_releases() -> None:
    advisory = parse_record(raw("DSA-5514-1"))
    assert advisory.id == "DSA-5514-1"
    assert advisory.modified == datetime(2023, 10, 3, tzinfo=UTC)
    assert advisory.summary == "glibc - security update"
    assert advisory.aliases == ("CVE-2023-4911",)
    assert advisory.severity is None
    assert advisory.affected == (
        Affected("Debian:11", "glibc", introduced=("0",), fixed=("2.31-13+deb11u7",)),
        Affected("Debian:12", "glibc", introduced=("0",), fixed=("2.36-9+deb12u3",)),
    )


def test_osvdev_verbatim_debian_record() -> None:
    advisory = parse_record(raw("DSA-3029-1"))
    assert advisory.modified == datetime(2014, 9, 20, 8, 18, 7, tzinfo=UTC)
    assert advisory.modified.tzinfo is not None
    assert advisory.summary == "nginx - security update"
    assert advisory.aliases == ("CVE-2014-3616",)
    assert advisory.affected == (
        Affected("Debian:7", "nginx", introduced=("0",), fixed=("1.2.1-2.2+wheezy3",)),
    )


def test_summary_falls_back_to_the_first_line_of_details() -> None:
    data = raw("DSA-3029-1")
    del data["summary"]  # derived: osv.dev's record without its summary
    assert parse_record(data).summary == (
        "Antoine Delignat-Lavaud and Karthikeyan Bhargavan discovered that it was"
    )


def test_ubuntu_binaries_versions_and_fractional_modified() -> None:
    advisory = parse_record(raw("USN-6859-1"))
    assert advisory.modified == datetime(2025, 7, 16, 4, 45, 20, tzinfo=UTC)
    assert advisory.aliases == ("UBUNTU-CVE-2024-6387",)
    jammy, noble = advisory.affected
    assert (jammy.ecosystem, jammy.name) == ("Ubuntu:22.04:LTS", "openssh")
    assert jammy.fixed == ("1:8.9p1-3ubuntu0.10",)
    assert ("openssh-server", "1:8.9p1-3ubuntu0.10") in jammy.binaries
    assert ("ssh", "1:8.9p1-3ubuntu0.10") in jammy.binaries
    assert len(jammy.binaries) == 11
    assert jammy.versions[0] == "1:8.4p1-6ubuntu2"
    assert noble.ecosystem == "Ubuntu:24.04:LTS"
    assert noble.fixed == ("1:9.6p1-3ubuntu13.3",)


def test_ubuntu_priority_wins_over_the_cvss_vector() -> None:
    advisory = parse_record(raw("UBUNTU-CVE-2024-6387"))
    assert advisory.severity == "high"
    assert advisory.aliases == ("CVE-2024-6387",)  # from related; USN-6859-1 is not an alias


def test_cvss_vector_when_the_record_has_no_word_for_it() -> None:
    data = raw("UBUNTU-CVE-2024-6387")
    for entry in data["affected"]:  # derived: the CVE record without Ubuntu's priority
        del entry["ecosystem_specific"]["ubuntu_priority"]
    assert parse_record(data).severity == ("CVSS_V3 CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H")


def test_database_specific_severity() -> None:
    data = raw("DSA-5532-1")
    data["database_specific"]["severity"] = "HIGH"  # derived: osv.dev's GHSA-style severity
    assert parse_record(data).severity == "high"


def test_almalinux_impact_from_summary_and_cves_from_related() -> None:
    advisory = parse_record(raw("ALSA-2024_6783"))
    assert advisory.id == "ALSA-2024:6783"
    assert advisory.severity == "moderate"
    assert advisory.aliases == ("CVE-2024-6119",)
    assert [a.name for a in advisory.affected] == [
        "openssl",
        "openssl-devel",
        "openssl-libs",
        "openssl-perl",
    ]
    assert {a.fixed for a in advisory.affected} == {("1:3.0.7-28.el9_4",)}
    assert parse_record(raw("ALSA-2024_4312")).severity == "important"


def test_git_and_semver_ranges_are_ignored() -> None:
    data = raw("DSA-5532-1")
    data["affected"][0]["ranges"].append(  # derived: an upstream GIT range beside the Debian one
        {
            "type": "GIT",
            "repo": "https://github.com/openssl/openssl",
            "events": [{"introduced": "0"}, {"fixed": "a2ba2c8c1e4d4c6bb8bd9a8c0ef0cb06a5bd1a2c"}],
        }
    )
    data["affected"][0]["ranges"].append(
        {"type": "SEMVER", "events": [{"introduced": "3.0.0"}, {"fixed": "3.0.12"}]}
    )
    (entry,) = parse_record(data).affected
    assert entry.introduced == ("0",)
    assert entry.fixed == ("3.0.11-1~deb12u2",)


def test_a_record_without_fixed_event_has_no_fixed_versions() -> None:
    data = raw("DSA-5532-1")
    data["affected"][0]["ranges"][0]["events"] = [{"introduced": "0"}]  # derived
    (entry,) = parse_record(data).affected
    assert entry.introduced == ("0",)
    assert entry.fixed == ()


def test_parse_text_names_the_file_in_errors() -> None:
    with pytest.raises(ValueError, match=r"^dir/x\.json: not JSON"):
        parse_text('{"id": ', "dir/x.json")
    with pytest.raises(ValueError, match=r"^dir/x\.json: not an OSV record"):
        parse_text("[1, 2]", "dir/x.json")
    text = (OSV / "debian" / "DSA-5532-1.json").read_text().replace('"modified"', '"changed"')
    with pytest.raises(ValueError, match=r"^dir/x\.json: OSV record DSA-5532-1: no 'modified'"):
        parse_text(text, "dir/x.json")


def broken(change: str) -> dict[str, Any]:
    """DSA-5532-1 with one thing wrong (the ``change`` named in the test's parameter)."""
    data = copy.deepcopy(raw("DSA-5532-1"))
    entry = data["affected"][0]
    if change == "no id":
        del data["id"]
    elif change == "empty id":
        data["id"] = " "
    elif change == "no modified":
        del data["modified"]
    elif change == "bad modified":
        data["modified"] = "last Tuesday"
    elif change == "no affected":
        del data["affected"]
    elif change == "affected not a list":
        data["affected"] = {"package": entry["package"]}
    elif change == "no package":
        del entry["package"]
    elif change == "no ecosystem":
        del entry["package"]["ecosystem"]
    elif change == "no name":
        del entry["package"]["name"]
    elif change == "events not a list":
        entry["ranges"][0]["events"] = "0 -> 3.0.11-1~deb12u2"
    elif change == "last_affected":
        entry["ranges"][0]["events"][1] = {"last_affected": "3.0.11-1~deb12u1"}
    elif change == "fixed not a version":
        entry["ranges"][0]["events"][1] = {"fixed": 3}
    elif change == "malformed version":
        entry["ranges"][0]["events"][1] = {"fixed": "3.0.11 1~deb12u2"}
    elif change == "aliases not a list":
        data["upstream"] = "CVE-2023-5363"
    elif change == "binaries not objects":
        entry["ecosystem_specific"] = {"binaries": ["libssl3"]}
    elif change == "binary without name":
        entry["ecosystem_specific"] = {"binaries": [{"binary_version": "3.0.11-1~deb12u2"}]}
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no id", r"^OSV record without an 'id'$"),
        ("empty id", r"^OSV record without an 'id'$"),
        ("no modified", r"^OSV record DSA-5532-1: no 'modified' time$"),
        ("bad modified", r"^OSV record DSA-5532-1: 'modified' is not an RFC 3339 time"),
        ("no affected", r"^OSV record DSA-5532-1: no 'affected' list$"),
        ("affected not a list", r"^OSV record DSA-5532-1: no 'affected' list$"),
        ("no package", r"^OSV record DSA-5532-1: affected\[0\] has no 'package'$"),
        ("no ecosystem", r"DSA-5532-1: affected\[0\]\.package has no 'ecosystem'$"),
        ("no name", r"DSA-5532-1: affected\[0\]\.package has no 'name'$"),
        ("events not a list", r"DSA-5532-1: affected\[0\] \(Debian:12 openssl\): a range without"),
        ("last_affected", r"DSA-5532-1: .*the 'last_affected' event is not supported"),
        ("fixed not a version", r"DSA-5532-1: .*fixed has no version"),
        ("malformed version", r"DSA-5532-1: .*malformed dpkg version '3\.0\.11 1~deb12u2'"),
        ("aliases not a list", r"DSA-5532-1: 'upstream' is not a list of strings"),
        ("binaries not objects", r"DSA-5532-1: .*'ecosystem_specific\.binaries' is not a list"),
        ("binary without name", r"DSA-5532-1: .*a binary without 'binary_name'"),
    ],
)
def test_malformed_records_are_refused_naming_the_record(change: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_record(broken(change))


def test_versions_of_unknown_ecosystems_are_not_judged() -> None:
    data = raw("DSA-5532-1")
    data["affected"][0]["package"]["ecosystem"] = "PyPI"  # derived: no dpkg rules for PyPI
    data["affected"][0]["ranges"][0]["events"][1] = {"fixed": "not a dpkg version!"}
    (entry,) = parse_record(data).affected
    assert entry.fixed == ("not a dpkg version!",)
