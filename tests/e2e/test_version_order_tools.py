"""compare() agrees with dpkg and rpm themselves on real version pairs.

The versions are the fixed versions of the real Debian and AlmaLinux advisories (the exports in
tests/fixtures/advisories/exports) and the versions installed in this machine's dpkg database.
Pairs: neighbouring versions of the same package (sorted as strings, so the pairing does not
depend on the order under test), each installed source version against the fixes for its
source, and seeded random cross pairs. dpkg answers one pair per ``dpkg --compare-versions``;
rpm answers a whole batch in one ``rpm --eval`` Lua script printing ``rpm.vercmp`` per pair.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

from upkeep.domain.advisories import Family
from upkeep.domain.advisories.inventory import parse_dpkg_status
from upkeep.domain.advisories.versions import compare

pytestmark = pytest.mark.e2e

EXPORTS = Path(__file__).parents[1] / "fixtures" / "advisories" / "exports"
DPKG_STATUS = Path("/var/lib/dpkg/status")
PAIRS_PER_FAMILY = 400


def _fixed_versions(export: Path) -> dict[str, set[str]]:
    by_package: dict[str, set[str]] = defaultdict(set)
    with zipfile.ZipFile(export) as z:
        records = [json.loads(z.read(n)) for n in sorted(z.namelist()) if n.endswith(".json")]
    for record in records:
        for entry in record.get("affected", []):
            for range_ in entry.get("ranges", []):
                for event in range_.get("events", []):
                    if "fixed" in event:
                        by_package[entry["package"]["name"]].add(event["fixed"])
    return by_package


def _neighbours(by_package: dict[str, set[str]]) -> list[tuple[str, str]]:
    pairs = []
    for name in sorted(by_package):
        versions = sorted(by_package[name])
        pairs += list(zip(versions, versions[1:], strict=False))
    return pairs


def _select(pairs: Iterable[tuple[str, str]], count: int, seed: int) -> list[tuple[str, str]]:
    unique = sorted(set(pairs))
    chosen = random.Random(seed).sample(unique, min(count, len(unique)))
    # both directions, and a version against itself
    return chosen + [(b, a) for a, b in chosen[:20]] + [(a, a) for a, _ in chosen[:10]]


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is missing: no real versions to compare")


def dpkg_pairs() -> list[tuple[str, str]]:
    _need(DPKG_STATUS)
    fixed = _fixed_versions(EXPORTS / "debian-tracker.zip")
    installed = parse_dpkg_status(DPKG_STATUS.read_text())
    installed_by_source: dict[str, set[str]] = defaultdict(set)
    for package in installed:
        installed_by_source[package.source_name].add(package.source_ver)
    rng = random.Random(13)
    everything = sorted({v for vs in fixed.values() for v in vs})
    pairs = _neighbours(fixed)
    pairs += _neighbours(installed_by_source)
    # the comparisons matching makes: an installed source version against its source's fixes
    pairs += [
        (mine, fix)
        for source in sorted(installed_by_source.keys() & fixed.keys())
        for mine in sorted(installed_by_source[source])
        for fix in sorted(fixed[source])
    ]
    # binNMU: the binary's version against its source's
    pairs += [(p.version, p.source_version) for p in installed if p.source_version]
    pairs += [tuple(rng.sample(everything, 2)) for _ in range(100)]  # type: ignore[misc]
    return _select(pairs, PAIRS_PER_FAMILY, seed=12)


def rpm_pairs() -> list[tuple[str, str]]:
    fixed = _fixed_versions(EXPORTS / "almalinux.zip")
    rng = random.Random(9)
    everything = sorted({v for vs in fixed.values() for v in vs})
    pairs = _neighbours(fixed)
    pairs += [tuple(rng.sample(everything, 2)) for _ in range(100)]  # type: ignore[misc]
    # an epoch against none: a version without epoch has epoch 0
    without_epoch = [v for v in everything if ":" not in v]
    pairs += [(f"1:{v}", v) for v in rng.sample(without_epoch, 15)]
    pairs += [(f"0:{v}", v) for v in rng.sample(without_epoch, 5)]
    return _select(pairs, PAIRS_PER_FAMILY, seed=8)


def dpkg_order(a: str, b: str) -> int:
    def holds(relation: str) -> bool:
        done = subprocess.run(["dpkg", "--compare-versions", a, relation, b], check=False)
        assert done.returncode in (0, 1), f"dpkg refused {a!r} {relation} {b!r}"
        return done.returncode == 0

    return -1 if holds("lt") else 0 if holds("eq") else 1


_RPM_SAFE = re.compile(r"[A-Za-z0-9._+~^:-]+")


def rpm_orders(pairs: list[tuple[str, str]]) -> list[int]:
    for version in {v for pair in pairs for v in pair}:
        # nothing rpm's macro expansion or a Lua string literal would read specially
        assert _RPM_SAFE.fullmatch(version), version
    table = ",".join(f"{{'{a}','{b}'}}" for a, b in pairs)
    script = (
        f'%{{lua: for _, p in ipairs({{{table}}}) do print(rpm.vercmp(p[1], p[2]) .. "\\n") end}}'
    )
    done = subprocess.run(
        ["rpm", "--eval", script], capture_output=True, text=True, check=True, timeout=60
    )
    results = [int(line) for line in done.stdout.split()]
    assert len(results) == len(pairs), done.stderr
    return results


def _disagreements(family: Family, pairs: list[tuple[str, str]], reference: list[int]) -> list[str]:
    return [
        f"{a!r} vs {b!r}: compare() says {ours}, the tool says {theirs}"
        for (a, b), theirs in zip(pairs, reference, strict=True)
        if (ours := compare(family, a, b)) != theirs
    ]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="Debian's dpkg is not installed")
def test_dpkg_family_order_matches_dpkg_compare_versions() -> None:
    pairs = dpkg_pairs()
    assert len(pairs) >= 300
    reference = [dpkg_order(a, b) for a, b in pairs]
    assert {-1, 0, 1} <= set(reference)
    assert _disagreements("dpkg", pairs, reference) == []


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed (Debian's rpm)")
def test_rpm_family_order_matches_rpm_vercmp() -> None:
    pairs = rpm_pairs()
    assert len(pairs) >= 300
    reference = rpm_orders(pairs)
    assert {-1, 0, 1} <= set(reference)
    assert _disagreements("rpm", pairs, reference) == []


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed (Debian's rpm)")
def test_rpm_reference_batch_is_in_pair_order() -> None:
    # guards the batching: a known order per position, so a shifted line would show
    pairs = [("1:2.0-1", "2.0-1"), ("2.0-1", "2.0-1"), ("1.0~rc1-1", "1.0-1"), ("1.0^1-1", "1.0-1")]
    assert rpm_orders(pairs) == [1, 0, -1, 1]
