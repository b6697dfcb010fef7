"""apk (Alpine) version order: univers plus upkeep's wrapper, against apk-tools' own vectors.

``tests/fixtures/advisories/apk-version-pairs.txt`` is apk-tools' ``test/unit/version.data``,
unchanged (source, commit and licence in its header and in the fixtures' README). Every order
line (``<``, ``>``, ``=``) must come out as apk-tools says, both ways round, and every validity
line must be accepted or refused as it says. Excluded, with the reason:

* the fuzzy lines (``~``, ``<~``, ``>~``, ``!~``): apk's prefix matching of dependencies
  (``3.6.9 ~ 3.6``), not an order; upkeep has no use for it;
* ``23_foo > 4_beta`` and ``1.0 < 1.0bc``: apk-tools itself calls these versions invalid
  ("invalid. do string sort"); upkeep refuses an invalid version instead of guessing.

A second test compares the order with a line-by-line port of apk-tools' ``src/version.c``
(``_apk_reference``, test code only) on generated versions that mix every suffix, hashes and
revisions, the cases the wrapper rewrites for univers.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from upkeep.domain.advisories.versions import affected, compare, validate

PAIRS = Path(__file__).parents[1] / "fixtures" / "advisories" / "apk-version-pairs.txt"
ORDER = {"<": -1, "=": 0, ">": 1}
INVALID_IN_APK = {"23_foo > 4_beta", "1.0 < 1.0bc"}


def _lines() -> list[tuple[int, str]]:
    found = []
    for number, raw in enumerate(PAIRS.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            found.append((number, line))
    return found


ORDER_LINES = [(n, line) for n, line in _lines() if re.fullmatch(r"\S+ [<>=] \S+", line)]
VALIDITY_LINES = [(n, line) for n, line in _lines() if " " not in line]


def test_the_fixture_has_the_vectors_expected() -> None:
    # 738 order lines, 2 of them excluded above; 31 validity lines.
    assert len(ORDER_LINES) == 738
    assert len(VALIDITY_LINES) == 31
    assert {line for _, line in ORDER_LINES} >= INVALID_IN_APK


@pytest.mark.parametrize("line", [line for _, line in ORDER_LINES if line not in INVALID_IN_APK])
def test_order_agrees_with_apk_tools(line: str) -> None:
    a, op, b = line.split()
    assert compare("apk", a, b) == ORDER[op], line
    assert compare("apk", b, a) == -ORDER[op], line


@pytest.mark.parametrize("line", sorted(INVALID_IN_APK))
def test_versions_apk_calls_invalid_are_refused(line: str) -> None:
    a, _, b = line.split()
    with pytest.raises(ValueError, match="malformed apk version"):
        compare("apk", a, b)


@pytest.mark.parametrize("line", [line for _, line in VALIDITY_LINES])
def test_validity_agrees_with_apk_tools(line: str) -> None:
    version = line.removeprefix("!")
    if line.startswith("!"):
        with pytest.raises(ValueError, match="malformed apk version"):
            validate("apk", version)
    else:
        validate("apk", version)


# --- a port of apk-tools' src/version.c (apk_version_compare), for the generated cases ------

_SUFFIXES = ["alpha", "beta", "pre", "rc", "", "cvs", "svn", "git", "hg", "p"]
_NONE = _SUFFIXES.index("")
(INITIAL, DIGIT, LETTER, SUFFIX, SUFFIX_NO, HASH, REVISION, END, INVALID) = range(9)


def _tokens(version: str) -> list[tuple[int, object]]:
    tokens: list[tuple[int, object]] = []
    found = re.match(r"\d+", version)
    assert found
    tokens.append((INITIAL, int(found[0])))
    rest, token = version[found.end() :], INITIAL
    value: object
    while rest:
        char = rest[0]
        if char.isalpha():
            token, value, rest = LETTER, rest[0], rest[1:]
        elif char == "." or char.isdigit():
            rest = rest[1:] if char == "." else rest
            digits = re.match(r"\d+", rest)
            assert digits
            token = SUFFIX_NO if token == SUFFIX else DIGIT
            value, rest = digits[0], rest[digits.end() :]
        elif char == "_":
            name = re.match(r"[a-z]+", rest[1:])
            assert name
            token, value, rest = SUFFIX, _SUFFIXES.index(name[0]), rest[1 + name.end() :]
        elif char == "~":
            hexdigits = re.match(r"[0-9a-f]+", rest[1:])
            assert hexdigits
            token, value, rest = HASH, hexdigits[0], rest[1 + hexdigits.end() :]
        else:
            digits = re.match(r"-r(\d+)", rest)
            assert digits
            token, value, rest = REVISION, int(digits[1]), rest[digits.end() :]
        tokens.append((token, value))
    tokens.append((END, None))
    return tokens


def _apk_reference(a: str, b: str) -> int:
    ta, tb = _tokens(a), _tokens(b)
    for (kind_a, value_a), (kind_b, value_b) in zip(ta, tb, strict=False):
        if kind_a != kind_b:
            break
        if kind_a == END:
            return 0
        left: object = value_a
        right: object = value_b
        if kind_a in (DIGIT, SUFFIX_NO):
            assert isinstance(value_a, str) and isinstance(value_b, str)
            if kind_a == DIGIT and (value_a[0] == "0" or value_b[0] == "0"):
                left, right = value_a, value_b  # apk_blob_sort: bytes, then length
            else:
                left, right = int(value_a), int(value_b)
        if left != right:
            return -1 if left < right else 1  # type: ignore[operator]
    else:
        return 0
    if kind_a == SUFFIX and value_a < _NONE:  # type: ignore[operator]
        return -1
    if kind_b == SUFFIX and value_b < _NONE:  # type: ignore[operator]
        return 1
    return -1 if kind_a > kind_b else 1


def _generated(rng: random.Random) -> str:
    version = str(rng.choice([0, 1, 2, 10]))
    for _ in range(rng.choice([0, 1, 2])):
        version += "." + rng.choice(["0", "1", "2", "10"])
    if rng.random() < 0.2:
        version += rng.choice("abz")
    for _ in range(rng.choice([0, 0, 1, 2])):
        suffix = rng.choice([s for s in _SUFFIXES if s])
        version += f"_{suffix}" + rng.choice(["1", "2", "20230717"])
    if rng.random() < 0.15:
        version += "~" + rng.choice(["1234", "abcd", "12ab"])
    if rng.random() < 0.8:
        version += f"-r{rng.choice([0, 1, 2, 10])}"
    return version


def test_the_reference_port_agrees_with_apk_tools_vectors() -> None:
    # The port is only worth comparing with if it passes apk-tools' own vectors.
    for _, line in ORDER_LINES:
        if line in INVALID_IN_APK:
            continue
        a, op, b = line.split()
        assert _apk_reference(a, b) == ORDER[op], line


def test_order_agrees_with_apk_tools_algorithm_on_generated_versions() -> None:
    # Suffix numbers are always written here: apk tells "_p" from "_p0" and "1.01" from
    # "1.010" where univers (Gentoo) does not (see versions._apk_compare); no Alpine package
    # version has either.
    rng = random.Random(20240101)
    versions = [_generated(rng) for _ in range(400)]
    for a in versions:
        validate("apk", a)
    disagree = [
        (a, b)
        for a in versions
        for b in versions[:100]
        if compare("apk", a, b) != _apk_reference(a, b)
    ]
    assert disagree == []


ALPINE_ORDERED = [
    # real Alpine 3.19 versions: musl's git snapshot, openssh's _p, a release candidate
    ("1.2.4_git20230717-r4", "1.2.4_git20230717-r5"),
    ("1.2.4-r4", "1.2.4_git20230717-r1"),
    ("1.2.4_git20230717-r4", "1.2.5_rc1-r0"),
    ("9.6_p1-r0", "9.6_p1-r1"),
    ("9.6-r0", "9.6_p1-r0"),
    ("3.1.4-r5", "3.1.4-r6"),
    ("3.1.4-r6", "3.1.10-r0"),
    ("1.36.1-r15", "1.36.1-r19"),
    # apk: a revision, even -r0, sorts above none (univers alone reads -r0 as none)
    ("1.0", "1.0-r0"),
    # the suffixes after the release, in apk's order
    ("1.0", "1.0_cvs1"),
    ("1.0_cvs1", "1.0_svn1"),
    ("1.0_svn1", "1.0_git1"),
    ("1.0_git1", "1.0_hg1"),
    ("1.0_hg1", "1.0_p"),
    # the first number is a number: leading zeros do not count
    ("5", "006"),
]


@pytest.mark.parametrize(("lower", "higher"), ALPINE_ORDERED)
def test_apk_order_of_pairs_both_ways(lower: str, higher: str) -> None:
    assert compare("apk", lower, higher) == -1
    assert compare("apk", higher, lower) == 1


def test_apk_ranges_as_alpine_records_give_them() -> None:
    # ALPINE-CVE-2024-0727: openssl fixed in 3.1.4-r5 on Alpine:v3.19
    assert affected("apk", "3.1.4-r4", ["0"], ["3.1.4-r5"])
    assert not affected("apk", "3.1.4-r5", ["0"], ["3.1.4-r5"])
    assert not affected("apk", "3.1.10-r0", ["0"], ["3.1.4-r5"])


@pytest.mark.parametrize("bad", ["", "v1.0", "1.0-r", "1.0_foo", "1.0 ", "1.0-R1", "1.0~XY"])
def test_malformed_apk_versions_are_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        compare("apk", bad, "1.0-r0")
