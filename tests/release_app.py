"""A real application to release, on the sshd test hosts (this machine): versions in
directories, ``current`` a symlink to one of them, a real HTTP server on loopback serving
``current/`` (so a switched symlink is what the next request sees), and a ``switch`` script as
the system's release and rollback command (a plain module: import ``release_app_fixture``).

Versions: ``1.0`` (installed, healthy), ``2.0`` (healthy), ``3.0-bad`` (no health page: the
canary's smoke check fails), ``4.0-late`` (healthy on the canary; releasing it to the second
host breaks it: a failure after the full release), ``5.0-hang`` (switched, then the release
command hangs: for killing the release run mid-release).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session

from tests.flow_fixtures import host_entry
from upkeep.domain.releases import Declared
from upkeep.tasks.releases import declare_release

TZ = "Europe/Berlin"
"""The flow fixtures' contract timezone."""

SWITCH = """#!/bin/sh
# switch VERSION | switch --previous: point current at versions/VERSION (remembering the one
# before), or back at the remembered one.
set -eu
cd "$(dirname "$0")"
if [ "$1" = "--previous" ]; then
  target=$(cat previous)
else
  target=$1
  now=$(basename "$(readlink current)")
  if [ "$now" = "$target" ]; then
    # already current (the second host is this machine too); 4.0-late breaks now
    [ -f "versions/$target/break-on-second" ] && rm -f "versions/$target/health"
    exit 0
  fi
  echo "$now" > previous
fi
[ -d "versions/$target" ] || { echo "no version $target" >&2; exit 3; }
ln -sfn "versions/$target" current.tmp
mv -T current.tmp current
# 5.0-hang: switched, then the command never ends (the release run is killed meanwhile)
if [ -f "versions/$target/hang" ]; then sleep 120; fi
"""


@dataclass
class ReleaseApp:
    root: Path
    url: str

    @property
    def switch(self) -> str:
        return str(self.root / "switch")

    def current(self) -> str:
        return (self.root / "current").resolve().name


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(name="release_app")
def release_app_fixture(tmp_path: Path) -> Iterator[ReleaseApp]:
    root = tmp_path / "app"
    for version in ("1.0", "2.0", "3.0-bad", "4.0-late", "5.0-hang"):
        d = root / "versions" / version
        d.mkdir(parents=True)
        if version != "3.0-bad":
            (d / "health").write_text(f'{{"status":"ok","version":"{version}"}}')
    (root / "versions" / "4.0-late" / "break-on-second").write_text("")
    (root / "versions" / "5.0-hang" / "hang").write_text("")
    (root / "current").symlink_to(root / "versions" / "1.0")
    (root / "switch").write_text(SWITCH)
    (root / "switch").chmod(0o755)
    root.chmod(0o755)
    tmp_path.chmod(0o755)
    handler = functools.partial(_Quiet, directory=str(root / "current"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ReleaseApp(root, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


CORA = "cora@acme.example"
REVIEWER = {"name": "Cora Customer", "email": CORA}
"""The customer's tester who reviews test reports (the ``release-test-report`` gate's own
approver); the release approvers are the contract's (Alice)."""


def load_shop(
    load_inventory,
    sshd_servers,
    app: ReleaseApp,
    extra_hosts: list[dict[str, Any]] | None = None,
    **release: Any,
) -> None:
    """Contract ACME with the system ``shop`` on app1 and app2 (the first two sshd servers,
    plus ``extra_hosts``), released by the app's switch script; ``release`` overrides the
    system's release settings."""
    spec = {
        "release_command": f"{app.switch} {{version}}",
        "rollback_command": f"{app.switch} --previous",
        "checklist": [
            {"name": "smoke", "kind": "automatic", "check": "smoke_checks"},
            {"name": "db-migration", "kind": "manual", "description": "migration rehearsed"},
        ],
        **release,
    }
    a, b = sshd_servers[0], sshd_servers[1]
    load_inventory(
        [
            host_entry("app1", a, system="shop"),
            host_entry("app2", b, system="shop"),
            *(extra_hosts or []),
        ],
        trust=[a, b],
        systems=[
            {
                "name": "shop",
                "smoke_checks": [
                    {"name": "health", "url": f"{app.url}/health", "body_contains": '"ok"'}
                ],
                "release": spec,
            }
        ],
        gate_policies={"release-test-report": {"approvers": [REVIEWER]}},
    )


def declare_now(engine, tmp_path: Path, version: str) -> int:
    """A release whose window is now (declared a day ago, as far as validation knows)."""
    report = tmp_path / f"report-{version}.md"
    report.write_text(f"# Test report {version}\nall green\n")
    window = datetime.now(ZoneInfo(TZ)).strftime("%Y-%m-%d %H:%M")
    with Session(engine) as s:
        row, _ = declare_release(
            session=s,
            declared=Declared("ACME", "shop", version, "- faster search", window, report),
            declared_by="Eve Engineer",
            now=datetime.now(ZoneInfo(TZ)) - timedelta(days=1),
        )
        s.commit()
        assert row.id is not None
        return row.id


def review_and_approve(engine, smtp_server, nth: int = 1) -> str:
    """Cora approves the test report, then Alice the release, each with their ``nth`` mailed
    code, as the run asks; the release gate's evidence."""
    from tests.flow_fixtures import wait_for_code
    from tests.inspection_helpers import ALICE, answer, pending
    from upkeep.domain.releases import RELEASE_GATE, TEST_REPORT_GATE

    answer(
        pending(engine, TEST_REPORT_GATE),
        decision="approve",
        approver="Cora Customer",
        code=wait_for_code(smtp_server, CORA, nth),
    )
    gate = pending(engine, RELEASE_GATE)
    answer(
        gate,
        decision="approve",
        approver="Alice Owner",
        code=wait_for_code(smtp_server, ALICE, nth),
    )
    return gate.evidence
