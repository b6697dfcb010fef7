"""Version order per package format and OSV range semantics, on real version pairs.

The pairs come from Debian's and AlmaLinux's advisories and this machine's dpkg database;
tests/e2e/test_version_order_tools.py checks the same order against dpkg and rpm themselves.
"""

from __future__ import annotations

import pytest

from upkeep.domain.advisories.versions import UnsupportedFamily, affected, compare

DPKG_ORDERED = [
    # tilde: a stable update sorts before the unstable upload it backports
    ("3.0.20-1~deb12u2", "3.0.20-1"),
    ("3.0.19-1~deb12u2", "3.0.20-1~deb12u1"),
    ("252.38-1~deb12u1", "252.38-1"),
    # epoch: any epoch beats a bigger upstream version without one
    ("9.9-1", "1:9.2p1-2+deb12u3"),
    ("1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u10"),
    ("1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u3"),
    # binNMU: the rebuild sorts after the source version it was built from
    ("5.2.15-2", "5.2.15-2+b8"),
    ("5.2.15-2+b8", "5.2.15-3"),
    # numbers compare as numbers, not strings
    ("2.36-9+deb12u9", "2.36-9+deb12u14"),
    ("1:115.12.0-1~deb12u1", "1:115.13.0-1~deb12u1"),
    ("115.13.0esr-1~deb12u1", "128.1.0esr-1~deb12u1"),
    ("2.4.1+dfsg+~2.4.0-2", "2.4.1+dfsg+~2.4.0-2+deb12u1"),
]

RPM_ORDERED = [
    # a z-stream release string sorts after its base
    ("2.34-100.el9", "2.34-100.el9_4.2"),
    ("2.34-100.el9_4.1", "2.34-100.el9_4.2"),
    ("3.6.16-8.el8_10.4", "3.6.16-8.el8_10.5"),
    # epoch: a version without one has epoch 0
    ("1.1.1k-9.el9", "1:1.1.1k-9.el9"),
    ("1:1.1.1k-9.el9", "1:3.0.7-27.el9"),
    ("9.16.23-5.el9_1", "32:9.16.23-5.el9_1"),
    ("4:5.32.1-474.module_el8.10.0+4162+0aac7c4c", "4:5.32.1-480.el8"),
    # tilde sorts before anything, caret after the base and before the next version
    ("1.0~rc1-1", "1.0-1"),
    ("1.0-1", "1.0^20240101-1"),
    ("1.0^20240101-1", "1.0.1-1"),
    ("1.0~rc1^git1-1", "1.0~rc2-1"),
    # letters sort before numbers in RPM: 8.7p1 < 8.7.1
    ("8.7p1-38.el9", "8.7.1-1.el9"),
]


@pytest.mark.parametrize(("lower", "higher"), DPKG_ORDERED)
def test_dpkg_order_of_real_pairs_both_ways(lower: str, higher: str) -> None:
    assert compare("dpkg", lower, higher) == -1
    assert compare("dpkg", higher, lower) == 1


@pytest.mark.parametrize(("lower", "higher"), RPM_ORDERED)
def test_rpm_order_of_real_pairs_both_ways(lower: str, higher: str) -> None:
    assert compare("rpm", lower, higher) == -1
    assert compare("rpm", higher, lower) == 1


def test_a_missing_epoch_equals_epoch_zero() -> None:
    assert compare("dpkg", "0:2.36-9", "2.36-9") == 0
    assert compare("rpm", "0:2.34-100.el9", "2.34-100.el9") == 0


def test_equal_versions_compare_equal() -> None:
    assert compare("dpkg", "1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u3") == 0
    assert compare("rpm", "2:8.2.2637-26.el9_8.4", "2:8.2.2637-26.el9_8.4") == 0


def test_string_order_would_be_wrong_on_these_pairs() -> None:
    # Guards the pairs above: each is one where a string comparison gives the wrong answer.
    assert "3.0.20-1~deb12u2" > "3.0.20-1"
    assert compare("dpkg", "3.0.20-1~deb12u2", "3.0.20-1") == -1
    assert "2.36-9+deb12u9" > "2.36-9+deb12u14"
    assert compare("dpkg", "2.36-9+deb12u9", "2.36-9+deb12u14") == -1


def test_an_unknown_family_is_refused_with_a_clear_error() -> None:
    # apk has its order now (tests/unit/test_advisory_versions_apk.py)
    with pytest.raises(UnsupportedFamily, match="no version order for package family 'pacman'"):
        compare("pacman", "1.0-1", "1.0-2")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("family", "version"),
    [
        ("dpkg", ""),
        ("dpkg", "1.0 2"),
        ("dpkg", "a:1.0"),
        ("dpkg", "1:"),
        ("dpkg", "1.0-"),
        ("dpkg", "1_0"),
        ("rpm", ""),
        ("rpm", "x:1.0-1"),
        ("rpm", "1.0-1-1"),
        ("rpm", "1.0-"),
        ("rpm", "1.0 -1"),
    ],
)
def test_a_malformed_version_raises_naming_it(family: str, version: str) -> None:
    with pytest.raises(ValueError, match=f"version {version!r}"):
        compare(family, version, "1.0-1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"version {version!r}"):
        compare(family, "1.0-1", version)  # type: ignore[arg-type]


# OSV ECOSYSTEM ranges


def test_introduced_zero_affects_everything_below_the_fix() -> None:
    fixed = ["1:9.2p1-2+deb12u3"]
    assert affected("dpkg", "1:9.2p1-2+deb12u2", ["0"], fixed)
    assert affected("dpkg", "1:7.9p1-10+deb10u2", ["0"], fixed)


def test_the_fixed_version_and_later_are_not_affected() -> None:
    fixed = ["1:9.2p1-2+deb12u3"]
    assert not affected("dpkg", "1:9.2p1-2+deb12u3", ["0"], fixed)
    assert not affected("dpkg", "1:9.2p1-2+deb12u10", ["0"], fixed)


def test_a_backport_below_the_fix_is_affected_and_the_tilde_fix_closes_it() -> None:
    # Debian's openssl fix 3.0.20-1~deb12u2 sorts before unstable's 3.0.20-1
    fixed = ["3.0.20-1~deb12u2"]
    assert affected("dpkg", "3.0.19-1~deb12u2", ["0"], fixed)
    assert not affected("dpkg", "3.0.20-1~deb12u2", ["0"], fixed)
    assert not affected("dpkg", "3.0.20-1", ["0"], fixed)


def test_no_fixed_event_affects_every_version_from_introduced() -> None:
    assert affected("rpm", "2.34-100.el9", ["2.34-1.el9"], [])
    assert affected("rpm", "99-1.el9", ["2.34-1.el9"], [])
    assert not affected("rpm", "2.33-9.el9", ["2.34-1.el9"], [])


def test_introduced_is_inclusive_and_fixed_exclusive() -> None:
    assert affected("rpm", "2.34-1.el9", ["2.34-1.el9"], ["2.34-100.el9_4.2"])
    assert affected("rpm", "2.34-100.el9", ["2.34-1.el9"], ["2.34-100.el9_4.2"])
    assert not affected("rpm", "2.34-100.el9_4.2", ["2.34-1.el9"], ["2.34-100.el9_4.2"])


def test_epoch_counts_in_ranges() -> None:
    # AlmaLinux fixes name no epoch; an installed 1:... is past any epoch-0 fix
    assert not affected("rpm", "1:3.0.7-27.el9", ["0"], ["3.0.7-28.el9"])
    assert affected("rpm", "1:3.0.7-27.el9", ["0"], ["1:3.0.7-28.el9"])


def test_events_out_of_order_are_sorted_by_version() -> None:
    # two spans: [1.0, 1.5) and [2.0, 2.5), events given fixed-first
    introduced, fixed = ["2.0-1", "1.0-1"], ["2.5-1", "1.5-1"]
    assert affected("dpkg", "1.2-1", introduced, fixed)
    assert not affected("dpkg", "1.7-1", introduced, fixed)
    assert affected("dpkg", "2.2-1", introduced, fixed)
    assert not affected("dpkg", "2.5-1", introduced, fixed)
    assert not affected("dpkg", "0.9-1", introduced, fixed)


def test_only_fixed_events_read_as_introduced_zero() -> None:
    assert affected("dpkg", "1.0-1", [], ["1.5-1"])
    assert not affected("dpkg", "1.5-1", [], ["1.5-1"])


def test_a_range_without_events_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        affected("dpkg", "1.0-1", [], [])


def test_ranges_reject_malformed_versions_by_name() -> None:
    with pytest.raises(ValueError, match="'1.0-'"):
        affected("dpkg", "1.0-1", ["0"], ["1.0-"])
    with pytest.raises(ValueError, match="'bad version'"):
        affected("rpm", "bad version", ["0"], ["1.0-1"])


def test_ranges_refuse_an_unknown_family() -> None:
    with pytest.raises(UnsupportedFamily, match="pacman"):
        affected("pacman", "1.0-1", ["0"], ["1.0-2"])  # type: ignore[arg-type]
