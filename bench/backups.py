"""Benchmark: where to restore-test a file backup that lives on another host.

Usage (from the repository root, with upkeep's virtualenv)::

    .venv/bin/python bench/backups.py              # 64 and 256 MiB, 3 runs each (~3 min)
    .venv/bin/python bench/backups.py --sizes 16 --repeat 1

One throwaway sshd on loopback plays the backup host (it shares this machine's disk, so the
figures measure upkeep's and the tools' work, not a network). For each size, a source tree of
incompressible files (1 MiB each) is backed up on the "host" with the catalogue command
(``remote.take_files_backup``: GNU tar + gzip, manifest from the archive), then verified three
ways, each the whole verification as the flow does it:

* ``local``:   ``files.verify`` of a local archive (the floor: no SSH at all);
* ``fetch``:   SFTP the archive and manifest here (``fetch_files_backup``), then ``files.verify``;
* ``on-host``: ``verify_files_on_host``: tar + ``sha256sum -c`` on the host over SSH.

It prints a Markdown table of the median wall time per way and size and writes the runs to
``bench/results/backups-<date>.json``. Needs root (sshd) and ``/usr/sbin/sshd``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from upkeep.demo.sshd import ThrowawaySshd  # noqa: E402
from upkeep.settings import SshSettings  # noqa: E402
from upkeep.tasks.backups import files, remote  # noqa: E402
from upkeep.tasks.backups.base import Scratch  # noqa: E402
from upkeep.tasks.ssh import SshSession, SshTarget, trust_host_key  # noqa: E402


def make_tree(root: Path, mib: int) -> None:
    for i in range(mib):
        d = root / f"d{i % 16:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(os.urandom(1 << 20))


def timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,256", help="MiB of data, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="upkeep-bench-backups-"))
    runs: list[dict[str, object]] = []
    try:
        with ThrowawaySshd() as sshd:
            known = work / "known_hosts"
            trust_host_key(known, sshd.address, sshd.port, sshd.host_key)
            settings = SshSettings(
                user=getpass.getuser(), key_file=sshd.client_key.private, command_timeout=3600
            )
            target = SshTarget(name="bench", address=sshd.address, port=sshd.port)
            with SshSession(target, settings, known) as session:
                host = remote.BackupHost(session)
                scratch = work / "scratch"
                for mib in sizes:
                    src, dest = work / f"src{mib}", work / f"backups{mib}"
                    make_tree(src, mib)
                    remote.take_files_backup(host, str(src), str(dest), "bench")
                    (archive,) = dest.glob("bench-*.tar.gz")
                    ways: dict[str, Callable[[], object]] = {
                        "local": partial(files.verify, archive, scratch),
                        "fetch": partial(_fetch_and_verify, host, archive, scratch),
                        "on-host": partial(
                            remote.verify_files_on_host, host, str(archive), str(scratch)
                        ),
                    }
                    for way, fn in ways.items():
                        fn()  # warm-up (page cache), not measured
                        for n in range(args.repeat):
                            runs.append({"mib": mib, "way": way, "run": n, "wall_s": timed(fn)})
                    shutil.rmtree(src)
                host.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = ["| data | archive | local | fetch + verify | on host |", "|---|---|---|---|---|"]
    for mib in sizes:
        med = {
            way: statistics.median(
                float(r["wall_s"])  # type: ignore[arg-type]
                for r in runs
                if r["mib"] == mib and r["way"] == way
            )
            for way in ("local", "fetch", "on-host")
        }
        table.append(
            f"| {mib} MiB | tar.gz | {med['local']:.2f} s | {med['fetch']:.2f} s "
            f"| {med['on-host']:.2f} s |"
        )
    print("\n".join(table))
    out = ROOT / "bench" / "results" / f"backups-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "runs": runs}, indent=1))
    return 0


def _fetch_and_verify(host: remote.BackupHost, archive: Path, scratch: Path) -> object:
    scratch.mkdir(exist_ok=True)
    with Scratch(scratch, prefix="upkeep-scratch-fetch-") as staging:
        local = remote.fetch_files_backup(host, str(archive), staging)
        return files.verify(local, scratch)


if __name__ == "__main__":
    raise SystemExit(main())
