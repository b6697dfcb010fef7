"""The wheel installs on a machine that has no checkout (issue 11: "a package that installs").

Built from ``pyproject.toml`` as a release would build it (``pip wheel``, with build
isolation), installed into a fresh virtualenv outside the checkout with the pinned
``constraints.txt`` (pip's index and cache as the machine configures them), then used from a
directory that is not the checkout and with no ``PYTHONPATH``: the command runs, ``upkeep`` is
the installed copy and the only import name it owns, a new database is migrated with the
migrations shipped in the wheel, and the annual plan is rendered with the shipped templates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.polling import answers, wait_until
from tests.production.stack import Api
from upkeep.db import head_revision
from upkeep.demo.sshd import free_loopback_port

pytestmark = pytest.mark.production

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 300
INSTALL_TIMEOUT = 600  # the dependencies come from the local mirror / pip cache (~40 s warm)
RUN_TIMEOUT = 120
OLD_TOP_LEVEL = ("flows", "tasks", "models", "deployments")


@dataclass
class Installed:
    """A virtualenv with nothing but the wheel and its dependencies."""

    wheel: Path
    prefix: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def upkeep_cmd(self) -> Path:
        return self.prefix / "bin" / "upkeep"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of an operator's shell: no PYTHONPATH, no upkeep or Prefect
        settings of the test process, no virtualenv of the checkout on PATH."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("UPKEEP_", "PREFECT_", "PYTHON", "VIRTUAL_ENV"))
        }
        env["PATH"] = os.pathsep.join(
            [str(self.prefix / "bin")]
            + [p for p in env.get("PATH", "").split(os.pathsep) if str(ROOT) not in p]
        )
        env["PREFECT_HOME"] = str(self.workdir / "prefect-home")
        return env | extra

    def run(self, *argv: str | Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            cwd=self.workdir,
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )


def _checked(argv: list[str], timeout: float, cwd: Path) -> None:
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    dist, prefix, workdir = base / "dist", base / "venv", base / "work"
    workdir.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    # build isolation: setuptools (with bdist_wheel) comes from the index, as on a build machine
    _checked([*pip, "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)], BUILD_TIMEOUT, base)
    (wheel,) = dist.glob("upkeep-*.whl")
    venv.EnvBuilder(with_pip=True, clear=True).create(prefix)
    _checked(
        [
            str(prefix / "bin" / "python"),
            "-m",
            "pip",
            "--disable-pip-version-check",
            "install",
            "-q",
            "-c",
            str(ROOT / "constraints.txt"),
            str(wheel),
        ],
        INSTALL_TIMEOUT,
        base,
    )
    return Installed(wheel=wheel, prefix=prefix, workdir=workdir)


def test_the_installed_command_runs(installed: Installed) -> None:
    done = installed.run(installed.upkeep_cmd, "--help")
    assert done.returncode == 0, done.stderr
    for command in ("serve", "deploy", "plan", "db", "inventory", "approve"):
        assert command in done.stdout


PROBE = """
import importlib.machinery, importlib.util, json, sys, sysconfig
import upkeep
site = sysconfig.get_paths()["purelib"]
import flows.inspection, upkeep.flows.inspection
print(json.dumps({
    "upkeep": upkeep.__file__,
    "site": site,
    "on_path": {n: importlib.machinery.PathFinder.find_spec(n) is not None
                for n in %r},
    "alias_is_module": sys.modules["flows.inspection"] is sys.modules["upkeep.flows.inspection"],
    "flow_module": flows.inspection.quarterly_health_inspection.fn.__module__,
}))
"""


def test_upkeep_is_the_installed_copy_and_its_only_import_name(installed: Installed) -> None:
    done = installed.run(installed.python, "-c", PROBE % (OLD_TOP_LEVEL,))
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    site = Path(probe["site"]).resolve()
    assert Path(probe["upkeep"]).resolve().is_relative_to(site), probe
    assert site.is_relative_to(installed.prefix.resolve())
    # nothing but the compat aliases answers to the old top-level names
    assert probe["on_path"] == dict.fromkeys(OLD_TOP_LEVEL, False), probe
    assert probe["alias_is_module"] and probe["flow_module"] == "upkeep.flows.inspection"
    tops = {p.name for p in site.iterdir()}
    assert not tops & set(OLD_TOP_LEVEL), sorted(tops & set(OLD_TOP_LEVEL))
    record = (next(site.glob("upkeep-*.dist-info")) / "top_level.txt").read_text().split()
    assert record == ["upkeep"]


def test_migrates_a_new_database_and_renders_the_annual_plan(installed: Installed) -> None:
    data = installed.workdir / "data"
    env = {
        "UPKEEP_DATA_DIR": str(data),
        "UPKEEP_DATABASE_URL": f"sqlite:///{installed.workdir / 'db' / 'upkeep.db'}",
    }
    inventory = installed.workdir / "inventory.yaml"
    inventory.write_text((ROOT / "tests" / "fixtures" / "inventory" / "good.yaml").read_text())
    cmd = installed.upkeep_cmd

    migrated = installed.run(cmd, "db", "upgrade", **env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "upgraded from nothing" in migrated.stdout
    current = installed.run(cmd, "db", "current", **env)
    head = head_revision()
    assert current.returncode == 0, current.stdout + current.stderr
    assert f"database: {head}; upkeep needs: {head}" in current.stdout

    loaded = installed.run(cmd, "inventory", "load", str(inventory), **env)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    planned = installed.run(cmd, "plan", "--contract", "ACME-OPS", "--year", "2027", **env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    html = data / "reports" / "ACME-OPS" / "2027" / "annual-plan-ACME-OPS-2027.html"
    ics = html.with_suffix(".ics")
    assert html.exists() and ics.exists(), planned.stdout
    page = html.read_text()
    assert "<html" in page.lower() and "ACME-OPS" in page and "Health inspection" in page
    assert "BEGIN:VCALENDAR" in ics.read_text()


def test_the_installed_wheel_serves_the_approval_page(installed: Installed, prod_api: Api) -> None:
    """``upkeep approvals serve`` from the wheel: its templates and stylesheet are shipped."""
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    env = installed.env(
        UPKEEP_DATA_DIR=str(installed.workdir / "page-data"),
        UPKEEP_APPROVALS_PORT=str(port),
        PREFECT_API_URL=prod_api.url,
    )
    proc = subprocess.Popen(
        [str(installed.upkeep_cmd), "approvals", "serve"],
        cwd=installed.workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until("the installed approval page", lambda: answers(f"{base}/healthz", proc))
        css = httpx.get(f"{base}/static/approvals.css", timeout=10)
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]
        assert "@media print" in css.text
        home = httpx.get(f"{base}/", timeout=10)
        assert home.status_code == 200 and "personal link" in home.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
