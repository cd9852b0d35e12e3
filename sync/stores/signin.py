"""An account's sign-in and TLS settings, turned into what the HTTP layer takes (``dav.Transport``).

Basic, Digest and Bearer are niquests/caldav auth objects. OAuth 2.0 with a refresh token
(RFC 6749 section 6) is ``OAuth2RefreshAuth``: oauthlib builds the token request and checks
the token endpoint's answer (errors per section 5.2, a missing ``access_token``); the request
itself goes out with niquests, the HTTP library caldav is built on, so the account's proxy and
CA bundle reach the token endpoint too. (requests-oauthlib and Authlib wrap requests or httpx
sessions, which caldav's ``DAVClient`` does not use, hence this small adapter.)

The access token lives in memory only: it is fetched on the first request, fetched again
shortly before it expires and after a 401, and never logged, stored or put into an error.
One ``OAuth2RefreshAuth`` per account and credentials is kept for the life of the process,
so the daemon's passes (each opens the calendar anew) share a token instead of asking the
provider for a new one every interval, and a rotated refresh token is not lost between them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import niquests
from caldav.requests import HTTPBearerAuth
from oauthlib.oauth2 import OAuth2Error, WebApplicationClient

from sync.config import Account
from sync.errors import ConfigError, StoreError, TransportError
from sync.stores.caldav import Transport

__all__ = ["OAuth2RefreshAuth", "transport_for"]

log = logging.getLogger(__name__)

#: Refresh this long before the access token expires (at most half its lifetime), so a
#: request never leaves with a token that dies on the way.
REFRESH_MARGIN_SECONDS = 60.0

_oauth_sessions: dict[tuple[str, ...], OAuth2RefreshAuth] = {}
_oauth_sessions_lock = threading.Lock()


class OAuth2RefreshAuth(niquests.auth.AuthBase):
    """Bearer tokens from an OAuth 2.0 token endpoint, renewed with a refresh token."""

    def __init__(
        self,
        *,
        owner: str,
        token_url: str,
        client_id: str,
        client_secret: str | None,
        refresh_token: str,
        scope: str | None = None,
        client_auth: str = "body",
        verify: bool | str = True,
        proxies: dict[str, str] | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owner = owner
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._scope = scope
        self._client_auth = client_auth
        self._verify = verify
        self._proxies = proxies
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._access_token: str | None = None
        self._renew_at = 0.0
        #: Token endpoint requests so far (tests and logs; no token in it).
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"OAuth2RefreshAuth(token_url={self._token_url!r}, client_id={self._client_id!r})"

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self.access_token()}"
        return request

    def access_token(self) -> str:
        """A token that is valid for a while yet; asks the endpoint only when it is not."""
        with self._lock:
            if self._access_token is None or self._clock() >= self._renew_at:
                self._refresh()
            assert self._access_token is not None
            return self._access_token

    def renew_after_401(self) -> bool:
        """The server refused the token before its time (revoked, clock skew): get a new one."""
        with self._lock:
            self._access_token = None
            self._refresh()
        return True

    def _refresh(self) -> None:
        client = WebApplicationClient(self._client_id)
        in_body = self._client_auth == "body"
        body = client.prepare_refresh_body(
            refresh_token=self._refresh_token,
            scope=self._scope,
            **(
                {"client_id": self._client_id, "client_secret": self._client_secret}
                if in_body
                else {}
            ),
        )
        basic = None if in_body else (self._client_id, self._client_secret or "")
        try:
            with niquests.Session() as session:
                resp = session.post(
                    self._token_url,
                    data=body,
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "Accept": "application/json",
                    },
                    auth=basic,
                    timeout=self._timeout,
                    verify=self._verify,
                    proxies=self._proxies,
                    allow_redirects=False,
                )
        except (niquests.exceptions.RequestException, OSError) as exc:
            raise TransportError(
                f"{self._owner}: OAuth 2.0 token endpoint {self._token_url} unreachable: "
                f"{type(exc).__name__}: {exc}",
                href=self._token_url,
            ) from None
        status = int(resp.status_code or 0)
        if status >= 500:
            raise TransportError(
                f"{self._owner}: OAuth 2.0 token endpoint {self._token_url} answered {status}",
                href=self._token_url,
                status=status,
            )
        try:
            token = client.parse_request_body_response(resp.text or "")
        except OAuth2Error as exc:
            detail = exc.error + (f": {exc.description}" if exc.description else "")
            hint = (
                "; the refresh token was revoked or has expired: get a new one"
                if exc.error == "invalid_grant"
                else ""
            )
            raise StoreError(
                f"{self._owner}: OAuth 2.0 token endpoint {self._token_url} refused the "
                f"refresh (HTTP {status}, {detail}){hint}",
                href=self._token_url,
                status=status,
            ) from None
        except ValueError:
            raise StoreError(
                f"{self._owner}: OAuth 2.0 token endpoint {self._token_url} answered "
                f"HTTP {status} with no token in a form oauthlib reads",
                href=self._token_url,
                status=status,
            ) from None
        self.refreshes += 1
        self._access_token = str(token["access_token"])
        if token.get("refresh_token"):  # rotated (RFC 6749 6): the old one is now spent
            self._refresh_token = str(token["refresh_token"])
        lifetime = _lifetime(token.get("expires_in"))
        margin = min(REFRESH_MARGIN_SECONDS, lifetime / 2)
        self._renew_at = self._clock() + lifetime - margin
        log.info(
            "%s: new OAuth 2.0 access token from %s (valid %s)",
            self._owner,
            self._token_url,
            "until refused" if math.isinf(lifetime) else f"{lifetime:g} s",
        )


def _lifetime(expires_in: Any) -> float:
    """Seconds the token is valid; without ``expires_in`` it is used until refused (401)."""
    try:
        value = float(expires_in)
    except (TypeError, ValueError):
        return math.inf
    return value if value > 0 else 0.0


def transport_for(account: Account, *, username: str | None, password: str | None) -> Transport:
    """The account's TLS trust, client certificate, proxy and sign-in; files checked readable."""
    owner = f"account {account.name!r}"
    verify: bool | str = account.verify_tls
    if account.ca_bundle:
        verify = str(_readable(owner, "ca_bundle", account.ca_bundle))
    if account.pin_sha256:
        verify = f"sha256_{account.pin_sha256}"
    cert: tuple[str, str] | str | None = None
    if account.client_cert:
        cert_path = str(_readable(owner, "client_cert", account.client_cert))
        cert = (
            (cert_path, str(_readable(owner, "client_key", account.client_key)))
            if account.client_key
            else cert_path
        )
    transport = Transport(verify=verify, cert=cert, proxy=account.proxy)
    return Transport(
        auth=_auth_for(account, owner, username, password, transport),
        verify=verify,
        cert=cert,
        proxy=account.proxy,
    )


def _auth_for(
    account: Account,
    owner: str,
    username: str | None,
    password: str | None,
    transport: Transport,
) -> Any:
    if account.auth == "basic":
        return None  # DAVClient builds Basic from username and password (no 401 round trip)
    if account.auth == "digest":
        if username is None or password is None:
            raise ConfigError(f'{owner}: auth = "digest" needs username and a password source')
        return niquests.auth.HTTPDigestAuth(username, password)
    if account.auth == "bearer":
        if password is None:
            raise ConfigError(
                f'{owner}: auth = "bearer" takes the token from password_env, password_file, '
                "password_keyring or password_command; none is set"
            )
        return HTTPBearerAuth(password)
    settings = account.oauth2
    if settings is None:  # pragma: no cover - the config validator requires it
        raise ConfigError(f'{owner}: auth = "oauth2" needs an oauth2 table')
    client_id = settings.client_id_value(owner)
    client_secret = (
        settings.client_secret.read(owner, "oauth2.client_secret")
        if settings.client_secret
        else None
    )
    refresh_token = settings.refresh_token.read(owner, "oauth2.refresh_token")
    # The token endpoint is another host: the pin is for the calendar server only.
    pinned = isinstance(transport.verify, str) and transport.verify.startswith("sha256_")
    verify = True if pinned else transport.verify
    # Keyed by digests, so the table never holds a second copy of a secret.
    key = (
        account.name,
        settings.token_url,
        client_id,
        _digest(client_secret or ""),
        _digest(refresh_token),
        settings.scope or "",
        settings.client_auth,
        str(verify),
        str(transport.proxy),
    )
    with _oauth_sessions_lock:
        auth = _oauth_sessions.get(key)
        if auth is None:
            auth = _oauth_sessions[key] = OAuth2RefreshAuth(
                owner=owner,
                token_url=settings.token_url,
                client_id=client_id,
                client_secret=client_secret,
                refresh_token=refresh_token,
                scope=settings.scope,
                client_auth=settings.client_auth,
                verify=verify,
                proxies=transport.proxies,
                timeout=account.timeout,
            )
    return auth


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _readable(owner: str, key: str, value: str) -> Path:
    path = Path(value).expanduser()
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{owner}: cannot read {key} {path}: {exc.strerror}") from None
    return path
