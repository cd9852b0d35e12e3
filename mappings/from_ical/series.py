"""One UID's components read into a ``Series``: master, overrides and times.

Of duplicate components the newest wins (SEQUENCE, then DTSTAMP/LAST-MODIFIED); several
master copies are reconciled; overrides without a master get a synthetic one. Times are
brought into the follow-up's local terms here, once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Component

from mappings.errors import MappingError
from mappings.from_ical.components import (
    HANDLED_PROPERTIES,
    Series,
    as_list,
    duration_value,
    instant_text,
    moment_value,
    recurrence_key,
    text_of,
    values_of,
)
from mappings.from_ical.expand import base_rule, window_of
from mappings.from_ical.zones import zone_of
from mappings.model import FollowUp, FollowUpKind, id_for_uid, uid_for_id
from mappings.moments import Moment, show, to_local
from mappings.task_status import read_status
from mappings.to_ical import CALL_CATEGORY, KIND_PROPERTY
from mappings.uids import newness


def split_master(
    components: list[Component], uid: str, warnings: list[str]
) -> tuple[Component | None, list[Component], list[Component]]:
    """Master, the other copies of the master, and overrides.

    Of two components for one RECURRENCE-ID (or two masters) the newest wins: highest
    SEQUENCE, then the later DTSTAMP/LAST-MODIFIED, then the later one in the file.
    """
    chosen: dict[str | None, Component] = {}
    other_masters: list[Component] = []
    for component in components:
        key = recurrence_key(component)
        previous = chosen.get(key)
        if previous is not None:
            newer = newness(component) >= newness(previous)
            keep, lose = (component, previous) if newer else (previous, component)
            chosen[key] = keep
            if key is None:
                other_masters.append(lose)  # reconcile_masters says what was kept
            else:
                warnings.append(
                    f"{uid}: two components for RECURRENCE-ID {key}; "
                    f"kept SEQUENCE {_sequence(keep)}"
                )
        else:
            chosen[key] = component
    master = chosen.pop(None, None)
    overrides = sorted(
        chosen.values(), key=lambda c: instant_text(moment_value(c, "RECURRENCE-ID"), None)
    )
    return master, other_masters, overrides


def _sequence(component: Component) -> int:
    try:
        return int(component.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        return 0


def reconcile_masters(series: Series, others: list[Component], warnings: list[str]) -> Series:
    """One series out of several master copies: the kept one (``series.master``), with the
    others' EXDATEs where they delete an occurrence it has and nobody edited, and only
    the overrides of occurrences it has (and does not delete)."""
    window = window_of(replace(series, original=[series.master, *series.overrides]))
    base = set(base_rule(series, window).base)
    deleted = {_key_of(v, series) for v in values_of(series.master, "EXDATE")}
    kept: list[Component] = []
    for override in series.overrides:
        key = to_local(moment_value(override, "RECURRENCE-ID"), series.zone, series.all_day)
        if key in base and key not in deleted:
            kept.append(override)
        else:
            reason = "it deletes that occurrence" if key in deleted else "not an occurrence of it"
            warnings.append(
                f"{series.uid}: the override {show(key)} contradicts the newest master copy "
                f"({reason}); ignored"
            )
    edited = {to_local(moment_value(o, "RECURRENCE-ID"), series.zone, series.all_day) for o in kept}
    master = series.master.copy()
    added: list[Moment] = []
    for other in others:
        for value in values_of(other, "EXDATE"):
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


def _key_of(value: Any, series: Series) -> Moment:
    return to_local(value[0] if isinstance(value, tuple) else value, series.zone, series.all_day)


def synthetic_master(overrides: list[Component], uid: str, warnings: list[str]) -> Component:
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
    rid0 = moment_value(first, "RECURRENCE-ID")
    master.add("DTSTART", rid0)
    span = _span_of(first)
    if span is not None:
        master.add("DUE" if first.name == "VTODO" else "DTEND", rid0 + span)
    for other in overrides[1:]:
        master.add("RDATE", [moment_value(other, "RECURRENCE-ID")])
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
            return moment_value(component, key) - moment_value(component, "DTSTART")
    if component.get("DURATION") is not None:
        return duration_value(component)
    return None


def read_series(
    master: Component,
    overrides: list[Component],
    original: list[Component],
    uid: str,
    default_timezone: str,
    calendar_timezone: str | None,
    known: FollowUp | None,
) -> Series:
    is_todo = master.name == "VTODO"
    start_prop = master.get("DTSTART")
    if start_prop is None and is_todo:
        start_prop = master.get("DUE")
    if start_prop is None:
        raise MappingError("DTSTART is missing", item=uid, field="DTSTART")
    raw_start = start_prop.dt
    zone_name = zone_of(start_prop, uid, default_timezone, calendar_timezone, master, original)
    zone = ZoneInfo(zone_name)
    all_day = not isinstance(raw_start, dt.datetime)
    start = to_local(raw_start, zone, all_day)
    end = end_of(master, raw_start, start, zone, all_day, uid)
    kind = _kind(master)
    followup_id = id_for_uid(uid) or uid
    if known is not None:
        followup_id, kind = known.id, known.kind
    doc_uid = None if uid == uid_for_id(followup_id) else uid
    status, completed_at = read_status(master)
    return Series(
        uid=uid,
        zone=zone,
        all_day=all_day,
        start=start,
        end=end,
        title=text_of(master, "SUMMARY") or "",
        description=text_of(master, "DESCRIPTION"),
        location=text_of(master, "LOCATION"),
        kind=kind,
        followup_id=followup_id,
        doc_uid=doc_uid,
        master=master,
        overrides=overrides,
        original=original,
        status=status,
        completed_at=completed_at,
    )


def end_of(
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
        span = duration_value(component)
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
    for value in as_list(master.get("CATEGORIES")):
        categories.extend(str(c).strip().lower() for c in getattr(value, "cats", [value]))
    if CALL_CATEGORY.lower() in categories:
        return FollowUpKind.call
    return FollowUpKind.appointment


def report_ignored(master: Component, uid: str, warnings: list[str]) -> None:
    ignored = sorted(
        {name for name in master if name not in HANDLED_PROPERTIES and not name.startswith("X-")}
        | ({"VALARM"} if any(c.name == "VALARM" for c in master.subcomponents) else set())
    )
    if ignored:
        warnings.append(
            f"{uid}: ignored {', '.join(ignored)} (the follow-up has no place for them)"
        )
