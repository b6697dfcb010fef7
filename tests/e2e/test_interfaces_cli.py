"""``upkeep interfaces`` as an engineer runs it: real processes against a real HTTP service,
exit codes and messages; the figures come from what the earlier commands recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli import upkeep
from tests.http_service import Answer, HttpService, http_service_fixture  # noqa: F401

pytestmark = pytest.mark.e2e


def test_check_then_status_from_the_command_line(
    prefect_server: str, engine, load_inventory, data_dir: Path, http_service: HttpService
) -> None:
    load_inventory(
        [],
        systems=[
            {
                "name": "shop",
                "smoke_checks": [{"name": "orders", "url": f"{http_service.url}/health"}],
            }
        ],
    )
    env = {"PREFECT_API_URL": prefect_server}
    ok = upkeep(
        "interfaces", "check", "--contract", "ACME", "--no-email", data_dir=data_dir, env=env
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "shop/orders: ok: HTTP 200 in" in ok.stdout

    http_service.answer = Answer(status=500, body="boom")
    down = upkeep(
        "interfaces", "check", "--contract", "ACME", "--no-email", data_dir=data_dir, env=env
    )
    assert down.returncode == 3, down.stdout + down.stderr
    assert "shop/orders: FAILED (down): HTTP 500, expected 200" in down.stdout

    status = upkeep("interfaces", "status", "--contract", "ACME", data_dir=data_dir, env=env)
    assert status.returncode == 3, status.stdout + status.stderr  # down now
    assert "Interfaces of ACME: DOWN now: shop/orders" in status.stdout
    assert "shop/orders: 50.0% of 2 probes passed" in status.stdout
    assert "outage: since" in status.stdout

    unknown = upkeep(
        "interfaces", "check", "--contract", "ACME", "--system", "crm", data_dir=data_dir, env=env
    )
    assert unknown.returncode == 1
    assert "has no system 'crm' (it has: shop)" in unknown.stderr
    assert "Traceback" not in unknown.stderr
