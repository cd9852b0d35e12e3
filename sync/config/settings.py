"""The whole configuration: ``Settings`` and its tables besides the accounts.

``[daemon]``, ``[feed]``, ``[webhooks.NAME]``, ``[mail]`` (``sync.mail_config``) and the
accounts (``sync.config.accounts``), validated as one pydantic model;
``sync.config.loading`` fills it from the file and the environment.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import make_url

from sync.config.accounts import Account
from sync.config.locations import SYSTEM_CONFIG, user_config
from sync.errors import ConfigError
from sync.mail_config import MailSettings


class LogFormat(StrEnum):
    text = "text"
    json = "json"


#: A follow-up document is a few KiB; a long series with many exceptions stays far below.
DEFAULT_MAX_BODY_BYTES = 1_000_000
#: Seconds an HTTP client has to send one whole request once it started (sync.api.limits).
DEFAULT_READ_TIMEOUT = 10.0


class DaemonSettings(BaseModel):
    """The ``[daemon]`` table: what ``followup-sync daemon`` needs beyond the accounts."""

    model_config = ConfigDict(extra="forbid")

    #: Health, readiness, metrics (and the follow-up API when installed) listen here.
    http_host: str = "127.0.0.1"
    #: 0 turns the HTTP server off.
    http_port: int = Field(default=8484, ge=0, le=65535)
    #: Passes that run at the same time, across all accounts.
    max_concurrent_accounts: int = Field(default=4, ge=1, le=256)
    log_format: LogFormat = LogFormat.text
    log_level: str = "INFO"
    #: Environment variable holding the bearer token of the follow-up REST API.
    api_token_env: str = "FOLLOWUP_SYNC_API_TOKEN"
    #: Larger request bodies are refused with 413 before they are read (sync.api.limits).
    api_max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1)
    #: A client must send a whole request (headers and body) within this many seconds.
    http_read_timeout_seconds: float = Field(default=DEFAULT_READ_TIMEOUT, gt=0)
    #: How often the store is polled for follow-ups changed by the CRM.
    crm_poll_seconds: float = Field(default=2.0, gt=0)
    #: Wait this long after the last CRM change before syncing (a burst of writes, one pass).
    crm_debounce_seconds: float = Field(default=1.0, ge=0)
    #: A failing account waits interval × 2^(failures-1), at most this long.
    max_backoff_seconds: float = Field(default=900.0, gt=0)
    #: A run that could not start on time (all workers busy) still runs this late.
    misfire_grace_seconds: float = Field(default=60.0, gt=0)
    #: SIGTERM waits this long for passes in flight to finish their current item.
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return level


class FeedSettings(BaseModel):
    """The ``[feed]`` table: the change feed CRM integrations read (``sync.state.changes``)."""

    model_config = ConfigDict(extra="forbid")

    #: Entries older than this are dropped (unless a webhook still owes them); a cursor
    #: from before answers 410 and the client lists the follow-ups again.
    retention_days: float = Field(default=7.0, gt=0)


class WebhookSettings(BaseModel):
    """One ``[webhooks.NAME]`` table: where every change of the feed is POSTed."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    #: Environment variable holding the HMAC-SHA256 key (never the key itself in the file).
    secret_env: str
    #: ``followup.created``, ``followup.updated``, ``followup.deleted``, or ``*``.
    events: list[str] = Field(default_factory=lambda: ["*"])

    def secret(self, environ: dict[str, str] | None = None) -> str:
        value = (os.environ if environ is None else environ).get(self.secret_env, "")
        if not value:
            raise ConfigError(f"webhook secret: ${self.secret_env} is not set")
        return value


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feed: FeedSettings = Field(default_factory=FeedSettings)
    webhooks: dict[str, WebhookSettings] = Field(default_factory=dict)

    database: str | None = None
    #: A file holding the database password (a Docker or systemd secret). It is put into
    #: the ``database`` URL only when the database is opened, so the URL in the file and
    #: in the environment carries no secret.
    database_password_file: str | None = None
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    accounts: dict[str, Account] = Field(default_factory=dict)
    #: Invitations by email (``sync.mail_config``); None: no email is sent.
    mail: MailSettings | None = None

    def database_location(self, override: str | None = None) -> str | None:
        """``override`` (--database) or ``database``, with the password file's secret in it."""
        chosen = override or self.database
        if chosen is None or self.database_password_file is None:
            return chosen
        if "://" not in chosen:
            raise ConfigError("database_password_file needs a database URL, not a SQLite path")
        path = Path(self.database_password_file).expanduser()
        try:
            password = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read database_password_file {path}: {exc.strerror}"
            ) from None
        return make_url(chosen).set(password=password).render_as_string(hide_password=False)

    def accounts_to_sync(self, name: str | None) -> list[Account]:
        """``name``'s account, or every enabled one when no name is given (vdirsyncer's way)."""
        if name is not None:
            return [self.account(name)]
        if not self.accounts:
            raise ConfigError(_NO_ACCOUNT)
        enabled = [account for account in self.accounts.values() if account.enabled]
        if not enabled:
            raise ConfigError(
                "every configured account has enabled = false; name one with --account"
            )
        return enabled

    @model_validator(mode="after")
    def _answers_come_to_the_service(self) -> Settings:
        """Each account's ``invitation_address``: ``[mail] from`` unless told otherwise."""
        if self.mail is not None and self.mail.organizer == "service":
            for account in self.accounts.values():
                if account.invitation_address is None:
                    account.invitation_address = self.mail.sender_address
        return self

    def account(self, name: str | None) -> Account:
        if not self.accounts:
            raise ConfigError(_NO_ACCOUNT)
        if name is None:
            if len(self.accounts) == 1:
                return next(iter(self.accounts.values()))
            raise ConfigError(
                "several accounts are configured; choose one with --account "
                f"({', '.join(self.accounts)})"
            )
        if name not in self.accounts:
            raise ConfigError(f"no account named {name!r} (configured: {', '.join(self.accounts)})")
        return self.accounts[name]


_NO_ACCOUNT = (
    "no account is configured (give --config FILE, put one in "
    f"{user_config()} or {SYSTEM_CONFIG}, or give --url)"
)
