"""Inventory scans over real SSH: the sshd test hosts are this machine, so its real dpkg
database is what is read and stored."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from tests.apt_repo import steady_packages_fixture  # noqa: F401
from tests.e2e.test_cli import upkeep
from tests.flow_fixtures import host_entry, inventory_text
from upkeep.demo.sshd import ThrowawaySshd
from upkeep.inventory import apply_inventory, parse_inventory
from upkeep.models import Host, HostInventory
from upkeep.settings import Settings, SshSettings
from upkeep.tasks.inventory_scan import record_scan, scan_host
from upkeep.tasks.ssh import UnknownHostKey, trust_host_key

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("steady_packages")]
"""The sshd hosts are this machine: two scans compare only if no patch test installs or purges
its test package in between (another xdist worker may run one)."""


def load_host(engine: sa.Engine, server: ThrowawaySshd) -> Host:
    with Session(engine, expire_on_commit=False) as s:
        apply_inventory(s, parse_inventory(inventory_text([host_entry("web1", server)])))
        s.commit()
        return s.exec(select(Host).where(Host.name == "web1")).one()


@pytest.fixture
def scan_settings(settings: Settings, ssh_settings: SshSettings) -> Settings:
    return settings.model_copy(update={"ssh": ssh_settings})


def test_scan_recorded_twice_first_has_nothing_to_compare_second_shows_no_change(
    engine: sa.Engine, sshd: ThrowawaySshd, scan_settings: Settings
) -> None:
    host = load_host(engine, sshd)
    trust_host_key(scan_settings.known_hosts_file, sshd.address, sshd.port, sshd.host_key)
    first_scan = scan_host(host, scan_settings)
    with Session(engine, expire_on_commit=False) as s:
        first, none = record_scan(s, host, first_scan, flow_run_id="run-1")
        s.commit()
    assert none is None
    second_scan = scan_host(host, scan_settings)
    with Session(engine, expire_on_commit=False) as s:
        second, found = record_scan(s, host, second_scan)
        s.commit()
    assert found is not None and found.empty and found.since == first.taken_at
    assert second.id != first.id and second.taken_at >= first.taken_at
    with Session(engine) as s:
        stored = s.exec(select(HostInventory).order_by(col(HostInventory.id))).all()
    assert [r.flow_run_id for r in stored] == ["run-1", None]
    record = stored[0]
    assert record.host_id == host.id and record.contract_id == host.contract_id
    assert record.ecosystem == "Debian:12" and record.family == "dpkg"
    assert record.running_kernel == os.uname().release
    bash = [p for p in record.packages if p["name"] == "bash"]
    assert len(bash) == 1 and bash[0]["source"] == "bash"
    real = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "bash"], capture_output=True, text=True, check=True
    )
    assert bash[0]["version"] == real.stdout


def test_an_unknown_host_key_is_refused_and_nothing_is_recorded(
    engine: sa.Engine, sshd: ThrowawaySshd, other_sshd: ThrowawaySshd, scan_settings: Settings
) -> None:
    host = load_host(engine, sshd)
    trust_host_key(
        scan_settings.known_hosts_file, other_sshd.address, other_sshd.port, other_sshd.host_key
    )
    with pytest.raises(UnknownHostKey, match="upkeep hosts trust web1"):
        scan_host(host, scan_settings)
    with Session(engine) as s:
        assert s.exec(select(HostInventory)).all() == []


def load_one_host(
    directory: Path, data_dir: Path, sshd: ThrowawaySshd, env: dict[str, str]
) -> None:
    """``upkeep inventory load`` of contract ACME with the one host web1 (the sshd)."""
    inventory = directory / "inv.yaml"
    inventory.write_text(inventory_text([host_entry("web1", sshd)]))
    assert upkeep("inventory", "load", str(inventory), data_dir=data_dir, env=env).returncode == 0


def test_scan_command_exits_3_naming_an_unreached_host_then_prints_inventory_and_changes(
    data_dir: Path, tmp_path: Path, sshd: ThrowawaySshd, client_key
) -> None:
    env = {"UPKEEP_SSH_KEY_FILE": str(client_key.private)}
    load_one_host(tmp_path, data_dir, sshd, env)
    untrusted = upkeep("advisories", "scan", "--contract", "ACME", data_dir=data_dir, env=env)
    assert untrusted.returncode == 3
    assert "web1" in untrusted.stderr and "host_key_unknown" in untrusted.stderr
    trusted = upkeep("hosts", "trust", "web1", "--yes", data_dir=data_dir, env=env)
    assert trusted.returncode == 0, trusted.stderr
    first = upkeep("advisories", "scan", "--contract", "ACME", data_dir=data_dir, env=env)
    assert first.returncode == 0, first.stderr
    assert "web1: Debian:12" in first.stdout and "reboot required: unknown" in first.stdout
    assert "first scan" in first.stdout
    # As if bash had been upgraded and one package installed since the first scan.
    engine = sa.create_engine(f"sqlite:///{data_dir / 'upkeep.db'}")
    with Session(engine) as s:
        record = s.exec(select(HostInventory)).one()
        packages = [dict(p) for p in record.packages if p["name"] != "bash"]
        bash = next(p for p in record.packages if p["name"] == "bash")
        record.packages = [*packages[1:], {**bash, "version": "5.2.15-1~older"}]
        s.add(record)
        s.commit()
    changed = upkeep(
        "advisories", "scan", "--contract", "ACME", "--host", "web1", data_dir=data_dir, env=env
    )
    assert changed.returncode == 0, changed.stderr
    assert "1 added, 0 removed, 1 upgraded, 0 downgraded" in changed.stdout
    assert f"^ bash:amd64 5.2.15-1~older -> {bash['version']}" in changed.stdout
    assert f"+ {packages[0]['name']}" in changed.stdout
    again = upkeep("advisories", "scan", "--contract", "ACME", data_dir=data_dir, env=env)
    assert again.returncode == 0, again.stderr
    assert "no changes since" in again.stdout
