"""Rewriting the document: exceptions tidied, series truncated, split or retimed.

Every operation ends in ``rebuild``: the changes applied, the exceptions tidied, and the
result read again through ``load_followup``, so an operation can never hand back a
document the mapper would refuse.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp, OccurrenceException
from mappings.moments import Moment, date_of, wall_clock_key
from mappings.occurrences import series_dates
from mappings.operations.slots import Slot, split_id
from mappings.patterns import effective_end_type, pattern_dates
from mappings.superoffice import (
    RecurrenceDate,
    RecurrenceEndType,
    RecurrenceInfo,
    RecurrencePattern,
)


@dataclass(frozen=True)
class SeriesValues:
    """What a this-and-following edit sets on the part it applies to."""

    shift: dt.timedelta
    duration: dt.timedelta
    title: str | None
    description: str | None
    location: str | None
    chosen: Moment
    times_given: bool


def exception_at(followup: FollowUp, key: Moment) -> OccurrenceException | None:
    return next((e for e in followup.exceptions if e.original_start == key), None)


def replace_exception(
    followup: FollowUp, key: Moment, exception: OccurrenceException | None
) -> list[OccurrenceException]:
    others = [e for e in followup.exceptions if e.original_start != key]
    if exception is not None:
        others.append(exception)
    return others


def with_cancelled(followup: FollowUp, key: Moment) -> FollowUp:
    cancelled = OccurrenceException(original_start=key, cancelled=True)
    return rebuild(followup, exceptions=replace_exception(followup, key, cancelled))


def _tidy(followup: FollowUp, exception: OccurrenceException) -> OccurrenceException | None:
    """Drop what equals the series; None when nothing is left ("un-exceptional", §3.12)."""
    if exception.cancelled:
        return OccurrenceException(original_start=exception.original_start, cancelled=True)
    key = exception.original_start
    title = (
        exception.title
        if exception.title is not None and exception.title != followup.title
        else None
    )
    description = (
        exception.description if _differs(exception.description, followup.description) else None
    )
    location = exception.location if _differs(exception.location, followup.location) else None
    if exception.all_day:
        # All-day by itself in a timed series: that alone makes it an exception.
        return OccurrenceException(
            original_start=key,
            all_day=True,
            start=exception.start,
            end=exception.end,
            title=title,
            description=description,
            location=location,
        )
    start = exception.start if exception.start is not None and exception.start != key else None
    actual = start if start is not None else key
    end = exception.end
    if end is not None and end == actual + followup.duration:
        end = None
    if start is None and end is None and title is None and description is None and location is None:
        return None
    return OccurrenceException(
        original_start=key,
        start=start,
        end=end,
        title=title,
        description=description,
        location=location,
    )


def _differs(value: str | None, series: str | None) -> bool:
    # Clients drop empty DESCRIPTION/LOCATION lines; "" and None mean the same.
    return value is not None and (value or None) != (series or None)


def rebuild(followup: FollowUp, *, validate: bool = True, **changes: Any) -> FollowUp:
    """Apply changes, tidy the exceptions and re-validate the whole document.

    Going through ``load_followup`` again is what guarantees an operation can never
    produce a document the mapper would refuse (an exception off the series, an EndDate
    before the start): such a result raises MappingError instead of being stored.
    """
    draft = followup.model_copy(update=changes)
    tidy = [t for e in draft.exceptions if (t := _tidy(draft, e)) is not None]
    tidy.sort(key=lambda e: wall_clock_key(e.original_start))
    draft = draft.model_copy(update={"exceptions": tidy})
    if not validate:
        return draft
    return load_followup(draft.to_json_dict())


def with_dates(followup: FollowUp, dates: list[dt.date]) -> FollowUp:
    """Set the complete date list; dropped when it is just what the pattern makes."""
    info = followup.recurrence
    assert info is not None
    unique = sorted(set(dates))
    new_info = info.model_copy(deep=True)
    if info.Pattern != RecurrencePattern.Custom and unique == pattern_dates(
        info, date_of(followup.start)
    ):
        new_info.Dates = None
    else:
        new_info.Dates = [RecurrenceDate(Date=d) for d in unique]
    keys = {at_time(followup, d) for d in unique}
    exceptions = [e for e in followup.exceptions if e.original_start in keys]
    return rebuild(followup, recurrence=new_info, exceptions=exceptions)


def truncate(followup: FollowUp, last_day: dt.date, *, field: str = "occurrence") -> FollowUp:
    """The series with only the occurrences the series puts on or before ``last_day``."""
    if followup.ical_recurrence is not None:
        raise MappingError(
            "this series is kept as an iCalendar rule the CRM cannot show; "
            "end it in the calendar client",
            item=followup.id,
            field=field,
        )
    info = followup.recurrence
    assert info is not None
    keep = [d for d in series_dates(followup, until=last_day).final if d <= last_day]
    exceptions = [e for e in followup.exceptions if date_of(e.original_start) <= last_day]
    new_info = info.model_copy(deep=True)
    first_pattern = info.StartDate or date_of(followup.start)
    if info.Pattern == RecurrencePattern.Custom:
        new_info.Dates = [RecurrenceDate(Date=d) for d in keep]
    elif last_day < first_pattern:
        # Only hand-added dates before the pattern's start remain: a plain date list.
        new_info = RecurrenceInfo(
            Pattern=RecurrencePattern.Custom,
            IsRecurrence=True,
            Dates=[RecurrenceDate(Date=d) for d in keep],
        )
    else:
        new_info.RecurrenceEndType = RecurrenceEndType.EndDate
        new_info.EndDate = last_day
        new_info.RecurrenceCounter = None
        if info.Dates:
            new_info.Dates = [RecurrenceDate(Date=d) for d in keep]
    truncated = rebuild(followup, recurrence=new_info, exceptions=exceptions, validate=False)
    if new_info.Dates is not None and new_info.Pattern != RecurrencePattern.Custom:
        return with_dates(truncated, keep)
    return rebuild(truncated)


def split_tail(followup: FollowUp, slot: Slot, values: SeriesValues) -> FollowUp:
    """The new series of a split: from the chosen occurrence on, same pattern."""
    info = followup.recurrence
    assert info is not None
    day = date_of(slot.key)
    dates = series_dates(followup)
    new_info = info.model_copy(deep=True)
    listed = [d for d in dates.final if d >= day] if info.Dates else None
    if info.Pattern == RecurrencePattern.Custom:
        new_info.Dates = [RecurrenceDate(Date=d) for d in dates.final if d >= day]
    else:
        new_info.StartDate = day
        remaining = sum(1 for d in dates.pattern if d >= day)
        if effective_end_type(info) == RecurrenceEndType.Counter:
            new_info.RecurrenceEndType = RecurrenceEndType.Counter
            new_info.RecurrenceCounter = remaining
        if listed is not None:
            new_info.Dates = [RecurrenceDate(Date=d) for d in listed]
        if remaining == 0:  # only hand-added dates follow the split
            new_info = RecurrenceInfo(
                Pattern=RecurrencePattern.Custom,
                IsRecurrence=True,
                Dates=[RecurrenceDate(Date=d) for d in (listed or [day])],
            )
    new_start = slot.key
    tail = followup.model_copy(
        update={
            "id": split_id(followup.id, day),
            "uid": None,
            "start": new_start,
            "end": new_start + followup.duration,
            "recurrence": new_info,
            "exceptions": [e for e in followup.exceptions if date_of(e.original_start) >= day],
        }
    )
    return retime(tail, values)


def retime(followup: FollowUp, values: SeriesValues) -> FollowUp:
    """Apply a this-and-following edit to a whole (part of a) series.

    Exception keys move with the time of day, because they name where the series puts
    each occurrence; what an exception itself set (a moved start, its own title) stays,
    except on the chosen occurrence, where the edit's explicit values win.
    """
    shift = values.shift
    start = followup.start + shift
    exceptions = []
    for exception in followup.exceptions:
        update: dict[str, object] = {"original_start": exception.original_start + shift}
        if exception.original_start == values.chosen and not exception.cancelled:
            if values.times_given:
                update |= {"start": None, "end": None}
            for name in ("title", "description", "location"):
                if getattr(values, name) is not None:
                    update[name] = None
        exceptions.append(exception.model_copy(update=update))
    changes: dict[str, Any] = {
        "start": start,
        "end": start + values.duration,
        "exceptions": exceptions,
    }
    for name in ("title", "description", "location"):
        if getattr(values, name) is not None:
            changes[name] = getattr(values, name)
    return rebuild(followup, **changes)


def edit_single(followup: FollowUp, **values: Any) -> FollowUp:
    changes = {k: v for k, v in values.items() if v is not None}
    if "start" in changes and "end" not in changes:
        changes["end"] = changes["start"] + followup.duration
    if "end" in changes and changes["end"] < changes.get("start", followup.start):
        raise MappingError("is before start", item=followup.id, field="end")
    return rebuild(followup, **changes)


def at_time(followup: FollowUp, day: dt.date) -> Moment:
    if followup.all_day:
        return day
    assert isinstance(followup.start, dt.datetime)
    return dt.datetime.combine(day, followup.start.time())
