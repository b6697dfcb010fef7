"""The patch cycle's package-manager commands: their exact text, the refusal of values that are
not package names or versions, and their parsers on captured apt output (dnf's rows are
written from the query format; see the fixture directory's README)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from upkeep.domain.advisories.packages import (
    DNF_QUERY_FORMAT,
    candidates_command,
    install_command,
    install_failure,
    parse_candidates,
)
from upkeep.domain.advisories.versions import UnsupportedFamily

PACKAGES = Path(__file__).parent.parent / "fixtures" / "advisories" / "packages"
AS_ROOT = 'if [ "$(id -u)" -eq 0 ]; then set --; else set -- sudo -n; fi; "$@" '
APT_INSTALL = (
    "env LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
    "-o DPkg::Lock::Timeout=60 "
    "-o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef"
)


def fixture(name: str) -> str:
    return (PACKAGES / name).read_text()


# -- the commands' text ------------------------------------------------------------------------


def test_dpkg_candidates_command_is_apt_cache_policy_of_the_names() -> None:
    # Every character of the name grammar is shell-safe: shlex.quote leaves them bare.
    assert candidates_command("dpkg", ["bash", "libstdc++6", "openssl"]) == (
        "LC_ALL=C apt-cache policy -- bash libstdc++6 openssl"
    )


def test_rpm_candidates_command_is_one_repoquery_in_the_fixed_format_then_its_exit_status() -> None:
    assert candidates_command("rpm", ["bash", "NetworkManager", "perl-Errno"]) == (
        "LC_ALL=C dnf -q repoquery --latest-limit=1 "
        "--qf '%{name}\\t%{epoch}\\t%{version}\\t%{release}\\t%{arch}\\n' "
        "-- bash NetworkManager perl-Errno; "
        'upkeep_rc=$?; echo "@@ end $upkeep_rc"; exit $upkeep_rc'
    )
    assert f"--qf '{DNF_QUERY_FORMAT}'" in candidates_command("rpm", ["bash"])


def test_dpkg_install_command_installs_exactly_the_versions_as_root_without_prompts() -> None:
    command = install_command("dpkg", [("openssl", "3.0.22-1~deb12u2"), ("libssl3", "1:3.0-1")])
    assert command == (f"{AS_ROOT}{APT_INSTALL} -- 'openssl=3.0.22-1~deb12u2' libssl3=1:3.0-1")
    assert "update" not in command


def test_dpkg_downgrade_adds_allow_downgrades() -> None:
    assert install_command("dpkg", [("bash", "5.2.15-2+b8")], downgrade=True) == (
        f"{AS_ROOT}{APT_INSTALL} --allow-downgrades -- bash=5.2.15-2+b8"
    )


def test_rpm_install_and_downgrade_name_each_package_with_its_epoch_version_release() -> None:
    items = [("openssl", "1:3.0.7-28.el9_4"), ("bash", "5.1.8-9.el9")]
    assert install_command("rpm", items) == (
        f"{AS_ROOT}env LC_ALL=C dnf -y install -- openssl-1:3.0.7-28.el9_4 bash-5.1.8-9.el9"
    )
    assert install_command("rpm", items, downgrade=True) == (
        f"{AS_ROOT}env LC_ALL=C dnf -y downgrade -- openssl-1:3.0.7-28.el9_4 bash-5.1.8-9.el9"
    )


# -- apk (Alpine): outputs written from apk-tools' source, not captured (packages/README.md) --


def test_apk_candidates_command_is_apk_policy() -> None:
    assert candidates_command("apk", ["musl", "libssl3"]) == "apk policy -- musl libssl3"


def test_apk_candidates_are_the_highest_installed_or_untagged_repository_version() -> None:
    found = parse_candidates(
        "apk", fixture("apk-policy.txt"), ["musl", "libssl3", "no-such-package"]
    )
    assert found == {
        # 1.2.5-r0 is offered only by the @edge-tagged repository: not a candidate
        "musl": "1.2.4_git20230717-r5",
        # installed, offered by no repository any more: the installed version
        "libssl3": "3.1.4-r5",
        # apk policy prints nothing for a name it does not know
        "no-such-package": None,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  1.2.4-r0:\n    lib/apk/db/installed\n", "line 1: not apk policy output"),
        ("musl policy:\n  1.2.4-r0:\n  garbage\n", "line 3: not apk policy output"),
        ("musl policy:\n  1.2.4_foo-r0:\n", "line 2: musl: .*malformed apk version"),
    ],
)
def test_apk_policy_garbled_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_candidates("apk", text, ["musl"])


def test_apk_install_pins_each_version_as_root_and_downgrades_the_same_way() -> None:
    items = [("musl", "1.2.4_git20230717-r5"), ("libssl3", "3.1.4-r5")]
    expected = f"{AS_ROOT}apk add --no-interactive -- musl=1.2.4_git20230717-r5 libssl3=3.1.4-r5"
    assert install_command("apk", items) == expected
    assert install_command("apk", items, downgrade=True) == expected


@pytest.mark.parametrize(
    "item", [("musl", "1.2.4-r0;reboot"), ("musl", "v1.2"), ("-musl", "1.2.4-r0"), ("a b", "1")]
)
def test_apk_install_refuses_what_is_not_a_name_or_version(item: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        install_command("apk", [item])


def test_apk_install_failure_reads_apk_s_error_and_the_lines_under_it() -> None:
    stderr = fixture("apk-add-missing-version.stderr")
    assert install_failure("", stderr, 1) == (
        "unable to select packages: musl-1.2.4_git20230717-r99: "
        "breaks: world[musl=1.2.4_git20230717-r99]"
    )
    assert install_failure("", "ERROR: musl-1.2.4-r5: temporary error (try again later)\n", 1) == (
        "musl-1.2.4-r5: temporary error (try again later)"
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: candidates_command("pacman", ["musl"]),  # type: ignore[arg-type]
        lambda: install_command("pacman", [("musl", "1.2.4-r2")]),  # type: ignore[arg-type]
        lambda: parse_candidates("pacman", "", ["musl"]),  # type: ignore[arg-type]
    ],
)
def test_an_unknown_family_is_not_supported(call) -> None:
    with pytest.raises(UnsupportedFamily, match="pacman"):
        call()


# -- refusing what is not a package name or version --------------------------------------------


@pytest.mark.parametrize(
    ("family", "name"),
    [
        ("dpkg", "a;rm -rf /"),
        ("dpkg", "-o"),
        ("dpkg", "--purge"),
        ("dpkg", "Bash"),  # Debian names are lower case
        ("dpkg", "$(reboot)"),
        ("dpkg", "bash\nreboot"),
        ("dpkg", ""),
        ("rpm", "a;rm -rf /"),
        ("rpm", "-x"),
        ("rpm", "bash*"),
        ("rpm", "a b"),
    ],
)
def test_a_name_outside_the_grammar_is_refused_naming_it(family, name) -> None:
    with pytest.raises(ValueError, match="package name") as refused:
        install_command(family, [(name, "1.0-1")])
    assert repr(name) in str(refused.value)
    with pytest.raises(ValueError, match="package name"):
        candidates_command(family, ["bash", name])


@pytest.mark.parametrize(
    ("family", "version"),
    [
        ("dpkg", "1.0;reboot"),
        ("dpkg", "-1.0"),
        ("dpkg", "1.0 -o"),
        ("dpkg", "`id`"),
        ("dpkg", ""),
        ("dpkg", "1.0-"),  # dpkg's own grammar: an empty revision
        ("dpkg", "1.0_1"),  # '_' is in the shell-safe set but not in a dpkg version
        ("rpm", "1.0-1-2"),  # a release may not contain '-'
        ("rpm", "x:1.0-1"),
        ("rpm", "1.0|sh"),
    ],
)
def test_a_version_outside_the_grammar_is_refused_naming_it(family, version) -> None:
    with pytest.raises(ValueError) as refused:
        install_command(family, [("bash", version)])
    assert repr(version) in str(refused.value)


def test_rpm_names_may_have_upper_case_and_underscores_dpkg_names_may_not() -> None:
    assert "perl-IO_Compress-2.102-4.el9" in install_command(
        "rpm", [("perl-IO_Compress", "2.102-4.el9")]
    )
    with pytest.raises(ValueError, match="perl-IO_Compress"):
        install_command("dpkg", [("perl-IO_Compress", "2.102-4")])


def test_nothing_to_install_or_to_ask_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing to install"):
        install_command("dpkg", [])
    with pytest.raises(ValueError, match="no package names"):
        candidates_command("dpkg", [])


# -- the install command under a POSIX shell ---------------------------------------------------


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize(("uid", "via_sudo"), [("0", False), ("1000", True)])
def test_install_command_runs_under_sh_as_root_or_through_sudo_n(
    tmp_path: Path, uid: str, via_sudo: bool
) -> None:
    """/bin/sh (dash on Debian) runs the command; stubs for id, sudo and apt-get record what
    they were given, one argument a line."""
    stub(tmp_path, "id", f"echo {uid}")
    stub(tmp_path, "sudo", 'echo "sudo $1" >> "$UPKEEP_LOG"; shift; exec "$@"')
    stub(
        tmp_path,
        "apt-get",
        'echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND LC_ALL=$LC_ALL" >> "$UPKEEP_LOG"; '
        'for a in "$@"; do echo "$a" >> "$UPKEEP_LOG"; done',
    )
    log = tmp_path / "log"
    command = install_command(
        "dpkg", [("openssl", "3.0.22-1~deb12u2"), ("libssl3", "3.0.22-1~deb12u2")], downgrade=True
    )
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "UPKEEP_LOG": str(log)}
    done = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    assert lines[: 1 + via_sudo] == (["sudo -n"] if via_sudo else []) + [
        "DEBIAN_FRONTEND=noninteractive LC_ALL=C"
    ]
    assert lines[1 + via_sudo :] == [
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "DPkg::Lock::Timeout=60",
        "-o",
        "Dpkg::Options::=--force-confold",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "--allow-downgrades",
        "--",
        "openssl=3.0.22-1~deb12u2",
        "libssl3=3.0.22-1~deb12u2",
    ]


# -- the candidates parsed ---------------------------------------------------------------------


def test_captured_apt_cache_policy_gives_each_candidate_and_none_for_an_unknown_name() -> None:
    names = ["bash", "openssl", "no-such-package-xyz"]
    assert parse_candidates("dpkg", fixture("apt-cache-policy.txt"), names) == {
        "bash": "5.2.15-2+b13",
        "openssl": "3.0.22-1~deb12u2",
        "no-such-package-xyz": None,
    }


def test_a_virtual_package_has_no_candidate() -> None:
    text = fixture("apt-cache-policy-virtual.txt")
    assert parse_candidates("dpkg", text, ["mail-transport-agent"]) == {
        "mail-transport-agent": None
    }


def test_apt_notices_of_unknown_names_are_read_as_no_candidate() -> None:
    text = "N: Unable to locate package no-such-package-xyz\n" + fixture("apt-cache-policy.txt")
    found = parse_candidates("dpkg", text, ["no-such-package-xyz", "bash"])
    assert found == {"no-such-package-xyz": None, "bash": "5.2.15-2+b13"}


def test_a_candidate_line_before_any_package_is_refused() -> None:
    with pytest.raises(ValueError, match="before any package"):
        parse_candidates("dpkg", "  Candidate: 1.0-1\n", ["bash"])


def test_a_truncated_apt_cache_policy_output_is_refused() -> None:
    text = fixture("apt-cache-policy.txt")
    cut = text[: text.index("openssl:") + len("openssl:\n  Installed: 3.0.19-1~deb12u2\n")]
    with pytest.raises(ValueError, match="'openssl' has no Candidate"):
        parse_candidates("dpkg", cut, ["bash", "openssl"])


def test_text_that_is_not_apt_cache_policy_output_is_refused() -> None:
    with pytest.raises(ValueError, match="not apt-cache policy output"):
        parse_candidates("dpkg", "Reading package lists...\n", ["bash"])
    with pytest.raises(ValueError, match="bash"):
        parse_candidates("dpkg", "bash:\n  Candidate: 1.0 -o\n", ["bash"])


def test_dnf_rows_give_epoch_version_release_the_highest_over_architectures() -> None:
    names = ["bash", "glibc", "openssl", "no-such-package"]
    assert parse_candidates("rpm", fixture("dnf-repoquery.txt"), names) == {
        "bash": "5.1.8-9.el9",
        "glibc": "2.34-100.el9_4.3",
        "openssl": "1:3.0.7-28.el9_4",
        "no-such-package": None,
    }


def test_dnf_source_rows_and_a_none_epoch_are_read_as_rpm_prints_them() -> None:
    text = "bash\t(none)\t5.1.8\t9.el9\tx86_64\nbash\t0\t9.9\t1.el9\tsrc\n@@ end 0\n"
    assert parse_candidates("rpm", text, ["bash"]) == {"bash": "5.1.8-9.el9"}


def test_dnf_output_without_its_end_or_after_a_failed_dnf_or_with_wrong_rows_is_refused() -> None:
    text = fixture("dnf-repoquery.txt")
    with pytest.raises(ValueError, match="truncated"):
        parse_candidates("rpm", text.replace("@@ end 0\n", ""), ["bash"])
    with pytest.raises(ValueError, match="exited 1"):
        parse_candidates("rpm", "@@ end 1\n", ["bash"])
    with pytest.raises(ValueError, match="line 1: not name, epoch"):
        parse_candidates("rpm", "bash-5.1.8-9.el9.x86_64\n@@ end 0\n", ["bash"])


# -- why an install failed ---------------------------------------------------------------------


def test_captured_apt_failure_names_the_package_and_version() -> None:
    stderr = fixture("apt-get-install-missing-version.stderr")
    stdout = fixture("apt-get-install-missing-version.stdout")
    assert install_failure(stdout, stderr, 100) == "Version '0.0-none' for 'bash' was not found"


def test_several_apt_errors_are_joined_on_one_line() -> None:
    stderr = (
        "E: Unable to locate package foo\n"
        "E: Version '9.9' for 'bar' was not found\n"
        "E: Unable to locate package foo\n"
    )
    assert install_failure("", stderr, 100) == (
        "Unable to locate package foo; Version '9.9' for 'bar' was not found"
    )


def test_dnf_errors_are_read_with_the_problem_after_a_bare_error_line() -> None:
    assert install_failure(
        "", "No match for argument: bash-9.9-9\nError: Unable to find a match: bash-9.9-9\n", 1
    ) == ("Unable to find a match: bash-9.9-9")
    stderr = "Error: \n Problem: conflicting requests\n  - nothing provides libfoo needed by bar\n"
    assert install_failure("", stderr, 1) == (
        "Problem: conflicting requests - nothing provides libfoo needed by bar"
    )


def test_without_error_lines_the_last_stderr_line_or_the_exit_status_is_given() -> None:
    assert install_failure("", "sudo: a password is required\n\n", 1) == (
        "sudo: a password is required"
    )
    assert install_failure("some output\n", "", 137) == "exited 137"
    assert install_failure("", "", -1) == "ended without an exit status"
    assert len(install_failure("", "E: " + "x" * 1000, 100)) == 300
