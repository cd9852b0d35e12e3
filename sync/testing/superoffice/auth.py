"""The two ways a server signs in to SuperOffice: Basic (onsite), the system-user ticket (Online).

Onsite installations take `Authorization: Basic base64(user:password)`. SuperOffice Online's
server-to-server flow (SuperOfficeDocs/docs en/api/authentication/online/auth-application/
{sign-system-user-token,get-system-user-ticket}.mdx): the application signs
`<system user token>.<yyyyMMddHHmm UTC>` with its RSA private key (SHA-256, PKCS#1 v1.5), POSTs it
with its client secret to `/Login/api/PartnerSystemUser/Authenticate`, receives
`{IsSuccessful, ErrorMessage, Token}` where Token is an RS256 JWT whose claim
`http://schemes.superoffice.net/identity/ticket` is the credential. Calls then send
`Authorization: SOTicket <ticket>` and `SO-AppToken: <client secret>`. A ticket lives six hours,
renewed on every use (sliding); tests expire it at will.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TICKET_LIFETIME = timedelta(hours=6)
SIGNED_TOKEN_MAX_AGE = timedelta(minutes=5)  # *inferred*: the docs say only "too much time"
TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_system_user_token(system_user_token: str, private_key_pem: bytes, when: datetime) -> str:
    """What the application sends: token.timestamp.base64(RSA-SHA256 signature of the two)."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signed_part = f"{system_user_token}.{when.astimezone(UTC).strftime('%Y%m%d%H%M')}"
    signature = key.sign(signed_part.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed_part}.{base64.b64encode(signature).decode('ascii')}"


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def shared_rsa_key(role: str) -> rsa.RSAPrivateKey:
    """One key per role and process: a 2048-bit key takes a quarter second to make, per stand-in."""
    return new_rsa_key()


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Ticket:
    value: str
    associate_id: int
    last_used: datetime


@dataclass
class SignIn:
    """Who may call the stand-in, and the tickets it has handed out."""

    clock: Callable[[], datetime]
    context_identifier: str
    basic_users: dict[str, tuple[str, int]] = field(default_factory=dict)
    application_token: str = field(default_factory=lambda: secrets.token_hex(16))
    system_user_token: str = field(default_factory=lambda: "SYS" + secrets.token_hex(12))
    system_user_associate_id: int = 1
    application_key: rsa.RSAPrivateKey = field(default_factory=lambda: shared_rsa_key("app"))
    superoffice_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: shared_rsa_key("superoffice")
    )
    tickets: dict[str, Ticket] = field(default_factory=dict)

    def authenticate_system_user(self, request: dict[str, Any]) -> dict[str, Any]:
        """`PartnerSystemUser/Authenticate`: a signed system user token in, a JWT with a ticket."""

        def refuse(message: str) -> dict[str, Any]:
            return {"IsSuccessful": False, "ErrorMessage": message, "Token": None}

        if request.get("ApplicationToken") != self.application_token:
            return refuse("Unknown application token")
        if request.get("ContextIdentifier") != self.context_identifier:
            return refuse("Unknown context identifier")
        token, _, rest = str(request.get("SignedSystemToken") or "").partition(".")
        stamp, _, signature_b64 = rest.partition(".")
        if token != self.system_user_token:
            return refuse("Unknown system user token")
        try:
            signed_at = datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=UTC)
            self.application_key.public_key().verify(
                base64.b64decode(signature_b64, validate=True),
                f"{token}.{stamp}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, binascii.Error, InvalidSignature):
            return refuse("Invalid signature")
        if abs(self.clock() - signed_at) > SIGNED_TOKEN_MAX_AGE:
            return refuse("Too much time has elapsed since the system user token was signed")
        ticket = Ticket(
            "7T:" + secrets.token_urlsafe(24), self.system_user_associate_id, self.clock()
        )
        self.tickets[ticket.value] = ticket
        return {"IsSuccessful": True, "ErrorMessage": "", "Token": self._jwt(ticket)}

    def _jwt(self, ticket: Ticket) -> str:
        now = int(self.clock().timestamp())
        header = {"alg": "RS256", "typ": "JWT"}
        claims = {
            TICKET_CLAIM: ticket.value,
            "http://schemes.superoffice.net/identity/ctx": self.context_identifier,
            "iss": "SuperOffice AS",
            "iat": now,
            "exp": now + 60,
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self.superoffice_key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64url(signature)}"

    def associate_for(self, authorization: str | None, app_token: str | None) -> int | None:
        """The associate a request acts as, or None (HTTP 401)."""
        scheme, _, credential = (authorization or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credential).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            known = self.basic_users.get(user)
            return known[1] if known and secrets.compare_digest(known[0], password) else None
        if scheme == "SOTicket":
            ticket = self.tickets.get(credential.strip())
            if ticket is None or app_token != self.application_token:
                return None
            if self.clock() - ticket.last_used > TICKET_LIFETIME:
                del self.tickets[ticket.value]
                return None
            ticket.last_used = self.clock()  # sliding expiry
            return ticket.associate_id
        return None

    def expire_tickets(self) -> None:
        """Fault: every ticket handed out so far stops working now."""
        self.tickets.clear()
