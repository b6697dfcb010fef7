"""``upkeep advisories match`` as an operator runs it: this machine's real dpkg database and
os-release against the real Debian security tracker records (tests/fixtures/advisories/exports:
a zip export, and the same records unpacked into a directory); bad input gets a clear error
and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.e2e.test_cli import upkeep

pytestmark = pytest.mark.e2e

EXPORT = Path(__file__).parents[1] / "fixtures" / "advisories" / "exports" / "debian-tracker.zip"
STATUS = Path("/var/lib/dpkg/status")
OS_RELEASE = Path("/etc/os-release")

needs_debian_12 = pytest.mark.skipif(
    not STATUS.exists() or 'VERSION_ID="12"' not in OS_RELEASE.read_text(),
    reason="the machine's own dpkg database is a Debian 12 one on this project's machines",
)


@pytest.fixture
def debian(tmp_path: Path) -> Path:
    """The export's records unpacked into a directory, as a mirror keeps them."""
    target = tmp_path / "debian"
    with zipfile.ZipFile(EXPORT) as z:
        z.extractall(target)
    return target


def old_openssl_host(directory: Path) -> tuple[Path, Path]:
    """(dpkg status, os-release) of a Debian 12 host with an old openssl and its libssl3."""
    status = directory / "status"
    status.write_text(
        "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\n"
        "Source: openssl\nVersion: 3.0.9-1\n\n"
        "Package: openssl\nStatus: install ok installed\nArchitecture: amd64\n"
        "Version: 3.0.9-1\n\n"
    )
    os_release = directory / "os-release"
    os_release.write_text('ID=debian\nVERSION_ID="12"\nVERSION="12 (bookworm)"\n')
    return status, os_release


def matches(done: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def sources() -> dict[str, tuple[str, str]]:
    """binary package -> (source name, source version) as dpkg itself says."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Version}\t${Source}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        name, version, source = (line.split("\t") + ["", ""])[:3]
        src, _, src_version = source.partition(" (")
        found[name] = (src or name, src_version.rstrip(")") or version)
    return found


def dpkg_lt(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0


@needs_debian_12
def test_this_machines_packages_against_the_real_debian_records(
    data_dir: Path, debian: Path
) -> None:
    done = upkeep(
        "advisories",
        "match",
        "--dpkg-status",
        str(STATUS),
        "--os-release",
        str(OS_RELEASE),
        "--advisories",
        str(debian),
        "--json",
        data_dir=data_dir,
    )
    found = matches(done)
    real = sources()
    for m in found:
        assert m["ecosystem"] == "Debian:12", m
        # looked up by the binary's source package, compared at the source's version
        assert (m["compared_name"], m["compared_version"]) == real[str(m["package"])], m
        if m["fixed_version"] is not None:
            assert dpkg_lt(str(m["compared_version"]), str(m["fixed_version"])), m


def test_an_old_libssl3_matches_openssl_advisories_by_its_source(
    data_dir: Path, tmp_path: Path, debian: Path
) -> None:
    status, os_release = old_openssl_host(tmp_path)
    args = ["--dpkg-status", str(status), "--os-release", str(os_release), "--json"]
    found = matches(
        upkeep("advisories", "match", *args, "--advisories", str(debian), data_dir=data_dir)
    )
    ssl3 = [m for m in found if m["package"] == "libssl3"]
    assert ssl3 and all(m["compared_name"] == "openssl" for m in ssl3), found
    assert {m["advisory"] for m in ssl3} == {
        m["advisory"] for m in found if m["package"] == "openssl"
    }
    # the same records as a zip export give the same matches
    zipped = matches(
        upkeep("advisories", "match", *args, "--advisories", str(EXPORT), data_dir=data_dir)
    )
    assert zipped == found


def test_bad_input_is_refused_naming_the_thing(
    data_dir: Path, tmp_path: Path, debian: Path
) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text('ID=debian\nVERSION_ID="12"\n')
    status = tmp_path / "status"
    status.write_text("Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b8\n\n")
    broken = tmp_path / "records"
    broken.mkdir()
    (broken / "DSA-0000-1.json").write_text('{"id": "DSA-0000-1", "affected": [')
    base = ["advisories", "match", "--os-release", str(os_release)]

    bad_record = upkeep(
        *base, "--dpkg-status", str(status), "--advisories", str(broken), data_dir=data_dir
    )
    assert bad_record.returncode == 1 and "DSA-0000-1.json" in bad_record.stderr

    missing = upkeep(
        *base,
        "--dpkg-status",
        str(tmp_path / "nope"),
        "--advisories",
        str(debian),
        data_dir=data_dir,
    )
    assert missing.returncode == 1 and "nope" in missing.stderr

    rpm = tmp_path / "rpm.txt"
    rpm.write_text("bash\t0\t5.1.8\t9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm\n")
    wrong_family = upkeep(
        *base, "--rpm-query", str(rpm), "--advisories", str(debian), data_dir=data_dir
    )
    assert wrong_family.returncode == 1 and "Debian:12" in wrong_family.stderr

    two = upkeep(
        *base,
        "--dpkg-status",
        str(status),
        "--rpm-query",
        str(rpm),
        "--advisories",
        str(debian),
        data_dir=data_dir,
    )
    assert two.returncode == 2 and "exactly one" in two.stderr


def test_an_alpine_database_matches_by_origin_offline(data_dir: Path, tmp_path: Path) -> None:
    """A real Alpine 3.19 /lib/apk/db/installed (syft's test data): busybox-binsh comes from
    the origin busybox, which the record names; the same record for 3.18 never matches."""
    record = {
        "id": "ALPINE-CVE-2023-42363",
        "modified": "2024-01-01T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": "busybox"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}
                ],
            }
            for ecosystem, fixed in (("Alpine:v3.19", "1.36.1-r16"), ("Alpine:v3.18", "9.9-r0"))
        ],
    }
    path = tmp_path / "busybox.json"
    path.write_text(json.dumps(record))
    inventories = Path(__file__).parents[1] / "fixtures" / "advisories" / "inventories"
    done = upkeep(
        "advisories",
        "match",
        "--apk-installed",
        str(inventories / "alpine-3.19-apk-installed"),
        "--os-release",
        str(inventories / "alpine-3.19.os-release"),
        "--advisories",
        str(path),
        "--json",
        data_dir=data_dir,
    )
    assert done.returncode == 0, done.stderr
    found = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(m["package"], m["compared_name"], m["fixed_version"]) for m in found] == [
        ("busybox-binsh", "busybox", "1.36.1-r16")
    ]
    mixed = upkeep(
        "advisories",
        "match",
        "--apk-installed",
        str(inventories / "alpine-3.19-apk-installed"),
        "--os-release",
        str(inventories / "debian-12.os-release"),
        "--advisories",
        str(path),
        data_dir=data_dir,
    )
    assert mixed.returncode == 1
    assert "says Debian:12 (dpkg packages), but the inventory is an apk one" in mixed.stderr
