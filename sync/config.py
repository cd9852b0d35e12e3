"""Accounts and settings: a TOML file, environment overrides, or command-line flags.

The file (``config/followup-sync.example.toml`` documents every key)::

    database = "followup-sync.sqlite"

    [daemon]
    http_port = 8484
    max_concurrent_accounts = 4

    [accounts.alice]
    url = "https://dav.example.com/"
    username = "alice"
    password_env = "ALICE_DAV_PASSWORD"      # or password_file/_keyring/_command
    calendar = "Follow-ups"                  # display name or id; created if missing
    owners = ["alice"]                       # which follow-ups go to this calendar
    interval_seconds = 300

Secrets never live in the file itself: a password comes from an environment variable,
a file, the system keyring or a command, so the config can be committed and shown.
Sign-in (``auth``: basic, digest, bearer, oauth2), TLS trust (``ca_bundle``, ``client_cert``,
``pin_sha256``) and ``proxy`` are per account; ``docs/servers-and-sign-in.md`` shows them.
Every problem is reported at once, each naming the key and, where the file has it, the line (or the
environment variable that set it).

Environment overrides follow the file's structure with ``__`` between levels, so a
container can be configured without editing the mounted file::

    FOLLOWUP_SYNC_DATABASE=postgresql+psycopg://…
    FOLLOWUP_SYNC_DAEMON__HTTP_PORT=9000
    FOLLOWUP_SYNC_ACCOUNTS__ALICE__URL=https://dav2.example.com/

A value is read as a TOML value when it parses as one (``30``, ``true``, ``["a","b"]``)
and as a plain string otherwise. Account names match case-insensitively, since
environment variable names are conventionally upper case.

Where the file is found when ``--config`` is not given (``find_config``), as tools like
vdirsyncer and khal do: ``$FOLLOWUP_SYNC_CONFIG``, then ``config.toml`` in the user's
config directory (``$XDG_CONFIG_HOME/followup-sync`` on Linux, by ``platformdirs``
elsewhere), then ``/etc/followup-sync/config.toml``. Relative paths in a file (the SQLite
``database``, ``password_file``) are relative to the file's directory, so a cron job run
from another directory uses the same database.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_config_path
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url

from sync.engine.merge import ConflictPolicy
from sync.engine.plan import OnServerDelete
from sync.errors import ConfigError
from sync.mail_config import MailSettings
from sync.secret_sources import read_secret

ENV_PREFIX = "FOLLOWUP_SYNC_"
#: Separates levels in an override's name: FOLLOWUP_SYNC_ACCOUNTS__ALICE__URL.
ENV_NESTING = "__"
#: FOLLOWUP_SYNC_* variables that are not settings (the CLI reads them itself).
ENV_NOT_SETTINGS = frozenset({"CONFIG", "API_TOKEN"})
CONFIG_ENV = "FOLLOWUP_SYNC_CONFIG"
APP_NAME = "followup-sync"
CONFIG_NAME = "config.toml"
#: The system-wide file, looked at last.
SYSTEM_CONFIG = Path("/etc") / APP_NAME / CONFIG_NAME
#: The calendar an account uses when it names none (display name or id).
DEFAULT_CALENDAR = "followups"


def user_config() -> Path:
    """``config.toml`` in the user's config directory (XDG on Linux)."""
    return user_config_path(APP_NAME) / CONFIG_NAME


def config_search_path(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where a config file is looked for, in order (``$FOLLOWUP_SYNC_CONFIG`` first)."""
    environ = os.environ if environ is None else environ
    places = [Path(environ[CONFIG_ENV]).expanduser()] if environ.get(CONFIG_ENV) else []
    return [*places, user_config(), SYSTEM_CONFIG]


def find_config(
    explicit: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to read: ``explicit`` (``--config``), else the first that exists.

    ``$FOLLOWUP_SYNC_CONFIG`` names a file that must exist: a typo there is an error,
    not a silent fall-through to another file.
    """
    if explicit is not None:
        return Path(explicit)
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser()
    return next((path for path in (user_config(), SYSTEM_CONFIG) if path.is_file()), None)


_PASSWORD_SOURCES = ("password_env", "password_file", "password_keyring", "password_command")


class SecretRef(BaseModel):
    """Where one secret comes from: exactly one of ``env``, ``file``, ``keyring``, ``command``.

    In TOML an inline table: ``refresh_token = { command = ["pass", "show", "google/caldav"] }``.
    """

    model_config = ConfigDict(extra="forbid")

    env: str | None = None
    file: str | None = None
    #: ``"service:user"`` in the system keyring.
    keyring: str | None = None
    #: A program and its arguments (no shell); the first line it prints is the secret.
    command: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "keyring", "command") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of env, file, keyring, command")
        return self

    def read(self, owner: str, key: str) -> str:
        value = read_secret(
            owner, key, env=self.env, file=self.file, keyring=self.keyring, command=self.command
        )
        if value is None:  # pragma: no cover - the validator requires one source
            raise ConfigError(f"{owner}: {key} has no source")
        return value


class OAuth2Settings(BaseModel):
    """OAuth 2.0 with a refresh token (RFC 6749 section 6): the ``[accounts.NAME.oauth2]`` table.

    The access token is fetched from ``token_url`` when needed, refreshed shortly before
    it expires and after a 401, and kept in memory only.
    """

    model_config = ConfigDict(extra="forbid")

    token_url: str
    #: Not a secret for most providers, so it may be written as is; or a SecretRef.
    client_id: str | SecretRef
    client_secret: SecretRef | None = None
    refresh_token: SecretRef
    #: Space-separated scopes to ask for; None keeps the scopes of the original grant.
    scope: str | None = None
    #: How the client authenticates at the token endpoint (RFC 6749 2.3.1): HTTP Basic,
    #: or client_id/client_secret in the form body (what Google's documentation shows).
    client_auth: Literal["basic", "body"] = "body"

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError("must start with https:// (or http:// on a trusted network)")
        return value

    def client_id_value(self, owner: str) -> str:
        if isinstance(self.client_id, str):
            return self.client_id
        return self.client_id.read(owner, "oauth2.client_id")


class Account(BaseModel):
    """One CalDAV calendar and the follow-ups that go to it."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    url: str
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    #: ``"service:user"`` in the system keyring (``keyring`` package); ``"service"`` alone
    #: uses ``username`` as the keyring user.
    password_keyring: str | None = None
    #: A program and its arguments whose first output line is the password (pass, secret-tool).
    password_command: list[str] | None = Field(default=None, min_length=1)
    #: How to sign in: "basic" and "digest" send username and password; "bearer" sends the
    #: password as a bearer token; "oauth2" gets tokens as the ``oauth2`` table says.
    auth: Literal["basic", "digest", "bearer", "oauth2"] = "basic"
    oauth2: OAuth2Settings | None = None
    #: PEM file of the certificate authorities to trust instead of the system's.
    ca_bundle: str | None = None
    #: PEM client certificate (and its key, unless the same file holds both).
    client_cert: str | None = None
    client_key: str | None = None
    #: SHA-256 fingerprint of the server's certificate (hex, colons allowed): only that
    #: exact certificate is accepted, whoever signed it.
    pin_sha256: str | None = None
    #: ``http://host:port`` of an HTTP(S) proxy for this account; without it the standard
    #: HTTPS_PROXY / HTTP_PROXY / NO_PROXY variables apply.
    proxy: str | None = None
    calendar: str = DEFAULT_CALENDAR
    #: A full calendar collection URL skips discovery.
    calendar_url: str | None = None
    server_kind: str | None = None
    verify_tls: bool = True
    timeout: float = 30.0
    conflict_policy: ConflictPolicy = ConflictPolicy.crm_wins
    on_server_delete: OnServerDelete = OnServerDelete.delete
    import_new: bool = False
    max_delete_percent: float = Field(default=50.0, ge=0, le=100)
    default_timezone: str = "UTC"
    batch_size: int = Field(default=50, ge=1, le=1000)
    #: Largest server answer read, in bytes: a broken or hostile server cannot exhaust memory
    #: (same default as ``sync.stores.caldav.DEFAULT_MAX_RESPONSE_BYTES``).
    max_response_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    owners: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    ids: list[str] = Field(default_factory=list)
    #: How often the daemon reconciles this account (incremental: sync token or ETags).
    interval_seconds: float = Field(default=300.0, gt=0)
    #: Who sends invitations to participants: "auto" (the server when it schedules,
    #: RFC 6638, else email), "server", "email", or "none". Never both.
    scheduling: Literal["auto", "server", "email", "none"] = "auto"
    #: The address emailed invitations name as ORGANIZER and come From, where calendar
    #: programs send the answers: the mailbox ``[mail.imap]`` reads. Filled from
    #: ``[mail] from`` unless ``[mail] organizer = "person"``; set it here for an
    #: account-specific address (``crm+alice@example.com``). See docs/invitations.md.
    invitation_address: str | None = None
    #: Which of the owner's calendars make a date a conflict in the recurrence dialog,
    #: besides the synced one: unset, every calendar of the calendar home that holds
    #: busy time; a list, those named (id, display name or URL); [], none.
    busy_calendars: list[str] | None = None
    #: Random delay added to each scheduled run, so many accounts on one server do not
    #: all hit it in the same second.
    jitter_seconds: float = Field(default=15.0, ge=0)
    #: Every N-th interval the daemon lists the whole calendar (ETags) even where sync
    #: tokens work, to heal servers whose tokens miss changes. 0 turns it off.
    full_every: int = Field(default=12, ge=0)
    #: The daemon skips accounts with ``enabled = false`` (sync/config check still work).
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if re.match(r"^https?://", value):
            return value
        # A bare host or an e-mail-style account: found by RFC 6764 discovery.
        if re.fullmatch(r"([^@/\s]+@)?[A-Za-z0-9.-]+(:\d+)?", value):
            return value
        raise ValueError(
            "must start with http:// or https://, or be a host name or user@domain (discovery)"
        )

    @field_validator("pin_sha256")
    @classmethod
    def _pin(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = value.replace(":", "").strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digits):
            raise ValueError("must be a SHA-256 fingerprint: 64 hex digits, colons allowed")
        return digits

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/]+/?$", value):
            raise ValueError("must be a proxy URL such as http://proxy.example.com:3128")
        if value is not None and "@" in value:
            raise ValueError(
                "must not hold credentials (the file is not for secrets); put a proxy "
                "that needs a login in the HTTPS_PROXY environment variable"
            )
        return value

    @field_validator("password_keyring")
    @classmethod
    def _keyring_ref(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value.startswith(":")):
            raise ValueError('must be "service:user" or "service"')
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> Account:
        given = [k for k in _PASSWORD_SOURCES if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(given)}")
        return self

    @model_validator(mode="after")
    def _sign_in_is_complete(self) -> Account:
        if self.auth == "oauth2" and self.oauth2 is None:
            raise ValueError('auth = "oauth2" needs an [accounts.NAME.oauth2] table')
        if self.oauth2 is not None and self.auth != "oauth2":
            raise ValueError('an oauth2 table is only used with auth = "oauth2"')
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        if not self.verify_tls and (self.ca_bundle or self.pin_sha256):
            raise ValueError("verify_tls = false contradicts ca_bundle / pin_sha256")
        if self.ca_bundle and self.pin_sha256:
            raise ValueError("give ca_bundle or pin_sha256, not both (a pin replaces the CAs)")
        return self

    @property
    def full_interval_seconds(self) -> float | None:
        """Seconds between full reconciliations, or None when they are off."""
        return self.interval_seconds * self.full_every if self.full_every else None

    def password(self) -> str | None:
        """Read the secret when it is needed, never store it on the model."""
        return read_secret(
            f"account {self.name!r}",
            "password",
            env=self.password_env,
            file=self.password_file,
            keyring=self.password_keyring,
            command=self.password_command,
            keyring_user=self.username,
        )

    def selects(self, *, followup_id: str, owner: str | None, kind: str) -> bool:
        if self.ids and followup_id not in self.ids:
            return False
        if self.owners and owner not in self.owners:
            return False
        return not (self.kinds and kind not in self.kinds)


def backoff_seconds(account: Account, failures: int, cap: float) -> float:
    """interval × 2^(failures-1), capped: 1 failure waits one interval, 2 wait two, 3 four …

    The daemon waits this long before trying a failing account again; the API's status
    shows the same moment, so both read it here.
    """
    if failures <= 0:
        return 0.0
    return float(min(account.interval_seconds * (2 ** min(failures - 1, 30)), cap))


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


def load_settings(path: str | Path | None, *, environ: dict[str, str] | None = None) -> Settings:
    """Read the file, apply ``FOLLOWUP_SYNC_…`` overrides, validate; every problem at once.

    Relative paths the file gives are made relative to the file's directory; those an
    environment variable gives stay relative to the current directory, like any path
    given on a command line.
    """
    environ = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    text = ""
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
            raw = tomllib.loads(text)
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if isinstance(path, Path):
        _anchor_paths(raw, path.parent)
    origins = apply_env_overrides(raw, environ)
    accounts = raw.get("accounts")
    if isinstance(accounts, dict):
        for name, values in accounts.items():
            if isinstance(values, dict):
                values.setdefault("name", name)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(str(part) for part in error["loc"])
            key = ".".join(loc)
            env_name = next(
                (origins[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origins), None
            )
            if env_name:
                where = f"${env_name}: "
            else:
                line = _line_of(text, list(loc))
                where = f"{path}:{line}: " if line and path else (f"{path}: " if path else "")
            problems.append(f"{where}{key}: {error['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def _anchor_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the file's relative ``database`` and ``password_file`` paths relative to ``base``."""

    def anchored(value: str) -> str:
        path = Path(value).expanduser()
        return value if "://" in value or path.is_absolute() else str(base / path)

    for key in ("database", "database_password_file"):
        if isinstance(raw.get(key), str):
            raw[key] = anchored(raw[key])
    accounts = raw.get("accounts")
    tables = list(accounts.values()) if isinstance(accounts, dict) else []
    for table in tables:
        if isinstance(table, dict) and isinstance(table.get("password_file"), str):
            table["password_file"] = anchored(table["password_file"])


def apply_env_overrides(raw: dict[str, Any], environ: dict[str, str]) -> dict[tuple[str, ...], str]:
    """Merge ``FOLLOWUP_SYNC_A__B__C=value`` into ``raw`` as ``raw[a][b][c]``.

    Returns which variable set each key, so a validation error can name the variable
    instead of a file line that does not hold the value. Variables whose first part is
    not a settings key are left alone: other tools (and the CLI's own
    ``FOLLOWUP_SYNC_CONFIG``) share the prefix.
    """
    origins: dict[tuple[str, ...], str] = {}
    top_level = set(Settings.model_fields)
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        if not rest or rest in ENV_NOT_SETTINGS:
            continue
        parts = [p for p in rest.split(ENV_NESTING)]
        if any(not p for p in parts) or parts[0].lower() not in top_level:
            continue
        node = raw
        path: list[str] = []
        for index, part in enumerate(parts):
            key = _match_key(node, part, keep_case=index == 1 and parts[0].lower() == "accounts")
            path.append(key)
            if index == len(parts) - 1:
                node[key] = _env_value(environ[name])
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                    node[key] = child
                node = child
        origins[tuple(path)] = name
    return origins


def _match_key(node: dict[str, Any], part: str, *, keep_case: bool) -> str:
    """The existing key that ``part`` names (case-insensitive), else its lower-case form."""
    for key in node:
        if key.lower() == part.lower():
            return key
    return part.lower() if not keep_case or part.isupper() else part


def _env_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _line_of(text: str, loc: list[str]) -> int | None:
    """Best effort: the line of the last key named in ``loc`` inside its table."""
    if not text:
        return None
    lines = text.splitlines()
    table_line = 0
    if len(loc) >= 2 and loc[0] == "accounts":
        header = rf"^\s*\[accounts\.\"?{re.escape(loc[1])}\"?\]"
    elif len(loc) >= 2:
        header = rf"^\s*\[{re.escape(loc[0])}\]"
    else:
        header = None
    if header is not None:
        for number, line in enumerate(lines, 1):
            if re.match(header, line):
                table_line = number
                break
    key = loc[-1]
    end = len(lines)
    if table_line:
        # Stay inside the table: the same key in the next table is not this one.
        for number in range(table_line, len(lines)):
            if re.match(r"^\s*\[", lines[number]):
                end = number
                break
    elif header is None:
        # A top-level key lives before the first table.
        end = next((n for n, line in enumerate(lines) if re.match(r"^\s*\[", line)), len(lines))
    for number in range(table_line, end):
        if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", lines[number]):
            return number + 1
    return table_line or None
