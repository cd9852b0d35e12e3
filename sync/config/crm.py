"""An account's CRM connector: ``[accounts.NAME.crm]``.

Without this table the account's follow-ups come from ``import`` or the API only. With it,
``sync.crm`` reads them from the CRM itself and writes calendar edits back there.
Secrets follow the project's rule: never in the file, only where they are read from
(``sync.secret_sources``: environment, file, keyring or command).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sync.secret_sources import read_secret


class CrmSettings(BaseModel):
    """Where the CRM is, how to sign in, and whose follow-ups to read."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["superoffice"] = "superoffice"
    #: The tenant's base URL (``https://sod.superoffice.com/Cust12345``); the API is below it.
    url: str
    #: "basic": onsite, user and password. "ticket": SuperOffice Online's system-user flow.
    auth: Literal["basic", "ticket"] = "basic"
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    password_keyring: str | None = None
    password_command: list[str] | None = Field(default=None, min_length=1)
    #: Ticket flow: the application's client secret (SO-AppToken), its RSA private key (PEM),
    #: the system user token, and the tenant's context identifier (``Cust12345``).
    app_token_env: str | None = None
    private_key_file: str | None = None
    system_token_env: str | None = None
    context_identifier: str | None = None
    #: Where the webhook secret is (``activity.*`` deliveries are checked with it); without
    #: one the daemon takes no deliveries and reconciles on its schedule only.
    webhook_secret_env: str | None = None
    webhook_secret_file: str | None = None
    #: The associates whose appointments, tasks and calls this account syncs (ids).
    associates: list[int] = Field(default_factory=list)
    #: The zone the tenant's local timestamps are in (SuperOffice writes them without offset).
    timezone: str = "UTC"
    timeout: float = 30.0

    @model_validator(mode="after")
    def _check_auth(self) -> CrmSettings:
        if self.auth == "ticket" and not (
            self.app_token_env and self.private_key_file and self.system_token_env
        ):
            raise ValueError(
                "crm.auth = 'ticket' needs app_token_env, private_key_file and system_token_env"
            )
        return self

    def password(self, owner: str) -> str | None:
        """The Basic password from wherever the table says it is (None: none configured)."""
        return read_secret(
            owner,
            "crm password",
            env=self.password_env,
            file=self.password_file,
            keyring=self.password_keyring,
            command=self.password_command,
            keyring_user=self.username,
        )

    def webhook_secret(self, owner: str) -> str | None:
        """The secret SuperOffice signs webhook deliveries with (None: no webhooks)."""
        return read_secret(
            owner, "crm webhook secret", env=self.webhook_secret_env, file=self.webhook_secret_file
        )

    def app_token(self, owner: str) -> str | None:
        """The application's client secret, sent as ``SO-AppToken`` (ticket flow)."""
        return read_secret(owner, "crm app token", env=self.app_token_env)

    def system_token(self, owner: str) -> str | None:
        """The system user token the ticket flow signs."""
        return read_secret(owner, "crm system user token", env=self.system_token_env)

    def private_key(self, owner: str) -> str | None:
        """The application's RSA private key (PEM) the ticket flow signs with."""
        return read_secret(owner, "crm private key", file=self.private_key_file)
