"""A local Prefect server for the demo: started on a free loopback port, stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx


class PrefectServerError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class LocalPrefectServer:
    """``prefect server start`` on 127.0.0.1:<free port> with its own home under ``home``."""

    def __init__(
        self,
        home: Path,
        port: int | None = None,
        startup_timeout: float = 90.0,
        extra_env: dict[str, str] | None = None,
    ):
        self.home = home
        self.extra_env = extra_env or {}
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        db_url = f"sqlite+aiosqlite:///{self.home / 'prefect.db'}"
        env.update(
            {
                "PREFECT_HOME": str(self.home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": db_url,
                "PREFECT_UI_API_URL": self.api_url,
            }
        )
        env.pop("PREFECT_API_URL", None)
        env.update(self.extra_env)
        return env

    def start(self) -> LocalPrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        prefect = Path(sys.executable).with_name("prefect")
        cmd = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrefectServerError(
                    f"prefect server exited with code {self.proc.returncode}; "
                    f"see {self.log_path}:\n{self.log_path.read_text()[-2000:]}"
                )
            if api_healthy(self.api_url, timeout=1.0):
                return self
            time.sleep(0.25)
        self.stop()
        raise PrefectServerError(
            f"prefect server did not answer on {self.api_url} within {self.startup_timeout:.0f}s;"
            f" see {self.log_path}"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> LocalPrefectServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
