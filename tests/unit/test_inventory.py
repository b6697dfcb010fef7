"""Inventory validation (pure) and loading (one transaction, idempotent, never deletes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from upkeep.inventory import InventoryError, apply_inventory, load_inventory_file, parse_inventory
from upkeep.models import Contract, Customer, Host

FIXTURES = Path(__file__).parent.parent / "fixtures" / "inventory"
GOOD = (FIXTURES / "good.yaml").read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv.yaml")
    return info.value.problems


def test_complete_example_parses() -> None:
    spec = parse_inventory(GOOD, "good.yaml")
    contract = spec.customers[0].contracts[0]
    assert contract.code == "ACME-OPS"
    assert contract.thresholds.disk_used_pct_major == 75
    assert contract.thresholds.inode_used_pct_major == 80  # default kept
    assert [h.port for h in contract.hosts] == [22, 2222]
    assert contract.hosts[1].key_secret == "acme-ssh-key"


def test_bad_yaml_names_file_and_line() -> None:
    (msg,) = problems("customers:\n  - code: acme\n    name: [unclosed\n")
    assert msg.startswith("inv.yaml:")
    assert "not valid YAML" in msg


def test_unknown_field_is_named_with_its_line() -> None:
    text = GOOD.replace(
        "            user: ops\n", "            user: ops\n            pasword: x\n"
    )
    (msg,) = problems(text)
    line = text.splitlines().index("            pasword: x") + 1
    assert msg == (
        f"inv.yaml:{line}: customers[0].contracts[0].hosts[0].pasword: unknown field 'pasword'"
    )


def test_bad_port() -> None:
    (msg,) = problems(GOOD.replace("port: 2222", "port: 70000"))
    assert "customers[0].contracts[0].hosts[1].port" in msg
    assert "65535" in msg


def test_duplicate_host_names_both_places() -> None:
    text = GOOD.replace("- name: db1", "- name: web1")
    (msg,) = problems(text)
    assert "customers[0].contracts[0].hosts[1].name: duplicate host 'web1'" in msg
    assert "first at customers[0].contracts[0].hosts[0].name" in msg


def test_contract_without_approvers() -> None:
    text = GOOD.replace(
        "        approvers:\n          - {name: Gina Globex, email: gina@globex.example}\n",
        "        approvers: []\n",
    )
    msgs = problems(text)
    assert any("customers[1].contracts[0].approvers" in m and "at least 1" in m for m in msgs)


def test_missing_approvers_field() -> None:
    text = GOOD.replace(
        "        approvers:\n          - {name: Gina Globex, email: gina@globex.example}\n", ""
    )
    msgs = problems(text)
    assert any("customers[1].contracts[0].approvers: Field required" in m for m in msgs)


def test_unknown_timezone_and_bad_email() -> None:
    text = GOOD.replace("Europe/Berlin", "Mars/Olympus").replace("it@acme.example", "it-at-acme")
    msgs = problems(text)
    assert any("timezone" in m and "Mars/Olympus" in m for m in msgs)
    assert any("report_recipients[0]" in m for m in msgs)


def test_duplicate_yaml_key_is_refused() -> None:
    text = GOOD.replace(
        "            user: ops\n", "            user: ops\n            user: root\n"
    )
    msgs = problems(text)
    assert any("duplicate key 'user'" in m for m in msgs)


def test_threshold_order_checked() -> None:
    msgs = problems(GOOD.replace("disk_used_pct_major: 75", "disk_used_pct_major: 95"))
    assert any("disk_used_pct_major is above disk_used_pct_critical" in m for m in msgs)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory_file(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)


def _load(engine: sa.Engine, text: str) -> list[str]:
    with Session(engine) as s:
        report = apply_inventory(s, parse_inventory(text))
        s.commit()
    return report.lines()


def test_load_twice_changes_nothing(engine: sa.Engine) -> None:
    first = _load(engine, GOOD)
    assert "created host ACME-OPS/web1" in first
    with Session(engine) as s:
        stamps = [h.updated_at for h in s.exec(select(Host).order_by(Host.id))]
    assert _load(engine, GOOD) == ["no changes"]
    with Session(engine) as s:
        assert [h.updated_at for h in s.exec(select(Host).order_by(Host.id))] == stamps


def test_removed_host_is_deactivated_not_deleted(engine: sa.Engine) -> None:
    _load(engine, GOOD)
    without_db1 = (
        GOOD.split("          - name: db1")[0] + GOOD.split("key_secret: acme-ssh-key\n")[1]
    )
    lines = _load(engine, without_db1)
    assert "deactivated host ACME-OPS/db1" in lines
    with Session(engine) as s:
        db1 = s.exec(select(Host).where(Host.name == "db1")).one()
        assert db1.active is False
    assert "reactivated host ACME-OPS/db1" in _load(engine, GOOD)


def test_removed_contract_is_deactivated_with_its_hosts(engine: sa.Engine) -> None:
    _load(engine, GOOD)
    only_acme = GOOD.split("  - code: globex")[0]
    lines = _load(engine, only_acme)
    assert "deactivated contract GLOBEX" in lines
    assert "deactivated host GLOBEX/app1" in lines
    with Session(engine) as s:
        assert s.exec(select(Contract).where(Contract.code == "GLOBEX")).one().active is False
        assert s.exec(select(Customer)).all()  # nothing deleted


def test_changed_threshold_updates_contract(engine: sa.Engine) -> None:
    _load(engine, GOOD)
    lines = _load(engine, GOOD.replace("disk_used_pct_major: 75", "disk_used_pct_major: 70"))
    assert lines == ["updated contract ACME-OPS"]
    with Session(engine) as s:
        c = s.exec(select(Contract).where(Contract.code == "ACME-OPS")).one()
        assert c.thresholds["disk_used_pct_major"] == 70


def test_bad_cadence_is_refused_with_its_place() -> None:
    text = GOOD.replace('recheck: "monthly, day 15, 03:30"', 'recheck: "fortnightly, 03:30"')
    (msg,) = problems(text)
    line = text.splitlines().index('          recheck: "fortnightly, 03:30"') + 1
    assert msg.startswith("inv.yaml:")
    assert "customers[0].contracts[0].cadences" in msg and "fortnightly" in msg
    assert int(msg.split(":")[1]) <= line


def test_unknown_process_is_refused() -> None:
    msgs = problems(GOOD.replace('recheck: "monthly', 'rechek: "monthly'))
    assert any("cadences.rechek" in m for m in msgs)


def test_impossible_blackout_date_is_refused_with_its_line() -> None:
    text = GOOD.replace("- 2027-01-05", "- 2027-02-30")
    (msg,) = problems(text)
    line = text.splitlines().index("          - 2027-02-30") + 1
    assert msg.startswith(f"inv.yaml:{line}: '2027-02-30' is not a valid date")


def test_blackout_period_backwards_is_refused() -> None:
    backwards = "from: 2028-01-06, to: 2027-12-20"
    msgs = problems(GOOD.replace("from: 2027-12-20, to: 2028-01-06", backwards))
    assert any("blackouts" in m for m in msgs)


def test_cadences_and_blackouts_are_stored_as_written(engine: sa.Engine) -> None:
    _load(engine, GOOD)
    with Session(engine) as s:
        c = s.exec(select(Contract).where(Contract.code == "ACME-OPS")).one()
        assert c.cadences["inspection"] == "quarterly, first Tuesday, 02:00"
        assert c.cadences["backup_verification"] == {"cron": "0 1 * * 6"}
        assert c.blackouts[0] == "2027-01-05" and c.blackout_policy == "next_allowed_day"


def test_backup_sources_are_validated() -> None:
    base = GOOD.replace(
        "        hosts:\n          - name: web1",
        "        backup_sources:\n"
        "          - {system: shop, kind: files, location: /b, source: /srv, scratch: /srv/tmp}\n"
        "          - {system: shop, kind: restic, location: /r, scratch: /t}\n"
        "        hosts:\n          - name: web1",
        1,
    )
    msgs = problems(base)
    assert any("backup_sources[0]" in m and "inside the source" in m for m in msgs)
    assert any("backup_sources[1]" in m and "password_secret or password_env" in m for m in msgs)


def test_duplicate_backup_source_is_refused() -> None:
    text = GOOD.replace(
        "        hosts:\n          - name: web1",
        "        backup_sources:\n"
        "          - {system: shop, kind: files, location: /b1, scratch: /t}\n"
        "          - {system: shop, kind: files, location: /b2, scratch: /t}\n"
        "        hosts:\n          - name: web1",
        1,
    )
    (msg,) = problems(text)
    assert "backup_sources[1].system: duplicate backup source 'shop'" in msg


def _with_sources(*lines: str) -> str:
    return GOOD.replace(
        "        hosts:\n          - name: web1",
        "        backup_sources:\n"
        + "".join(f"          - {line}\n" for line in lines)
        + "        hosts:\n          - name: web1",
        1,
    )


def test_remote_backup_sources_are_validated() -> None:
    msgs = problems(
        _with_sources(
            "{system: b, kind: postgresql, host: web1, location: /d, scratch_database_env: S,"
            " dump_database: 'dbname=x password=hunter2'}",
            "{system: c, kind: files, location: /b, scratch: /t, dump_database: x}",
            "{system: d, kind: files, location: /b, scratch: /t, commands: ['grep \"open']}",
            "{system: e, kind: files, location: /b, scratch: /t, commands: ['  ']}",
        )
    )
    assert any("backup_sources[0]" in m and "must not hold a password" in m for m in msgs)
    assert not any("hunter2" in m for m in msgs)
    assert any("backup_sources[1]" in m and "dump_database is for a postgresql" in m for m in msgs)
    assert any("backup_sources[2].commands" in m and "cannot be split" in m for m in msgs)
    assert any("backup_sources[3].commands" in m and "empty" in m for m in msgs)


def test_a_backup_host_must_be_a_host_of_the_contract() -> None:
    (msg,) = problems(
        _with_sources("{system: a, kind: files, host: nowhere, location: /b, scratch: /t}")
    )
    assert "backup_sources[0].host" in msg and "unknown host 'nowhere'" in msg


def test_a_remote_source_may_keep_its_scratch_beside_the_source_path() -> None:
    # With a host, "source" is a path on that host and the scratch is here: no overlap test.
    spec = parse_inventory(
        _with_sources(
            "{system: a, kind: files, host: web1, location: /var/backups/a, source: /srv,"
            " scratch: /srv/tmp, commands: ['test -f \"etc/my app.conf\"']}"
        )
    )
    (source,) = spec.customers[0].contracts[0].backup_sources
    assert source.host == "web1" and source.commands == ['test -f "etc/my app.conf"']


def test_the_readme_example_inventory_is_valid() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = parse_inventory(example, "README.md")
    kinds = {
        (b.kind, b.host) for c in spec.customers for k in c.contracts for b in k.backup_sources
    }
    assert ("files", "web1") in kinds and ("postgresql", "db1") in kinds


def test_scratch_host_needs_a_files_source_on_a_host_and_no_commands() -> None:
    msgs = problems(
        _with_sources(
            "{system: a, kind: files, location: /b, scratch: /t, scratch_host: web1}",
            "{system: b, kind: files, host: web1, location: /b, scratch: /t, scratch_host: web1,"
            " commands: ['true']}",
        )
    )
    assert any("backup_sources[0]" in m and "scratch_host is for a files source" in m for m in msgs)
    assert any("backup_sources[1]" in m and "not on a scratch_host" in m for m in msgs)
    (msg,) = problems(
        _with_sources(
            "{system: a, kind: files, host: web1, location: /b, scratch: /t, scratch_host: nope}"
        )
    )
    assert "backup_sources[0].scratch_host" in msg and "unknown host 'nope'" in msg


def _bomb(levels: int = 12) -> str:
    """A "billion laughs": each level is a list of nine aliases to the level below; 9**12
    values once expanded, from 14 short lines."""
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]")
    lines.append(f"customers: [*lol{levels}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly_naming_file_and_line(tmp_path: Path) -> None:
    import resource
    import time

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(InventoryError) as info:
        load_inventory_file(bomb)
    assert time.monotonic() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
    (msg,) = info.value.problems
    assert msg.startswith(f"{bomb}:")
    line = int(msg.split(":")[1])
    assert "*lol" in bomb.read_text().splitlines()[line - 1]
    assert "alias" in msg and "refused" in msg


def test_a_few_aliases_for_shared_values_still_load() -> None:
    text = GOOD.replace(
        "        approvers:\n          - {name: Alice Owner, email: alice@acme.example}",
        "        approvers:\n          - &alice {name: Alice Owner, email: alice@acme.example}",
        1,
    ).replace(
        "          - {name: Gina Globex, email: gina@globex.example}",
        "          - {name: Gina Globex, email: gina@globex.example}\n          - *alice",
    )
    spec = parse_inventory(text, "aliases.yaml")
    assert spec.customers[1].contracts[0].approvers[1].name == "Alice Owner"


def test_the_alias_bound_counts_expanded_values() -> None:
    from upkeep.inventory import check_alias_expansion

    text = "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n"
    check_alias_expansion(text, "x.yaml", limit=20)
    with pytest.raises(InventoryError, match=r"x.yaml:2: the alias \*a"):
        check_alias_expansion(text, "x.yaml", limit=12)
    check_alias_expansion("a: [" + ", ".join(["1"] * 50) + "]\n", "x.yaml", limit=10)


def test_approvers_that_could_leave_a_gate_unapprovable_are_warned_about() -> None:
    from upkeep.inventory import approver_warnings

    spec = parse_inventory(GOOD, "good.yaml")
    assert approver_warnings(spec) == [
        "contract GLOBEX: approval_policy: a run started by Gina Globex could not be approved "
        "(1 approval needed and self-approval is not allowed): add an approver or a backup "
        "approver"
    ]
    strict = GOOD.replace(
        "        blackout_policy: next_allowed_day   # or: skip\n",
        "        blackout_policy: next_allowed_day   # or: skip\n"
        "        gate_policies:\n          inspection-plan: {required_approvals: 4}\n",
    )
    (acme, _) = approver_warnings(parse_inventory(strict, "strict.yaml"))
    assert acme.startswith("contract ACME-OPS: gate_policies.inspection-plan: the gate needs 4")


def test_a_bad_patching_policy_is_named() -> None:
    text = GOOD.replace(
        "        hosts:\n          - name: web1",
        "        patching: {mode: yolo, staging_tag: ''}\n        hosts:\n          - name: web1",
        1,
    )
    msgs = "\n".join(problems(text))
    assert "patching.mode" in msgs and "'report' or 'apply'" in msgs
    assert "patching.staging_tag" in msgs


def test_systems_and_their_smoke_checks_are_validated_and_named() -> None:
    systems = (
        "        systems:\n"
        "          - name: shop\n"
        "            smoke_checks:\n"
        "              - {name: orders, url: 'https://u:pw@shop.example/health'}\n"
        "              - {name: pay, url: 'gopher://shop.example/', expect_status: 999}\n"
        "          - name: shop\n"
        "            smoke_checks: [{name: a, url: 'https://shop.example/'}]\n"
    )
    text = GOOD.replace(
        "        hosts:\n          - name: web1",
        systems + "        hosts:\n          - name: web1",
        1,
    )
    msgs = "\n".join(problems(text))
    assert "systems[0].smoke_checks[0].url" in msgs and "must not carry a user" in msgs
    assert "systems[0].smoke_checks[1].url" in msgs
    assert "systems[0].smoke_checks[1].expect_status" in msgs
    good = GOOD.replace(
        "        hosts:\n          - name: web1",
        "        systems:\n          - name: shop\n            smoke_checks: "
        "[{name: orders, url: 'https://shop.example/health', body_contains: ok}]\n"
        "        hosts:\n          - name: web1",
        1,
    )
    (shop,) = parse_inventory(good, "inv.yaml").customers[0].contracts[0].systems
    assert str(shop.smoke_checks[0].url) == "https://shop.example/health"
    assert shop.smoke_checks[0].max_latency_ms == 2000  # the defaults
    twice = GOOD.replace(
        "        hosts:\n          - name: web1",
        "        systems:\n"
        "          - {name: shop, smoke_checks: [{name: a, url: 'https://a.example/'}]}\n"
        "          - {name: shop, smoke_checks: [{name: b, url: 'https://b.example/'}]}\n"
        "        hosts:\n          - name: web1",
        1,
    )
    assert "system names must be unique in a contract: shop" in "\n".join(problems(twice))


def test_command_smoke_checks_are_validated_and_named() -> None:
    systems = (
        "        systems:\n"
        "          - name: shop\n"
        "            smoke_checks:\n"
        "              - {name: db, command: 'pg_isready -q', expect_status: 200}\n"
        "              - {name: web, url: 'https://shop.example/', expect_output: ok}\n"
        "              - {name: both, url: 'https://shop.example/', command: 'true'}\n"
        "              - {name: leak, command: 'env PGPASSWORD=x psql -c \"select 1\"'}\n"
    )
    text = GOOD.replace(
        "        hosts:\n          - name: web1",
        systems + "        hosts:\n          - name: web1",
        1,
    )
    msgs = problems(text)
    assert any(
        m.startswith("inv.yaml:")
        and "systems[0].smoke_checks[0].expect_status: " in m
        and "is for an HTTP check (url), not a command check" in m
        for m in msgs
    ), msgs
    assert any(
        "systems[0].smoke_checks[1].expect_output: " in m and "not an HTTP check" in m for m in msgs
    ), msgs
    assert any("systems[0].smoke_checks[2]: " in m and "not both" in m for m in msgs), msgs
    assert any(
        "systems[0].smoke_checks[3].command: " in m and "secret (PGPASSWORD=...)" in m for m in msgs
    ), msgs
    good = GOOD.replace(
        "        hosts:\n          - name: web1",
        "        systems:\n          - name: shop\n            smoke_checks:\n"
        '              - {name: db, command: "pg_isready -h 127.0.0.1", '
        "expect_output: accepting connections, severity: major}\n"
        "        hosts:\n          - name: web1",
        1,
    )
    (shop,) = parse_inventory(good, "inv.yaml").customers[0].contracts[0].systems
    (db,) = shop.smoke_checks
    assert db.command == "pg_isready -h 127.0.0.1" and db.url is None and db.expect_exit == 0
    assert db.command_line == "pg_isready -h 127.0.0.1"


def test_release_settings_are_validated_and_named() -> None:
    text = GOOD.replace(
        "        hosts:\n          - name: web1",
        "        systems:\n"
        "          - name: shop\n"
        "            smoke_checks: [{name: a, url: 'https://shop.example/'}]\n"
        "            release:\n"
        "              release_command: 'switch --to {version} --host {host}'\n"
        "              rollback_command: ''\n"
        "              canary_share: 1.5\n"
        "              checklist: [{name: disk, kind: automatic}]\n"
        "        hosts:\n          - name: web1",
        1,
    )
    msgs = "\n".join(problems(text))
    assert "systems[0].release.release_command" in msgs and "only placeholder" in msgs
    assert "systems[0].release.rollback_command" in msgs
    assert "systems[0].release.canary_share" in msgs
    assert "systems[0].release.checklist[0]" in msgs and "needs a check" in msgs
