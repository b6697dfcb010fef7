"""The README's reverse proxy, as written: examples/nginx-approvals.conf (values substituted)
in front of a served upkeep, TLS with a throwaway certificate. The approver decides through
the proxy; the Prefect API is not reachable through it; nothing on the way logs the token."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http_service import self_signed_files
from tests.polling import wait_until
from tests.production.stack import Api, ServeUpkeep
from upkeep.demo import CSRF_RE
from upkeep.demo.sshd import free_loopback_port

pytestmark = pytest.mark.production

EXAMPLE = Path(__file__).parents[2] / "examples" / "nginx-approvals.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Proxy:
    """nginx with the example's server blocks, as an unprivileged process."""

    def __init__(self, workdir: Path, page_port: int) -> None:
        self.dir = workdir
        self.https_port, self.http_port = free_loopback_port(), free_loopback_port()
        self.cert, key = self_signed_files(workdir)
        site = EXAMPLE.read_text()
        for old, new in {
            "server 127.0.0.1:8470;": f"server 127.0.0.1:{page_port};",
            "listen 443 ssl;": f"listen 127.0.0.1:{self.https_port} ssl;",
            "listen 80;": f"listen 127.0.0.1:{self.http_port};",
            "/etc/ssl/certs/approve.provider.example.pem": str(self.cert),
            "/etc/ssl/private/approve.provider.example.key": str(key),
            "/var/log/nginx/": f"{workdir}/",
        }.items():
            assert old in site, f"the example no longer has {old!r}"
            site = site.replace(old, new)
        (workdir / "site.conf").write_text(site)
        (workdir / "nginx.conf").write_text(
            f"pid {workdir}/nginx.pid;\nerror_log {workdir}/main-error.log;\n"
            "events {}\nhttp {\n"
            f"  client_body_temp_path {workdir}/body;\n  proxy_temp_path {workdir}/proxy;\n"
            f"  fastcgi_temp_path {workdir}/fcgi;\n  uwsgi_temp_path {workdir}/uwsgi;\n"
            f"  scgi_temp_path {workdir}/scgi;\n  include {workdir}/site.conf;\n}}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def __enter__(self) -> Proxy:
        cmd = [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]
        checked = subprocess.run([*cmd, "-t"], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        self.proc = subprocess.Popen([*cmd, "-g", "daemon off;"], stderr=subprocess.PIPE)
        wait_until("nginx to listen", self._up, 30)
        return self

    def _up(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "nginx exited"
        try:
            httpx.get(f"http://127.0.0.1:{self.http_port}/", timeout=2)
        except httpx.TransportError:
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def logs(self) -> str:
        return "".join(p.read_text() for p in self.dir.glob("*.log"))

    def client(self) -> httpx.Client:
        """A client on 127.0.0.2, so the page's log shows whether it saw the client's address
        (X-Forwarded-For from the trusted proxy) or the proxy's (127.0.0.1)."""
        context = ssl.create_default_context(cafile=str(self.cert))
        transport = httpx.HTTPTransport(verify=context, local_address="127.0.0.2")
        return httpx.Client(transport=transport, timeout=120)


@pytest.fixture
def proxy_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "nginx"
    d.mkdir()
    yield d


def test_an_approver_decides_through_the_example_proxy_and_the_prefect_api_stays_private(
    serve_upkeep: ServeUpkeep, prod_api: Api, proxy_dir: Path
) -> None:
    page_port = free_loopback_port()
    with Proxy(proxy_dir, page_port) as proxy:
        served = serve_upkeep(
            "PROXIED",
            env={
                "UPKEEP_APPROVALS_PORT": str(page_port),
                "UPKEEP_APPROVALS_PUBLIC_URL": proxy.url,
            },
        )
        run_id = prod_api.start("inspection", "proxied")
        link = served.mailbox.wait_link("alice@customer.example")
        token = link.rsplit("/", 1)[1]
        assert link.startswith(proxy.url + "/a/"), link  # the e-mail points at the proxy

        with proxy.client() as client:
            page = client.get(link)
            assert page.status_code == 200, page.text
            assert "web1" in page.text
            cookie = page.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            assert "strict-transport-security" in page.headers
            csrf = CSRF_RE.search(page.text)
            assert csrf is not None
            done = client.post(
                link,
                data={"csrf": csrf.group(1), "decision": "approve", "comment": ""},
                headers={"origin": proxy.url},
            )
            assert done.status_code == 200, done.text
            assert "Accepted: the request is approved" in done.text
            # Only the page's paths pass: not the Prefect API, not the page's own health.
            for path in ("/api/health", "/api/flow_runs/filter", "/docs", "/healthz"):
                assert client.get(proxy.url + path).status_code == 404, path
            # Plain http is sent to https.
            plain = httpx.get(f"http://127.0.0.1:{proxy.http_port}/a/x", timeout=10)
            assert plain.status_code == 301

        prod_api.wait_state(run_id, "COMPLETED", timeout=240)
        # The page saw the approver's address through the proxy, and nothing logged the token.
        assert '127.0.0.2 "POST /a/<token>" 200' in served.log(), served.log()[-3000:]
        assert token not in served.log()
        assert token not in proxy.logs()
