"""Accounts and settings: a TOML file, environment overrides, or command-line flags.

The file (``config/followup-sync.example.toml`` documents every key)::

    database = "followup-sync.sqlite"

    [accounts.alice]
    url = "https://dav.example.com/"
    username = "alice"
    password_env = "ALICE_DAV_PASSWORD"      # or password_file = "/run/secrets/alice"
    calendar = "Follow-ups"                  # display name or id; created if missing
    owners = ["alice"]                       # which follow-ups go to this calendar

Secrets never live in the file itself: a password comes from an environment variable or
a file, so the config can be committed and shown. Every problem is reported at once,
each naming the key and, where the file has it, the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync.errors import ConfigError
from sync.merge import ConflictPolicy
from sync.plan import OnServerDelete

ENV_PREFIX = "FOLLOWUP_SYNC_"


class Account(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    url: str
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    calendar: str = "followups"
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
    owners: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    ids: list[str] = Field(default_factory=list)
    interval_seconds: float = Field(default=300.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError("must start with http:// or https://")
        return value

    def password(self) -> str | None:
        """Read the secret when it is needed, never store it on the model."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"account {self.name!r}: environment variable {self.password_env} (password_env) is not set"
                )
            return value
        if self.password_file:
            path = Path(self.password_file).expanduser()
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"account {self.name!r}: cannot read password_file {path}: {exc.strerror}"
                ) from None
        return None

    def selects(self, *, followup_id: str, owner: str | None, kind: str) -> bool:
        if self.ids and followup_id not in self.ids:
            return False
        if self.owners and owner not in self.owners:
            return False
        return not (self.kinds and kind not in self.kinds)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database: str | None = None
    accounts: dict[str, Account] = Field(default_factory=dict)

    def account(self, name: str | None) -> Account:
        if not self.accounts:
            raise ConfigError("no account is configured (give --config FILE or --url)")
        if name is None:
            if len(self.accounts) == 1:
                return next(iter(self.accounts.values()))
            raise ConfigError(f"several accounts are configured; choose one with --account ({', '.join(self.accounts)})")
        if name not in self.accounts:
            raise ConfigError(f"no account named {name!r} (configured: {', '.join(self.accounts)})")
        return self.accounts[name]


def load_settings(path: str | Path | None, *, environ: dict[str, str] | None = None) -> Settings:
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
    if database := environ.get(f"{ENV_PREFIX}DATABASE"):
        raw["database"] = database
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
            key = ".".join(str(part) for part in error["loc"])
            line = _line_of(text, [str(p) for p in error["loc"]])
            where = f"{path}:{line}: " if line and path else (f"{path}: " if path else "")
            problems.append(f"{where}{key}: {error['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def _line_of(text: str, loc: list[str]) -> int | None:
    """Best effort: the line of the last key named in ``loc`` inside its table."""
    if not text:
        return None
    lines = text.splitlines()
    table_line = 0
    if len(loc) >= 2 and loc[0] == "accounts":
        for number, line in enumerate(lines, 1):
            if re.match(rf"^\s*\[accounts\.\"?{re.escape(loc[1])}\"?\]", line):
                table_line = number
                break
    key = loc[-1]
    for number, line in enumerate(lines[table_line:], table_line + 1):
        if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
            return number
    return table_line or None
