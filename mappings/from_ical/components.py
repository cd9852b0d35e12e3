"""The floor of ``mappings.from_ical``: constants, ``Series``, and property readers.

icalendar types ``component[name]`` loosely and raises or keeps ``vBroken`` for broken
values; the readers here keep that surface in one place, and ``check_broken`` refuses a
component whose time or rule properties cannot be read before anything else looks at it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Component, vRecur

from mappings.errors import MappingError
from mappings.model import FollowUpKind, FollowUpStatus
from mappings.moments import Moment
from mappings.task_status import STATUS_PROPERTY
from mappings.to_ical import KIND_PROPERTY

ICAL_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
WORKDAYS = frozenset(range(5))
ALL_DAYS = frozenset(range(7))

#: RRULE frequencies, finest first.
FREQ_ORDER = ("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")

#: Properties we read (or that carry no meaning for the CRM); others are reported.
HANDLED_PROPERTIES = frozenset(
    {
        "UID",
        "DTSTART",
        "DTEND",
        "DUE",
        "DURATION",
        "RRULE",
        "EXRULE",
        "RDATE",
        "EXDATE",
        "RECURRENCE-ID",
        "SUMMARY",
        "DESCRIPTION",
        "LOCATION",
        "CATEGORIES",
        "SEQUENCE",
        "DTSTAMP",
        "CREATED",
        "LAST-MODIFIED",
        "STATUS",
        "TRANSP",
        "CLASS",
        KIND_PROPERTY,
        "X-FOLLOWUP-ID",
        "PRIORITY",
        "ORGANIZER",
        "ATTENDEE",
        "X-FOLLOWUP-LANGUAGE",
        STATUS_PROPERTY,
        "COMPLETED",
        "PERCENT-COMPLETE",
    }
)

_TIME_PROPERTIES = (
    "DTSTART",
    "DTEND",
    "DUE",
    "DURATION",
    "RRULE",
    "EXRULE",
    "RDATE",
    "EXDATE",
    "RECURRENCE-ID",
)


@dataclass
class Series:
    """Everything read from one UID's components, in the follow-up's local terms."""

    uid: str
    zone: ZoneInfo
    all_day: bool
    start: Moment
    end: Moment
    title: str
    description: str | None
    location: str | None
    kind: FollowUpKind
    followup_id: str
    doc_uid: str | None
    master: Component
    overrides: list[Component]
    original: list[Component]  # what the verification expands: the input, untouched
    status: FollowUpStatus | None = None
    completed_at: dt.datetime | None = None


#: RFC 5545 3.6.1: these occur at most once in a component; icalendar gives a list otherwise.
_SINGLE_PROPERTIES = (
    "UID",
    "DTSTART",
    "DTEND",
    "DUE",
    "DURATION",
    "RECURRENCE-ID",
    "SUMMARY",
    "DESCRIPTION",
    "LOCATION",
    "SEQUENCE",
    "STATUS",
    "DTSTAMP",
    "LAST-MODIFIED",
)


def check_broken(component: Component, uid: str) -> None:
    """Refuse a component whose time or rule properties icalendar could not read."""
    for name in _SINGLE_PROPERTIES:
        if isinstance(component.get(name), list):
            raise MappingError(f"{name} appears more than once", item=uid, field=name)
    for name, _message in getattr(component, "errors", []) or []:
        if str(name).upper() in _TIME_PROPERTIES:
            raise MappingError(
                f"{name} cannot be read: {_message}", item=uid, field=str(name).upper()
            )
    for name in _TIME_PROPERTIES:
        values = component.get(name)
        for value in values if isinstance(values, list) else [values]:
            if value is not None and type(value).__name__ == "vBroken":
                raise MappingError(
                    f"{name} cannot be read: {value.to_ical()!r}", item=uid, field=name
                )
    for value in rules_of(component, "RRULE") + rules_of(component, "EXRULE"):
        if "FREQ" not in value:
            raise MappingError(f"RRULE {ical_text(value)!r} has no FREQ", item=uid, field="RRULE")
        try:
            vRecur.from_ical(ical_text(value))
        except (ValueError, TypeError) as exc:
            raise MappingError(f"bad RRULE: {exc}", item=uid, field="RRULE") from None
        freq = str(value["FREQ"][0]).upper()
        if freq not in FREQ_ORDER:
            raise MappingError(f"unknown FREQ {freq!r}", item=uid, field="RRULE")
        for part, items in value.items():
            if part.upper() in ("FREQ", "UNTIL", "WKST") or part.upper().startswith("X-"):
                continue
            for item in items:
                if part.upper() == "BYDAY":
                    text = str(item).upper()
                    if text[-2:] not in ICAL_DAYS:
                        raise MappingError(f"bad BYDAY value {item!r}", item=uid, field="RRULE")
                elif not isinstance(item, int):
                    raise MappingError(f"bad {part} value {item!r}", item=uid, field="RRULE")


def rules_of(component: Component, key: str) -> list[vRecur]:
    """RRULE/EXRULE values; an empty ``RRULE:`` line (calendarlabs writes them) means none."""
    return [rule for rule in as_list(component.get(key)) if len(rule)]


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# icalendar types ``component[name]`` as a union of every property class (most without
# ``.dt``) and leaves ``to_ical`` untyped on several of them; these accessors keep that
# loose surface in one place.


def raw_property(component: Component, name: str) -> Any:
    """``component[name]``, untyped (``KeyError`` when the property is missing)."""
    return component[name]


def moment_value(component: Component, name: str) -> Moment:
    """The date or date-time of a DTSTART, DTEND, DUE or RECURRENCE-ID that is present."""
    value: Moment = raw_property(component, name).dt
    return value


def duration_value(component: Component) -> dt.timedelta:
    """The value of a DURATION that is present."""
    value: dt.timedelta = raw_property(component, "DURATION").dt
    return value


def ical_text(value: Any) -> str:
    """``value.to_ical()`` decoded, for a ``vRecur`` or ``vDuration``."""
    text: str = value.to_ical().decode()
    return text


def recurrence_key(component: Component) -> str | None:
    rid = component.get("RECURRENCE-ID")
    if rid is None:
        return None
    return instant_text(rid.dt, None)


def text_of(component: Component, name: str) -> str | None:
    value = component.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0]
    return str(value)


def instant_text(value: Moment, zone: ZoneInfo | None) -> str:
    """A sortable, zone-free key: the UTC instant of a date-time (naive ones read in
    ``zone``), or the date itself."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            if zone is None:
                return "F" + value.isoformat()
            value = value.replace(tzinfo=zone)
        return "T" + value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return "D" + value.isoformat()


def values_of(component: Component, key: str) -> list[Any]:
    """Every value of RDATE/EXDATE lines: dates, date-times or (start, end|duration)."""
    values: list[Any] = []
    for line in as_list(component.get(key)):
        for item in getattr(line, "dts", None) or [line]:
            value = item.dt
            if isinstance(value, tuple):
                value = (value[0], value[1])
            values.append(value)
    return values
