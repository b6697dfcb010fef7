"""Settings are typed and refuse bad values naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from upkeep.settings import SettingsError, TlsMode, load_settings


def test_defaults_live_under_the_data_dir(data_dir: Path) -> None:
    s = load_settings()
    assert s.db_url == f"sqlite:///{data_dir.resolve() / 'upkeep.db'}"
    assert s.known_hosts_file == data_dir.resolve() / "known_hosts"
    assert s.reports == data_dir.resolve() / "reports"
    assert s.smtp.tls is TlsMode.STARTTLS
    assert s.ssh.retries >= 1


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("UPKEEP_SSH_CONNECT_TIMEOUT", "soon", "UPKEEP_SSH_CONNECT_TIMEOUT"),
        ("UPKEEP_SMTP_PORT", "99999", "UPKEEP_SMTP_PORT"),
        ("UPKEEP_SMTP_TLS", "maybe", "UPKEEP_SMTP_TLS"),
        ("UPKEEP_DATABASE_URL", "mysql://x", "UPKEEP_DATABASE_URL"),
        ("UPKEEP_SWEEP_CONCURRENCY", "0", "UPKEEP_SWEEP_CONCURRENCY"),
        ("UPKEEP_APPROVALS_PORT", "70000", "UPKEEP_APPROVALS_PORT"),
        ("UPKEEP_APPROVALS_PUBLIC_URL", "ftp://x", "UPKEEP_APPROVALS_PUBLIC_URL"),
        ("UPKEEP_APPROVALS_PUBLIC_URL", "https://x/?t=1", "UPKEEP_APPROVALS_PUBLIC_URL"),
    ],
)
def test_bad_values_name_the_variable(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_smtp_password_is_secret(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPKEEP_SMTP_PASSWORD", "hunter2")
    s = load_settings()
    assert s.smtp.password is not None
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert s.smtp.password.get_secret_value() == "hunter2"


def test_approval_page_links_default_to_where_it_listens(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().approvals.base_url == "http://127.0.0.1:8470"
    monkeypatch.setenv("UPKEEP_APPROVALS_HOST", "::1")
    assert load_settings().approvals.base_url == "http://[::1]:8470"
    monkeypatch.setenv("UPKEEP_APPROVALS_PUBLIC_URL", "https://approve.provider.example/")
    assert load_settings().approvals.base_url == "https://approve.provider.example"


def test_approval_page_secret_is_secret(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPKEEP_APPROVALS_SECRET", "s3cr3t-value")
    s = load_settings()
    assert "s3cr3t-value" not in repr(s) and "s3cr3t-value" not in str(s.model_dump())
