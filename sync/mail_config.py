"""The ``[mail]`` settings: where invitations go out (SMTP) and where replies come in (IMAP).

Kept beside ``sync.config`` (which embeds them as ``Settings.mail``) so the invitation
code owns its own keys. As for CalDAV accounts, secrets never live in the file: a
password comes from an environment variable or a file, read only when it is needed::

    [mail]
    host = "smtp.example.com"
    port = 587
    security = "starttls"            # "none", "starttls" or "ssl"
    username = "crm@example.com"
    password_env = "SMTP_PASSWORD"   # or password_file = "/run/secrets/smtp"
    from = "CRM <crm@example.com>"
    organizer = "service"            # answers go to from's address; "person": to the organizer

    [mail.imap]                      # where attendees' replies arrive
    host = "imap.example.com"
    security = "ssl"
    username = "crm@example.com"
    password_env = "IMAP_PASSWORD"
    folder = "INBOX"
    poll_seconds = 60                # the daemon reads new replies this often
    authserv_ids = ["mx.example.com"]  # whose Authentication-Results vouch for a sender

The daemon (``sync.service.daemon``) sends an account's recorded invitations after each of its
passes and reads ``[mail.imap]`` every ``poll_seconds``; without the daemon,
``followup-sync invitations send`` and ``fetch`` do the same once.
"""

from __future__ import annotations

import os
from email.utils import parseaddr
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sync.errors import ConfigError

Security = Literal["none", "starttls", "ssl"]


def read_secret(owner: str, env: str | None, file: str | None) -> str | None:
    """A password from the environment or a file; None when neither is configured."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{owner}: environment variable {env} (password_env) is not set")
        return value
    if file:
        path = Path(file).expanduser()
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"{owner}: cannot read password_file {path}: {exc.strerror}"
            ) from None
    return None


class ImapSettings(BaseModel):
    """The mailbox iTIP replies arrive in (``[mail.imap]``)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "localhost"
    port: int | None = None
    security: Security = "ssl"
    username: str
    password_env: str | None = None
    password_file: str | None = None
    folder: str = "INBOX"
    timeout: float = Field(default=30.0, gt=0)
    #: How often ``followup-sync daemon`` reads the folder for new replies.
    poll_seconds: float = Field(default=60.0, gt=0)
    #: The authserv-id(s) the receiving mail server writes into Authentication-Results
    #: (RFC 8601), e.g. "mx.example.com": only its results vouch for a reply's sender
    #: (``sync.invitations.reply_trust``). Empty: a reply is judged on its From address, and any
    #: failing result holds it.
    authserv_ids: list[str] = Field(default_factory=list)

    def password(self) -> str | None:
        return read_secret("[mail.imap]", self.password_env, self.password_file)

    @property
    def imap_port(self) -> int:
        return self.port or (993 if self.security == "ssl" else 143)


class MailSettings(BaseModel):
    """Outgoing invitations (``[mail]``): the SMTP server and the sender address."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str = "localhost"
    port: int | None = None
    security: Security = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    sender: str = Field(alias="from")
    #: Who emailed invitations name as ORGANIZER, i.e. where the answers go: "service"
    #: (``from``'s address, the mailbox ``[mail.imap]`` reads, in the organizer's name) or
    #: "person" (the follow-up organizer's own address: answers reach the service only
    #: if a mail-server rule copies them there). docs/how-to/invitations.md compares the two.
    organizer: Literal["service", "person"] = "service"
    timeout: float = Field(default=30.0, gt=0)
    imap: ImapSettings | None = None

    @field_validator("sender")
    @classmethod
    def _address(cls, value: str) -> str:
        _, address = parseaddr(value)
        if "@" not in address:
            raise ValueError(
                "must be an email address, optionally with a name: 'CRM <crm@example.com>'"
            )
        return value

    def password(self) -> str | None:
        return read_secret("[mail]", self.password_env, self.password_file)

    @property
    def smtp_port(self) -> int:
        return self.port or {"none": 25, "starttls": 587, "ssl": 465}[self.security]

    @property
    def sender_address(self) -> str:
        return parseaddr(self.sender)[1]

    @property
    def sender_name(self) -> str | None:
        return parseaddr(self.sender)[0] or None
