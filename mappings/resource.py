"""One follow-up as one CalDAV resource, written on top of what the server holds.

The sync worker never writes a resource from scratch when the server already has one:
it renders the follow-up and then carries over, component by component, everything
the mapper does not manage — alarms (VALARM), ATTENDEE lines with their parameters,
X- properties, SEQUENCE, CLASS, TRANSP, COLOR … — from the server's bytes. The master
pairs with the master and each override with the override of the same RECURRENCE-ID.
A client's cancelled override (STATUS:CANCELLED with a RECURRENCE-ID) stays a cancelled
override instead of turning into an EXDATE, so a calendar shows what its user did.

An override the follow-up has no exception for is the client's own: it keeps an
occurrence where the series has it but adds something of its own (an alarm for "this
event only", its own STATUS, TRANSP, CLASS, an attendee's PARTSTAT, X- properties). It
is rebuilt on the new series (``to_ical.unedited_override``: the series' current title,
place and times, so a CRM retitle reaches it) and gets its own properties back. Its
occurrence is looked up by RECURRENCE-ID, or on the same day when the whole series moved
to another time of day. When the new series no longer has that occurrence, the override
is dropped and ``Rendered.dropped`` says which, for the pass report.

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
from dataclasses import dataclass, field
from typing import Any

from icalendar import Calendar, Component

from mappings.errors import MappingError, item_errors
from mappings.model import FollowUp, FollowUpKind
from mappings.moments import Moment, date_of, naive, show, time_of, to_local
from mappings.occurrences import occurrences
from mappings.task_status import STATUS_PROPERTY, TASK_STATUS_PROPERTIES
from mappings.to_ical import calendar_bytes, followup_components, unedited_override
from mappings.uids import content_uid, newness

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

#: Written on every save by clients (and servers): not by themselves something of the
#: occurrence's own that an override must be kept for.
BOOKKEEPING = frozenset({"SEQUENCE", "CREATED", "CATEGORIES"})


@dataclass(frozen=True)
class ServerResource:
    """What the mapper reads out of a server resource."""

    uid: str
    components: list[Component]
    modified: dt.datetime | None
    #: What was repaired to read it (a UID derived from the content), naming the item.
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Rendered:
    """A resource to write, and the client's overrides that could not come along.

    ``data`` is None when nothing is left to put on a calendar. ``dropped`` holds the
    RECURRENCE-IDs (as the server had them) of client overrides whose occurrence the
    new series no longer has.
    """

    data: bytes | None
    dropped: tuple[Moment, ...] = ()

    def dropped_lines(self) -> list[str]:
        """One sentence per dropped override, for the pass report."""
        return [
            f"occurrence {show(key)} is no longer in the series; the calendar's own "
            "changes to it (alarm, status, …) were dropped with it"
            for key in self.dropped
        ]


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
    return render_resource(followup, stamp=stamp, base=base, schedule_agent=schedule_agent).data


def render_resource(
    followup: FollowUp,
    *,
    stamp: dt.datetime,
    base: bytes | None = None,
    schedule_agent: str | None = None,
) -> Rendered:
    """``render``, and which of the client's overrides in ``base`` had to be dropped."""
    with item_errors(followup.id, doing="cannot be rendered"):
        return _render(followup, stamp=stamp, base=base, schedule_agent=schedule_agent)


def _render(
    followup: FollowUp, *, stamp: dt.datetime, base: bytes | None, schedule_agent: str | None
) -> Rendered:
    series = followup_components(followup, stamp=stamp)
    if not series.emitted:
        return Rendered(None)
    components = list(series.components)
    _mark_attendees(components, schedule_agent)
    if base is None:
        return Rendered(calendar_bytes(components))
    base_cal = _parse(base, followup.effective_uid)
    _give_resource_uid(_items(base_cal))
    managed = (
        MANAGED | MANAGED_WITH_PARTICIPANTS
        if (followup.participants or followup.organizer)
        else MANAGED
    )
    if followup.kind == FollowUpKind.task:  # a task's completion is the follow-up's status
        managed |= TASK_STATUS_PROPERTIES
    carried = _Carry(followup, managed, stamp, schedule_agent)
    components, dropped = carried.over(components, base_cal)
    return Rendered(calendar_bytes(components, defined=base_cal.walk("VTIMEZONE")), dropped)


def _mark_attendees(components: list[Component], schedule_agent: str | None) -> None:
    """SCHEDULE-AGENT on the ATTENDEEs we write (before the client's are carried over)."""
    if schedule_agent is None:
        return
    for component in components:
        for attendee in _as_list(component.get("ATTENDEE")):
            attendee.params["SCHEDULE-AGENT"] = schedule_agent


#: Any fixed moment: DTSTAMP does not change what can or cannot be rendered.
_CHECK_STAMP = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def check_renderable(followup: FollowUp) -> None:
    """Compute now, once, what a sync pass and the recurrence dialog compute from a follow-up.

    The one check for "can this be put on a calendar": the store runs it before it
    accepts a follow-up (import, the API), the dialog's date calculation meets the same
    errors, so a document that would fail every later sync pass (a weekly Cycle of 10^9,
    a series running past year 9999) is refused at the door, naming the item.
    """
    with item_errors(followup.id, doing="cannot be put on a calendar"):
        render(followup, stamp=_CHECK_STAMP)
        occurrences(followup, include_cancelled=False)


def read(data: bytes) -> ServerResource:
    """The calendar components of one resource; a MappingError names what is wrong."""
    cal = _parse(data, None)
    components = _items(cal)
    if not components:
        raise MappingError("holds no VEVENT or VTODO", field="VCALENDAR")
    derived = _give_resource_uid(components)
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
    warnings = [f"{uid}: the resource has no UID; gave it one derived from its content"]
    return ServerResource(uid, components, modified, warnings if derived else [])


def _items(cal: Calendar) -> list[Component]:
    return [c for c in cal.walk() if c.name in CALENDAR_COMPONENTS]


def _give_resource_uid(components: list[Component]) -> bool:
    """A resource whose components all lack a UID is one item: give them all the UID
    derived from its master (``mappings.uids``). True if it did."""
    if not components or any(str(c.get("UID", "")).strip() for c in components):
        return False
    master = next((c for c in components if "RECURRENCE-ID" not in c), components[0])
    uid = content_uid(master)
    for component in components:
        component.pop("UID", None)
        component.add("uid", uid)
    return True


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


@dataclass(frozen=True)
class _Carry:
    """Carries what the server's copy adds over to freshly rendered components."""

    followup: FollowUp
    managed: frozenset[str]
    stamp: dt.datetime
    schedule_agent: str | None

    def over(
        self, components: list[Component], base_cal: Calendar
    ) -> tuple[list[Component], tuple[Moment, ...]]:
        """Our components with what the server's copy adds; and the client overrides dropped."""
        uid = self.followup.effective_uid
        by_key: dict[object, Component] = {}
        for c in base_cal.walk():
            if c.name in CALENDAR_COMPONENTS and str(c.get("UID", "")) == uid:
                key = _recurrence_key(c)
                # Of two copies (two masters of one UID), the one ``parse`` kept.
                if key not in by_key or newness(c) >= newness(by_key[key]):
                    by_key[key] = c
        ours = {_recurrence_key(c): c for c in components}
        for key, component in ours.items():
            source = by_key.get(key)
            if source is not None and source.name == component.name:
                _copy_unmanaged(source, component, self.managed)
        master = components[0]
        dropped: list[Moment] = []
        for key, source in by_key.items():
            if key is None or key in ours:
                continue
            if str(source.get("STATUS", "")).upper() == "CANCELLED":
                # A client's cancelled override stays an override, not an EXDATE.
                if _remove_exdate(master, key):
                    components.append(source)
                continue
            if source.name != master.name or not _has_own_additions(source, self.managed):
                continue  # ours, for an exception the CRM has since taken back
            if not self._rebase(source, by_key.get(None), ours, components):
                dropped.append(_prop(source, "RECURRENCE-ID").dt)
        components[1:] = sorted(components[1:], key=lambda c: _sortable(_recurrence_key(c)))
        return components, tuple(sorted(dropped, key=_sortable))

    def _rebase(
        self,
        source: Component,
        old_master: Component | None,
        ours: dict[object, Component],
        components: list[Component],
    ) -> bool:
        """Put a client's override on the occurrence it belongs to now; False if it is gone."""
        occurrence = _occurrence_now(self.followup, source, old_master)
        if occurrence is None:
            return False
        key = _recurrence_key_of(occurrence, self.followup)
        target = ours.get(key)
        if target is None:
            target = unedited_override(self.followup, occurrence, stamp=self.stamp)
            _mark_attendees([target], self.schedule_agent)
            ours[key] = target
            components.append(target)
        _copy_unmanaged(source, target, self.managed)
        return True


def _has_own_additions(override: Component, managed: frozenset[str]) -> bool:
    """Whether an override carries anything the mapper neither writes nor owns."""
    if override.subcomponents:
        return True
    return any(
        name not in managed and name not in BOOKKEEPING and name not in ("BEGIN", "END")
        for name in override
    )


def _occurrence_now(
    followup: FollowUp, override: Component, old_master: Component | None
) -> Moment | None:
    """The key, in ``followup``'s terms, of the occurrence ``override`` belongs to, or None.

    The same RECURRENCE-ID if the new series still has it; else, when the override sat
    where the old series put its occurrences (the old master's time of day) and the
    series has moved to another time of day, the new series' occurrence on that day.
    """
    original = to_local(_prop(override, "RECURRENCE-ID").dt, followup.zone, followup.all_day)
    candidates = [original]
    if old_master is not None and "DTSTART" in old_master:
        old_start = to_local(_prop(old_master, "DTSTART").dt, followup.zone, followup.all_day)
        if time_of(old_start) == time_of(original):
            candidates.append(_on_day(date_of(original), followup))
    last = max(date_of(c) for c in candidates)
    keys = {
        naive(o.original_start)
        for o in occurrences(
            followup, window_end=last + dt.timedelta(days=2), include_cancelled=False
        )
    }
    return next((c for c in candidates if c in keys), None)


def _on_day(day: dt.date, followup: FollowUp) -> Moment:
    if followup.all_day:
        return day
    assert isinstance(followup.start, dt.datetime)
    return dt.datetime.combine(day, followup.start.time())


def _recurrence_key_of(key: Moment, followup: FollowUp) -> object:
    """``_recurrence_key`` of the override ``to_ical`` writes for occurrence ``key``."""
    if isinstance(key, dt.datetime):
        return key.replace(tzinfo=followup.zone).astimezone(dt.UTC)
    return key


def _sortable(key: object) -> tuple[int, str]:
    """Master first, then overrides in time order (dates and instants side by side)."""
    if key is None:
        return (0, "")
    if isinstance(key, dt.datetime):
        if key.tzinfo is None:
            return (1, key.isoformat())
        return (1, key.astimezone(dt.UTC).replace(tzinfo=None).isoformat())
    return (1, str(key))


def _prop(component: Component, name: str) -> Any:
    """``component[name]``, untyped: icalendar's property union has no common ``.dt``."""
    return component[name]


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
