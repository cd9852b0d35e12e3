"""One occurrence, or this and all following (§4: UpdateMode OnlyThis/ThisAndForward).

Change, stop repeating, delete; see ``mappings.operations`` for what each does and why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mappings.errors import MappingError
from mappings.model import FollowUp, OccurrenceException
from mappings.moments import Moment, date_of, show_to_minute
from mappings.occurrences import is_recurring
from mappings.operations.rewrite import (
    SeriesValues,
    edit_single,
    exception_at,
    rebuild,
    replace_exception,
    retime,
    split_tail,
    truncate,
    with_cancelled,
)
from mappings.operations.slots import (
    all_slots,
    as_local,
    check_mode,
    find_occurrence,
    is_first_live,
)


def change_occurrence(
    followup: FollowUp,
    occurrence_start: Moment,
    *,
    mode: str = "only-this",
    start: Moment | None = None,
    end: Moment | None = None,
    title: str | None = None,
    description: str | None = None,
    location: str | None = None,
) -> FollowUp | tuple[FollowUp, FollowUp]:
    """Edit one occurrence, or it and every later one (a split: ``(old, new)``)."""
    check_mode(followup, mode)
    start = as_local(followup, start, "start")
    end = as_local(followup, end, "end")
    if start is not None and end is not None and end < start:
        raise MappingError("is before start", item=followup.id, field="end")
    if not is_recurring(followup):
        return edit_single(
            followup, start=start, end=end, title=title, description=description, location=location
        )
    slot = find_occurrence(followup, occurrence_start, field="occurrence")
    if slot.cancelled:
        raise MappingError(
            f"the occurrence at {show_to_minute(slot.key)} is deleted; add its date back first",
            item=followup.id,
            field="occurrence",
        )
    if mode == "only-this":
        current = exception_at(followup, slot.key) or OccurrenceException(original_start=slot.key)
        new_start = start if start is not None else slot.start
        # A new time of day makes an all-day occurrence timed again, like its series.
        all_day = current.all_day if not isinstance(new_start, dt.datetime) else None
        # Without a new end the occurrence keeps its length (the series' once it is timed).
        length: dt.timedelta = slot.end - slot.start  # type: ignore[operator]
        if current.all_day and not all_day:
            length = followup.duration
        new_end = end if end is not None else new_start + length
        if new_end < new_start:
            raise MappingError("is before the occurrence's start", item=followup.id, field="end")
        edited = current.model_copy(
            update={
                "start": new_start,
                "end": new_end,
                "all_day": all_day,
                **({"title": title} if title is not None else {}),
                **({"description": description} if description is not None else {}),
                **({"location": location} if location is not None else {}),
            }
        )
        return rebuild(followup, exceptions=replace_exception(followup, slot.key, edited))

    # this and following
    if followup.ical_recurrence is not None:
        raise MappingError(
            "this series is kept as an iCalendar rule the CRM cannot show; "
            "split it in the calendar client",
            item=followup.id,
            field="mode",
        )
    key_day = date_of(slot.key)
    shift = dt.timedelta(0)
    if start is not None:
        if date_of(start) != key_day:
            raise MappingError(
                f"this-and-following changes the time of day, not the date ({key_day}); "
                "move single dates with mode only-this, or change the pattern",
                item=followup.id,
                field="start",
            )
        shift = start - slot.key
    duration = followup.duration
    if end is not None:
        duration = end - (slot.key + shift)
        if duration < dt.timedelta(0):
            raise MappingError("is before the occurrence's start", item=followup.id, field="end")
    values = SeriesValues(
        shift=shift,
        duration=duration,
        title=title,
        description=description,
        location=location,
        chosen=slot.key,
        times_given=start is not None or end is not None,
    )
    if is_first_live(followup, slot):
        return retime(followup, values)
    old = truncate(followup, key_day - dt.timedelta(days=1))
    new = split_tail(followup, slot, values)
    return old, new


def stop_repeating(followup: FollowUp, from_occurrence: Moment) -> FollowUp:
    """Keep the occurrences up to and including the chosen one; on the first, no series."""
    if not is_recurring(followup):
        raise MappingError("the follow-up does not repeat", item=followup.id, field="from")
    slot = find_occurrence(followup, from_occurrence, field="from")
    if slot.cancelled:
        raise MappingError(
            f"the occurrence at {show_to_minute(slot.key)} is deleted; "
            "stop from one that takes place",
            item=followup.id,
            field="from",
        )
    if is_first_live(followup, slot):
        exception = exception_at(followup, slot.key)
        changes: dict[str, Any] = {"start": slot.start, "end": slot.end}
        if exception is not None:
            for name in ("title", "description", "location"):
                if getattr(exception, name) is not None:
                    changes[name] = getattr(exception, name)
        return rebuild(followup, recurrence=None, ical_recurrence=None, exceptions=[], **changes)
    return truncate(followup, date_of(slot.key), field="from")


def delete_occurrence(
    followup: FollowUp, occurrence_start: Moment, mode: str = "only-this"
) -> FollowUp | None:
    """Delete one occurrence, or it and every later one; ``None`` means delete the follow-up."""
    check_mode(followup, mode)
    if not is_recurring(followup):
        return None
    slot = find_occurrence(followup, occurrence_start, field="occurrence")
    if slot.cancelled:
        raise MappingError(
            f"the occurrence at {show_to_minute(slot.key)} is already deleted",
            item=followup.id,
            field="occurrence",
        )
    if mode == "only-this":
        if not [s for s in all_slots(followup) if not s.cancelled and s.key != slot.key]:
            return None
        return with_cancelled(followup, slot.key)
    if is_first_live(followup, slot):
        return None
    return truncate(followup, date_of(slot.key) - dt.timedelta(days=1), field="occurrence")
