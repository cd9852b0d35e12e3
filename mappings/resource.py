"""One follow-up as one CalDAV resource, written on top of what the server holds.

The sync worker never writes a resource from scratch when the server already has one:
it renders the follow-up and then carries over, component by component, everything
the mapper does not manage — alarms (VALARM), ATTENDEE lines with their parameters,
X- properties, SEQUENCE, CLASS, TRANSP, COLOR … — from the server's bytes. The master
pairs with the master and each override with the override of the same RECURRENCE-ID.
A client's cancelled override (STATUS:CANCELLED with a RECURRENCE-ID) stays a cancelled
override instead of turning into an EXDATE, so a calendar shows what its user did.

Which properties the mapper owns is the one list ``MANAGED``; everything else belongs
to the server or the client and is kept. ORGANIZER and ATTENDEE are owned only by
follow-ups that have an organizer or participants (``MANAGED_WITH_PARTICIPANTS``): on
the others, the attendees a calendar client added keep surviving our writes.

``schedule_agent`` marks every ATTENDEE with SCHEDULE-AGENT (RFC 6638 §7.1): ``CLIENT``
when this service sends the invitations by email itself, so that a scheduling server
does not send them a second time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from icalendar import Calendar, Component

from mappings.errors import MappingError, item_errors
from mappings.model import FollowUp, FollowUpKind
from mappings.task_status import STATUS_PROPERTY, TASK_STATUS_PROPERTIES
from mappings.to_ical import calendar_bytes, followup_components

#: Properties the mapper writes; on a write back, these come from the follow-up.
MANAGED = frozenset(
    {
        "UID",
        "DTSTAMP",
        "DTSTART",
        "DTEND",
        "DUE",
        "DURATION",
        "SUMMARY",
        "DESCRIPTION",
        "LOCATION",
        "RRULE",
        "RDATE",
        "EXDATE",
        "EXRULE",
        "RECURRENCE-ID",
        "X-FOLLOWUP-KIND",
        "X-FOLLOWUP-ID",
        "LAST-MODIFIED",
        "X-FOLLOWUP-LANGUAGE",
        STATUS_PROPERTY,
    }
)

#: Also owned by the mapper when the follow-up has an organizer or participants.
MANAGED_WITH_PARTICIPANTS = frozenset({"ORGANIZER", "ATTENDEE"})

CALENDAR_COMPONENTS = ("VEVENT", "VTODO")


@dataclass(frozen=True)
class ServerResource:
    """What the mapper reads out of a server resource."""

    uid: str
    components: list[Component]
    modified: dt.datetime | None


def render(
    followup: FollowUp,
    *,
    stamp: dt.datetime,
    base: bytes | None = None,
    schedule_agent: str | None = None,
) -> bytes | None:
    """The resource bytes for a follow-up, or None when nothing is left to put on a calendar.

    Any error on the way is a MappingError naming the follow-up (``item_errors``): a
    document that cannot be rendered is that item's failure, never the whole pass's.
    """
    with item_errors(followup.id, doing="cannot be rendered"):
        return _render(followup, stamp=stamp, base=base, schedule_agent=schedule_agent)


def _render(
    followup: FollowUp, *, stamp: dt.datetime, base: bytes | None, schedule_agent: str | None
) -> bytes | None:
    series = followup_components(followup, stamp=stamp)
    if not series.emitted:
        return None
    components = list(series.components)
    if schedule_agent is not None:
        for component in components:
            for attendee in _as_list(component.get("ATTENDEE")):
                attendee.params["SCHEDULE-AGENT"] = schedule_agent
    if base is not None:
        base_cal = _parse(base, followup.effective_uid)
        managed = (
            MANAGED | MANAGED_WITH_PARTICIPANTS
            if (followup.participants or followup.organizer)
            else MANAGED
        )
        if followup.kind == FollowUpKind.task:  # a task's completion is the follow-up's status
            managed |= TASK_STATUS_PROPERTIES
        components = _carry_over(components, base_cal, followup.effective_uid, managed)
        return calendar_bytes(components, defined=base_cal.walk("VTIMEZONE"))
    return calendar_bytes(components)


#: Any fixed moment: DTSTAMP does not change what can or cannot be rendered.
_CHECK_STAMP = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def check_renderable(followup: FollowUp) -> None:
    """Compute now, once, what a sync pass and the recurrence dialog compute from a follow-up.

    The one check for "can this be put on a calendar": the store runs it before it
    accepts a follow-up (import, the API), the dialog's date calculation meets the same
    errors, so a document that would fail every later sync pass (a weekly Cycle of 10^9,
    a series running past year 9999) is refused at the door, naming the item.
    """
    from mappings.occurrences import occurrences

    with item_errors(followup.id, doing="cannot be put on a calendar"):
        render(followup, stamp=_CHECK_STAMP)
        occurrences(followup, include_cancelled=False)


def read(data: bytes) -> ServerResource:
    """The calendar components of one resource; a MappingError names what is wrong."""
    cal = _parse(data, None)
    components = [c for c in cal.walk() if c.name in CALENDAR_COMPONENTS]
    if not components:
        raise MappingError("holds no VEVENT or VTODO", field="VCALENDAR")
    uids = {str(c.get("UID", "")) for c in components}
    if len(uids) != 1 or "" in uids:
        raise MappingError(
            f"a resource must hold one UID, found {sorted(uids)}",
            item=sorted(uids)[0] or None,
            field="UID",
        )
    uid = uids.pop()
    master = next((c for c in components if "RECURRENCE-ID" not in c), components[0])
    modified = None
    for key in ("LAST-MODIFIED", "DTSTAMP"):
        value = master.get(key)
        if value is not None:
            try:
                moment = value.dt
            except Exception:
                continue
            if isinstance(moment, dt.datetime):
                modified = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
                break
    return ServerResource(uid, components, modified)


def _parse(data: bytes, uid: str | None) -> Calendar:
    try:
        return Calendar.from_ical(data)
    except Exception as exc:  # the parser meets untrusted bytes: any failure means "not iCalendar"
        raise MappingError(f"not valid iCalendar ({exc})", item=uid, field="VCALENDAR") from None


def _recurrence_key(component: Component) -> object:
    value = component.get("RECURRENCE-ID")
    if value is None:
        return None
    moment = value.dt
    if isinstance(moment, dt.datetime):
        return moment.astimezone(dt.UTC) if moment.tzinfo is not None else moment
    return moment


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _carry_over(
    components: list[Component], base_cal: Calendar, uid: str, managed: frozenset[str] = MANAGED
) -> list[Component]:
    base_components = [
        c for c in base_cal.walk() if c.name in CALENDAR_COMPONENTS and str(c.get("UID", "")) == uid
    ]
    by_key = {_recurrence_key(c): c for c in base_components}
    for component in components:
        source = by_key.get(_recurrence_key(component))
        if source is not None and source.name == component.name:
            _copy_unmanaged(source, component, managed)
    master = components[0]
    # A client's cancelled override stays an override, not an EXDATE.
    for key, source in by_key.items():
        if key is None or str(source.get("STATUS", "")).upper() != "CANCELLED":
            continue
        if _remove_exdate(master, key):
            components.append(source)
    return components


def _copy_unmanaged(
    source: Component, target: Component, managed: frozenset[str] = MANAGED
) -> None:
    # CATEGORIES: the client's list wins (it may have added its own next to "Phone call").
    ours = {name for name in target if name != "CATEGORIES"}
    target.pop("CATEGORIES", None)
    for name, value in source.property_items(recursive=False, sorted=False):
        if name in ("BEGIN", "END") or name in managed or name in ours:
            continue
        target.add(name, value, encode=False)
    for sub in source.subcomponents:
        target.add_component(sub)


def _remove_exdate(master: Component, key: object) -> bool:
    """Drop one EXDATE value from the master; True if it was there."""
    lines = master.get("EXDATE")
    if lines is None:
        return False
    lines = lines if isinstance(lines, list) else [lines]
    found = False
    kept_lines = []
    for line in lines:
        remaining = []
        for item in line.dts:
            moment = item.dt
            instant = (
                moment.astimezone(dt.UTC)
                if isinstance(moment, dt.datetime) and moment.tzinfo
                else moment
            )
            if instant == key:
                found = True
            else:
                remaining.append(moment)
        if remaining:
            kept_lines.append(remaining)
    if found:
        master.pop("EXDATE")
        for values in kept_lines:
            master.add("exdate", values)
    return found
