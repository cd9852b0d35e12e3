"""One way to open an account's calendar, used by every command that talks to the server.

Sync passes, ``config check``, the dialog commands and the daemon all connect here, so
each of them gets the same sign-in, TLS, proxy, discovery and response-size limit; before
this module the same dozen lines were copied into four places and two of the copies had
lost ``max_response_bytes``.
"""

from __future__ import annotations

import logging

import dns.resolver

from sync.config import Account
from sync.stores.caldav import DavCalendar
from sync.stores.discovery import find_service, needs_discovery
from sync.stores.signin import transport_for

__all__ = ["check_sign_in", "open_calendar"]

log = logging.getLogger(__name__)


def check_sign_in(account: Account) -> None:
    """Read every secret and open every file the account names; ConfigError if one fails.

    The daemon calls this at start-up, so a missing secret or certificate is one clear
    error then, not a failed pass every interval.
    """
    transport_for(account, username=account.username, password=account.password())


def open_calendar(
    account: Account,
    *,
    known_url: str | None = None,
    create: bool,
    resolver: dns.resolver.Resolver | None = None,
) -> DavCalendar:
    """The account's calendar: ``calendar_url``, else ``known_url``, else discovery.

    ``known_url`` is the calendar a previous discovery found (kept in the state database).
    Discovery goes from a URL, a bare host or ``user@domain`` (RFC 6764) to the principal
    and its calendar home, and picks the calendar by id or display name; ``create`` makes
    it there when it is missing. ``resolver`` replaces the system's DNS resolver for the
    SRV/TXT look-up (tests use a DNS server on loopback).
    """
    password = account.password()
    username = account.username
    url = account.calendar_url or known_url
    base = account.url
    if username is None and needs_discovery(base) and "@" in base:
        username = base.split(":", 1)[0]  # the address is the login (iCloud, Fastmail)
    transport = transport_for(account, username=username, password=password)
    if not url and needs_discovery(base):
        login = (username, password) if transport.auth is None and username and password else None
        service = find_service(
            base, transport=transport, login=login, timeout=account.timeout, resolver=resolver
        )
        log.info("account %r: CalDAV service at %s (%s)", account.name, service.url, service.source)
        base = service.url
    if url:
        return DavCalendar.connect(
            url,
            username=username,
            password=password,
            timeout=account.timeout,
            verify_tls=account.verify_tls,
            server_kind=account.server_kind,
            max_response_bytes=account.max_response_bytes,
            transport=transport,
        )
    return DavCalendar.discover(
        base,
        calendar=account.calendar,
        create=create,
        username=username,
        password=password,
        timeout=account.timeout,
        verify_tls=account.verify_tls,
        server_kind=account.server_kind,
        max_response_bytes=account.max_response_bytes,
        transport=transport,
    )
