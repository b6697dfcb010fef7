"""Inventory parsers on captured output (tests/fixtures/advisories/inventories/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from upkeep.domain.advisories import Installed, Platform
from upkeep.domain.advisories.inventory import (
    DPKG_QUERY_FORMAT,
    RPM_QUERY_FORMAT,
    UnsupportedPlatform,
    parse_apk_installed,
    parse_dpkg_query,
    parse_dpkg_status,
    parse_os_release,
    parse_rpm_query,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "advisories" / "inventories"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def by_name(packages: list[Installed]) -> dict[str, Installed]:
    return {p.name: p for p in packages}


# /var/lib/dpkg/status


def test_dpkg_status_keeps_installed_and_triggers_pending_and_drops_unpacked() -> None:
    packages = by_name(parse_dpkg_status(fixture("debian-12-dpkg-status")))
    assert "rpm" not in packages  # install ok unpacked
    assert "man-db" in packages  # install ok triggers-pending: configured, files in place
    assert len(packages) == 17


def test_dpkg_status_reads_a_binnmu_source_version() -> None:
    bash = by_name(parse_dpkg_status(fixture("debian-12-dpkg-status")))["bash"]
    assert bash == Installed(
        name="bash", version="5.2.15-2+b8", arch="amd64", source="bash", source_version="5.2.15-2"
    )
    assert bash.source_ver == "5.2.15-2"


def test_dpkg_status_reads_an_epoch_only_on_the_binary() -> None:
    bsdutils = by_name(parse_dpkg_status(fixture("debian-12-dpkg-status")))["bsdutils"]
    assert bsdutils.version == "1:2.38.1-5+deb12u3"
    assert (bsdutils.source_name, bsdutils.source_ver) == ("util-linux", "2.38.1-5+deb12u3")


def test_dpkg_status_source_without_version_uses_the_binary_version() -> None:
    packages = by_name(parse_dpkg_status(fixture("debian-12-dpkg-status")))
    libssl = packages["libssl3"]
    assert (libssl.source, libssl.source_version) == ("openssl", "")
    assert (libssl.source_name, libssl.source_ver) == ("openssl", "3.0.19-1~deb12u2")
    openssl = packages["openssl"]  # no Source field: the source is the binary itself
    assert (openssl.source_name, openssl.source_ver) == ("openssl", "3.0.19-1~deb12u2")


def test_dpkg_status_truncated_mid_stanza_raises_naming_it() -> None:
    text = fixture("debian-12-dpkg-status")
    start = text.index("Package: dpkg\n")
    cut = text.index("\nVersion:", start) + 1  # the copy ends before dpkg's Version line
    with pytest.raises(ValueError, match=r"Package dpkg\): no Version"):
        parse_dpkg_status(text[:cut])


def test_dpkg_status_stanza_without_package_raises() -> None:
    with pytest.raises(ValueError, match="line 1: no Package"):
        parse_dpkg_status("Status: install ok installed\nVersion: 1.0\n")


def test_dpkg_available_file_is_refused_for_lack_of_status() -> None:
    with pytest.raises(ValueError, match=r"Package bash\): no Status"):
        parse_dpkg_status("Package: bash\nVersion: 5.2.15-2+b8\n")


def test_dpkg_status_garbled_line_raises_naming_the_line() -> None:
    with pytest.raises(ValueError, match="line 2: not a 'Field: value' line"):
        parse_dpkg_status("Package: bash\nthis is not deb822\n")


def test_dpkg_status_with_crlf_line_ends_reads_the_same() -> None:
    text = fixture("debian-12-dpkg-status")
    assert parse_dpkg_status(text.replace("\n", "\r\n")) == parse_dpkg_status(text)


# dpkg-query


def test_dpkg_query_format_is_the_documented_one() -> None:
    assert DPKG_QUERY_FORMAT in (parse_dpkg_query.__doc__ or "")


def test_dpkg_query_reads_captured_output() -> None:
    packages = by_name(parse_dpkg_query(fixture("debian-12-dpkg-query.tsv")))
    assert "vim-tiny" not in packages  # known to dpkg, not-installed, empty version
    assert len(packages) == 9
    assert packages["bash"] == Installed("bash", "5.2.15-2+b8", "amd64", "bash", "5.2.15-2")
    assert packages["adduser"] == Installed("adduser", "3.134", "all", "", "")
    assert packages["zlib1g"].source_name == "zlib"
    assert packages["zlib1g"].source_ver == "1:1.2.13.dfsg-1"


def test_dpkg_query_agrees_with_dpkg_status_on_the_same_packages() -> None:
    query = by_name(parse_dpkg_query(fixture("debian-12-dpkg-query.tsv")))
    status = by_name(parse_dpkg_status(fixture("debian-12-dpkg-status")))
    for name in ("bash", "bsdutils", "libc6", "libssl3", "openssh-client", "openssl", "zlib1g"):
        assert query[name] == status[name]


def test_dpkg_query_wrong_column_count_raises_naming_the_line() -> None:
    text = "bash\t5.2.15-2+b8\tamd64\tbash (5.2.15-2)\tinstalled\nlibc6\t2.36-9+deb12u14\n"
    with pytest.raises(ValueError, match="line 2: 2 tab-separated columns, expected 5"):
        parse_dpkg_query(text)


def test_dpkg_query_garbled_source_raises() -> None:
    with pytest.raises(ValueError, match=r"line 1 \(Package bash\): Source"):
        parse_dpkg_query("bash\t5.2.15-2+b8\tamd64\tbash (5.2.15-2\tinstalled\n")


# rpm -qa --qf


def test_rpm_query_format_is_the_documented_one() -> None:
    assert RPM_QUERY_FORMAT in (parse_rpm_query.__doc__ or "")


def test_rpm_query_skips_gpg_pubkey() -> None:
    packages = by_name(parse_rpm_query(fixture("almalinux-9-rpm-query.tsv")))
    assert "gpg-pubkey" not in packages
    assert len(packages) == 13


def test_rpm_query_puts_an_epoch_above_zero_in_the_version() -> None:
    packages = by_name(parse_rpm_query(fixture("almalinux-9-rpm-query.tsv")))
    assert packages["openssl-libs"].version == "1:3.0.7-27.el9"
    assert packages["bind-libs"].version == "32:9.16.23-15.el9"
    assert packages["glibc"].version == "2.34-100.el9_4.2"


def test_rpm_query_source_is_the_source_rpm_name() -> None:
    packages = by_name(parse_rpm_query(fixture("almalinux-9-rpm-query.tsv")))
    assert packages["glibc-common"] == Installed(
        "glibc-common", "2.34-100.el9_4.2", "x86_64", "glibc", ""
    )
    assert packages["python3-libs"].source == "python3.9"
    assert packages["kernel-core"].source == "kernel"
    # a subpackage with its own version keeps the source RPM's V-R
    errno = packages["perl-Errno"]
    assert (errno.version, errno.source, errno.source_version) == (
        "1.30-481.el9",
        "perl",
        "5.32.1-481.el9",
    )


def test_rpm_query_accepts_epoch_none_and_none_columns() -> None:
    [package] = parse_rpm_query("bash\t(none)\t5.1.8\t9.el9\t(none)\t(none)\n")
    assert package == Installed("bash", "5.1.8-9.el9", "", "", "")


def test_plain_rpm_qa_output_is_refused_naming_the_line() -> None:
    with pytest.raises(ValueError, match="line 1: 1 tab-separated columns, expected 6"):
        parse_rpm_query("glibc-2.34-100.el9_4.2.x86_64\n")


def test_rpm_query_bad_epoch_and_bad_source_rpm_raise() -> None:
    with pytest.raises(ValueError, match=r"line 1 \(package bash\): epoch 'x'"):
        parse_rpm_query("bash\tx\t5.1.8\t9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm\n")
    with pytest.raises(ValueError, match=r"line 1 \(package bash\): source RPM 'bash.rpm'"):
        parse_rpm_query("bash\t0\t5.1.8\t9.el9\tx86_64\tbash.rpm\n")


# /etc/os-release


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("debian-12.os-release", Platform("Debian:12", "dpkg", "Debian GNU/Linux 12 (bookworm)")),
        ("ubuntu-22.04.os-release", Platform("Ubuntu:22.04:LTS", "dpkg", "Ubuntu 22.04.4 LTS")),
        ("ubuntu-25.04.os-release", Platform("Ubuntu:25.04", "dpkg", "Ubuntu 25.04")),
        (
            "almalinux-9.os-release",
            Platform("AlmaLinux:9", "rpm", "AlmaLinux 9.4 (Seafoam Ocelot)"),
        ),
        ("rocky-9.os-release", Platform("Rocky Linux:9", "rpm", "Rocky Linux 9.3 (Blue Onyx)")),
        (
            "rhel-9.os-release",
            Platform("Red Hat:9", "rpm", "Red Hat Enterprise Linux 9.6 (Plow)"),
        ),
        ("alpine-3.19.os-release", Platform("Alpine:v3.19", "apk", "Alpine Linux v3.19")),
    ],
)
def test_os_release_maps_to_the_osv_ecosystem(name: str, expected: Platform) -> None:
    assert parse_os_release(fixture(name)) == expected


def test_a_derivative_is_refused_naming_its_id_and_id_like() -> None:
    with pytest.raises(UnsupportedPlatform, match=r"ID 'centos' \(ID_LIKE 'rhel fedora'\)"):
        parse_os_release(fixture("centos-stream-9.os-release"))


def test_debian_testing_without_version_id_is_refused() -> None:
    text = 'PRETTY_NAME="Debian GNU/Linux trixie/sid"\nID=debian\nVERSION_CODENAME=trixie\n'
    with pytest.raises(ValueError, match="ID 'debian' has VERSION_ID ''"):
        parse_os_release(text)


def test_os_release_garbled_line_raises_naming_it() -> None:
    with pytest.raises(ValueError, match="os-release line 2"):
        parse_os_release('ID=debian\nVERSION_ID="12\n')
    with pytest.raises(ValueError, match="os-release line 1: not KEY=value"):
        parse_os_release("this is not os-release\n")


def test_os_release_without_id_is_refused_as_linux() -> None:
    with pytest.raises(UnsupportedPlatform, match="ID 'linux'"):
        parse_os_release('NAME="Linux"\n')


# /lib/apk/db/installed (real databases from syft's test data, see the fixtures' README)


def test_apk_installed_reads_name_version_arch_and_origin() -> None:
    packages = by_name(parse_apk_installed(fixture("alpine-3.16-apk-installed")))
    assert len(packages) == 14
    # subpackages name their origin (the aport), whose version they share
    assert packages["libssl1.1"] == Installed("libssl1.1", "1.1.1q-r0", "x86_64", "openssl")
    assert packages["libcrypto1.1"].source_name == "openssl"
    assert packages["ssl_client"].source_name == "busybox"
    assert packages["ssl_client"].source_ver == "1.35.0-r17"
    # a package that is its own origin keeps no separate source
    assert packages["musl"] == Installed("musl", "1.2.3-r0", "x86_64")


def test_apk_installed_of_alpine_3_19_with_a_git_snapshot_version() -> None:
    packages = by_name(parse_apk_installed(fixture("alpine-3.19-apk-installed")))
    assert sorted(packages) == ["bash", "busybox-binsh", "musl", "readline"]
    assert packages["musl"].version == "1.2.4_git20230717-r4"
    assert packages["busybox-binsh"].source_name == "busybox"


def test_apk_installed_without_a_trailing_blank_line_keeps_the_last_block() -> None:
    text = fixture("alpine-3.16-apk-installed").rstrip("\n")
    assert len(parse_apk_installed(text)) == 14


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # syft's "corrupt" database starts with this line
        ("This is a corrupt db\n\nP:musl\nV:1.2.3-r0\n", "line 1: not an apk database"),
        ("P:musl\nA:x86_64\n", r"block at line 1 \(P:musl\): no V:"),
        ("P:musl\nV:1.2.3-r0\n\nV:1.0-r0\nA:x86_64\n", "block at line 4: no P:"),
        ("P:musl\nV:1.2.3-r0\nV:1.2.4-r0\n", "line 3: a second V: line"),
    ],
)
def test_apk_installed_garbled_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_apk_installed(text)


def test_apk_installed_truncated_mid_block_is_refused() -> None:
    text = fixture("alpine-3.16-apk-installed")
    cut = text[: text.index("V:1.1.1q-r0")]  # the libcrypto1.1 block has only its P: line
    with pytest.raises(ValueError, match=r"\(P:libcrypto1.1\): no V:"):
        parse_apk_installed(cut)
