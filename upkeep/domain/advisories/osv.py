"""OSV records (https://ossf.github.io/osv-schema/) read into :class:`Advisory`.

One reader for the shapes the distributions publish: Debian (``name`` is the source package),
Ubuntu (binary names and versions under ``ecosystem_specific.binaries``), AlmaLinux and Rocky
(binary RPM names, ``V-R`` or ``E:V-R``), and osv.dev's own records (an explicit ``versions``
list). Only ``ECOSYSTEM`` ranges are read: ``GIT`` and ``SEMVER`` ranges describe upstream
commits and library versions, not what a distribution ships.

A record whose shape is wrong raises ``ValueError`` naming the record (or, before its id is
known, the missing field), so a loader can say which file to look at; nothing is guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from upkeep.domain.advisories import Advisory, Affected
from upkeep.domain.advisories.match import family_of
from upkeep.domain.advisories.versions import UnsupportedFamily, validate

__all__ = ["parse_record", "parse_text"]

_RANGE_EVENTS = ("introduced", "fixed")
# Red Hat's impact ratings open AlmaLinux's and Rocky's summaries ("Important: openssl ...").
_RHEL_IMPACTS = ("critical", "important", "moderate", "low")
# The most severe first, across the words the records use (Ubuntu's priorities, Red Hat's
# impacts, osv.dev's database_specific severities).
_WORST_FIRST = (
    "critical",
    "high",
    "important",
    "medium",
    "moderate",
    "low",
    "negligible",
    "unimportant",
)


def parse_text(text: str, origin: str) -> Advisory:
    """One OSV record from a JSON file's text; errors name ``origin`` (the file)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{origin}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: not an OSV record (a JSON object)")
    try:
        return parse_record(data)
    except ValueError as exc:
        raise ValueError(f"{origin}: {exc}") from None


def parse_record(data: dict[str, Any]) -> Advisory:
    """One OSV record, as ``json.loads`` returns it."""
    record_id = data.get("id")
    if not isinstance(record_id, str) or not record_id.strip():
        raise ValueError("OSV record without an 'id'")
    try:
        return Advisory(
            id=record_id,
            modified=_modified(data.get("modified")),
            summary=_summary(data),
            severity=_severity(data),
            aliases=_aliases(data),
            affected=_affected(data.get("affected")),
        )
    except ValueError as exc:
        raise ValueError(f"OSV record {record_id}: {exc}") from None


def _modified(value: object) -> datetime:
    if not isinstance(value, str) or not value:
        raise ValueError("no 'modified' time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'modified' is not an RFC 3339 time: {value!r}") from None
    if when.tzinfo is None:
        # The schema says RFC 3339 in UTC ("Z"); a time without offset is read as UTC.
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _summary(data: dict[str, Any]) -> str:
    summary = data.get("summary")
    if isinstance(summary, str) and summary.strip():
        return summary.strip()
    details = data.get("details")
    if isinstance(details, str):
        for line in details.splitlines():
            if line.strip():
                return line.strip()
    return ""


def _severity(data: dict[str, Any]) -> str | None:
    """A readable severity: the record's own word where it has one, else its CVSS vector."""
    words: list[str] = []
    top = data.get("database_specific")
    if isinstance(top, dict) and isinstance(top.get("severity"), str):
        words.append(top["severity"])
    for entry in _dicts(data.get("affected")):
        for key in ("ecosystem_specific", "database_specific"):
            specific = entry.get(key)
            if not isinstance(specific, dict):
                continue
            for field in ("severity", "ubuntu_priority"):
                if isinstance(specific.get(field), str):
                    words.append(specific[field])
    if words:
        return _worst(words)
    summary = data.get("summary")
    if isinstance(summary, str) and ":" in summary:
        impact = summary.split(":", 1)[0].strip().lower()
        if impact in _RHEL_IMPACTS:
            return impact
    ubuntu = [
        item["score"]
        for entry in _dicts(data.get("affected"))
        for cve in _dicts(_get(entry, "database_specific", "cves_map", "cves"))
        for item in _dicts(cve.get("severity"))
        if item.get("type") == "Ubuntu" and isinstance(item.get("score"), str)
    ]
    if ubuntu:
        return _worst(ubuntu)
    for item in _dicts(data.get("severity")):
        if isinstance(item.get("type"), str) and isinstance(item.get("score"), str):
            return f"{item['type']} {item['score']}"
    return None


def _worst(words: list[str]) -> str:
    lowered = [w.strip().lower() for w in words if w.strip()]
    ranked = [w for w in lowered if w in _WORST_FIRST]
    if ranked:
        return min(ranked, key=_WORST_FIRST.index)
    return lowered[0] if lowered else words[0]


def _aliases(data: dict[str, Any]) -> tuple[str, ...]:
    """``aliases`` and ``upstream`` as given, and the CVE ids among ``related`` (AlmaLinux
    names its CVEs only there)."""
    names: list[str] = []
    for key in ("aliases", "upstream", "related"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"'{key}' is not a list of strings")
        names.extend(v for v in value if key != "related" or v.startswith("CVE-"))
    return tuple(dict.fromkeys(names))


def _affected(value: object) -> tuple[Affected, ...]:
    if not isinstance(value, list):
        raise ValueError("no 'affected' list")
    return tuple(_one_affected(entry, n) for n, entry in enumerate(value))


def _one_affected(entry: object, n: int) -> Affected:
    where = f"affected[{n}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not an object")
    package = entry.get("package")
    if not isinstance(package, dict):
        raise ValueError(f"{where} has no 'package'")
    ecosystem, name = package.get("ecosystem"), package.get("name")
    if not isinstance(ecosystem, str) or not ecosystem:
        raise ValueError(f"{where}.package has no 'ecosystem'")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.package has no 'name'")
    where = f"{where} ({ecosystem} {name})"

    introduced: list[str] = []
    fixed: list[str] = []
    ranges = entry.get("ranges", [])
    if not isinstance(ranges, list):
        raise ValueError(f"{where}: 'ranges' is not a list")
    for r in ranges:
        if not isinstance(r, dict) or not isinstance(r.get("events"), list):
            raise ValueError(f"{where}: a range without an 'events' list")
        if r.get("type") != "ECOSYSTEM":
            continue
        for event in r["events"]:
            if not isinstance(event, dict) or len(event) != 1:
                raise ValueError(f"{where}: an event is not one {{kind: version}} pair")
            ((kind, version),) = event.items()
            if kind not in _RANGE_EVENTS:
                # last_affected and limit would need their own semantics; dropping them
                # would widen the range silently.
                raise ValueError(f"{where}: the {kind!r} event is not supported")
            if not isinstance(version, str) or not version:
                raise ValueError(f"{where}: {kind} has no version")
            (introduced if kind == "introduced" else fixed).append(version)

    versions = entry.get("versions", [])
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise ValueError(f"{where}: 'versions' is not a list of strings")

    binaries: list[tuple[str, str]] = []
    for item in _listed(_get(entry, "ecosystem_specific", "binaries"), where):
        binary, version = item.get("binary_name"), item.get("binary_version", "")
        if not isinstance(binary, str) or not binary or not isinstance(version, str):
            raise ValueError(f"{where}: a binary without 'binary_name' or with a bad version")
        binaries.append((binary, version))

    _validate_versions(
        ecosystem,
        [v for v in introduced if v != "0"]
        + fixed
        + list(versions)
        + [v for _, v in binaries if v],
        where,
    )
    return Affected(
        ecosystem=ecosystem,
        name=name,
        introduced=tuple(introduced),
        fixed=tuple(fixed),
        binaries=tuple(binaries),
        versions=tuple(versions),
    )


def _validate_versions(ecosystem: str, versions: Iterable[str], where: str) -> None:
    """A malformed version is refused when the record is read, not when a host is matched."""
    try:
        family = family_of(ecosystem)
    except ValueError:
        return  # an ecosystem upkeep does not match against (npm, PyPI, ...): not checked
    try:
        for version in versions:
            validate(family, version)
    except UnsupportedFamily:
        return
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _get(data: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _listed(value: object, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"{where}: 'ecosystem_specific.binaries' is not a list of objects")
    return value
