"""Benchmark: the host sweep through upkeep vs plain threaded paramiko vs ``ansible -m shell``.

Run it through ``bench/sweep`` (see bench/README.md). The driver (this file, no arguments
besides options) starts N throwaway sshd hosts on loopback once, one Prefect server once, and
then runs every measured sweep as a separate child process:

* ``upkeep``:   ``python bench/sweep.py --child upkeep SPEC``: ``flows.sweep.run_sweep`` with
  ``concurrency=C`` (Prefect tasks, SSH, parsing, evaluation, SQLite records);
* ``paramiko``: ``python bench/sweep.py --child paramiko SPEC``: a ThreadPoolExecutor of C
  workers, one paramiko SSHClient per host (RejectPolicy against the same known_hosts),
  every catalogue command run in turn on that connection and its output read;
* ``ansible``:  ``ansible all -i INV -m shell -a '<catalogue joined by newlines>' -f C``
  from its own virtualenv (bench/.venv-ansible).

Each child is reaped with ``os.wait4``: wall time (monotonic, around spawn and reap), CPU time
(user + sys of the child and every descendant it reaped) and peak RSS (``ru_maxrss``: the
largest single process of the tree). A sampler also sums the RSS of the whole live process
tree every 0.1 s ("tree RSS", which counts pages shared between forks more than once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROCESS_START = time.monotonic()

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
ANSIBLE_VENV = BENCH_DIR / ".venv-ansible"
TOOLS = ("upkeep", "paramiko", "ansible")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CONTRACT = "BENCH"


def catalogue_commands() -> list[str]:
    from upkeep.domain.checks import CATALOGUE
    from upkeep.domain.checks.base import Thresholds

    thresholds = Thresholds()
    return [check.render(thresholds) for check in CATALOGUE]


# -- children ----------------------------------------------------------------------------------


def child_paramiko(spec: dict[str, Any]) -> dict[str, Any]:
    import paramiko

    commands: list[str] = spec["commands"]
    key_file: str = spec["key_file"]
    known_hosts: str = spec["known_hosts"]

    def inspect(host: dict[str, Any]) -> tuple[int, int]:
        """(commands with exit 0, bytes of stdout)."""
        client = paramiko.SSHClient()
        client.get_host_keys().load(known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            host["address"],
            port=host["port"],
            username=host["user"],
            pkey=paramiko.PKey.from_path(key_file),
            timeout=10,
            allow_agent=False,
            look_for_keys=False,
        )
        ok = size = 0
        try:
            for command in commands:
                _, stdout, stderr = client.exec_command(command, timeout=60)
                out = stdout.read()
                stderr.read()
                ok += stdout.channel.recv_exit_status() == 0
                size += len(out)
        finally:
            client.close()
        return ok, size

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=spec["concurrency"]) as pool:
        results = list(pool.map(inspect, spec["hosts"]))
    sweep_wall = time.monotonic() - started
    return {
        "sweep_wall": sweep_wall,
        "startup": started - PROCESS_START,
        "hosts_ok": sum(ok == len(commands) for ok, _ in results),
        "commands_ok": sum(ok for ok, _ in results),
        "stdout_bytes": sum(size for _, size in results),
    }


def child_upkeep(spec: dict[str, Any]) -> dict[str, Any]:
    os.environ["UPKEEP_DATA_DIR"] = spec["data_dir"]
    os.environ["UPKEEP_SSH_KEY_FILE"] = spec["key_file"]
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )
    from sqlmodel import func, select

    from upkeep.db import engine_for, session_scope
    from upkeep.demo import drain_prefect_logs
    from upkeep.flows.sweep import SweepParams, run_sweep
    from upkeep.models import Finding, HostResult
    from upkeep.settings import get_settings, reset_settings

    reset_settings()
    updates = {PREFECT_API_URL: spec["api_url"], PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    started = time.monotonic()
    with temporary_settings(updates=updates):
        summary = run_sweep(
            SweepParams(contract=CONTRACT, kind="bench"), concurrency=spec["concurrency"]
        )
        swept = time.monotonic()
        drain_prefect_logs()
    finished = time.monotonic()
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        rows = db.exec(select(HostResult).where(HostResult.run_id == summary.run_id)).all()
        findings = db.exec(
            select(func.count()).select_from(Finding).where(Finding.run_id == summary.run_id)
        ).one()
    return {
        "sweep_wall": finished - started,
        "flow_wall": swept - started,
        "startup": started - PROCESS_START,
        "hosts_ok": sum(1 for r in rows if r.reachable),
        "host_results": len(rows),
        "findings": int(findings),
        "crashed": summary.crashed,
    }


def run_child(tool: str, spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    result = child_upkeep(spec) if tool == "upkeep" else child_paramiko(spec)
    print("BENCH-RESULT " + json.dumps(result), flush=True)


# -- measuring ---------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant (via /proc/PID/task/TID/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
            except OSError:
                continue
    return found


def tree_rss(pid: int) -> list[int]:
    """The RSS in bytes of ``pid`` and each live descendant."""
    sizes = []
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/statm") as fh:
                sizes.append(int(fh.read().split()[1]) * PAGE)
        except (OSError, IndexError, ValueError):
            continue
    return sizes


def tree_cpu(pid: int) -> float:
    """CPU seconds (user+sys, plus reaped children) of ``pid`` and its live descendants."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


class TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak, self.peak_one = pid, interval, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            sizes = tree_rss(self.pid)
            self.peak = max(self.peak, sum(sizes))
            self.peak_one = max(self.peak_one, max(sizes, default=0))


LAUNCHER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    with open(job["log"], "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(job["argv"], env=job["env"], cwd=job["cwd"], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        print(json.dumps({"pid": proc.pid}), flush=True)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps({"wall": wall, "utime": ru.ru_utime, "stime": ru.ru_stime,
                      "maxrss_kib": ru.ru_maxrss, "exit_code": proc.returncode}), flush=True)
"""


class Launcher:
    """A tiny process that spawns and reaps the measured children.

    Linux carries a process's peak RSS across fork and exec (``ru_maxrss`` starts from the
    parent's high-water mark), so children spawned by the driver, which has upkeep, SQLAlchemy
    and paramiko loaded, would all report at least the driver's RSS. The launcher is started
    before any of that is imported, so the floor is a bare interpreter's (recorded as
    ``maxrss_floor_mib`` in the results).
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER],
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def measure(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        log: Path,
        server_pid: int | None = None,
    ) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        server_cpu0 = tree_cpu(server_pid) if server_pid else 0.0
        job = {"argv": argv, "env": env, "cwd": str(cwd), "log": str(log)}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self.proc.stdout.readline())["pid"]
        sampler = TreeSampler(pid)
        sampler.start()
        done = json.loads(self.proc.stdout.readline())
        sampler.done.set()
        sampler.join()
        result: dict[str, Any] = {
            "wall": done["wall"],
            "cpu": done["utime"] + done["stime"],
            "cpu_user": done["utime"],
            "cpu_sys": done["stime"],
            "maxrss_mib": done["maxrss_kib"] / 1024,
            "tree_rss_mib": sampler.peak / 2**20,
            "proc_rss_mib": sampler.peak_one / 2**20,
            "exit_code": done["exit_code"],
            "log": str(log),
        }
        if server_pid:
            result["server_cpu"] = tree_cpu(server_pid) - server_cpu0
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# -- the driver --------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, launcher: Launcher) -> None:
        self.args = args
        self.launcher = launcher
        self.sizes: list[int] = args.sizes
        self.work = Path(tempfile.mkdtemp(prefix="upkeep-bench-"))
        self.servers: list[Any] = []
        self.prefect: Any = None
        self.commands = catalogue_commands()
        self.runs: list[dict[str, Any]] = []

    # setup

    def start_hosts(self, count: int) -> None:
        import upkeep.demo.sshd as sshd_mod
        from upkeep.demo.sshd import ThrowawaySshd, generate_keypair

        if self.args.tidy_hosts:
            # Make the loopback hosts look like ordinary servers (see README, "The hosts"):
            # remote commands get an empty HOME (root's ~/.bashrc here runs `pyenv init`, which
            # bash sources for every SSH command) and APT_CONFIG with a binary package cache
            # (the container's apt config disables it: `apt list` then parses every list).
            home = self.work / "host-home"
            home.mkdir()
            (home / ".bashrc").write_text("")
            apt = self.work / "apt"
            (apt / "parts").mkdir(parents=True)
            conf = apt / "apt.conf"
            conf.write_text(
                f'Dir::Etc::Parts "{apt / "parts"}";\n'
                f'Dir::Cache::pkgcache "{apt / "pkgcache.bin"}";\n'
                f'Dir::Cache::srcpkgcache "{apt / "srcpkgcache.bin"}";\n'
            )
            subprocess.run(
                ["apt-cache", "gencaches"],
                env={**os.environ, "APT_CONFIG": str(conf)},
                check=True,
                capture_output=True,
            )
            sshd_mod.SSHD_CONFIG += f"SetEnv HOME={home} APT_CONFIG={conf}\n"

        self.key = generate_keypair(self.work / "client_ed25519", "upkeep-bench")

        def start(i: int) -> Any:
            return ThrowawaySshd(client_key=self.key, workdir=self.work / f"sshd-{i:03d}").start()

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(start, i) for i in range(count)]
            for fut in futures:
                try:
                    self.servers.append(fut.result())
                except Exception:
                    for other in futures:
                        if other.done() and other.exception() is None:
                            self.servers.append(other.result())
                    raise
        self.known_hosts = self.work / "known_hosts"
        from upkeep.tasks.ssh import known_hosts_entry

        self.known_hosts.write_text(
            "".join(known_hosts_entry(s.address, s.port, s.host_key) + "\n" for s in self.servers)
        )
        self.known_hosts.chmod(0o600)
        say(
            f"{count} sshd hosts up in {time.monotonic() - started:.1f}s "
            f"(ports {self.servers[0].port}..{self.servers[-1].port})"
        )

    def host_cpu(self, n: int) -> float:
        """CPU seconds used so far by the first ``n`` sshd hosts (sessions and commands)."""
        return sum(tree_cpu(s.pid) for s in self.servers[:n] if s.pid)

    def hosts(self, n: int) -> list[dict[str, Any]]:
        return [
            {"name": f"host-{i:03d}", "address": s.address, "port": s.port, "user": s.user}
            for i, s in enumerate(self.servers[:n])
        ]

    def start_prefect(self) -> None:
        from upkeep.demo.prefect_server import LocalPrefectServer

        started = time.monotonic()
        self.prefect = LocalPrefectServer(self.work / "prefect-server").start()
        say(f"Prefect server on {self.prefect.api_url} in {time.monotonic() - started:.1f}s")

    def prepare_upkeep(self, n: int) -> Path:
        """A migrated upkeep data dir with an inventory of the first ``n`` hosts."""
        import yaml

        from upkeep.db import engine_for, session_scope, upgrade
        from upkeep.inventory import apply_inventory, parse_inventory

        data = self.work / f"upkeep-pristine-{n}"
        data.mkdir()
        doc = {
            "customers": [
                {
                    "code": "bench",
                    "name": "Bench Customer",
                    "contracts": [
                        {
                            "code": CONTRACT,
                            "name": "Bench contract",
                            "timezone": "UTC",
                            "approvers": [{"name": "Bench Owner", "email": "owner@bench.example"}],
                            "hosts": self.hosts(n),
                        }
                    ],
                }
            ]
        }
        engine = engine_for(f"sqlite:///{data / 'upkeep.db'}")
        upgrade(engine)
        with session_scope(engine) as db:
            apply_inventory(db, parse_inventory(yaml.safe_dump(doc, sort_keys=False)))
        engine.dispose()
        shutil.copy(self.known_hosts, data / "known_hosts")
        return data

    def ansible_inventory(self, n: int) -> Path:
        inv = self.work / f"ansible-{n}.ini"
        lines = ["[bench]"]
        lines += [
            f"{h['name']} ansible_host={h['address']} ansible_port={h['port']} "
            f"ansible_user={h['user']} ansible_ssh_private_key_file={self.key.private}"
            for h in self.hosts(n)
        ]
        lines += ["", "[all:vars]", f"ansible_python_interpreter={self.args.remote_python}"]
        inv.write_text("\n".join(lines) + "\n")
        return inv

    # one run of one tool

    def run_tool(self, tool: str, n: int, rep: int, pristine: Path | None) -> dict[str, Any]:
        run_dir = self.work / "runs" / f"{tool}-{n}-{rep}"
        run_dir.mkdir(parents=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("UPKEEP_", "PREFECT_", "ANSIBLE_"))
        }
        spec = {
            "hosts": self.hosts(n),
            "commands": self.commands,
            "concurrency": self.args.forks,
            "key_file": str(self.key.private),
            "known_hosts": str(self.known_hosts),
        }
        server_pid = None
        if tool == "ansible":
            env.update(
                {
                    "ANSIBLE_HOME": str(run_dir / "ansible-home"),
                    "ANSIBLE_LOCAL_TEMP": str(run_dir / "ansible-tmp"),
                    "ANSIBLE_SSH_CONTROL_PATH_DIR": str(run_dir / "cp"),
                    "ANSIBLE_HOST_KEY_CHECKING": "True",
                    "ANSIBLE_PIPELINING": "True",
                    "ANSIBLE_SSH_ARGS": self.args.ansible_ssh_args,
                    "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_DEPRECATION_WARNINGS": "False",
                    "ANSIBLE_CONFIG": str(run_dir / "ansible.cfg"),  # absent: no stray config
                }
            )
            ssh_common = (
                f"-o UserKnownHostsFile={self.known_hosts} "
                "-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"
            )
            argv = [
                str(ANSIBLE_VENV / "bin" / "ansible"),
                "all",
                "-i",
                str(self.ansible_inventory(n)),
                "-m",
                "shell",
                "-a",
                "\n".join(self.commands),
                "-f",
                str(self.args.forks),
                "-o",
                "-e",
                f"ansible_ssh_common_args='{ssh_common}'",
            ]
        else:
            if tool == "upkeep":
                assert pristine is not None and self.prefect is not None
                data = run_dir / "data"
                shutil.copytree(pristine, data)
                spec.update({"data_dir": str(data), "api_url": self.prefect.api_url})
                env["PREFECT_HOME"] = str(run_dir / "prefect-home")
                server_pid = self.prefect.proc.pid
            spec_file = run_dir / "spec.json"
            spec_file.write_text(json.dumps(spec))
            env["PYTHONPATH"] = str(ROOT)
            argv = [sys.executable, str(Path(__file__).resolve()), "--child", tool, str(spec_file)]
        host_cpu0 = self.host_cpu(n)
        m = self.launcher.measure(argv, env, run_dir, run_dir / "output.log", server_pid)
        m["host_cpu"] = self.host_cpu(n) - host_cpu0
        m.update({"tool": tool, "hosts": n, "rep": rep})
        m.update(self.check_output(tool, n, Path(m["log"])))
        return m

    def check_output(self, tool: str, n: int, log: Path) -> dict[str, Any]:
        text = log.read_text(errors="replace")
        if tool == "ansible":
            ok = sum(1 for line in text.splitlines() if " | CHANGED | rc=0 |" in line)
            return {"hosts_ok": ok}
        for line in reversed(text.splitlines()):
            if line.startswith("BENCH-RESULT "):
                return dict(json.loads(line.removeprefix("BENCH-RESULT ")))
        return {"hosts_ok": 0, "error": text[-2000:]}

    # the whole thing

    def run(self) -> dict[str, Any]:
        tools = self.args.tools
        try:
            self.start_hosts(max(self.sizes))
            if "upkeep" in tools:
                self.start_prefect()
            pristine = {n: self.prepare_upkeep(n) for n in self.sizes} if "upkeep" in tools else {}
            if self.args.warmup:
                warm = min(self.sizes)
                for tool in tools:
                    m = self.run_tool(tool, warm, -1, pristine.get(warm))
                    say(f"warm-up {tool:8s} N={warm}: {m['wall']:.2f}s, {m['hosts_ok']} ok")
            for n in self.sizes:
                for rep in range(self.args.repeat):
                    order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
                    for tool in order:
                        m = self.run_tool(tool, n, rep, pristine.get(n))
                        self.runs.append(m)
                        flag = "" if m["hosts_ok"] == n and m["exit_code"] == 0 else "  <-- FAILED"
                        say(
                            f"N={n:3d} rep {rep + 1}/{self.args.repeat} {tool:8s} "
                            f"wall {m['wall']:6.2f}s cpu {m['cpu']:6.2f}s "
                            f"maxrss {m['maxrss_mib']:6.0f}MiB tree {m['tree_rss_mib']:6.0f}MiB "
                            f"ok {m['hosts_ok']}/{n}{flag}"
                        )
            if self.args.profile:
                self.profile_upkeep(max(self.sizes), pristine[max(self.sizes)])
        finally:
            self.stop()
        return self.summary()

    def profile_upkeep(self, n: int, pristine: Path) -> None:
        """One more (unmeasured) upkeep run under py-spy: samples of the thread holding the GIL."""
        out = BENCH_DIR / "results" / f"profile-upkeep-{n}.folded"
        out.parent.mkdir(parents=True, exist_ok=True)
        run_dir = self.work / "runs" / f"profile-{n}"
        run_dir.mkdir(parents=True)
        data = run_dir / "data"
        shutil.copytree(pristine, data)
        assert self.prefect is not None
        spec = {
            "hosts": self.hosts(n),
            "concurrency": self.args.forks,
            "key_file": str(self.key.private),
            "known_hosts": str(self.known_hosts),
            "data_dir": str(data),
            "api_url": self.prefect.api_url,
        }
        (run_dir / "spec.json").write_text(json.dumps(spec))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UPKEEP_", "PREFECT_"))}
        env.update({"PYTHONPATH": str(ROOT), "PREFECT_HOME": str(run_dir / "prefect-home")})
        argv = [
            self.args.profile,
            "record",
            "--format",
            "raw",
            "--rate",
            "200",
            "--threads",
            "--gil",
            "-o",
            str(out),
            "--",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "upkeep",
            str(run_dir / "spec.json"),
        ]
        with (run_dir / "output.log").open("wb") as log:
            subprocess.run(
                argv, env=env, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, check=True
            )
        say(f"py-spy profile of upkeep at N={n}: {out}")

    def stop(self) -> None:
        if self.prefect is not None:
            self.prefect.stop()
        for server in self.servers:
            server.stop()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            say(f"kept {self.work}")

    def summary(self) -> dict[str, Any]:
        medians: dict[str, dict[str, dict[str, float]]] = {}
        keys = (
            "wall",
            "cpu",
            "maxrss_mib",
            "tree_rss_mib",
            "proc_rss_mib",
            "sweep_wall",
            "server_cpu",
            "host_cpu",
        )
        for n in self.sizes:
            medians[str(n)] = {}
            for tool in self.args.tools:
                runs = [r for r in self.runs if r["tool"] == tool and r["hosts"] == n]
                medians[str(n)][tool] = {
                    k: statistics.median(r[k] for r in runs) for k in keys if runs and k in runs[0]
                }
                medians[str(n)][tool]["failed_runs"] = sum(
                    1 for r in runs if r["hosts_ok"] != n or r["exit_code"] != 0
                )
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "options": {
                "hosts": self.sizes,
                "repeat": self.args.repeat,
                "concurrency": self.args.forks,
                "tidy_hosts": self.args.tidy_hosts,
                "ansible_ssh_args": self.args.ansible_ssh_args,
                "commands": len(self.commands),
            },
            "medians": medians,
            "runs": self.runs,
        }


def machine_info() -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    import paramiko
    import prefect

    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gib": round(mem, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        "paramiko": paramiko.__version__,
        "ansible": version([str(ANSIBLE_VENV / "bin" / "ansible"), "--version"]),
        "openssh": version(["ssh", "-V"]),
    }


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def print_table(summary: dict[str, Any]) -> str:
    lines = [
        "| N | tool | wall s | sweep s | CPU s | host CPU s | peak RSS MiB | tree RSS MiB"
        " | failed |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, tools in summary["medians"].items():
        for tool, m in tools.items():
            cpu = f"{m['cpu']:.2f}"
            if "server_cpu" in m:
                cpu += f" (+{m['server_cpu']:.2f} server)"
            sweep = f"{m['sweep_wall']:.2f}" if "sweep_wall" in m else "-"
            lines.append(
                f"| {n} | {tool} | {m['wall']:.2f} | {sweep} | {cpu} | "
                f"{m.get('host_cpu', 0):.1f} | "
                f"{m['maxrss_mib']:.0f} | {m['tree_rss_mib']:.0f} | "
                f"{m['failed_runs']} |"
            )
    lines += [
        "",
        "| N | upkeep/paramiko wall | (sweep only) | CPU | CPU incl. server | RSS |"
        " ansible/upkeep wall | CPU | tree RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, tools in summary["medians"].items():
        u, p, a = (tools.get(t, {}) for t in TOOLS)
        ucpu_all = (u.get("cpu", 0) + u.get("server_cpu", 0)) or None
        lines.append(
            f"| {n} | {ratio(u.get('wall'), p.get('wall'))} "
            f"| {ratio(u.get('sweep_wall'), p.get('sweep_wall'))} "
            f"| {ratio(u.get('cpu'), p.get('cpu'))} | {ratio(ucpu_all, p.get('cpu'))} "
            f"| {ratio(u.get('maxrss_mib'), p.get('maxrss_mib'))} "
            f"| {ratio(a.get('wall'), u.get('wall'))} | {ratio(a.get('cpu'), u.get('cpu'))} "
            f"| {ratio(a.get('tree_rss_mib'), u.get('tree_rss_mib'))} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/sweep", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default="10,50,100", help="host counts (default 10,50,100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool and size (median)")
    parser.add_argument("--quick", action="store_true", help="N=5, one run: a smoke test")
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help="subset of upkeep,paramiko,ansible"
    )
    parser.add_argument(
        "--concurrency",
        dest="forks",
        type=int,
        default=50,
        help="workers / ansible forks (default 50)",
    )
    parser.add_argument(
        "--raw-hosts",
        dest="tidy_hosts",
        action="store_false",
        help="run commands with root's real HOME and apt config (slow, see README)",
    )
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument(
        "--ansible-ssh-args",
        default="-o ControlMaster=no",
        help="ANSIBLE_SSH_ARGS (default: no control master, see README)",
    )
    parser.add_argument(
        "--remote-python",
        default="/usr/bin/python3",
        help="ansible_python_interpreter on the hosts",
    )
    parser.add_argument(
        "--profile",
        metavar="PY_SPY",
        help="also profile one upkeep run at the largest N with this py-spy",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, DBs)")
    parser.add_argument(
        "--output", type=Path, help="JSON results (default bench/results/DATE.json)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.repeat = "5", 1
    args.sizes = sorted({int(x) for x in args.hosts.split(",") if x.strip()})
    args.tools = [t for t in args.tools.split(",") if t]
    unknown = set(args.tools) - set(TOOLS)
    if unknown or not args.tools:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2])
        return 0
    args = parse_args(argv)
    if "ansible" in args.tools and not (ANSIBLE_VENV / "bin" / "ansible").exists():
        say(f"{ANSIBLE_VENV} has no ansible: run bench/sweep (it creates it)")
        return 2
    launcher = Launcher()  # first, while this process is small (see Launcher)
    try:
        floor = launcher.measure(["true"], dict(os.environ), BENCH_DIR, Path(os.devnull))
        summary = Bench(args, launcher).run()
    finally:
        launcher.close()
    summary["options"]["maxrss_floor_mib"] = floor["maxrss_mib"]
    table = print_table(summary)
    print(table)
    out = args.output or BENCH_DIR / "results" / (
        datetime.now().strftime("%Y-%m-%dT%H%M") + ("-quick" if args.quick else "") + ".json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**summary, "table": table}, indent=1) + "\n")
    say(f"results: {out}")
    failed = sum(m["failed_runs"] for tools in summary["medians"].values() for m in tools.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
