"""Typed settings, read from ``UPKEEP_*`` environment variables (and an optional ``.env``).

Nothing is read at import time: call :func:`get_settings`. Invalid values are refused with a
message that names the environment variable.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "UPKEEP_"
PACKAGE_DIR = Path(__file__).parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
"""The templates shipped with upkeep (``templates/`` of the checkout, package data when
installed)."""


class TlsMode(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


class SshSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UPKEEP_SSH_", extra="ignore", env_file=".env")

    user: str = Field("root", min_length=1)
    key_file: Path | None = None
    connect_timeout: float = Field(10.0, gt=0)
    banner_timeout: float = Field(15.0, gt=0)
    auth_timeout: float = Field(15.0, gt=0)
    channel_timeout: float = Field(15.0, gt=0)
    """How long a logged-in host may take to open a channel, start a command or answer a
    keepalive; past it the host is taken as not answering and the connection is closed."""
    command_timeout: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    retry_backoff: float = Field(1.0, ge=0)
    """Base delay in seconds; each retry doubles it, with jitter."""


class SmtpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UPKEEP_SMTP_", extra="ignore", env_file=".env")

    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = None
    tls: TlsMode = TlsMode.STARTTLS
    sender: str = "upkeep@localhost"
    timeout: float = Field(30.0, gt=0)
    ca_file: Path | None = None
    """Extra CA bundle to verify the server's certificate against (verification is always on)."""


class ApprovalPageSettings(BaseSettings):
    """The approval page upkeep serves to customers (``upkeep approvals serve``)."""

    model_config = SettingsConfigDict(
        env_prefix="UPKEEP_APPROVALS_", extra="ignore", env_file=".env"
    )

    host: str = "127.0.0.1"
    """Where the page listens. Keep it on loopback behind the TLS reverse proxy."""
    port: int = Field(8470, ge=1, le=65535)
    public_url: str | None = None
    """The address customers reach the page at (the proxy's ``https://...``), put into the
    links in approval e-mails. Default: ``http://<host>:<port>``."""
    with_serve: bool = True
    """``upkeep serve`` starts the page too (false: run ``upkeep approvals serve`` apart)."""
    secret: SecretStr | None = None
    """Key for the pages' CSRF values. Default: a random key per process (a restart only
    makes open pages ask for a reload)."""
    trusted_proxies: str = "127.0.0.1"
    """Addresses whose ``X-Forwarded-For``/``-Proto`` are believed (the reverse proxy)."""
    answer_wait_seconds: float = Field(60.0, ge=1, le=600)
    """How long the page waits for the flow to record a decision before it says "sent"."""
    max_body_bytes: int = Field(16384, ge=1024, le=1048576)
    failures_per_address: int = Field(20, ge=1)
    """Bad or dead links and refused posts one address may make per 10 minutes; past it
    that address gets 429 for them (a working link is never refused by this limit)."""
    posts_per_gate: int = Field(30, ge=1)
    """Decisions posted to one gate per 10 minutes."""

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or "?" in value or "#" in value:
            raise ValueError("must be an http:// or https:// URL without query or fragment")
        return value

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return self.public_url or f"http://{host}:{self.port}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_file=".env")

    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "data")
    database_url: str | None = None
    """SQLAlchemy URL. Default: ``sqlite:///<data_dir>/upkeep.db``."""
    report_dir: Path | None = None
    """Default: ``<data_dir>/reports``."""
    known_hosts: Path | None = None
    """Default: ``<data_dir>/known_hosts``. upkeep never writes the user's ~/.ssh."""
    result_dir: Path | None = None
    """Where flows persist task results (what lets a suspended run resume without redoing
    work). Default: ``<data_dir>/results``. Several machines need shared storage: set
    Prefect's PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK to a saved filesystem block instead."""
    report_inbox: Path | None = None
    """Where test reports given in the Prefect UI's forms (declaring a release, revising its
    test report) must be: a name there, or a path inside it; nothing else on the machine can
    be sent to a customer that way. Default: ``<data_dir>/report-inbox``. The CLI takes any
    path its user can read."""
    templates_dir: Path = TEMPLATES_DIR
    sweep_concurrency: int = Field(10, ge=1, le=500)
    prefect_ui_url: str = "http://127.0.0.1:4200"
    approval_poll_seconds: int = Field(5, ge=1, le=300)
    """How often a paused flow asks the Prefect API whether it was resumed."""
    watchdog_minutes: int = Field(5, ge=1, le=1440)
    """How often the served approval watchdog checks for gates to escalate or expire."""
    serve_check_seconds: int = Field(180, ge=0, le=3600)
    """How long ``upkeep serve`` waits for the Prefect server to schedule runs of what it
    serves before it says loudly that the server's scheduler is not working (0: no check)."""
    approval_timeout_hours: float = Field(72, gt=0)
    """How long a gate waits for a decision before the run fails."""
    patch_install_timeout: float = Field(1800, gt=0, le=24 * 3600)
    """How long one host's package installation (apt-get/dnf over SSH) may take."""
    ssh: SshSettings = Field(default_factory=SshSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    approvals: ApprovalPageSettings = Field(default_factory=ApprovalPageSettings)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.report_dir is None:
            self.report_dir = self.data_dir / "reports"
        if self.result_dir is None:
            self.result_dir = self.data_dir / "results"
        if self.known_hosts is None:
            self.known_hosts = self.data_dir / "known_hosts"
        if self.report_inbox is None:
            self.report_inbox = self.data_dir / "report-inbox"
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'upkeep.db'}"
        return self

    @property
    def db_url(self) -> str:
        assert self.database_url is not None
        return self.database_url

    @property
    def reports(self) -> Path:
        assert self.report_dir is not None
        return self.report_dir

    @property
    def inbox(self) -> Path:
        assert self.report_inbox is not None
        return self.report_inbox.expanduser().resolve()

    @property
    def known_hosts_file(self) -> Path:
        assert self.known_hosts is not None
        return self.known_hosts


_SUB_PREFIX = {"ssh": "UPKEEP_SSH_", "smtp": "UPKEEP_SMTP_", "approvals": "UPKEEP_APPROVALS_"}


def _describe(exc: ValidationError, prefix: str) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] in _SUB_PREFIX and len(loc) > 1:
            name = _SUB_PREFIX[loc[0]] + loc[1].upper()
        else:
            name = prefix + "_".join(loc).upper()
        lines.append(f"{name}: {err['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings() -> Settings:
    """Read the environment now; raise :class:`SettingsError` naming each bad variable."""
    try:
        ssh = SshSettings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc, "UPKEEP_SSH_")) from None
    try:
        smtp = SmtpSettings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc, "UPKEEP_SMTP_")) from None
    try:
        approvals = ApprovalPageSettings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc, "UPKEEP_APPROVALS_")) from None
    try:
        return Settings(ssh=ssh, smtp=smtp, approvals=approvals)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, ENV_PREFIX)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the demo change the environment)."""
    get_settings.cache_clear()


def prefect_result_settings(settings: Settings) -> dict[str, str]:
    """Prefect settings (as environment variables) that put flow results where upkeep wants."""
    if os.environ.get("PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"):
        return {}
    assert settings.result_dir is not None
    return {"PREFECT_LOCAL_STORAGE_PATH": str(settings.result_dir)}
