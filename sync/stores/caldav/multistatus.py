"""Reading WebDAV answers: DAV:multistatus, DAV:error bodies, status lines.

Answers are untrusted input: the parser expands no entities, reaches no network and
refuses huge text nodes; anything unreadable is a TransportError naming the request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from sync.errors import TransportError

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
# No entity expansion, no network, no huge text nodes: answers are untrusted input.
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
#: How SabreDAV 1.x names itself in an error body (<s:sabredav-version>1.8.12</...>).
SABRE_1_VERSION = re.compile(rb"sabredav-version>\s*1\.")


def tag(ns: str, name: str) -> str:
    """The Clark notation lxml uses for an element name: ``{DAV:}getetag``."""
    return f"{{{ns}}}{name}"


@dataclass
class MsResponse:
    """One DAV:response of a multistatus, reduced to what we read."""

    href: str
    status: int | None  # response-level status (deletions, 404s, truncation)
    props: dict[str, Any]  # tag -> element, from 200 propstats only
    prop_status: int | None  # first non-200 propstat status, if any
    element: Any


def status_code(text: str | None, where: str) -> int:
    """'HTTP/1.1 404 Not Found' -> 404."""
    parts = (text or "").split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    raise TransportError(f"unreadable DAV:status {text!r} in {where}")


def has_error(body: bytes, name: str) -> bool:
    """True when a DAV:error body names the given precondition (valid-sync-token, ...)."""
    if not body:
        return False
    try:
        root = etree.fromstring(body, PARSER)
    except etree.XMLSyntaxError:
        return name.encode() in body
    return any(isinstance(el.tag, str) and etree.QName(el).localname == name for el in root.iter())


def error_href(body: bytes, name: str) -> str | None:
    """The DAV:href inside a DAV:error body's ``name`` precondition element, if any."""
    try:
        root = etree.fromstring(body, PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None
    for el in root.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname == name:
            href = el.find(tag(DAV, "href"))
            if href is not None and (href.text or "").strip():
                return str(href.text).strip()
    return None


def responses(
    root: Any, what: str, *, path: str, from_server: Callable[[str], str]
) -> list[MsResponse]:
    """The DAV:response elements of a multistatus ``root``, hrefs in key form (``from_server``).

    ``path`` (the collection's) names the culprit in errors.
    """
    out: list[MsResponse] = []
    for resp in root.iterchildren(tag(DAV, "response")):
        href_els = resp.findall(tag(DAV, "href"))
        if not href_els:
            raise TransportError(f"DAV:response without href in {what}", href=path)
        status_el = resp.find(tag(DAV, "status"))
        status = status_code(status_el.text, what) if status_el is not None else None
        props: dict[str, Any] = {}
        prop_status: int | None = None
        for propstat in resp.iterchildren(tag(DAV, "propstat")):
            ps_el = propstat.find(tag(DAV, "status"))
            ps = status_code(ps_el.text if ps_el is not None else None, what)
            prop = propstat.find(tag(DAV, "prop"))
            if ps == 200 and prop is not None:
                for child in prop:
                    if isinstance(child.tag, str):
                        props[child.tag] = child
            elif prop_status is None:
                prop_status = ps
        # A status response may list several hrefs (RFC 4918 14.24); expand them.
        for href_el in href_els:
            out.append(
                MsResponse(
                    href=from_server(str(href_el.text or "").strip()),
                    status=status,
                    props=props,
                    prop_status=prop_status,
                    element=resp,
                )
            )
    return out
