"""Which component is which: UIDs for components without one, the newest of two copies.

RFC 5545 requires a UID on every VEVENT and VTODO, but files exported by some tools lack
it, and some servers (Xandikos, measured) store such a resource as it was sent. Rather
than refuse the whole file, each such component gets a UID derived from its content: a
SHA-256 over its properties and subcomponents as iCalendar text, leaving out what every
save rewrites (DTSTAMP, LAST-MODIFIED, SEQUENCE). The same file read twice therefore
gives the same UIDs, and a resource read on every pass keeps its follow-up.

Two UID-less components with the same content in one file are two items, not one: the
second gets ``-2`` appended, and so on, in file order. Nothing here is a library's job
(no iCalendar library assigns UIDs to what it reads), so it is done by hand.

A resource may also hold two copies of one component (two masters of one UID, seen on
servers that store what they are sent): ``newness`` orders them, highest SEQUENCE
first, then the later of DTSTAMP and LAST-MODIFIED, as RFC 5546 orders revisions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable

from icalendar import Component

#: Rewritten by every save, so not part of what an item is.
_VOLATILE = frozenset({"DTSTAMP", "LAST-MODIFIED", "SEQUENCE"})

#: Derived UIDs look like ``derived-<24 hex digits>@followup-sync``.
DERIVED_PREFIX = "derived-"
DERIVED_SUFFIX = "@followup-sync"


def content_uid(component: Component) -> str:
    """A UID that depends only on what the component says."""
    digest = hashlib.sha256(_content(component)).hexdigest()[:24]
    return f"{DERIVED_PREFIX}{digest}{DERIVED_SUFFIX}"


def give_uids(components: Iterable[Component]) -> list[tuple[Component, str]]:
    """Give each UID-less component its content UID (numbered when two say the same).

    Returns (component, UID given) for each component that had none, in order.
    """
    given: list[tuple[Component, str]] = []
    used: dict[str, int] = {}
    for component in components:
        if str(component.get("UID", "")).strip():
            continue
        uid = content_uid(component)
        used[uid] = used.get(uid, 0) + 1
        if used[uid] > 1:
            uid = uid.replace(DERIVED_SUFFIX, f"-{used[uid]}{DERIVED_SUFFIX}")
        component.pop("UID", None)
        component.add("uid", uid)
        given.append((component, uid))
    return given


def describe_item(component: Component) -> str:
    """How a warning names a component that has no UID: kind, summary and start.

    A malformed file may repeat a property (icalendar then gives a list): the first one
    names the item, since a warning must never be what fails on a bad file.
    """
    summary = str(_first(component.get("SUMMARY", ""))).strip() or "(no summary)"
    start = _first(component.get("DTSTART") or component.get("DUE"))
    when = _text(start).split("|", 1)[-1] if start is not None else "no start"
    return f"{component.name} {summary!r} at {when}"


def _first(value: object) -> object:
    """The first of a repeated property, or the property itself."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _content(component: Component) -> bytes:
    lines = [
        f"{name}:{_text(value)}"
        for name, value in component.property_items(recursive=False, sorted=True)
        if name not in _VOLATILE and name not in ("BEGIN", "END", "UID")
    ]
    parts = [str(component.name), *lines]
    parts += [_content(sub).decode("utf-8", "replace") for sub in component.subcomponents]
    return "\n".join(parts).encode()


def _text(value: object) -> str:
    to_ical = getattr(value, "to_ical", None)
    if to_ical is None:
        return str(value)
    raw = to_ical()
    params = getattr(value, "params", None)
    prefix = ";".join(f"{k}={v}" for k, v in sorted(params.items())) if params else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return f"{prefix}|{text}"


def newness(component: Component) -> tuple[int, dt.datetime]:
    """Sort key: the newer of two copies of one component sorts higher."""
    try:
        sequence = int(component.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        sequence = 0
    stamps = []
    for name in ("DTSTAMP", "LAST-MODIFIED"):
        moment = getattr(component.get(name), "dt", None)
        if isinstance(moment, dt.datetime):
            stamps.append(moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC))
    return sequence, max(stamps, default=_OLDEST)


_OLDEST = dt.datetime.min.replace(tzinfo=dt.UTC)
