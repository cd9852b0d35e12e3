"""One account: a CalDAV calendar, how to reach it, and which follow-ups go to it.

An ``[accounts.NAME]`` table of the config file. Sign-in beyond a password is in
``sync.config.signin``; the policies an account names (``conflict_policy``,
``on_server_delete``) are ``sync.policies``'. ``backoff_seconds`` is how long a failing
account waits, read by the daemon and by the API's status alike.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sync.config.crm import CrmSettings
from sync.config.signin import OAuth2Settings
from sync.policies import ConflictPolicy, OnServerDelete, SyncDirection
from sync.secret_sources import read_secret

#: The calendar an account uses when it names none (display name or id).
DEFAULT_CALENDAR = "followups"

_PASSWORD_SOURCES = ("password_env", "password_file", "password_keyring", "password_command")


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
    #: "both" syncs both ways; "to-calendar": the CRM is the master, nothing is written to
    #: the CRM and the calendar copy is corrected to the CRM's version; "to-crm": the
    #: calendar is the master, nothing is written to the calendar (sync.engine.direction).
    #: ``PUT /v1/accounts/NAME/direction`` overrides it without a restart.
    direction: SyncDirection = "both"
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
    #: account-specific address (``crm+alice@example.com``). See docs/how-to/invitations.md.
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
    #: ``[accounts.NAME.crm]``: read follow-ups from the CRM itself and write edits back.
    crm: CrmSettings | None = None

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
