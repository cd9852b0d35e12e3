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
``pin_sha256``) and ``proxy`` are per account; ``docs/how-to/servers-and-sign-in.md`` shows them.
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

The package's modules: ``locations`` (where the file is found), ``loading`` (file and
environment into ``Settings``), ``settings`` (the tables), ``accounts`` (one account) and
``signin`` (secrets by reference, OAuth 2.0). Their public names are imported here.
"""

from __future__ import annotations

from sync.config.accounts import DEFAULT_CALENDAR, Account, backoff_seconds
from sync.config.loading import (
    ENV_NESTING,
    ENV_NOT_SETTINGS,
    ENV_PREFIX,
    apply_env_overrides,
    load_settings,
)
from sync.config.locations import (
    APP_NAME,
    CONFIG_ENV,
    CONFIG_NAME,
    SYSTEM_CONFIG,
    config_search_path,
    find_config,
    user_config,
)
from sync.config.settings import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_READ_TIMEOUT,
    DaemonSettings,
    FeedSettings,
    LogFormat,
    Settings,
    WebhookSettings,
)
from sync.config.signin import OAuth2Settings, SecretRef

__all__ = [
    "APP_NAME",
    "CONFIG_ENV",
    "CONFIG_NAME",
    "DEFAULT_CALENDAR",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_READ_TIMEOUT",
    "ENV_NESTING",
    "ENV_NOT_SETTINGS",
    "ENV_PREFIX",
    "SYSTEM_CONFIG",
    "Account",
    "DaemonSettings",
    "FeedSettings",
    "LogFormat",
    "OAuth2Settings",
    "SecretRef",
    "Settings",
    "WebhookSettings",
    "apply_env_overrides",
    "backoff_seconds",
    "config_search_path",
    "find_config",
    "load_settings",
    "user_config",
]
