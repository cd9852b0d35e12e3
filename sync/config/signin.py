"""How an account signs in beyond a password: secrets by reference, and OAuth 2.0.

``SecretRef`` names where one secret comes from (an environment variable, a file, the
system keyring or a command), never the secret itself; ``OAuth2Settings`` is an
account's ``[accounts.NAME.oauth2]`` table, whose tokens are such references.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sync.errors import ConfigError
from sync.secret_sources import read_secret


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
