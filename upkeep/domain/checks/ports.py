"""[ports] Listening TCP ports (``ss``, else ``netstat``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from upkeep.domain.checks._common import sections, to_int
from upkeep.domain.checks.base import (
    Check,
    EvalContext,
    Measurement,
    ParseError,
    Severity,
    Thresholds,
)

# Old iproute2 (EL7) has no -H; the parser drops the header line of plain ss -tln.
COMMAND = (
    "if command -v ss >/dev/null 2>&1; then echo '@@ ss'; ss -Htln 2>/dev/null || ss -tln; "
    "elif command -v netstat >/dev/null 2>&1; then echo '@@ netstat'; netstat -tln; "
    "else echo 'UPKEEP-SKIP: neither ss nor netstat is installed'; fi"
)


class Listener(BaseModel):
    address: str
    port: int = Field(ge=0, le=65535)

    @property
    def loopback(self) -> bool:
        return self.address.startswith("127.") or self.address in ("::1", "localhost")


class PortFacts(BaseModel):
    tool: Literal["ss", "netstat"]
    listeners: list[Listener]
    """Sorted by port then address, without duplicates."""


def _split(local: str) -> Listener:
    address, sep, port = local.rpartition(":")
    if not sep:
        raise ParseError(f"no port in local address {local!r}")
    address = address.strip("[]")
    if "%" in address:  # 127.0.0.53%lo or fe80::1%eth0: the interface is not part of it
        address = address.split("%", 1)[0]
    return Listener(address=address or "*", port=to_int(port, "port"))


def _ss(lines: list[str]) -> list[Listener]:
    found = []
    for line in lines:
        words = line.split()
        if not words or words[0] in ("State", "Recv-Q", "Netid"):
            continue
        if len(words) < 5 or words[0] != "LISTEN":
            raise ParseError(f"not an ss listening row: {line[:80]!r}")
        found.append(_split(words[3]))
    return found


def _netstat(lines: list[str]) -> list[Listener]:
    found = []
    for line in lines:
        words = line.split()
        if not words or words[0] in ("Active", "Proto"):
            continue
        if len(words) != 6 or words[0] not in ("tcp", "tcp6") or words[5] != "LISTEN":
            raise ParseError(f"not a netstat listening row: {line[:80]!r}")
        found.append(_split(words[3]))
    return found


def parse(stdout: str) -> PortFacts:
    """Parse ``ss -tln`` (with or without header) or ``netstat -tln`` rows."""
    parts = sections(stdout)
    if len(parts) != 1 or parts[0][0][0] not in ("ss", "netstat"):
        raise ParseError("expected one ss or netstat section")
    (tool, *_), lines = parts[0]
    found = _ss(lines) if tool == "ss" else _netstat(lines)
    unique = {(lst.port, lst.address): lst for lst in found}
    return PortFacts(tool=tool, listeners=[unique[key] for key in sorted(unique)])  # type: ignore[arg-type]


def evaluate(facts: PortFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """One line per listener; minor when allowed_tcp_ports is set and the port is not in it.

    Loopback-only listeners are never findings: they are not reachable from the network.
    """
    allowed = thresholds.allowed_tcp_ports
    threshold = "" if allowed is None else "allowed: " + ", ".join(map(str, sorted(allowed)))
    if not facts.listeners:
        return [Measurement(subject="tcp", value="no listening ports", threshold=threshold)]
    out = []
    for lst in facts.listeners:
        subject = f"tcp/{lst.port}"
        value = f"listening on {lst.address}"
        if allowed is None or lst.port in allowed or lst.loopback:
            out.append(Measurement(subject=subject, value=value, threshold=threshold))
            continue
        out.append(
            Measurement(
                subject=subject,
                value=value,
                threshold=threshold,
                severity=Severity.MINOR,
                message=(
                    f"TCP port {lst.port} is listening on {lst.address} but is not in the "
                    "contract's allowed ports"
                ),
                evidence=f"{facts.tool}: {lst.address}:{lst.port} LISTEN",
                recommendation=(
                    f"Find the service (ss -tlnp 'sport = :{lst.port}'); stop it, bind it to "
                    "localhost or firewall it, or add the port to the contract's allowed list."
                ),
            )
        )
    return out


CHECK = Check(
    name="ports",
    title="Listening TCP ports",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    timeout=30,
)
