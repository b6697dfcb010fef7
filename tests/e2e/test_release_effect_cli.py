"""``upkeep releases effect`` as an engineer runs it: a real process against the session's
Prefect server and a real SMTP server; refused with exit 1 and the reason for a release that
has not finished, the report, its path and the customer's mail for one that has."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

from tests.e2e.test_cli import upkeep
from tests.flows.test_release_effect import load_shop, seed_release
from upkeep.models import ReleaseStep

pytestmark = pytest.mark.e2e


def test_effect_report_from_the_command_line(
    prefect_server: str, engine, load_inventory, smtp_server, data_dir: Path
) -> None:
    load_shop(load_inventory)
    running = seed_release(engine, status="running", finished=False, records=False)
    released = seed_release(engine)
    env = {
        "PREFECT_API_URL": prefect_server,
        "UPKEEP_SMTP_HOST": smtp_server.host,
        "UPKEEP_SMTP_PORT": str(smtp_server.port),
        "UPKEEP_SMTP_TLS": "none",
    }

    refused = upkeep("releases", "effect", str(running), data_dir=data_dir, env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"release {running} is running and has not finished" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = upkeep("releases", "effect", "999", "--no-email", data_dir=data_dir, env=env)
    assert missing.returncode == 1 and "no release 999" in missing.stderr

    done = upkeep("releases", "effect", str(released), data_dir=data_dir, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Effect of shop 2.0 (ACME): WORSE after the release: shop/health availability" in (
        done.stdout
    )
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("report: ")]
    page = Path(line.removeprefix("report: "))
    assert page.is_relative_to(data_dir) and "83.3%" in page.read_text()
    (mail,) = smtp_server.handler.received
    assert mail.rcpt_tos == ["it@acme.example"]
    assert mail.message()["Subject"].startswith("[upkeep] Effect of shop 2.0 (ACME): WORSE")
    with Session(engine) as s:
        steps = s.exec(select(ReleaseStep).where(ReleaseStep.step == "effect-report")).all()
    assert [st.release_id for st in steps] == [released]
