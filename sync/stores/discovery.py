"""RFC 6764: from a bare host or an e-mail-style account to the server's CalDAV context URL.

``alice@example.com`` or ``example.com`` becomes ``https://<host>[:port]<path>`` by, in
order, a DNS SRV record ``_caldavs._tcp.<domain>`` (with the path from its TXT record), and
``https://<domain>/.well-known/caldav`` and its redirects. caldav's own discovery does the
same, but its requests ignore the account's CA bundle, client certificate and proxy, and it
cannot be told a port; so the lookups are done here, with dnspython (a caldav dependency)
for DNS and the account's transport for HTTP. From the context URL, caldav's
``get_principal`` follows DAV:current-user-principal to the principal and calendar home.

Only TLS is used (RFC 6764 section 8, against downgrades), and a redirect or SRV target
must stay inside the queried domain, as caldav also requires.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import dns.exception
import dns.resolver
import niquests

from sync.errors import TransportError
from sync.stores.caldav import Transport, describe_transport_failure

__all__ = ["Service", "find_service", "needs_discovery"]

log = logging.getLogger(__name__)

_MAX_REDIRECTS = 5
#: DNS answers come fast or not at all; a resolver that is down must not eat the HTTP timeout.
_DNS_LIFETIME_SECONDS = 5.0
_PROPFIND_PRINCIPAL = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:current-user-principal/></D:prop></D:propfind>'
)


@dataclass(frozen=True)
class Service:
    """Where the CalDAV service is, how it was found, and the user named in the address."""

    url: str
    source: str  # "srv", "well-known" or "host"
    username: str | None


def needs_discovery(url: str) -> bool:
    """A configured URL without a scheme is a host or an e-mail-style account."""
    return not re.match(r"^https?://", url)


def find_service(
    identifier: str,
    *,
    transport: Transport,
    login: tuple[str, str] | None = None,
    timeout: float = 30.0,
    resolver: dns.resolver.Resolver | None = None,
) -> Service:
    """The CalDAV context URL for ``host[:port]`` or ``user@domain[:port]``.

    ``login`` is the Basic username and password when the transport has no auth object
    of its own; some servers redirect the well-known URI only for a signed-in user.
    """
    user, _, domain = identifier.rpartition("@")
    host = domain.split(":", 1)[0]
    lifetime = min(timeout, _DNS_LIFETIME_SECONDS)
    srv = None if _is_ip(host) else _srv_service(host, resolver, lifetime)
    if srv is not None:
        netloc, path = srv
        if path is None:  # no TXT path: the well-known URI on the SRV target (RFC 6764 6)
            path = urlsplit(
                _follow_well_known(
                    f"https://{netloc}/.well-known/caldav", host, transport, login, timeout
                )
            ).path
        return Service(f"https://{netloc}{path}", "srv", user or None)
    start = f"https://{domain}/.well-known/caldav"
    url = _follow_well_known(start, host, transport, login, timeout)
    return Service(url, "well-known" if url != f"https://{domain}/" else "host", user or None)


def _srv_service(
    domain: str, resolver: dns.resolver.Resolver | None, timeout: float
) -> tuple[str, str | None] | None:
    """``(target:port, path)`` from ``_caldavs._tcp.<domain>`` SRV and its TXT ``path=``."""
    resolver = resolver or dns.resolver.get_default_resolver()
    name = f"_caldavs._tcp.{domain}"
    try:
        answers = resolver.resolve(name, "SRV", lifetime=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        log.debug("discovery: no SRV record %s (%s)", name, exc)
        return None
    records = sorted(answers, key=lambda r: (r.priority, -r.weight))
    if not records:
        return None
    target = str(records[0].target).rstrip(".")
    if target in ("", "."):
        return None  # RFC 2782: "." means the service is decidedly not offered here
    if not _inside(target, domain):
        log.warning("discovery: SRV %s points outside %s (%s); ignored", name, domain, target)
        return None
    port = int(records[0].port)
    netloc = target if port == 443 else f"{target}:{port}"
    return netloc, _txt_path(resolver, name, timeout)


def _txt_path(resolver: dns.resolver.Resolver, name: str, timeout: float) -> str | None:
    try:
        answers = resolver.resolve(name, "TXT", lifetime=timeout)
    except (dns.exception.DNSException, OSError):
        return None
    for record in answers:
        text = b"".join(record.strings).decode("utf-8", errors="replace")
        for pair in text.split():
            key, _, value = pair.partition("=")
            if key.lower() == "path" and value.startswith("/"):
                return value
    return None


def _follow_well_known(
    start: str,
    domain: str,
    transport: Transport,
    login: tuple[str, str] | None,
    timeout: float,
) -> str:
    """Follow the well-known URI's redirects (inside the domain); the root when it has none."""
    url = start
    with niquests.Session() as session:
        for _ in range(_MAX_REDIRECTS):
            resp = _propfind(session, url, transport, login, timeout)
            location = resp.headers.get("Location")
            if resp.status_code not in (301, 302, 303, 307, 308) or not location:
                if resp.status_code in (200, 207, 401):
                    return url  # the well-known URI itself answers as the context path
                root = f"https://{urlsplit(start).netloc}/"
                log.info("discovery: %s answered %s; using %s", url, resp.status_code, root)
                return root
            target = urljoin(url, location)
            parts = urlsplit(target)
            if parts.scheme != "https" or not _inside(parts.hostname or "", domain):
                raise TransportError(
                    f"discovery: {url} redirects to {target}, outside https://{domain} "
                    "(refused, RFC 6764 section 8); give the server URL as url",
                    href=url,
                )
            url = target
    raise TransportError(
        f"discovery: more than {_MAX_REDIRECTS} redirects from {start}", href=start
    )


def _propfind(
    session: niquests.Session,
    url: str,
    transport: Transport,
    login: tuple[str, str] | None,
    timeout: float,
) -> Any:
    try:
        return session.request(
            "PROPFIND",
            url,
            data=_PROPFIND_PRINCIPAL,
            headers={"Depth": "0", "Content-Type": "application/xml; charset=utf-8"},
            auth=transport.auth or login,
            timeout=timeout,
            verify=transport.verify,
            cert=transport.cert,
            proxies=transport.proxies,
            allow_redirects=False,
        )
    except (niquests.exceptions.RequestException, OSError) as exc:
        raise TransportError(
            f"discovery at {url} failed: {describe_transport_failure(exc, transport)}", href=url
        ) from exc


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _inside(host: str, domain: str) -> bool:
    host, domain = host.lower().rstrip("."), domain.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)
