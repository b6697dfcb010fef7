"""``upkeep approvals serve`` as an operator runs it: real processes, exit codes, messages."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import upkeep
from tests.polling import answers, wait_until
from upkeep.demo.sshd import free_loopback_port
from upkeep.domain.links import new_token

pytestmark = pytest.mark.e2e


def test_a_taken_port_stops_the_page_with_a_message_naming_the_setting(
    data_dir: Path, prefect_server: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = upkeep(
            "approvals",
            "serve",
            "--port",
            str(port),
            data_dir=data_dir,
            env={"PREFECT_API_URL": prefect_server},
            timeout=60,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"127.0.0.1:{port}" in done.stderr and "UPKEEP_APPROVALS_PORT" in done.stderr


def test_a_bad_public_url_is_refused_naming_the_variable(data_dir: Path) -> None:
    done = upkeep(
        "approvals",
        "serve",
        data_dir=data_dir,
        env={"UPKEEP_APPROVALS_PUBLIC_URL": "approve.provider.example"},
        timeout=60,
    )
    assert done.returncode == 2
    assert "UPKEEP_APPROVALS_PUBLIC_URL" in done.stderr


def test_the_page_serves_alone_and_logs_requests_without_the_token(
    data_dir: Path, prefect_server: str, tmp_path: Path
) -> None:
    port = free_loopback_port()
    log = tmp_path / "page.log"
    env = {
        "UPKEEP_DATA_DIR": str(data_dir),
        "PREFECT_API_URL": prefect_server,
        "UPKEEP_APPROVALS_PORT": str(port),
    }
    full = {k: v for k, v in os.environ.items() if not k.startswith("UPKEEP_")} | env
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "upkeep.cli", "approvals", "serve"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until("upkeep approvals serve to answer", lambda: answers(f"{base}/healthz", proc), 60)
        home = httpx.get(base + "/", timeout=10)
        assert home.status_code == 200 and "personal link" in home.text
        token = new_token()
        unknown = httpx.get(f"{base}/a/{token}", timeout=10)
        assert unknown.status_code == 404 and "This link is not valid" in unknown.text
        wait_until("the request in the log", lambda: "/a/<token>" in log.read_text(), 10)
        assert token not in log.read_text()
        assert f"links in e-mails point to {base}" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
