"""A host's package inventory over SSH, stored as a dated record and compared with the last.

:func:`scan_host` runs the catalogue's :data:`~upkeep.domain.advisories.scan.INVENTORY_COMMAND`
through the same SSH layer as the health checks (host key verified against upkeep's
known_hosts, the settings' timeouts); :func:`record_scan` stores a :class:`HostInventory` and
says what changed since the host's previous one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import cast

from sqlmodel import Session, col, select

from upkeep.domain.advisories import Family, Installed
from upkeep.domain.advisories.scan import INVENTORY_COMMAND, Changes, Scan, changes, parse_scan
from upkeep.domain.checks.base import ParseError
from upkeep.models import Host, HostInventory, utcnow
from upkeep.settings import Settings
from upkeep.tasks.inspect import target_for
from upkeep.tasks.ssh import SshSession

__all__ = [
    "ScanUnreadable",
    "previous_inventory",
    "record_scan",
    "scan_host",
    "stored_packages",
]


class ScanUnreadable(ValueError):
    """The host answered, but not with an inventory upkeep can read; names host and section."""


def scan_host(host: Host, settings: Settings) -> Scan:
    """Run the inventory command on ``host`` and parse it.

    SSH failures (unreachable, unknown or changed host key, timeouts) raise
    :class:`~upkeep.tasks.ssh.SshError` before anything is read; output that cannot be read
    raises :class:`ScanUnreadable` naming the host and the section.
    """
    target = target_for(host, settings)
    with SshSession(target, settings.ssh, settings.known_hosts_file) as ssh:
        raw = ssh.run_checked(INVENTORY_COMMAND)
    try:
        scan = parse_scan(raw.stdout)
    except ParseError as exc:
        raise ScanUnreadable(f"{host.name}: {exc}") from exc
    return replace(scan, taken_at=raw.finished_at or utcnow())


def _row(p: Installed) -> dict[str, str]:
    return {
        "name": p.name,
        "version": p.version,
        "arch": p.arch,
        "source": p.source,
        "source_version": p.source_version,
    }


def stored_packages(inventory: HostInventory) -> list[Installed]:
    """The packages of a stored inventory, as :class:`Installed`."""
    return [
        Installed(
            name=row["name"],
            version=row["version"],
            arch=row.get("arch", ""),
            source=row.get("source", ""),
            source_version=row.get("source_version", ""),
        )
        for row in inventory.packages
    ]


def previous_inventory(
    *, session: Session, host_id: int, at: datetime | None = None
) -> HostInventory | None:
    """The host's latest stored inventory (taken at or before ``at`` when given), or None."""
    query = select(HostInventory).where(HostInventory.host_id == host_id)
    if at is not None:
        query = query.where(col(HostInventory.taken_at) <= at)
    return session.exec(
        query.order_by(col(HostInventory.taken_at).desc(), col(HostInventory.id).desc())
    ).first()


def record_scan(
    session: Session,
    host: Host,
    scan: Scan,
    flow_run_id: str | None = None,
    since: datetime | None = None,
) -> tuple[HostInventory, Changes | None]:
    """Store ``scan`` as the host's newest inventory; the changes since its previous one
    (or since the last one taken at or before ``since``; None when there is none). A host
    whose ecosystem changed (reinstalled) shows every package as removed and added, with
    ``platform_before`` set."""
    assert host.id is not None
    before = previous_inventory(session=session, host_id=host.id, at=since)
    record = HostInventory(
        host_id=host.id,
        contract_id=host.contract_id,
        taken_at=scan.taken_at or utcnow(),
        flow_run_id=flow_run_id,
        ecosystem=scan.platform.ecosystem,
        family=scan.platform.family,
        os_pretty=scan.platform.pretty[:200],
        running_kernel=scan.running_kernel[:200],
        installed_kernels=list(scan.installed_kernels),
        reboot_required=scan.reboot_required,
        reboot_detail=scan.reboot_detail,
        packages=[_row(p) for p in scan.packages],
    )
    session.add(record)
    session.flush()
    if before is None:
        return record, None
    old = stored_packages(before)
    if before.ecosystem != scan.platform.ecosystem or before.family != scan.platform.family:
        key = lambda p: (p.name, p.arch, p.version)  # noqa: E731
        found = Changes(
            added=sorted(scan.packages, key=key),
            removed=sorted(old, key=key),
            since=before.taken_at,
            platform_before=before.ecosystem,
        )
    else:
        diff = changes(old, scan.packages, cast(Family, scan.platform.family))
        found = replace(diff, since=before.taken_at)
    return record, found
