"""A run suspended at its plan gate by the previous release is answered after the upgrade.

The release before the one-import-name layout (commit ``cf6a27a``) imported top-level
``flows``, ``tasks``, ``models`` and ``deployments``, registered deployments with file
entrypoints (``flows/inspection.py:quarterly_health_inspection``) and persisted its task
results as pickles naming those modules. Here that release, checked out from git history,
serves an inspection against the session's real ``prefect server start`` until the run waits
at its plan gate; the operator stops it and starts the current ``upkeep serve`` on the same
data directory, database and result storage (the upgrade); the approver answers through the
REST call of the Prefect UI's form with the code the old release mailed, and the run
completes on the new code (upkeep/compat.py's aliases, the new migrations, the re-registered
deployment).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from tests.production.stack import Api, Mailbox, Served, inventory
from upkeep.db import current_revision, head_revision
from upkeep.demo.mailsink import MailSink
from upkeep.demo.sshd import ThrowawaySshd
from upkeep.models import Approval, ApprovalCode, InspectionRun

pytestmark = pytest.mark.production

ROOT = Path(__file__).resolve().parents[2]
OLD_RELEASE = "cf6a27a"
CONTRACT = "UPGRADE"
ALICE = {"name": "Alice Owner", "email": "alice@customer.example"}
RUN = 240.0


def old_release_tree(dest: Path) -> Path:
    """The files of the old release (``git archive``), as an operator's old install had them."""
    known = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD_RELEASE}^{{commit}}"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if known.returncode != 0:
        pytest.fail(f"commit {OLD_RELEASE} is not in this clone: fetch the full history")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", OLD_RELEASE],
        capture_output=True,
        timeout=60,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def which_upkeep(env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Where ``upkeep`` and ``flows`` come from for a process with ``env`` and ``cwd``."""
    probe = (
        "import json, upkeep, flows.inspection as f; "
        "print(json.dumps({'upkeep': upkeep.__file__, 'flows': f.__file__, "
        "'flow_module': f.quarterly_health_inspection.fn.__module__}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


LOAD = """
import json, sys
from pathlib import Path
import upkeep
from prefect.results import ResultRecord
out = {}
for path in sys.argv[1:]:
    value = ResultRecord.deserialize(Path(path).read_bytes()).result
    out[Path(path).name] = f"{type(value).__module__}.{type(value).__qualname__}"
print(json.dumps(out))
"""


def load_results(paths: list[Path], env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Each persisted result as Prefect reads it back (``ResultRecord.deserialize``) in a
    process of the current code: {file name: class of the value}."""
    done = subprocess.run(
        [sys.executable, "-c", LOAD, *map(str, paths)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"an old result does not load in the new code:\n{done.stderr}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def halt(served: Served) -> None:
    """Stop the ``upkeep serve`` process as a service manager does (SIGTERM), leaving its
    deployments on the server, as an upgrade does."""
    proc = served.proc
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def ok(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode == 0, f"upkeep {what}: {done.stdout}{done.stderr}"


def test_a_run_suspended_by_the_old_release_completes_after_the_upgrade(
    tmp_path: Path,
    prod_api: Api,
    operator_env: Callable[[Path, int], dict[str, str]],
    sshd: ThrowawaySshd,
) -> None:
    old_tree = old_release_tree(tmp_path / "old-release")
    data = tmp_path / "data"  # the one data directory: database, results, known_hosts, reports
    new_home = tmp_path / "new"
    new_home.mkdir()
    with MailSink(tmp_path / "mail") as sink:
        env = operator_env(data, sink.port)
        env.pop("PYTHONPATH", None)
        old = Served(
            api=prod_api,
            env=env | {"PYTHONPATH": str(old_tree)},
            workdir=old_tree,
            mailbox=Mailbox(tmp_path / "mail"),
            contract=CONTRACT,
        )
        new = Served(
            api=prod_api, env=env, workdir=new_home, mailbox=old.mailbox, contract=CONTRACT
        )
        try:
            _upgrade_while_suspended(old, new, old_tree, data, sshd)
        finally:
            halt(old)
            new.stop()  # and remove the contract's deployments from the shared server


def _upgrade_while_suspended(
    old: Served, new: Served, old_tree: Path, data: Path, sshd: ThrowawaySshd
) -> None:
    api = old.api
    # the old release's code, not the checkout's editable install, serves before the upgrade
    seen = which_upkeep(old.env, old_tree)
    assert Path(seen["upkeep"]).is_relative_to(old_tree), seen
    assert Path(seen["flows"]).is_relative_to(old_tree), seen
    assert seen["flow_module"] == "flows.inspection", seen

    host = {"name": "web1", "address": sshd.address, "port": sshd.port, "tags": ["web"]}
    (old_tree / "inventory.yaml").write_text(inventory(CONTRACT, [host]))
    ok(old.upkeep("inventory", "load", "inventory.yaml"), "inventory load (old)")
    ok(old.upkeep("hosts", "trust", "web1", "--contract", CONTRACT, "--yes"), "hosts trust")
    db = sa.create_engine(f"sqlite:///{data / 'upkeep.db'}")
    old_revision = current_revision(db)

    old.serve()
    deployment = api.deployment("inspection", CONTRACT.lower())
    assert deployment["entrypoint"] == "flows/inspection.py:quarterly_health_inspection"
    run_id = api.start("inspection", CONTRACT.lower())
    run = api.wait_paused(run_id, timeout=RUN)
    assert run["state"]["name"] == "Suspended", run["state"]
    code = old.mailbox.wait_code(ALICE["email"], timeout=RUN)
    persisted = sorted((data / "results").iterdir())
    assert persisted, "the old release persisted no result before its gate"

    # the upgrade: once the run's process has exited (stopping earlier crashes it: Prefect's
    # runner kills it), stop the old service, start the new one on the same data and server
    old.wait_idle(timeout=RUN)
    halt(old)
    # what the old release persisted loads in the new code, to the new classes (compat.py)
    loaded = load_results(persisted, new.env, new.workdir)
    assert "upkeep.domain.inspection.InspectionPlan" in loaded.values(), loaded
    new.serve()
    assert which_upkeep(new.env, new.workdir)["upkeep"] == str(ROOT / "upkeep" / "__init__.py")
    upgraded = api.deployment("inspection", CONTRACT.lower())
    assert upgraded["id"] == deployment["id"]
    assert upgraded["entrypoint"] == "upkeep.flows.inspection.quarterly_health_inspection"
    assert current_revision(db) == head_revision(), f"was {old_revision}"
    assert api.state(run_id) == ("PAUSED", "Suspended")

    result = api.answer(
        run_id, {"decision": "approve", "approver": ALICE["name"], "code": code}, timeout=RUN
    )
    assert result["status"] == "ACCEPT", result
    try:
        api.wait_state(run_id, "COMPLETED", timeout=RUN)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- new serve log ---\n{new.log()[-6000:]}") from None

    with Session(db) as s:
        (gate,) = s.exec(select(Approval)).all()
        assert (gate.gate, gate.decision, gate.approver) == (
            "inspection-plan",
            "approve",
            ALICE["name"],
        )
        assert gate.flow_run_id == run_id
        (inspection,) = s.exec(select(InspectionRun).order_by(col(InspectionRun.id))).all()
        assert inspection.flow_run_id == run_id
        assert inspection.finished_at is not None
        # the replay after the upgrade did not open a second gate nor mail a second code
        assert len(s.exec(select(ApprovalCode)).all()) == 1
    assert len(set(old.mailbox.codes_for(ALICE["email"]))) == 1
    db.dispose()
