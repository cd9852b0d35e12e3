"""Building blocks of a follow-up: EXDATEs and overrides as exceptions, and the
validated document itself.

An override becomes the difference to the series it belongs to; a representation that the
model refuses is simply not this representation (``build_followup`` returns None).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from icalendar import Component

from mappings.errors import MappingError
from mappings.from_ical.components import Series, raw_property, text_of, values_of
from mappings.from_ical.expand import BaseRule
from mappings.from_ical.series import end_of
from mappings.model import FollowUp, FollowUpStatus, IcalRecurrence, OccurrenceException
from mappings.moments import Moment, show, to_local, wall_clock_key
from mappings.occurrences import validate_followup
from mappings.superoffice import RecurrenceInfo
from mappings.task_status import read_status


@dataclass
class Edits:
    """EXDATEs and overrides, keyed by the local occurrence they replace."""

    cancelled: list[Moment]
    overrides: list[tuple[Moment, Component]]
    futures: list[tuple[Moment, Component]]
    extra: list[Moment]  # override keys that are not occurrences of the rule (extra dates)


def read_edits(series: Series, rule: BaseRule, warnings: list[str]) -> Edits:
    base = set(rule.base)
    cancelled: list[Moment] = []
    for value in values_of(series.master, "EXDATE"):
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
        rid = raw_property(component, "RECURRENCE-ID")
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
    return Edits(cancelled, overrides, sorted(futures, key=lambda p: wall_clock_key(p[0])), extra)


def override_times(component: Component, series: Series) -> tuple[Moment, Moment]:
    start_prop = component.get("DTSTART") or component.get("DUE")
    raw = start_prop.dt
    all_day = series.all_day or _is_all_day_override(component, series)
    start = to_local(raw, series.zone, all_day)
    end = end_of(component, raw, start, series.zone, all_day, series.uid)
    return start, end


def _is_all_day_override(component: Component, series: Series) -> bool:
    """One occurrence of a timed series made all-day by itself: a DATE DTSTART."""
    start_prop = component.get("DTSTART") or component.get("DUE")
    return (
        not series.all_day and start_prop is not None and not isinstance(start_prop.dt, dt.datetime)
    )


def exception_for(
    key: Moment,
    component: Component,
    title: str,
    description: str | None,
    location: str | None,
    series: Series,
    duration: dt.timedelta,
) -> OccurrenceException:
    """An override as the difference to the series it belongs to."""
    start, end = override_times(component, series)
    new_title = text_of(component, "SUMMARY") or ""
    new_description = text_of(component, "DESCRIPTION") or ""
    new_location = text_of(component, "LOCATION") or ""
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
    component: Component, series: Series
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


def build_followup(
    series: Series,
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


def series_duration(series: Series) -> dt.timedelta:
    return series.end - series.start  # type: ignore[operator]
