"""iCalendar → follow-ups: the reverse of ``mappings.to_ical``.

Whatever a calendar client wrote must come back so that ``parse`` then ``map`` keeps
the set of occurrences (start, end, summary) exactly, as recurring-ical-events expands
both. The strategy is "propose, then prove":

1. Per UID, pick the master (no RECURRENCE-ID) and the overrides; of duplicates the
   newest wins (highest SEQUENCE, then DTSTAMP/LAST-MODIFIED). Of several master copies,
   the newest is kept with the others' EXDATEs where they do not contradict it, and only
   the overrides that fit it. A VEVENT/VTODO without UID gets one derived from its
   content (``mappings.uids``), with a warning naming it.
2. Propose representations of the rule, best first: the CRM pattern the follow-up we
   last synced used (``known``), the pattern read structurally from the RRULE and its
   equivalents (Daily every workday = Weekly Mon–Fri …), the same with the complete
   ``Dates`` list (bounded series), a Custom date list, and finally the rule kept
   verbatim in ``ical_recurrence``.
3. Prove each proposal: map it forward with ``mappings.to_ical`` and expand both the
   original and the result with recurring-ical-events over the same window (the whole
   series when it is bounded, a horizon for open-ended rules). The first proposal whose
   occurrences are identical wins. If even the verbatim rule does not reproduce the
   original, a ``MappingError`` is raised: never a silent change of occurrences.

The module is pure: no I/O, no clock; every expansion is bounded by a window and by
``MAX_OCCURRENCES``.
"""

from __future__ import annotations

import calendar as calendar_module
import datetime as dt
import itertools
import warnings as warnings_module
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import recurring_ical_events
from dateutil.rrule import rrulestr
from icalendar import Calendar, Component, Todo, vDDDTypes, vDuration, vRecur
from icalendar.cal.component_factory import ComponentFactory
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
from pydantic import ValidationError

from mappings.errors import MappingError
from mappings.model import (
    FollowUp,
    FollowUpKind,
    FollowUpStatus,
    IcalRecurrence,
    OccurrenceException,
    id_for_uid,
    uid_for_id,
)
from mappings.moments import Moment, date_of, naive, show, time_of, to_local, wall_clock_key
from mappings.occurrences import occurrences, validate_followup
from mappings.patterns import MAX_OCCURRENCES, effective_end_type, pattern_dates
from mappings.superoffice import (
    DayPatternInfo,
    MonthPatternInfo,
    RecurrenceDailyPattern,
    RecurrenceDate,
    RecurrenceEndType,
    RecurrenceInfo,
    RecurrenceMonthlyPattern,
    RecurrencePattern,
    RecurrenceYearlyPattern,
    Weekday,
    WeekOfMonth,
    WeekPatternInfo,
    YearPatternInfo,
    weekday_flags,
)
from mappings.task_status import STATUS_PROPERTY, read_status
from mappings.to_ical import CALL_CATEGORY, KIND_PROPERTY, followup_components
from mappings.uids import describe_item, give_uids, newness

__all__ = ["ParseResult", "parse_calendar", "parse_components"]

ICAL_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
WORKDAYS = frozenset(range(5))
ALL_DAYS = frozenset(range(7))

#: RRULE parts a CRM pattern can express; any other part means "keep the rule".
_CRM_RULE_PARTS = frozenset(
    {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
)

#: How far an open-ended rule is compared, by its smallest FREQ. Long enough to see
#: every month/weekday combination, short enough to stay fast (a few hundred instances).
_HORIZONS = {
    "SECONDLY": dt.timedelta(hours=2),
    "MINUTELY": dt.timedelta(days=3),
    "HOURLY": dt.timedelta(days=45),
    "DAILY": dt.timedelta(days=550),
    "WEEKLY": dt.timedelta(days=3 * 366),
    "MONTHLY": dt.timedelta(days=3 * 366),
    "YEARLY": dt.timedelta(days=12 * 366),
}
_FREQ_ORDER = ("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")

#: The DTSTAMP for the forward mapping used in verification; any fixed value will do.
_STAMP = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

#: Properties we read (or that carry no meaning for the CRM); others are reported.
_HANDLED = frozenset(
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


@dataclass(frozen=True)
class ParseResult:
    """What ``parse_calendar`` found: follow-ups, one-line warnings, and per-UID errors."""

    followups: list[FollowUp]
    warnings: list[str]
    errors: list[MappingError] = field(default_factory=list)


# --- parsing that survives one bad component ---------------------------------------------


class _TolerantTodo(Todo):
    """icalendar raises for a broken property in a VTODO (but not in a VEVENT); keep it
    as ``vBroken`` instead so one bad task does not hide the rest of the calendar."""

    ignore_exceptions = True


class _TolerantCalendar(Calendar):
    _components_factory = ComponentFactory()


_TolerantCalendar._components_factory.add_component_class(_TolerantTodo)


def parse_calendar(data: bytes | str, *, default_timezone: str = "UTC") -> ParseResult:
    """Every follow-up in an iCalendar text; bad UIDs land in ``errors``, not in a traceback."""
    _check_zone_name(default_timezone, item=None, field="default_timezone")
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if "BEGIN:VCALENDAR" not in text.upper():
        raise MappingError("not iCalendar data (no BEGIN:VCALENDAR)")
    try:
        with warnings_module.catch_warnings():
            warnings_module.simplefilter("ignore")
            parsed = _TolerantCalendar.from_ical(text, multiple=True)
    except Exception as exc:  # the parser meets untrusted bytes: any failure means "not iCalendar"
        raise MappingError(f"not valid iCalendar: {exc}") from None
    groups: dict[str, list[Component]] = {}
    zones: dict[str, str | None] = {}
    found = False
    errors: list[MappingError] = []
    warnings: list[str] = []
    calendars = [cal for cal in parsed if cal.name == "VCALENDAR"]
    items = [c for cal in calendars for c in cal.subcomponents if c.name in ("VEVENT", "VTODO")]
    for component, derived in give_uids(items):
        warnings.append(
            f"{derived}: the {describe_item(component)} has no UID; "
            "gave it one derived from its content"
        )
    for cal in calendars:
        x_wr = cal.get("X-WR-TIMEZONE")
        for component in cal.subcomponents:
            if component.name not in ("VEVENT", "VTODO"):
                continue
            found = True
            uid = str(component.get("UID", "")).strip()
            groups.setdefault(uid, []).append(component)
            zones.setdefault(uid, str(x_wr).strip() if x_wr is not None else None)
    if not found:
        raise MappingError("the calendar holds no VEVENT or VTODO")
    followups: list[FollowUp] = []
    for uid, components in groups.items():
        try:
            followups.extend(
                _safely(
                    uid,
                    lambda components=components, uid=uid: _parse_group(  # type: ignore[misc]
                        components, default_timezone, zones[uid], None, warnings
                    ),
                )
            )
        except MappingError as exc:
            errors.append(exc)
        except Exception as exc:  # a shape we did not foresee: report it, never a traceback
            errors.append(MappingError(f"cannot be read: {type(exc).__name__}: {exc}", item=uid))
    return ParseResult(followups, warnings, errors)


def parse_components(
    components: list[Component],
    *,
    default_timezone: str = "UTC",
    known: FollowUp | None = None,
    calendar_timezone: str | None = None,
    warnings: list[str] | None = None,
) -> list[FollowUp]:
    """The follow-up(s) of ONE UID: master plus overrides, as a CalDAV resource holds them.

    ``known`` is the follow-up last synced for this UID: its id, kind and pattern form
    are kept when the new rule still means the same, so a round trip does not churn the
    document. ``calendar_timezone`` is the calendar's X-WR-TIMEZONE, if any; repairs and
    ignored properties are appended to ``warnings`` when a list is given.
    """
    _check_zone_name(default_timezone, item=None, field="default_timezone")
    items = [c for c in components if c.name in ("VEVENT", "VTODO")]
    if not items:
        raise MappingError("no VEVENT or VTODO among the components")
    uid = str(items[0].get("UID", "")).strip() or None
    return _safely(
        uid,
        lambda: _parse_group(
            items,
            default_timezone,
            calendar_timezone,
            known,
            warnings if warnings is not None else [],
        ),
    )


def _safely(uid: str | None, read_group: Callable[[], list[FollowUp]]) -> list[FollowUp]:
    """A component broken in a way no check foresaw still fails as a MappingError naming its
    UID, never as a crash of the whole run (found by tests/reliability/test_fuzz.py)."""
    try:
        return read_group()
    except MappingError as exc:
        if exc.item is None:
            exc.item = uid
        raise
    except (
        AttributeError,
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        OverflowError,
        ArithmeticError,
    ) as exc:
        raise MappingError(f"cannot be read: {type(exc).__name__}: {exc}", item=uid) from None


# --- one UID ---------------------------------------------------------------------------


@dataclass
class _Series:
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


def _parse_group(
    components: list[Component],
    default_timezone: str,
    calendar_timezone: str | None,
    known: FollowUp | None,
    warnings: list[str],
) -> list[FollowUp]:
    uid = str(components[0].get("UID", "")).strip()
    for component in components:
        _check_broken(component, uid)
    master, other_masters, overrides = _split_master(components, uid, warnings)
    synthetic = master is None
    if master is None:
        master = _synthetic_master(overrides, uid, warnings)
    series = _read_series(
        master, overrides, components, uid, default_timezone, calendar_timezone, known
    )
    if other_masters:
        series = _reconcile_masters(series, other_masters, warnings)
    _report_ignored(master, uid, warnings)
    return _with_participants(
        _represent(series, known, warnings, synthetic), master, series.overrides, series, known
    )


# --- organizer, participants, language --------------------------------------------------------


def _with_participants(
    followups: list[FollowUp],
    master: Component,
    overrides: list[Component],
    series: _Series,
    known: FollowUp | None,
) -> list[FollowUp]:
    """Attach ORGANIZER/ATTENDEE and the language to what ``_represent`` proved.

    Attendees become participants only on a scheduling object (one with an ORGANIZER,
    RFC 6638 §3.1) or when the follow-up already had participants: an ATTENDEE a client
    typed into a plain event is the client's business, kept on the server by
    ``mappings.resource`` but never invited by us.
    """
    update: dict[str, Any] = {}
    language = _text(master, "X-FOLLOWUP-LANGUAGE")
    if language in ("nb", "en"):
        update["language"] = language
    elif known is not None:
        update["language"] = known.language
    organizer = master.get("ORGANIZER") or next(
        (o.get("ORGANIZER") for o in overrides if o.get("ORGANIZER")), None
    )
    if organizer is not None or (known is not None and (known.participants or known.organizer)):
        if organizer is not None and _address(organizer):
            update["organizer"] = {"name": _cn(organizer), "email": _address(organizer)}
        update["participants"] = _participants(master, overrides, series)
    if not update:
        return followups
    result = []
    for followup in followups:
        try:
            result.append(FollowUp.model_validate({**followup.model_dump(), **update}))
        except ValidationError as exc:
            raise MappingError(
                f"ATTENDEE/ORGANIZER cannot be read: {exc.errors()[0]['msg']}",
                item=series.uid,
                field="ATTENDEE",
            ) from None
    return result


_PARTSTATS = {
    "NEEDS-ACTION": "needs-action",
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
}


def _address(value: Any) -> str:
    text = str(value).strip()
    return text[7:] if text.lower().startswith("mailto:") else ""


def _cn(value: Any) -> str | None:
    params = getattr(value, "params", {})
    name = params.get("CN")
    return str(name) if name else None


def _partstat(value: Any) -> str:
    # DELEGATED, COMPLETED, IN-PROCESS have no place in the CRM: they read as "not answered".
    return _PARTSTATS.get(
        str(getattr(value, "params", {}).get("PARTSTAT", "NEEDS-ACTION")).upper(), "needs-action"
    )


def _participants(
    master: Component, overrides: list[Component], series: _Series
) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for attendee in _as_list(master.get("ATTENDEE")):
        email = _address(attendee)
        if not email or email.casefold() in found:
            continue
        role = str(attendee.params.get("ROLE", "REQ-PARTICIPANT")).upper()
        found[email.casefold()] = {
            "name": _cn(attendee),
            "email": email,
            "role": "optional" if role in ("OPT-PARTICIPANT", "NON-PARTICIPANT") else "required",
            "status": _partstat(attendee),
            "occurrence_status": {},
        }
    for override in overrides:
        key_value = override.get("RECURRENCE-ID")
        if key_value is None or str(override.get("STATUS", "")).upper() == "CANCELLED":
            continue
        key = to_local(key_value.dt, series.zone, series.all_day).isoformat()
        for attendee in _as_list(override.get("ATTENDEE")):
            entry = found.get(_address(attendee).casefold())
            if entry is not None and _partstat(attendee) != entry["status"]:
                entry["occurrence_status"][key] = _partstat(attendee)
    return list(found.values())


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


def _check_broken(component: Component, uid: str) -> None:
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
    for value in _rules(component, "RRULE") + _rules(component, "EXRULE"):
        if "FREQ" not in value:
            raise MappingError(f"RRULE {_ical_text(value)!r} has no FREQ", item=uid, field="RRULE")
        try:
            vRecur.from_ical(_ical_text(value))
        except (ValueError, TypeError) as exc:
            raise MappingError(f"bad RRULE: {exc}", item=uid, field="RRULE") from None
        freq = str(value["FREQ"][0]).upper()
        if freq not in _FREQ_ORDER:
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


def _rules(component: Component, key: str) -> list[vRecur]:
    """RRULE/EXRULE values; an empty ``RRULE:`` line (calendarlabs writes them) means none."""
    return [rule for rule in _as_list(component.get(key)) if len(rule)]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# icalendar types ``component[name]`` as a union of every property class (most without
# ``.dt``) and leaves ``to_ical`` untyped on several of them; these accessors keep that
# loose surface in one place.


def _prop(component: Component, name: str) -> Any:
    """``component[name]``, untyped (``KeyError`` when the property is missing)."""
    return component[name]


def _moment(component: Component, name: str) -> Moment:
    """The date or date-time of a DTSTART, DTEND, DUE or RECURRENCE-ID that is present."""
    value: Moment = _prop(component, name).dt
    return value


def _duration_prop(component: Component) -> dt.timedelta:
    """The value of a DURATION that is present."""
    value: dt.timedelta = _prop(component, "DURATION").dt
    return value


def _ical_text(value: Any) -> str:
    """``value.to_ical()`` decoded, for a ``vRecur`` or ``vDuration``."""
    text: str = value.to_ical().decode()
    return text


def _recurrence_key(component: Component) -> str | None:
    rid = component.get("RECURRENCE-ID")
    if rid is None:
        return None
    return _instant_text(rid.dt, None)


def _split_master(
    components: list[Component], uid: str, warnings: list[str]
) -> tuple[Component | None, list[Component], list[Component]]:
    """Master, the other copies of the master, and overrides.

    Of two components for one RECURRENCE-ID (or two masters) the newest wins: highest
    SEQUENCE, then the later DTSTAMP/LAST-MODIFIED, then the later one in the file.
    """
    chosen: dict[str | None, Component] = {}
    other_masters: list[Component] = []
    for component in components:
        key = _recurrence_key(component)
        previous = chosen.get(key)
        if previous is not None:
            newer = newness(component) >= newness(previous)
            keep, lose = (component, previous) if newer else (previous, component)
            chosen[key] = keep
            if key is None:
                other_masters.append(lose)  # _reconcile_masters says what was kept
            else:
                warnings.append(
                    f"{uid}: two components for RECURRENCE-ID {key}; "
                    f"kept SEQUENCE {_sequence(keep)}"
                )
        else:
            chosen[key] = component
    master = chosen.pop(None, None)
    overrides = sorted(
        chosen.values(), key=lambda c: _instant_text(_moment(c, "RECURRENCE-ID"), None)
    )
    return master, other_masters, overrides


def _sequence(component: Component) -> int:
    try:
        return int(component.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        return 0


def _reconcile_masters(series: _Series, others: list[Component], warnings: list[str]) -> _Series:
    """One series out of several master copies: the kept one (``series.master``), with the
    others' EXDATEs where they delete an occurrence it has and nobody edited, and only
    the overrides of occurrences it has (and does not delete)."""
    window = _window(replace(series, original=[series.master, *series.overrides]))
    base = set(_base_rule(series, window).base)
    deleted = {_key_of(v, series) for v in _values_of(series.master, "EXDATE")}
    kept: list[Component] = []
    for override in series.overrides:
        key = to_local(_moment(override, "RECURRENCE-ID"), series.zone, series.all_day)
        if key in base and key not in deleted:
            kept.append(override)
        else:
            reason = "it deletes that occurrence" if key in deleted else "not an occurrence of it"
            warnings.append(
                f"{series.uid}: the override {show(key)} contradicts the newest master copy "
                f"({reason}); ignored"
            )
    edited = {to_local(_moment(o, "RECURRENCE-ID"), series.zone, series.all_day) for o in kept}
    master = series.master.copy()
    added: list[Moment] = []
    for other in others:
        for value in _values_of(other, "EXDATE"):
            key = _key_of(value, series)
            if key in base and key not in deleted and key not in edited and key not in added:
                master.add("exdate", [value[0] if isinstance(value, tuple) else value])
                added.append(key)
    note = f"; took EXDATE {', '.join(show(k) for k in added)} from the others" if added else ""
    warnings.append(
        f"{series.uid}: {len(others) + 1} master copies; kept the newest "
        f"(SEQUENCE {_sequence(series.master)}){note}"
    )
    return replace(series, master=master, overrides=kept, original=[master, *kept])


def _key_of(value: Any, series: _Series) -> Moment:
    return to_local(value[0] if isinstance(value, tuple) else value, series.zone, series.all_day)


def _synthetic_master(overrides: list[Component], uid: str, warnings: list[str]) -> Component:
    """A master for overrides that came without one: the first override, recurring on
    every RECURRENCE-ID by RDATE. Which representation it ends up as is decided later."""
    first = overrides[0]
    master: Component = first.copy()
    for name in (
        "RECURRENCE-ID",
        "RRULE",
        "RDATE",
        "EXDATE",
        "EXRULE",
        "DTSTART",
        "DTEND",
        "DUE",
        "DURATION",
    ):
        if name in master:
            del master[name]
    rid0 = _moment(first, "RECURRENCE-ID")
    master.add("DTSTART", rid0)
    span = _span_of(first)
    if span is not None:
        master.add("DUE" if first.name == "VTODO" else "DTEND", rid0 + span)
    for other in overrides[1:]:
        master.add("RDATE", [_moment(other, "RECURRENCE-ID")])
    warnings.append(
        f"{uid}: {len(overrides)} override(s) without a master; made one from their RECURRENCE-IDs"
    )
    return master


def _span_of(component: Component) -> dt.timedelta | None:
    start = component.get("DTSTART")
    if start is None:
        return None
    for key in ("DTEND", "DUE"):
        if component.get(key) is not None:
            return _moment(component, key) - _moment(component, "DTSTART")
    if component.get("DURATION") is not None:
        return _duration_prop(component)
    return None


def _read_series(
    master: Component,
    overrides: list[Component],
    original: list[Component],
    uid: str,
    default_timezone: str,
    calendar_timezone: str | None,
    known: FollowUp | None,
) -> _Series:
    is_todo = master.name == "VTODO"
    start_prop = master.get("DTSTART")
    if start_prop is None and is_todo:
        start_prop = master.get("DUE")
    if start_prop is None:
        raise MappingError("DTSTART is missing", item=uid, field="DTSTART")
    raw_start = start_prop.dt
    zone_name = _zone_of(start_prop, uid, default_timezone, calendar_timezone, master, original)
    zone = ZoneInfo(zone_name)
    all_day = not isinstance(raw_start, dt.datetime)
    start = to_local(raw_start, zone, all_day)
    end = _end_of(master, raw_start, start, zone, all_day, uid)
    kind = _kind(master)
    followup_id = id_for_uid(uid) or uid
    if known is not None:
        followup_id, kind = known.id, known.kind
    doc_uid = None if uid == uid_for_id(followup_id) else uid
    status, completed_at = read_status(master)
    return _Series(
        uid=uid,
        zone=zone,
        all_day=all_day,
        start=start,
        end=end,
        title=_text(master, "SUMMARY") or "",
        description=_text(master, "DESCRIPTION"),
        location=_text(master, "LOCATION"),
        kind=kind,
        followup_id=followup_id,
        doc_uid=doc_uid,
        master=master,
        overrides=overrides,
        original=original,
        status=status,
        completed_at=completed_at,
    )


def _end_of(
    component: Component, raw_start: Moment, start: Moment, zone: ZoneInfo, all_day: bool, uid: str
) -> Moment:
    """DTEND, DTSTART+DURATION or DUE, in local terms; no end → instant (timed) or one day."""
    is_todo = component.name == "VTODO"
    span: dt.timedelta | None = None
    for key in ("DUE",) if is_todo else ("DTEND",):
        value = component.get(key)
        if value is not None and (not is_todo or component.get("DTSTART") is not None):
            if isinstance(value.dt, dt.datetime) != isinstance(raw_start, dt.datetime):
                raise MappingError(
                    f"{key} and DTSTART are not both dates or both date-times", item=uid, field=key
                )
            span = value.dt - raw_start
    if span is None and component.get("DURATION") is not None:
        span = _duration_prop(component)
    if span is None:
        return start + dt.timedelta(days=1) if all_day else start
    if span < dt.timedelta(0):
        raise MappingError("the end is before the start", item=uid, field="DTEND")
    if all_day:
        return start + dt.timedelta(days=span.days)
    return start + span


def _kind(master: Component) -> FollowUpKind:
    declared = master.get(KIND_PROPERTY)
    if declared is not None:
        try:
            return FollowUpKind(str(declared).strip().lower())
        except ValueError:
            pass
    if master.name == "VTODO":
        return FollowUpKind.task
    categories: list[str] = []
    for value in _as_list(master.get("CATEGORIES")):
        categories.extend(str(c).strip().lower() for c in getattr(value, "cats", [value]))
    if CALL_CATEGORY.lower() in categories:
        return FollowUpKind.call
    return FollowUpKind.appointment


def _text(component: Component, name: str) -> str | None:
    value = component.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0]
    return str(value)


def _report_ignored(master: Component, uid: str, warnings: list[str]) -> None:
    ignored = sorted(
        {name for name in master if name not in _HANDLED and not name.startswith("X-")}
        | ({"VALARM"} if any(c.name == "VALARM" for c in master.subcomponents) else set())
    )
    if ignored:
        warnings.append(
            f"{uid}: ignored {', '.join(ignored)} (the follow-up has no place for them)"
        )


# --- time zones --------------------------------------------------------------------------


def _check_zone_name(name: str, *, item: str | None, field: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(f"unknown time zone {name!r}", item=item, field=field) from None


def _zone_of(
    prop: Any,
    uid: str,
    default_timezone: str,
    calendar_timezone: str | None,
    master: Component,
    original: list[Component],
) -> str:
    """The IANA zone of DTSTART: TZID (Windows names mapped, custom VTIMEZONEs matched by
    their offsets), UTC for Z, X-WR-TIMEZONE or the default for floating and DATE values."""
    value = prop.dt
    tzid = prop.params.get("TZID")
    field_name = "DTSTART" if master.get("DTSTART") is not None else "DUE"
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        tz = value.tzinfo
        key = getattr(tz, "key", None)
        if isinstance(key, str):
            return "UTC" if key in ("UTC", "Etc/UTC", "Z") else key
        if tz is dt.UTC or (value.utcoffset() == dt.timedelta(0) and tzid is None):
            return "UTC"
        return _match_custom_zone(tz, str(tzid or ""), uid, field_name, value, original)
    if isinstance(value, dt.datetime) and tzid:
        raise MappingError(
            f"unknown TZID {tzid!r}: not an IANA or Windows name and no VTIMEZONE defines it",
            item=uid,
            field=field_name,
        )
    if calendar_timezone:
        _check_zone_name(calendar_timezone, item=uid, field="X-WR-TIMEZONE")
        return calendar_timezone
    return default_timezone


def _match_custom_zone(
    tz: dt.tzinfo,
    tzid: str,
    uid: str,
    field_name: str,
    start: dt.datetime,
    original: list[Component],
) -> str:
    """The IANA zone whose UTC offsets agree with a custom VTIMEZONE in every year used.

    Offsets are compared every six hours, and every change of offset is located to the
    minute in both zones, so transitions must coincide exactly, not just the seasons.
    """
    years = _years_used(start, original)
    samples = [
        dt.datetime(year, month, day, 12, tzinfo=dt.UTC)
        for year in years
        for month in range(1, 13)
        for day in (1, 15)
    ]
    wanted = [s.astimezone(tz).utcoffset() for s in samples]
    for name in _zone_candidates(tzid):
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        pairs = zip(samples, wanted, strict=True)
        same = all(s.astimezone(zone).utcoffset() == w for s, w in pairs)
        if same and _transitions_agree(tz, zone, years):
            return name
    raise MappingError(
        f"the VTIMEZONE {tzid!r} matches no IANA time zone in {years[0]}–{years[-1]}",
        item=uid,
        field=field_name,
    )


def _years_used(start: dt.datetime, original: list[Component]) -> list[int]:
    years = {start.year}
    for component in original:
        for key in ("DTSTART", "RECURRENCE-ID", "DTEND"):
            value = component.get(key)
            if value is not None and isinstance(value.dt, dt.date):
                years.add(value.dt.year)
        for rule in _rules(component, "RRULE"):
            for until in rule.get("UNTIL", []):
                if isinstance(until, dt.date):
                    years.add(until.year)
    first, last = min(years), max(years)
    last = min(max(last, first + 2), first + 30)
    return list(range(first, last + 1))


def _zone_candidates(tzid: str) -> list[str]:
    """Likely names first (an IANA suffix of the TZID, the Windows mapping), then all."""
    names: list[str] = []
    parts = [p for p in tzid.strip().strip('"').split("/") if p]
    for index in range(len(parts)):
        names.append("/".join(parts[index:]))
    if tzid in WINDOWS_TO_OLSON:
        names.append(WINDOWS_TO_OLSON[tzid])
    names.extend(dict.fromkeys(WINDOWS_TO_OLSON.values()))
    names.extend(sorted(zoneinfo.available_timezones()))
    return list(dict.fromkeys(names))


def _transitions_agree(custom: dt.tzinfo, zone: ZoneInfo, years: list[int]) -> bool:
    """Every offset change of ``zone`` in ``years`` happens at the same minute in ``custom``.

    The IANA zone is scanned (cheap); the custom one (dateutil evaluates its RRULEs from
    1601 on every call, which is slow) is only asked either side of each change.
    """
    step = dt.timedelta(hours=6)
    minute = dt.timedelta(minutes=1)
    moment = dt.datetime(years[0], 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(years[-1] + 1, 1, 1, tzinfo=dt.UTC)
    previous = moment.astimezone(zone).utcoffset()
    while moment < end:
        nxt = moment + step
        offset = nxt.astimezone(zone).utcoffset()
        if offset != previous:
            change = _change_at(zone, moment, nxt)
            for probe in (change - minute, change):
                if probe.astimezone(custom).utcoffset() != probe.astimezone(zone).utcoffset():
                    return False
        previous = offset
        moment = nxt
    return True


def _change_at(tz: dt.tzinfo, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
    """The first minute in (lo, hi] at which the offset differs from lo's."""
    before = lo.astimezone(tz).utcoffset()
    while hi - lo > dt.timedelta(minutes=1):
        mid = (lo + (hi - lo) / 2).replace(second=0, microsecond=0)
        if mid <= lo:
            break
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


# --- expansion and comparison ------------------------------------------------------------


Occ = tuple[str, str, str, str, str]


def _instant_text(value: Moment, zone: ZoneInfo | None) -> str:
    """A sortable, zone-free key: the UTC instant of a date-time (naive ones read in
    ``zone``), or the date itself."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            if zone is None:
                return "F" + value.isoformat()
            value = value.replace(tzinfo=zone)
        return "T" + value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return "D" + value.isoformat()


@dataclass(frozen=True)
class _Window:
    lo: dt.datetime
    hi: dt.datetime


def _window(series: _Series) -> _Window:
    """Where original and candidate are compared: the whole series when it is bounded
    (every RRULE has COUNT or UNTIL), else a horizon chosen by the rule's frequency."""
    master = series.master
    zone = series.zone
    first = _aware_utc(series.start, zone)
    lo = first - dt.timedelta(days=2)
    hi = first + dt.timedelta(days=2)
    moments: list[dt.datetime] = [first]
    for component in series.original:
        for key in ("DTSTART", "RECURRENCE-ID", "DUE"):
            value = component.get(key)
            if value is not None:
                moments.append(_aware_utc(value.dt, zone))
    for key in ("RDATE", "EXDATE"):
        for value in _values_of(master, key):
            moments.append(_aware_utc(value[0] if isinstance(value, tuple) else value, zone))
    lo = min([lo, *(m - dt.timedelta(days=2) for m in moments)])
    hi = max([hi, *(m + dt.timedelta(days=2) for m in moments)])
    rules = _rules(master, "RRULE")
    if rules:
        freq = min((_effective_freq(r) for r in rules), key=_FREQ_ORDER.index)
        horizon = first + _HORIZONS[freq]
        for rule in rules:
            last = _rule_last(rule, series)
            hi = max(hi, (last + dt.timedelta(days=2)) if last is not None else horizon)
        _check_window_size(rules, series, hi)
    return _Window(lo, hi)


def _check_window_size(rules: list[vRecur], series: _Series, hi: dt.datetime) -> None:
    """Refuse before expanding: recurring-ical-events builds every instance of the window
    at once, so FREQ=SECONDLY over the window would take minutes and gigabytes."""
    start = (
        series.start
        if isinstance(series.start, dt.datetime)
        else dt.datetime.combine(series.start, dt.time())
    )
    stop = hi.astimezone(series.zone).replace(tzinfo=None)
    seen = 0
    for rule in rules:
        bare = vRecur({k: v for k, v in rule.items() if k not in ("UNTIL", "COUNT")})
        limit = stop
        if "UNTIL" in rule:
            limit = min(
                limit,
                _aware_utc(rule["UNTIL"][0], series.zone)
                .astimezone(series.zone)
                .replace(tzinfo=None),
            )
        count = int(rule["COUNT"][0]) if "COUNT" in rule else MAX_OCCURRENCES + 1
        try:
            instances = rrulestr(_ical_text(bare), dtstart=start, cache=False)
            for index, moment in enumerate(instances):
                if moment > limit or index >= count:
                    break
                seen += 1
                if seen > MAX_OCCURRENCES:
                    raise MappingError(
                        f"more than {MAX_OCCURRENCES} occurrences in the compared window",
                        item=series.uid,
                        field="RRULE",
                    )
        except (ValueError, TypeError, OverflowError) as exc:
            raise MappingError(
                f"bad RRULE {_ical_text(rule)!r}: {exc}", item=series.uid, field="RRULE"
            ) from None


def _effective_freq(rule: vRecur) -> str:
    """FREQ, made finer by BYHOUR/BYMINUTE/BYSECOND (FREQ=DAILY;BYMINUTE=0,20,40 is
    as dense as a minutely rule), so the horizon never holds more than a few hundred."""
    freq = str(rule["FREQ"][0]).upper()
    for part, finer in (("BYSECOND", "SECONDLY"), ("BYMINUTE", "MINUTELY"), ("BYHOUR", "HOURLY")):
        if part in rule and _FREQ_ORDER.index(finer) < _FREQ_ORDER.index(freq):
            return finer
    return freq


def _rule_last(rule: vRecur, series: _Series) -> dt.datetime | None:
    """The last instance of a bounded rule (UTC, generously), None when open-ended."""
    if "UNTIL" in rule:
        return _aware_utc(rule["UNTIL"][0], series.zone) + dt.timedelta(days=1)
    if "COUNT" not in rule:
        return None
    start = (
        series.start
        if isinstance(series.start, dt.datetime)
        else dt.datetime.combine(series.start, dt.time())
    )
    text = _ical_text(rule)
    try:
        # islice: COUNT=1000000000 must not be materialised before it is refused.
        instances = list(
            itertools.islice(rrulestr(text, dtstart=start, cache=False), MAX_OCCURRENCES + 1)
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise MappingError(f"bad RRULE {text!r}: {exc}", item=series.uid, field="RRULE") from None
    if not instances:
        return None
    if len(instances) > MAX_OCCURRENCES:
        raise MappingError(
            f"more than {MAX_OCCURRENCES} occurrences", item=series.uid, field="RRULE"
        )
    return _aware_utc(instances[-1], series.zone) + dt.timedelta(days=1)


def _aware_utc(value: Moment, zone: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(dt.UTC)
    return dt.datetime.combine(value, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def _expand(
    components: Iterable[Component], window: _Window, zone: ZoneInfo, uid: str
) -> list[Occ]:
    """Occurrences (start, end, summary, description, location) in the window, sorted;
    cancelled overrides do not occur."""
    cal = Calendar()
    for component in components:
        cal.add_component(component)
    try:
        query = recurring_ical_events.of(cal, components=["VEVENT", "VTODO"])
        found = query.between(window.lo, window.hi)
        result: list[Occ] = []
        for index, occurrence in enumerate(found):
            if index > MAX_OCCURRENCES:
                raise MappingError(
                    f"more than {MAX_OCCURRENCES} occurrences in the compared window",
                    item=uid,
                    field="RRULE",
                )
            if str(occurrence.get("STATUS", "")).upper() == "CANCELLED":
                continue
            start = occurrence.get("DTSTART") or occurrence.get("DUE")
            end = occurrence.get("DTEND") or occurrence.get("DUE") or start
            result.append(
                (
                    _instant_text(start.dt, zone),
                    _instant_text(end.dt, zone),
                    str(occurrence.get("SUMMARY", "")),
                    str(occurrence.get("DESCRIPTION", "")),
                    str(occurrence.get("LOCATION", "")),
                )
            )
    except MappingError:
        raise
    except Exception as exc:  # recurring-ical-events raises many types for bad rules
        raise MappingError(
            f"the series cannot be expanded: {exc}", item=uid, field="RRULE"
        ) from None
    return sorted(result)


def _forward(followups: list[FollowUp]) -> list[Component]:
    result: list[Component] = []
    for followup in followups:
        result.extend(followup_components(followup, stamp=_STAMP).components)
    return result


# --- rule → representations ----------------------------------------------------------------


@dataclass
class _Rule:
    """The master's recurrence in local terms, before exceptions."""

    base: list[Moment]  # unedited occurrence keys (RRULE+RDATE−EXRULE), EXDATE not applied
    bounded: bool


def _values_of(component: Component, key: str) -> list[Any]:
    """Every value of RDATE/EXDATE lines: dates, date-times or (start, end|duration)."""
    values: list[Any] = []
    for line in _as_list(component.get(key)):
        for item in getattr(line, "dts", None) or [line]:
            value = item.dt
            if isinstance(value, tuple):
                value = (value[0], value[1])
            values.append(value)
    return values


def _base_rule(series: _Series, window: _Window) -> _Rule:
    """Expand the master alone, without EXDATE and overrides: the occurrence keys."""
    master = series.master.copy()
    for key in ("EXDATE",):
        if key in master:
            del master[key]
    for key in ("SUMMARY", "DESCRIPTION", "LOCATION", "STATUS"):
        if key in master:
            del master[key]
    moments: list[Moment] = []
    cal = Calendar()
    cal.add_component(master)
    try:
        found = recurring_ical_events.of(cal, components=["VEVENT", "VTODO"]).between(
            window.lo, window.hi
        )
        for index, occurrence in enumerate(found):
            if index > MAX_OCCURRENCES:
                break
            value = (occurrence.get("DTSTART") or occurrence.get("DUE")).dt
            moments.append(to_local(value, series.zone, series.all_day))
    except Exception as exc:
        raise MappingError(
            f"the series cannot be expanded: {exc}", item=series.uid, field="RRULE"
        ) from None
    bounded = all("COUNT" in r or "UNTIL" in r for r in _rules(master, "RRULE"))
    return _Rule(sorted(set(moments), key=wall_clock_key), bounded)


def _parse_byday(values: list[Any]) -> list[tuple[int | None, int]]:
    result = []
    for value in values:
        text = str(value).upper().strip()
        day = ICAL_DAYS.index(text[-2:])
        ordinal = int(text[:-2]) if text[:-2] not in ("", "+") else None
        result.append((ordinal, day))
    return result


def _week_of(ordinal: int) -> WeekOfMonth | None:
    return {
        1: WeekOfMonth.First,
        2: WeekOfMonth.Second,
        3: WeekOfMonth.Third,
        4: WeekOfMonth.Fourth,
        -1: WeekOfMonth.Last,
    }.get(ordinal)


def _structural(rule: vRecur, start: Moment) -> list[RecurrenceInfo]:
    """CRM patterns that may mean this RRULE (without its end), most natural first.

    Only the shape is read here; whether a pattern really means the rule is decided by
    comparing occurrences, so a guess that is wrong for this DTSTART is harmless.
    """
    parts = {k.upper() for k in rule}
    if not parts <= _CRM_RULE_PARTS:
        return []
    freq = str(rule["FREQ"][0]).upper()
    interval = int(rule.get("INTERVAL", [1])[0])
    byday = _parse_byday(rule.get("BYDAY", []))
    bymonthday = [int(v) for v in rule.get("BYMONTHDAY", [])]
    bymonth = [int(v) for v in rule.get("BYMONTH", [])]
    bysetpos = [int(v) for v in rule.get("BYSETPOS", [])]
    day0 = date_of(start)
    plain_days = {d for o, d in byday if o is None}
    has_ordinals = any(o is not None for o, _ in byday)

    def daily(sub: RecurrenceDailyPattern, cycle: int = 0) -> RecurrenceInfo:
        return RecurrenceInfo(
            Pattern=RecurrencePattern.Daily, DayPattern=DayPatternInfo(Pattern=sub, Cycle=cycle)
        )

    def weekly(days: set[int], cycle: int) -> RecurrenceInfo:
        return RecurrenceInfo(
            Pattern=RecurrencePattern.Weekly,
            WeekPattern=WeekPatternInfo(Weekdays=weekday_flags(days), Cycle=cycle),
        )

    def same_week_forms(days: frozenset[int] | set[int]) -> list[RecurrenceInfo]:
        if days == WORKDAYS:
            return [daily(RecurrenceDailyPattern.EveryWorkday), weekly(set(days), 1)]
        if days == ALL_DAYS:
            return [
                daily(RecurrenceDailyPattern.EveryWeekday),
                daily(RecurrenceDailyPattern.EveryCyclicDay, 1),
                weekly(set(days), 1),
            ]
        return [weekly(set(days), 1)]

    if freq == "DAILY":
        if bymonth or bymonthday or bysetpos or has_ordinals:
            return []
        if not byday:
            if interval == 1:
                return same_week_forms(ALL_DAYS)
            return [daily(RecurrenceDailyPattern.EveryCyclicDay, interval)]
        return same_week_forms(plain_days) if interval == 1 else []
    if freq == "WEEKLY":
        if bymonth or bymonthday or bysetpos or has_ordinals:
            return []
        days = plain_days or {day0.weekday()}
        if interval == 1:
            forms = same_week_forms(days)
            return [forms[-1], *forms[:-1]]  # Weekly first: that is what the client wrote
        return [weekly(days, interval)]
    if freq in ("MONTHLY", "YEARLY"):
        if freq == "YEARLY" and interval != 1:
            return []  # SuperOffice's yearly pattern has no interval
        if freq == "MONTHLY" and bymonth:
            return []
        if freq == "YEARLY":
            if (
                len(bymonth) > 1
                or (byday and not bymonth)
                or (bymonthday and not bymonth and len(bymonthday) > 1)
            ):
                return []
            month = bymonth[0] if bymonth else day0.month
            month_length = 29 if month == 2 else calendar_module.monthrange(2001, month)[1]
        else:
            month = 0
            month_length = 31
        # (kind, day, weekday flags, week)
        day_forms: list[tuple[str, int, Weekday, WeekOfMonth]] = []
        if byday:
            if bymonthday:
                return []
            ordinals = {o for o, _ in byday}
            days = {d for _, d in byday}
            if len(ordinals) == 1 and None not in ordinals and not bysetpos:
                week = _week_of(next(iter(ordinals)))  # type: ignore[arg-type]
                if week is None:
                    return []
                day_forms.append(("weekday", 0, weekday_flags(days), week))
            elif ordinals == {None} and len(days) == 1 and len(bysetpos) == 1:
                week = _week_of(bysetpos[0])
                if week is None:
                    return []
                day_forms.append(("weekday", 0, weekday_flags(days), week))
            else:
                return []
        elif bymonthday:
            if bysetpos:
                wanted = sorted(bymonthday)
                if (
                    bysetpos == [-1]
                    and wanted == list(range(wanted[0], wanted[-1] + 1))
                    and wanted[0] >= 28
                ):
                    day_forms.append(("day", wanted[-1], Weekday.Unknown, WeekOfMonth.Unknown))
                else:
                    return []
            elif len(bymonthday) == 1:
                value = bymonthday[0]
                if value == -1:
                    day_forms.append(("day", month_length, Weekday.Unknown, WeekOfMonth.Unknown))
                elif 1 <= value <= 31:
                    day_forms.append(("day", value, Weekday.Unknown, WeekOfMonth.Unknown))
                else:
                    return []
            else:
                return []
        else:
            if bysetpos:
                return []
            day_forms.append(("day", day0.day, Weekday.Unknown, WeekOfMonth.Unknown))
        kind, day, flags, week = day_forms[0]
        results: list[RecurrenceInfo] = []
        if freq == "MONTHLY":
            results.append(_monthly(kind, day, flags, week, interval))
            if interval == 12:
                results.append(_yearly(kind, day, flags, week, day0.month))
        else:
            results.append(_yearly(kind, day, flags, week, month))
            results.append(_monthly(kind, day, flags, week, 12))
        return results
    return []


def _monthly(kind: str, day: int, flags: Weekday, week: WeekOfMonth, cycle: int) -> RecurrenceInfo:
    if kind == "day":
        info = MonthPatternInfo(Pattern=RecurrenceMonthlyPattern.DayOfMonth, Cycle=cycle, Day=day)
    else:
        info = MonthPatternInfo(
            Pattern=RecurrenceMonthlyPattern.WeekdayOfMonth,
            Cycle=cycle,
            Weekday=flags,
            WeekOfMonth=week,
        )
    return RecurrenceInfo(Pattern=RecurrencePattern.Monthly, MonthPattern=info)


def _yearly(kind: str, day: int, flags: Weekday, week: WeekOfMonth, month: int) -> RecurrenceInfo:
    if kind == "day":
        info = YearPatternInfo(Pattern=RecurrenceYearlyPattern.DayOfMonth, Cycle=month, Day=day)
    else:
        info = YearPatternInfo(
            Pattern=RecurrenceYearlyPattern.WeekdayOfMonth,
            Cycle=month,
            Weekday=flags,
            WeekOfMonth=week,
        )
    return RecurrenceInfo(Pattern=RecurrencePattern.Yearly, YearPattern=info)


def _form(info: RecurrenceInfo) -> tuple[Any, ...]:
    """The shape of a pattern (Pattern and sub-pattern), for preferring ``known``'s form."""
    sub: Any = None
    if info.DayPattern is not None and info.Pattern == RecurrencePattern.Daily:
        sub = info.DayPattern.Pattern
    elif info.MonthPattern is not None and info.Pattern == RecurrencePattern.Monthly:
        sub = info.MonthPattern.Pattern
    elif info.YearPattern is not None and info.Pattern == RecurrencePattern.Yearly:
        sub = info.YearPattern.Pattern
    return (info.Pattern, sub)


def _with_end(info: RecurrenceInfo, rule: vRecur, series: _Series) -> RecurrenceInfo:
    """Add COUNT → Counter or UNTIL → inclusive local EndDate to a pattern."""
    update: dict[str, Any] = {"StartDate": date_of(series.start), "IsRecurrence": True}
    if "COUNT" in rule:
        update.update(
            RecurrenceEndType=RecurrenceEndType.Counter, RecurrenceCounter=int(rule["COUNT"][0])
        )
    elif "UNTIL" in rule:
        update.update(
            RecurrenceEndType=RecurrenceEndType.EndDate,
            EndDate=_until_date(rule["UNTIL"][0], series),
        )
    return info.model_copy(update=update)


def _until_date(until: Any, series: _Series) -> dt.date:
    """The last local date UNTIL still admits: the day before when UNTIL is earlier in
    the day than the series' time of day."""
    if not isinstance(until, dt.datetime):
        return until  # type: ignore[no-any-return]
    local = until.astimezone(series.zone).replace(tzinfo=None) if until.tzinfo else until
    if isinstance(series.start, dt.datetime) and local.time() < series.start.time():
        return local.date() - dt.timedelta(days=1)
    return local.date()


# --- building follow-ups ---------------------------------------------------------------


@dataclass
class _Edits:
    """EXDATEs and overrides, keyed by the local occurrence they replace."""

    cancelled: list[Moment]
    overrides: list[tuple[Moment, Component]]
    futures: list[tuple[Moment, Component]]
    extra: list[Moment]  # override keys that are not occurrences of the rule (extra dates)


def _edits(series: _Series, rule: _Rule, warnings: list[str]) -> _Edits:
    base = set(rule.base)
    cancelled: list[Moment] = []
    for value in _values_of(series.master, "EXDATE"):
        if isinstance(value, tuple):
            value = value[0]
        key = to_local(value, series.zone, series.all_day)
        if key in base:
            if key not in cancelled:
                cancelled.append(key)
        else:
            warnings.append(f"{series.uid}: EXDATE {show(key)} is not an occurrence; ignored")
    overrides: list[tuple[Moment, Component]] = []
    futures: list[tuple[Moment, Component]] = []
    extra: list[Moment] = []
    for component in series.overrides:
        rid = _prop(component, "RECURRENCE-ID")
        key = to_local(rid.dt, series.zone, series.all_day)
        is_cancelled = str(component.get("STATUS", "")).upper() == "CANCELLED"
        if str(rid.params.get("RANGE", "")).upper() == "THISANDFUTURE" and not is_cancelled:
            futures.append((key, component))
            continue
        if key not in base:
            if is_cancelled:
                warnings.append(
                    f"{series.uid}: cancelled override {show(key)} is not an occurrence; ignored"
                )
                continue
            extra.append(key)
        if is_cancelled:
            if key not in cancelled:
                cancelled.append(key)
            continue
        if component.get("DTSTART") is None and component.get("DUE") is None:
            raise MappingError(
                f"the override {show(key)} has no DTSTART", item=series.uid, field="DTSTART"
            )
        overrides.append((key, component))
    return _Edits(cancelled, overrides, sorted(futures, key=lambda p: wall_clock_key(p[0])), extra)


def _override_values(component: Component, series: _Series) -> tuple[Moment, Moment]:
    start_prop = component.get("DTSTART") or component.get("DUE")
    raw = start_prop.dt
    all_day = series.all_day or _is_all_day_override(component, series)
    start = to_local(raw, series.zone, all_day)
    end = _end_of(component, raw, start, series.zone, all_day, series.uid)
    return start, end


def _is_all_day_override(component: Component, series: _Series) -> bool:
    """One occurrence of a timed series made all-day by itself: a DATE DTSTART."""
    start_prop = component.get("DTSTART") or component.get("DUE")
    return (
        not series.all_day and start_prop is not None and not isinstance(start_prop.dt, dt.datetime)
    )


def _exception_for(
    key: Moment,
    component: Component,
    title: str,
    description: str | None,
    location: str | None,
    series: _Series,
    duration: dt.timedelta,
) -> OccurrenceException:
    """An override as the difference to the series it belongs to."""
    start, end = _override_values(component, series)
    new_title = _text(component, "SUMMARY") or ""
    new_description = _text(component, "DESCRIPTION") or ""
    new_location = _text(component, "LOCATION") or ""
    status, completed_at = _own_status(component, series)
    all_day = _is_all_day_override(component, series)
    return OccurrenceException(
        original_start=key,
        start=start if start != key else None,
        end=end if end != start + (dt.timedelta(days=1) if all_day else duration) else None,
        title=new_title if new_title != title else None,
        description=new_description if new_description != (description or "") else None,
        location=new_location if new_location != (location or "") else None,
        status=status,
        completed_at=completed_at,
        all_day=all_day or None,
    )


def _own_status(
    component: Component, series: _Series
) -> tuple[FollowUpStatus | None, dt.datetime | None]:
    """An override's status where it differs from the series' (a task ticked off once).

    Saying nothing and "not started" are the same here: Thunderbird writes
    NEEDS-ACTION on an override of a series that has no STATUS at all.
    """
    status, completed_at = read_status(component)
    if status is None:
        return None, None
    if status == (series.status or FollowUpStatus.not_started):
        return None, None
    return status, completed_at


def _followup(
    series: _Series,
    *,
    recurrence: RecurrenceInfo | None,
    ical: IcalRecurrence | None,
    exceptions: list[OccurrenceException],
    followup_id: str | None = None,
    doc_uid: str | None = None,
    start: Moment | None = None,
    end: Moment | None = None,
    title: str | None = None,
    description: str | None = None,
    location: str | None = None,
    override_values: bool = False,
) -> FollowUp | None:
    """A validated follow-up, or None when this representation is not even valid."""
    data: dict[str, Any] = {
        "id": followup_id or series.followup_id,
        "kind": series.kind,
        "title": title if override_values else series.title,
        "description": description if override_values else series.description,
        "location": location if override_values else series.location,
        "all_day": series.all_day,
        "start": start if start is not None else series.start,
        "end": end if end is not None else series.end,
        "timezone": series.zone.key,
        "recurrence": recurrence,
        "ical_recurrence": ical,
        "exceptions": [e for e in exceptions if not _is_noop(e)],
        "uid": doc_uid if followup_id is not None else series.doc_uid,
        "status": series.status,
        "completed_at": series.completed_at,
    }
    try:
        followup = FollowUp.model_validate(data)
        validate_followup(followup)
    except Exception:  # any refusal just means "not this representation"
        return None
    return followup


def _is_noop(exception: OccurrenceException) -> bool:
    return not exception.cancelled and all(
        getattr(exception, name) is None
        for name in ("start", "end", "title", "description", "location", "status", "all_day")
    )


def _represent(
    series: _Series, known: FollowUp | None, warnings: list[str], synthetic: bool
) -> list[FollowUp]:
    window = _window(series)
    expected = _expand(series.original, window, series.zone, series.uid)
    rule = _base_rule(series, window)
    edits = _edits(series, rule, warnings)
    duration = _duration(series)

    def exceptions_for(keys: set[Moment] | None = None) -> list[OccurrenceException]:
        result = [OccurrenceException(original_start=k, cancelled=True) for k in edits.cancelled]
        for key, component in edits.overrides:
            result.append(
                _exception_for(
                    key,
                    component,
                    series.title,
                    series.description,
                    series.location,
                    series,
                    duration,
                )
            )
        return sorted(result, key=lambda e: wall_clock_key(e.original_start))

    def exact(followups: list[FollowUp]) -> bool:
        return _expand(_forward(followups), window, series.zone, series.uid) == expected

    reasons: list[str] = []
    for recurrence, ical, note in _proposals(
        series, rule, edits, known, window, reasons, synthetic
    ):
        followup = _followup(series, recurrence=recurrence, ical=ical, exceptions=exceptions_for())
        if followup is None:
            continue
        if edits.futures:
            result = _apply_futures(
                followup, series, rule, edits, duration, exact, warnings, window.hi
            )
            if result is None:
                continue
            if exact(result):
                return result
            continue
        if exact([followup]):
            if note:
                warnings.append(f"{series.uid}: {note}")
            return [followup]
    if edits.futures:
        key = edits.futures[0][0]
        raise MappingError(
            f"the THISANDFUTURE override at RECURRENCE-ID {show(key)} moves occurrences to "
            "other dates of an open-ended series; the CRM cannot split it exactly",
            item=series.uid,
            field="RECURRENCE-ID",
        )
    detail = f" ({'; '.join(reasons)})" if reasons else ""
    raise MappingError(
        f"no representation reproduces the calendar's occurrences exactly{detail}",
        item=series.uid,
        field="RRULE",
    )


def _duration(series: _Series) -> dt.timedelta:
    return series.end - series.start  # type: ignore[operator]


Proposal = tuple[RecurrenceInfo | None, IcalRecurrence | None, str]


def _proposals(
    series: _Series,
    rule: _Rule,
    edits: _Edits,
    known: FollowUp | None,
    window: _Window,
    reasons: list[str],
    synthetic: bool,
) -> Iterable[Proposal]:
    """Representations to try, best first (see the module docstring)."""
    master = series.master
    rrules = _rules(master, "RRULE")
    exrules = _rules(master, "EXRULE")
    rdates = _values_of(master, "RDATE")
    keys = sorted(set(rule.base) | set(edits.extra), key=wall_clock_key)
    if not rrules and not rdates and not exrules and not edits.extra and not synthetic:
        yield (None, None, "")
        if not edits.overrides and not edits.cancelled:
            return
        # A single event with an override of its one occurrence: a one-date Custom series.
    times_align = all(time_of(k) == time_of(series.start) for k in keys)
    periods_align = all(
        not isinstance(v, tuple) or _period_span(v) == _duration(series) for v in rdates
    )
    if len(rrules) == 1 and not exrules:
        candidates = _structural(rrules[0], series.start)
        if known is not None and known.recurrence is not None and known.recurrence.repeats:
            wanted = _form(known.recurrence)
            candidates.sort(key=lambda c: 0 if _form(c) == wanted else 1)
        for candidate in candidates:
            info = _with_end(candidate, rrules[0], series)
            if (
                known is not None
                and known.recurrence is not None
                and known.recurrence.RecurrenceId is not None
            ):
                info = info.model_copy(update={"RecurrenceId": known.recurrence.RecurrenceId})
            pattern = _pattern_keys(series, info, window)
            if pattern is None:
                continue
            if pattern == keys:
                yield (info, None, "")
            elif (
                rule.bounded
                and times_align
                and periods_align
                and effective_end_type(info) != RecurrenceEndType.Unknown
            ):
                dates = [RecurrenceDate(Date=date_of(k)) for k in keys]
                yield (info.model_copy(update={"Dates": dates}), None, "")
    elif not rrules and not exrules and times_align and periods_align:
        dates = [RecurrenceDate(Date=date_of(k)) for k in keys]
        yield (
            RecurrenceInfo(Pattern=RecurrencePattern.Custom, Dates=dates, IsRecurrence=True),
            None,
            "",
        )
    if not rrules and not exrules and not times_align:
        reasons.append("the added dates have different times of day")
    kept = IcalRecurrence(
        rrule=[_rule_text(r, series) for r in rrules],
        exrule=[_rule_text(r, series) for r in exrules],
        rdate=[_rdate_text(v, series) for v in rdates]
        + [_rdate_text(k, series) for k in edits.extra if k not in _rdate_keys(rdates, series)],
    )
    yield (None, kept, "no CRM pattern expresses this rule exactly; kept as an iCalendar rule")


def _rdate_keys(rdates: list[Any], series: _Series) -> set[Moment]:
    return {
        to_local(v[0] if isinstance(v, tuple) else v, series.zone, series.all_day) for v in rdates
    }


def _period_span(value: tuple[Any, Any]) -> dt.timedelta:
    start, end = value
    return end if isinstance(end, dt.timedelta) else end - start


def _pattern_keys(series: _Series, info: RecurrenceInfo, window: _Window) -> list[Moment] | None:
    """The occurrence keys a CRM pattern gives, by the model's own expansion."""
    probe = _followup(series, recurrence=info, ical=None, exceptions=[])
    if probe is None:
        return None
    hi = window.hi.astimezone(series.zone).replace(tzinfo=None)
    found = occurrences(probe, window_end=hi.date() if series.all_day else hi)
    return sorted(
        {o.original_start if series.all_day else naive(o.original_start) for o in found},
        key=wall_clock_key,
    )


def _rule_text(rule: vRecur, series: _Series) -> str:
    """A rule verbatim, except that a floating or zoned UNTIL becomes UTC (RFC 5545
    requires it once DTSTART has a TZID, which the document always gives it)."""
    copy = vRecur({k: list(v) for k, v in rule.items()})
    if "UNTIL" in copy:
        until = copy["UNTIL"][0]
        if isinstance(until, dt.datetime) and not series.all_day:
            copy["UNTIL"] = [_aware_utc(until, series.zone)]
    return _ical_text(copy)


def _rdate_text(value: Any, series: _Series) -> str:
    """An RDATE value as ``IcalRecurrence.rdate`` holds it, in the follow-up's zone."""
    if isinstance(value, tuple):
        start, end = value
        text = _moment_text(start, series)
        if isinstance(end, dt.timedelta):
            return f"{text}/{_ical_text(vDuration(end))}"
        return f"{text}/{_moment_text(end, series)}"
    return _moment_text(value, series)


def _moment_text(value: Any, series: _Series) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            local = value.astimezone(series.zone)
            if local.replace(tzinfo=None).replace(tzinfo=series.zone).astimezone(
                dt.UTC
            ) != value.astimezone(dt.UTC):
                return str(value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ"))
            value = local.replace(tzinfo=None)
        return str(value.strftime("%Y%m%dT%H%M%S"))
    return str(vDDDTypes(value).to_ical().decode())


# --- RANGE=THISANDFUTURE -------------------------------------------------------------------


def _apply_futures(
    followup: FollowUp,
    series: _Series,
    rule: _Rule,
    edits: _Edits,
    duration: dt.timedelta,
    exact: Callable[[list[FollowUp]], bool],
    warnings: list[str],
    window_end: dt.datetime,
) -> list[FollowUp] | None:
    """Split at each THISANDFUTURE override when every affected occurrence stays on its
    date; otherwise, for a bounded series, write each affected occurrence as an exception."""
    split = _split(followup, series, edits, duration)
    if split is not None and exact(split):
        keys = ", ".join(show(k) for k, _ in edits.futures)
        warnings.append(
            f"{series.uid}: THISANDFUTURE at {keys} split the series into {len(split)} follow-ups"
        )
        return split
    if not rule.bounded:
        return None
    materialised = _materialise(followup, series, edits, duration, window_end)
    if materialised is not None:
        warnings.append(
            f"{series.uid}: THISANDFUTURE written as one exception per affected occurrence"
        )
        return [materialised]
    return None


def _bounded(followup: FollowUp) -> bool:
    if followup.ical_recurrence is not None:
        return False
    info = followup.recurrence
    return (
        info is None
        or info.Pattern == RecurrencePattern.Custom
        or effective_end_type(info) != RecurrenceEndType.Unknown
    )


def _segments(series: _Series, edits: _Edits) -> list[tuple[Moment | None, Component | None]]:
    return [(None, None), *[(k, c) for k, c in edits.futures]]


def _split(
    followup: FollowUp, series: _Series, edits: _Edits, duration: dt.timedelta
) -> list[FollowUp] | None:
    info = followup.recurrence
    if info is None or not info.repeats:
        return None
    segments = _segments(series, edits)
    shifts: list[dt.timedelta] = [dt.timedelta(0)]
    for key, component in segments[1:]:
        assert key is not None and component is not None
        start, _end = _override_values(component, series)
        if date_of(start) != date_of(key):
            return None
        shifts.append(start - key)  # type: ignore[operator]
    pattern = pattern_dates(info, date_of(followup.start))
    # RecurrenceDate refuses a missing Date, though its field type allows None.
    listed = sorted({cast(dt.date, d.Date) for d in info.Dates or []}) if info.Dates else None
    results: list[FollowUp] = []
    for index, (key, component) in enumerate(segments):
        lo = date_of(key) if key is not None else None
        hi_key = segments[index + 1][0] if index + 1 < len(segments) else None
        hi = date_of(hi_key) if hi_key is not None else None

        def inside(day: dt.date, lo: dt.date | None = lo, hi: dt.date | None = hi) -> bool:
            return (lo is None or day >= lo) and (hi is None or day < hi)

        part = info.model_copy(deep=True)
        end_type = effective_end_type(info)
        if end_type == RecurrenceEndType.Counter:
            part.RecurrenceEndType = RecurrenceEndType.Counter
            part.RecurrenceCounter = sum(1 for d in pattern if inside(d))
        elif hi is not None:
            part.RecurrenceEndType = RecurrenceEndType.EndDate
            part.EndDate = hi - dt.timedelta(days=1)
        if listed is not None:
            part.Dates = [RecurrenceDate(Date=d) for d in listed if inside(d)]
        if lo is not None:
            part.StartDate = lo
        if part.Pattern == RecurrencePattern.Custom and not part.Dates:
            return None
        if end_type == RecurrenceEndType.Counter and not part.RecurrenceCounter and not part.Dates:
            return None
        shift = shifts[index]
        if component is None:
            title, description, location = series.title, series.description, series.location
            start, end = followup.start, followup.end
            seg_duration = duration
        else:
            start, end = _override_values(component, series)
            title = _text(component, "SUMMARY") or ""
            description = _text(component, "DESCRIPTION")
            location = _text(component, "LOCATION")
            seg_duration = end - start
        exceptions = [
            OccurrenceException(original_start=k + shift, cancelled=True)
            for k in edits.cancelled
            if inside(date_of(k))
        ]
        for k, override in edits.overrides:
            if inside(date_of(k)):
                exceptions.append(
                    _exception_for(
                        k + shift, override, title, description, location, series, seg_duration
                    )
                )
        if component is None:
            made = _followup(series, recurrence=part, ical=None, exceptions=exceptions)
        else:
            assert key is not None
            new_id = f"{followup.id}-{date_of(key).strftime('%Y%m%d')}"
            made = _followup(
                series,
                recurrence=part,
                ical=None,
                exceptions=exceptions,
                followup_id=new_id,
                doc_uid=None,
                start=start,
                end=end,
                title=title,
                description=description,
                location=location,
                override_values=True,
            )
        if made is None:
            return None
        results.append(made)
    return results


def _materialise(
    followup: FollowUp,
    series: _Series,
    edits: _Edits,
    duration: dt.timedelta,
    window_end: dt.datetime,
) -> FollowUp | None:
    """One exception per occurrence from the first THISANDFUTURE on (bounded series only)."""
    stop = window_end.astimezone(series.zone).replace(tzinfo=None)
    originals = [
        o.original_start
        for o in occurrences(followup, window_end=stop.date() if series.all_day else stop)
    ]
    keys = [naive(k) for k in originals]
    existing = {e.original_start: e for e in followup.exceptions}
    futures = edits.futures
    for key in keys:
        if key in existing:
            continue
        active = [(k, c) for k, c in futures if wall_clock_key(k) <= wall_clock_key(key)]
        if not active:
            continue
        fkey, component = active[-1]
        start, end = _override_values(component, series)
        shift = start - fkey  # type: ignore[operator]
        new_start = key + shift
        new_end = new_start + (end - start)  # type: ignore[operator]
        title = _text(component, "SUMMARY") or ""
        description = _text(component, "DESCRIPTION") or ""
        location = _text(component, "LOCATION") or ""
        existing[key] = OccurrenceException(
            original_start=key,
            start=new_start if new_start != key else None,
            end=new_end if new_end != new_start + duration else None,
            title=title if title != series.title else None,
            description=description if description != (series.description or "") else None,
            location=location if location != (series.location or "") else None,
        )
    exceptions = sorted(existing.values(), key=lambda e: wall_clock_key(e.original_start))
    return _followup(
        series, recurrence=followup.recurrence, ical=followup.ical_recurrence, exceptions=exceptions
    )
