"""Signing in to SuperOffice: Basic (onsite) or the system-user ticket (SuperOffice Online).

The ticket flow (SuperOfficeDocs en/api/authentication/online/auth-application/
sign-system-user-token and get-system-user-ticket): sign ``<system user token>.<yyyyMMddHHmm>``
with the application's RSA key (SHA-256, PKCS#1 v1.5), POST it to
``/Login/api/PartnerSystemUser/Authenticate``, and read the ticket from the returned JWT's
``http://schemes.superoffice.net/identity/ticket`` claim. Calls then send
``Authorization: SOTicket <ticket>`` and ``SO-AppToken``. A ticket lives six idle hours: it is
renewed before that, and once more on a 401 (expired or revoked mid-pass).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Callable, Generator

import httpx

from sync.crm.base import CrmError
from sync.extras import MissingExtra

TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"
#: Renewed well before SuperOffice's six idle hours.
TICKET_RENEW_AFTER = dt.timedelta(hours=5)


def sign_system_user_token(system_token: str, private_key_pem: str, when: dt.datetime) -> str:
    """``token.yyyyMMddHHmm.base64(RSA-SHA256 signature)`` as the Authenticate call wants it."""
    try:  # optional extra: superoffice (only the ticket flow needs cryptography)
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError as exc:
        raise MissingExtra("superoffice", "the SuperOffice system-user sign-in", exc) from None

    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CrmError("the SuperOffice private key is not an RSA key")
    signed_part = f"{system_token}.{when.astimezone(dt.UTC).strftime('%Y%m%d%H%M')}"
    signature = key.sign(signed_part.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed_part}.{base64.b64encode(signature).decode('ascii')}"


def ticket_from_jwt(token: str) -> str:
    """The ticket claim of the JWT SuperOffice answered (received over TLS from the tenant)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims[TICKET_CLAIM])
    except (IndexError, KeyError, ValueError) as exc:
        raise CrmError(f"SuperOffice answered a token without a ticket: {exc}") from None


class TicketAuth(httpx.Auth):
    """``SOTicket`` sign-in that fetches, renews and (after a 401) re-fetches its ticket."""

    def __init__(
        self,
        *,
        login_url: str,
        app_token: str,
        system_token: str,
        private_key_pem: str,
        context_identifier: str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.login_url = login_url
        self.app_token = app_token
        self.system_token = system_token
        self.private_key_pem = private_key_pem
        self.context_identifier = context_identifier
        self.clock = clock
        self.ticket: str | None = None
        self.fetched_at: dt.datetime | None = None
        self.sign_ins = 0
        self._lock = threading.Lock()

    def _fetch(self) -> Generator[httpx.Request, httpx.Response, None]:
        signed = sign_system_user_token(self.system_token, self.private_key_pem, self.clock())
        response = yield httpx.Request(
            "POST",
            self.login_url,
            json={
                "SignedSystemToken": signed,
                "ApplicationToken": self.app_token,
                "ContextIdentifier": self.context_identifier,
                "ReturnTokenType": "JWT",
            },
        )
        response.read()
        body = response.json() if response.status_code == 200 else {}
        if not body.get("IsSuccessful"):
            message = body.get("ErrorMessage") or f"HTTP {response.status_code}"
            raise CrmError(f"SuperOffice system-user sign-in refused: {message}")
        self.ticket = ticket_from_jwt(str(body["Token"]))
        self.fetched_at = self.clock()
        self.sign_ins += 1

    def _stale(self) -> bool:
        return self.fetched_at is None or self.clock() - self.fetched_at > TICKET_RENEW_AFTER

    def _sign(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"SOTicket {self.ticket}"
        request.headers["SO-AppToken"] = self.app_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.ticket is None or self._stale():
            yield from self._fetch()
        self._sign(request)
        response = yield request
        if response.status_code == 401:
            yield from self._fetch()
            self._sign(request)
            yield request

    requires_response_body = False
