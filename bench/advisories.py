"""Advisory matching benchmark: load and match a distribution export's worth of records.

    .venv/bin/python bench/advisories.py                 # 2,000 packages x ~34,000 records
    .venv/bin/python bench/advisories.py --records 10000 --packages 500 --repeat 3

The records are the real Debian security tracker records of
tests/fixtures/advisories/exports/debian-tracker.zip (517), copied with new ids until there are
``--records`` of them; each copy keeps its real versions and ranges and names the package of a
real record, so the matcher does the work it does on a real export (Debian's own export for
one release holds tens of thousands). The installed packages are this machine's dpkg database
(``/var/lib/dpkg/status``) topped up to ``--packages`` with renamed copies. Figures (medians of
``--repeat`` runs, wall time of this process): writing the export as a zip, loading it
(``load_advisories``: unzip + parse + validate), and ``match`` after loading, with the version
comparison caches cleared before each run. The copies repeat the real records' versions, so
the cache hits more often than on a real export of as many distinct records.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from upkeep.domain.advisories import Platform  # noqa: E402
from upkeep.domain.advisories.inventory import parse_dpkg_status  # noqa: E402
from upkeep.domain.advisories.match import match  # noqa: E402
from upkeep.domain.advisories.versions import compare, validate  # noqa: E402
from upkeep.tasks.advisories import load_advisories  # noqa: E402

EXPORT = ROOT / "tests" / "fixtures" / "advisories" / "exports" / "debian-tracker.zip"


def real_records() -> list[dict]:
    with zipfile.ZipFile(EXPORT) as z:
        return [json.loads(z.read(n)) for n in sorted(z.namelist()) if n.endswith(".json")]


def export(records: int, target: Path) -> Path:
    base = real_records()
    path = target / "all.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(records):
            record = dict(base[i % len(base)])
            record["id"] = f"{record['id']}-B{i}"
            z.writestr(f"{record['id']}.json", json.dumps(record))
    return path


def installed(count: int) -> list:
    real = parse_dpkg_status(Path("/var/lib/dpkg/status").read_text())
    out = list(real)
    i = 0
    while len(out) < count:
        p = real[i % len(real)]
        out.append(replace(p, name=f"{p.name}-copy{i}"))
        i += 1
    return out[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=34_000)
    parser.add_argument("--packages", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    platform = Platform("Debian:12", "dpkg", "Debian GNU/Linux 12 (bookworm)")
    packages = installed(args.packages)
    runs: dict[str, list[float]] = {"write": [], "load": [], "match": []}
    found = 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            path = export(args.records, Path(tmp))
            runs["write"].append(time.perf_counter() - t)
            t = time.perf_counter()
            loaded = load_advisories([path])
            runs["load"].append(time.perf_counter() - t)
            compare.cache_clear()  # every run starts cold, as a fresh process would
            validate.cache_clear()
            t = time.perf_counter()
            found = len(match(packages, platform, loaded.advisories.values()))
            runs["match"].append(time.perf_counter() - t)
    print(f"{args.packages} installed packages x {args.records} records, {found} matches")
    print("| step | median s | runs |")
    print("|---|---|---|")
    for step, values in runs.items():
        print(f"| {step} | {statistics.median(values):.2f} | {len(values)} |")


if __name__ == "__main__":
    main()
