"""The inventory scan's output parsed (captured and hand-written outputs) and changes between
two inventories in each family's version order."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from upkeep.domain.advisories import Installed
from upkeep.domain.advisories.inventory import DPKG_QUERY_FORMAT, RPM_QUERY_FORMAT
from upkeep.domain.advisories.scan import (
    APK_DATABASE,
    APK_KERNELS_AWK,
    INVENTORY_COMMAND,
    Changed,
    changes,
    parse_scan,
)
from upkeep.domain.checks.base import ParseError

SCANS = Path(__file__).parent.parent / "fixtures" / "advisories" / "scans"


def scan_text(name: str) -> str:
    return (SCANS / name).read_text()


def test_the_command_quotes_the_fixed_query_formats() -> None:
    assert f"dpkg-query -W -f={shlex.quote(DPKG_QUERY_FORMAT)};" in INVENTORY_COMMAND
    assert f"rpm -qa --qf {shlex.quote(RPM_QUERY_FORMAT)};" in INVENTORY_COMMAND
    for marker in ("os-release", "uname-r", "kernels dpkg", "kernels rpm", "packages-dpkg"):
        assert f"echo '@@ {marker}'" in INVENTORY_COMMAND
    assert INVENTORY_COMMAND.endswith("echo '@@ end'")


def test_captured_debian_12_scan_reads_every_installed_package_with_its_source() -> None:
    text = scan_text("debian12.txt")
    scan = parse_scan(text)
    assert scan.platform.ecosystem == "Debian:12" and scan.platform.family == "dpkg"
    listed = text.split("@@ packages-dpkg\n")[1].split("@@ packages-rc")[0].splitlines()
    assert len(scan.packages) == sum(1 for line in listed if line.endswith("\tinstalled"))
    bash = next(p for p in scan.packages if p.name == "bash")
    assert bash.source == "bash" and bash.arch == "amd64"
    assert scan.running_kernel == text.split("@@ uname-r\n")[1].splitlines()[0]
    assert scan.installed_kernels == []  # this VM's kernel is not a Debian package
    assert scan.reboot_required is None and "cannot tell" in scan.reboot_detail


def test_rpm_scan_keeps_epochs_drops_signing_keys_and_reads_needs_restarting() -> None:
    scan = parse_scan(scan_text("almalinux9.txt"))
    assert scan.platform.ecosystem == "AlmaLinux:9" and scan.platform.family == "rpm"
    by_name = {p.name: p for p in scan.packages}
    assert by_name["openssl"].version == "1:3.0.7-27.el9"
    assert "gpg-pubkey" not in by_name
    assert scan.installed_kernels == [
        "5.14.0-427.13.1.el9_4.x86_64",
        "5.14.0-427.22.1.el9_4.x86_64",
    ]
    assert scan.reboot_required is True
    assert scan.reboot_detail.startswith("needs-restarting -r exited 1: Core libraries")


def test_reboot_required_marker_names_its_packages_once_and_kernels_skip_meta_and_removed() -> None:
    scan = parse_scan(scan_text("ubuntu2204-reboot.txt"))
    assert scan.platform.ecosystem == "Ubuntu:22.04:LTS"
    assert scan.installed_kernels == ["5.15.0-105-generic", "5.15.0-107-generic"]
    assert scan.reboot_required is True
    assert scan.reboot_detail == (
        "/var/run/reboot-required: *** System restart required *** "
        "(packages: linux-image-5.15.0-107-generic, linux-base)"
    )
    assert "linux-image-5.15.0-91-generic" not in {p.name for p in scan.packages}


def _with_reboot(section: str) -> str:
    head = scan_text("almalinux9.txt").split("@@ reboot ")[0]
    return head + section + "@@ end\n"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("@@ reboot needs-restarting 0\nNo core libraries or services have been updated.\n", False),
        ("@@ reboot needs-restarting 1\n", True),
        ("@@ reboot needs-restarting 2\nError: not permitted\n", None),
        ("@@ reboot none\n", False),
        ("@@ reboot unknown\n", None),
    ],
)
def test_reboot_answer_follows_the_marker_and_exit_code(
    section: str, expected: bool | None
) -> None:
    assert parse_scan(_with_reboot(section)).reboot_required is expected


def test_unknown_reboot_notes_a_running_kernel_that_is_no_longer_installed() -> None:
    text = _with_reboot("@@ reboot unknown\n").replace(
        "5.14.0-427.13.1.el9_4.x86_64\n@@ kernels", "5.14.0-362.8.1.el9_3.x86_64\n@@ kernels"
    )
    detail = parse_scan(text).reboot_detail
    assert "running kernel 5.14.0-362.8.1.el9_3.x86_64 is not among the installed" in detail


def test_truncated_output_is_refused() -> None:
    text = scan_text("debian12.txt")
    cut = text[: len(text) // 2]
    with pytest.raises(ParseError, match="before '@@ end'"):
        parse_scan(cut)


def test_a_failed_package_listing_is_refused_naming_the_section() -> None:
    text = scan_text("debian12.txt").replace("@@ packages-rc 0", "@@ packages-rc 2")
    with pytest.raises(ParseError, match="'packages-dpkg': the listing exited 2"):
        parse_scan(text)


def test_packages_of_another_family_than_os_release_names_are_refused() -> None:
    debian = scan_text("debian12.txt")
    alma_release = scan_text("almalinux9.txt").split("@@ uname-r")[0]
    text = alma_release + "@@ uname-r" + debian.split("@@ uname-r")[1]
    with pytest.raises(ParseError, match="AlmaLinux:9 uses rpm packages.*dpkg"):
        parse_scan(text)


def test_a_host_without_dpkg_rpm_or_apk_is_refused_naming_the_section() -> None:
    text = (
        "@@ os-release\nID=alpine\nVERSION_ID=3.19.1\n@@ uname-r\n6.6.14-0-lts\n"
        "@@ packages-none\n@@ reboot unknown\n@@ end\n"
    )
    with pytest.raises(ParseError, match="'packages-none': Alpine:v3.19 has neither"):
        parse_scan(text)


# Alpine: alpine319.txt is the apk branch's output built from a real apk database (see the
# scans' README); the kernels section is what APK_KERNELS_AWK prints, run here with awk.

_KERNEL_BLOCKS = (
    "P:linux-lts\nV:6.6.14-r0\nA:x86_64\no:linux-lts\n\n"
    "P:linux-lts\nV:6.6.16-r0\nA:x86_64\n\n"
    "P:linux-firmware-none\nV:20231111-r1\nA:x86_64\no:linux-firmware\n\n"
    "P:linux-lts-dev\nV:6.6.16-r0\nA:x86_64\no:linux-lts\n\n"
    "P:linux-virt\nV:6.6.16-r0\nA:x86_64\no:linux-lts\n\n"
)


def test_the_command_reads_apk_s_database_after_dpkg_and_rpm() -> None:
    apk = INVENTORY_COMMAND.index("elif command -v apk")
    assert INVENTORY_COMMAND.index("command -v rpm") < apk
    assert f"awk {shlex.quote(APK_KERNELS_AWK)} {APK_DATABASE} 2>/dev/null;" in INVENTORY_COMMAND
    branch = INVENTORY_COMMAND[apk : INVENTORY_COMMAND.index("packages-none")]
    assert f"echo '@@ packages-apk'; cat {APK_DATABASE}; echo \"@@ packages-rc $?\";" in branch


def test_alpine_scan_reads_the_apk_database_with_origins() -> None:
    scan = parse_scan(scan_text("alpine319.txt"))
    assert scan.platform.ecosystem == "Alpine:v3.19" and scan.platform.family == "apk"
    packages = {p.name: p for p in scan.packages}
    assert sorted(packages) == ["bash", "busybox-binsh", "musl", "readline"]
    assert packages["musl"].version == "1.2.4_git20230717-r4"
    assert packages["busybox-binsh"].source_name == "busybox"
    assert scan.running_kernel == "6.6.14-0-lts"
    assert scan.installed_kernels == []  # a container's database: no kernel package
    assert scan.reboot_required is None
    assert "cannot tell" in scan.reboot_detail


@pytest.mark.parametrize("awk", ["awk", "busybox"])
def test_the_apk_kernels_awk_prints_kernel_packages_as_uname_r(awk: str, tmp_path: Path) -> None:
    if shutil.which(awk) is None:
        pytest.skip(f"no {awk} here")
    database = tmp_path / "installed"
    real = (SCANS.parent / "inventories" / "alpine-3.19-apk-installed").read_text()
    database.write_text(_KERNEL_BLOCKS + real)
    argv = ["busybox", "awk"] if awk == "busybox" else ["awk"]
    printed = subprocess.run(
        [*argv, APK_KERNELS_AWK, str(database)], capture_output=True, text=True, check=True
    ).stdout
    assert printed.splitlines() == [
        "linux-lts\t6.6.14-r0",
        "linux-lts\t6.6.16-r0",
        "linux-firmware-none\t20231111-r1",
        "linux-lts-dev\t6.6.16-r0",
        "linux-virt\t6.6.16-r0",
    ]
    text = scan_text("alpine319.txt").replace("@@ kernels apk\n", f"@@ kernels apk\n{printed}")
    scan = parse_scan(text)
    assert scan.installed_kernels == ["6.6.14-0-lts", "6.6.16-0-lts", "6.6.16-0-virt"]
    assert scan.reboot_required is None  # the running 6.6.14-0-lts is still installed


def test_alpine_running_kernel_not_installed_any_more_is_said() -> None:
    kernels = "linux-lts\t6.6.16-r0\nlinux-firmware-none\t20231111-r1\n"
    text = scan_text("alpine319.txt").replace("@@ kernels apk\n", f"@@ kernels apk\n{kernels}")
    scan = parse_scan(text)
    assert scan.installed_kernels == ["6.6.16-0-lts"]
    assert scan.reboot_required is None
    assert "the running kernel 6.6.14-0-lts is not among the installed ones (6.6.16-0-lts)" in (
        scan.reboot_detail
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("@@ packages-rc 0", "@@ packages-rc 1"), "'packages-apk': the listing exited 1"),
        (("\nP:musl\n", "\nmusl\n"), "'packages-apk': line .*not an apk database"),
        (("ID=alpine", "ID=debian"), "Debian:3 uses dpkg packages.*answered with apk"),
        (
            ("@@ kernels apk\n", "@@ kernels apk\nlinux-lts\t6.6.14\n"),
            "'kernels' line 1: linux-lts version '6.6.14'",
        ),
    ],
)
def test_garbled_alpine_scans_are_refused_naming_the_section(
    change: tuple[str, str], message: str
) -> None:
    text = scan_text("alpine319.txt").replace(*change, 1)
    with pytest.raises(ParseError, match=message):
        parse_scan(text)


def test_an_os_release_without_ecosystem_is_refused_naming_the_section() -> None:
    text = scan_text("almalinux9.txt").replace('ID="almalinux"', 'ID="centos"')
    with pytest.raises(ParseError, match="section 'os-release'.*'centos'"):
        parse_scan(text)


def test_a_garbled_package_line_is_refused_naming_the_section_and_line() -> None:
    text = scan_text("debian12.txt").replace("\tinstalled\n", "\n", 1)
    with pytest.raises(ParseError, match="'packages-dpkg': line 1: 4 tab-separated"):
        parse_scan(text)


# -- changes -----------------------------------------------------------------------------------


def deb(name: str, version: str, arch: str = "amd64") -> Installed:
    return Installed(name=name, version=version, arch=arch)


def test_changes_sorts_added_removed_upgraded_and_downgraded_by_name() -> None:
    old = [deb("zlib1g", "1:1.2.13-1"), deb("bash", "5.2.15-2+b2"), deb("curl", "7.88.1-10")]
    new = [deb("bash", "5.2.15-2+b8"), deb("zlib1g", "1:1.2.11-1"), deb("apt", "2.6.1")]
    found = changes(old, new, "dpkg")
    assert found.upgraded == [Changed(deb("bash", "5.2.15-2+b2"), deb("bash", "5.2.15-2+b8"))]
    assert found.downgraded == [Changed(deb("zlib1g", "1:1.2.13-1"), deb("zlib1g", "1:1.2.11-1"))]
    assert found.added == [deb("apt", "2.6.1")]
    assert found.removed == [deb("curl", "7.88.1-10")]
    assert found.lines() == [
        "^ bash:amd64 5.2.15-2+b2 -> 5.2.15-2+b8",
        "v zlib1g:amd64 1:1.2.13-1 -> 1:1.2.11-1",
        "+ apt:amd64 2.6.1",
        "- curl:amd64 7.88.1-10",
    ]


def test_a_tilde_release_candidate_is_below_the_release() -> None:
    up = changes([deb("libssl3", "3.0.19-1~deb12u2")], [deb("libssl3", "3.0.19-1")], "dpkg")
    assert len(up.upgraded) == 1 and not up.downgraded
    down = changes([deb("libssl3", "3.0.19-1")], [deb("libssl3", "3.0.19-1~deb12u2")], "dpkg")
    assert len(down.downgraded) == 1 and not down.upgraded


def test_an_epoch_outranks_a_higher_version() -> None:
    old = [Installed("openssl", "3.2.2-1.el9", "x86_64")]
    new = [Installed("openssl", "1:3.0.7-27.el9", "x86_64")]
    found = changes(old, new, "rpm")
    assert found.upgraded == [Changed(old[0], new[0])] and not found.downgraded


def test_each_architecture_is_its_own_package() -> None:
    old = [deb("libc6", "2.36-9", "amd64"), deb("libc6", "2.36-9", "i386")]
    new = [deb("libc6", "2.36-9+deb12u4", "amd64"), deb("libc6", "2.36-9", "i386")]
    found = changes(old, new, "dpkg")
    assert [c.new.arch for c in found.upgraded] == ["amd64"]
    assert not (found.added or found.removed or found.downgraded)


def test_versions_that_order_equal_are_no_change() -> None:
    found = changes(
        [Installed("tzdata", "0:2024a-1.el9")], [Installed("tzdata", "2024a-1.el9")], "rpm"
    )
    assert found.empty


def test_kernels_installed_side_by_side_are_added_and_removed_not_paired() -> None:
    k = lambda v: Installed("kernel-core", v, "x86_64")  # noqa: E731
    old = [k("5.14.0-427.13.1.el9_4"), k("5.14.0-362.8.1.el9_3")]
    new = [k("5.14.0-427.22.1.el9_4"), k("5.14.0-427.13.1.el9_4")]
    found = changes(old, new, "rpm")
    assert found.added == [k("5.14.0-427.22.1.el9_4")]
    assert found.removed == [k("5.14.0-362.8.1.el9_3")]
    assert not (found.upgraded or found.downgraded)


def test_the_same_inventory_twice_has_no_changes() -> None:
    packages = parse_scan(scan_text("debian12.txt")).packages
    assert changes(packages, list(reversed(packages)), "dpkg").empty
