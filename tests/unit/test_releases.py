"""The release record, pure: the system's release settings as the inventory writes them, the
commands with the version quoted in, and a declared release validated (window, blackouts,
hosts, canary, test report)."""

from __future__ import annotations

import shlex
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from upkeep.domain.cadence import Blackout
from upkeep.domain.releases import (
    ChecklistItem,
    Declared,
    ReleaseError,
    ReleaseSpec,
    canary_hosts,
    command_problems,
    render_command,
    validate_release,
)

SPEC = ReleaseSpec(
    release_command="/opt/app/bin/switch --to {version} --restart",
    rollback_command="/opt/app/bin/switch --previous",
)
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
HOSTS = ["app1", "app2", "app3", "app4", "app5"]


def test_the_version_is_quoted_into_the_command() -> None:
    assert render_command(SPEC.release_command, "2.4.1") == (
        "/opt/app/bin/switch --to 2.4.1 --restart"
    )
    assert render_command("deploy 'release {version}'", "1.0") == "deploy 'release 1.0'"
    for bad in ("1.0; rm -rf /", "$(id)", "1.0 --force", "", "../x"):
        with pytest.raises(ReleaseError):
            render_command(SPEC.release_command, bad)


def test_a_rendered_command_splits_back_into_the_template_words() -> None:
    line = render_command("run --tag=v{version} 'two words'", "1.2.3+b4~rc1")
    assert shlex.split(line) == ["run", "--tag=v1.2.3+b4~rc1", "two words"]


def test_commands_with_other_placeholders_or_bad_quoting_are_refused() -> None:
    assert command_problems("deploy {host}") == [
        "'{host}' uses {host}: the only placeholder is {version}"
    ]
    assert "cannot be split" in command_problems("deploy 'unclosed")[0]
    assert command_problems("   ") == ["is empty"]
    assert command_problems("echo {{literal}} {version}") == []
    with pytest.raises(ValidationError, match="only placeholder is"):
        ReleaseSpec(release_command="x {password}", rollback_command="y")


def test_checklist_items_say_who_checks_them() -> None:
    with pytest.raises(ValidationError, match="needs a check"):
        ChecklistItem(name="disk", kind="automatic")
    with pytest.raises(ValidationError, match="confirmed by a person"):
        ChecklistItem(name="ops", kind="manual", description="x", check="hosts_healthy")
    with pytest.raises(ValidationError, match="needs a description"):
        ChecklistItem(name="ops", kind="manual")
    with pytest.raises(ValidationError, match="unique: a"):
        ReleaseSpec(
            release_command="x",
            rollback_command="y",
            checklist=[
                ChecklistItem(name="a", kind="automatic", check="hosts_healthy"),
                ChecklistItem(name="a", kind="automatic", check="smoke_checks"),
            ],
        )


def test_the_canary_is_a_share_of_the_hosts_never_all_of_them() -> None:
    assert canary_hosts(HOSTS, 0.1, []) == ("app1",)
    assert canary_hosts(HOSTS, 0.5, []) == ("app1", "app2", "app3")
    assert canary_hosts(HOSTS, 0.99, []) == ("app1", "app2", "app3", "app4")
    assert canary_hosts(["only"], 0.1, []) == ("only",)
    assert canary_hosts(HOSTS, 0.1, ["app4", "app2"]) == ("app2", "app4")


def _declared(tmp_path: Path, **changes: object) -> Declared:
    report = tmp_path / "test-report.md"
    if not report.exists():
        report.write_text("# Test report\nall green\n")
    values: dict[str, object] = {
        "contract": "ACME",
        "system": "shop",
        "version": "2.4.1",
        "changes": "- orders API: faster search\n",
        "window": "2026-12-10 22:00",
        "test_report": report,
    }
    values.update(changes)
    return Declared(**values)  # type: ignore[arg-type]


def _validate(declared: Declared, hosts: list[str] = HOSTS, blackouts=()) -> object:
    return validate_release(
        declared,
        timezone="Europe/Berlin",
        system_hosts=hosts,
        spec=SPEC,
        blackouts=list(blackouts),
        now=NOW,
    )


def test_a_good_declaration_in_the_contract_timezone(tmp_path: Path) -> None:
    valid = _validate(_declared(tmp_path))
    assert valid.window_utc == datetime(2026, 12, 10, 21, 0, tzinfo=UTC)  # type: ignore[attr-defined]
    assert valid.canary == ("app1",) and valid.hosts == tuple(HOSTS)  # type: ignore[attr-defined]


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    report = tmp_path / "notes.txt"
    report.write_text("x")
    with pytest.raises(ReleaseError) as info:
        _validate(
            _declared(
                tmp_path,
                version="2.4.1; reboot",
                changes="  ",
                window="10.12.2026 22:00",
                test_report=report,
                canary=("db1",),
            )
        )
    text = str(info.value)
    for expected in (
        "version '2.4.1; reboot'",
        "the change list is empty",
        "write YYYY-MM-DD HH:MM (Europe/Berlin)",
        "canary host(s) db1 are not hosts of system shop",
        "HTML, PDF or Markdown",
    ):
        assert expected in text, text


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("2026-12-01 22:00", "is not in the future"),
        ("2027-03-28 02:30", "does not exist in Europe/Berlin"),  # the spring-forward gap
        ("2026-12-24 20:00", "is a blackout day of the contract (Christmas Eve)"),
    ],
)
def test_the_window_must_be_a_real_future_allowed_time(
    tmp_path: Path, window: str, expected: str
) -> None:
    blackouts = [Blackout(date(2026, 12, 24), date(2026, 12, 24), "Christmas Eve")]
    with pytest.raises(ReleaseError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        _validate(_declared(tmp_path, window=window), blackouts=blackouts)


def test_hosts_canary_and_report_problems(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="no active host of system shop"):
        _validate(_declared(tmp_path), hosts=[])
    with pytest.raises(ReleaseError, match="every host is a canary"):
        _validate(_declared(tmp_path, canary=("a", "b")), hosts=["a", "b"])
    with pytest.raises(ReleaseError, match="does not exist"):
        _validate(_declared(tmp_path, test_report=tmp_path / "missing.pdf"))
    empty = tmp_path / "empty.html"
    empty.write_text("")
    with pytest.raises(ReleaseError, match="is empty"):
        _validate(_declared(tmp_path, test_report=empty))


def test_the_rollback_clock_holds_only_when_verified_within_the_limit() -> None:
    from datetime import timedelta

    from upkeep.domain.releases import RollbackClock

    start = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)
    kept = RollbackClock(start, start + timedelta(minutes=12), 60, True)
    assert kept.kept and kept.text() == "rolled back and verified in 12.0 min (limit 60 min)"
    late = RollbackClock(start, start + timedelta(minutes=75), 60, True)
    assert not late.kept and "LATE, the limit is 60 min" in late.text()
    unverified = RollbackClock(start, start + timedelta(seconds=3), 60, False)
    assert not unverified.kept and unverified.text().startswith("rollback NOT verified after 3.0 s")


def test_manual_items_must_all_be_confirmed_and_exist() -> None:
    from upkeep.domain.releases import missing_confirmations

    assert missing_confirmations(["a", "b"], ["b"]) == ["a"]
    assert missing_confirmations(["a", "b"], ["a", "b"]) == []
    with pytest.raises(ValueError, match="not checklist items: c"):
        missing_confirmations(["a"], ["a", "c"])


def test_the_approvers_evidence_escapes_what_people_typed() -> None:
    from upkeep.domain.releases import release_markdown

    text = release_markdown(
        contract="ACME",
        system="shop",
        version="2.0",
        changes="- fix <script>alert(1)</script> in *search*",
        window="2026-12-10 22:00 CET",
        hosts=["app1", "app2"],
        canary=["app1"],
        report_name="report_[x].md",
        report_sha256="ab" * 32,
        checks=[("smoke", True, "health: ok (HTTP 200 in 4 ms)")],
        confirmed=[("db-migration", "confirmed by Eve")],
    )
    assert "<script>" not in text and "\\*search\\*" in text
    assert "- ok: smoke: health: ok" in text and "db-migration: confirmed by Eve" in text


def test_a_contract_with_release_settings_gets_a_release_deployment() -> None:
    from upkeep.domain.contract import ContractView
    from upkeep.domain.interfaces import SmokeCheck, SystemSpec
    from upkeep.domain.processes import specs_for

    check = SmokeCheck(name="h", url="https://shop.example/health")
    plain = SystemSpec(name="shop", smoke_checks=[check])
    released = SystemSpec(name="shop", smoke_checks=[check], release=SPEC)

    def processes(system: SystemSpec) -> dict[str, object]:
        view = ContractView(id=1, code="ACME", name="x", customer_id=1, systems=(system,))
        return {s.process: s for s in specs_for(view)}

    assert not {"release", "release_declare", "release_effect"} & set(processes(plain))
    declare = processes(released)["release_declare"]  # the UI's form: contract filled in
    assert declare.cadence is None and declare.parameters == {"params": {"contract": "ACME"}}
    assert declare.flow == "upkeep.flows.release:declare"
    spec = processes(released)["release"]
    assert spec.cadence is None and spec.parameters == {"params": {}}  # started by hand
    effect = processes(released)["release_effect"]  # scheduled by the release, per release
    assert effect.cadence is None and effect.parameters == {"params": {}}
    assert effect.flow == "upkeep.flows.release_effect:release_effect" and effect.name == "acme"
    assert "process:release_effect" in effect.tags
