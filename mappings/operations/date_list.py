"""The dialog's date list: Later/Earlier, Add and Delete on one date (§1.4).

See ``mappings.operations`` for what each does and why.
"""

from __future__ import annotations

import datetime as dt

from mappings.errors import MappingError
from mappings.model import FollowUp, OccurrenceException
from mappings.moments import date_of
from mappings.occurrences import is_recurring, series_dates
from mappings.operations.rewrite import (
    at_time,
    exception_at,
    rebuild,
    replace_exception,
    with_cancelled,
    with_dates,
)
from mappings.operations.slots import (
    all_slots,
    no_date_error,
    slot_of_single,
    slot_on_date,
    slots_through,
)
from mappings.patterns import is_bounded
from mappings.superoffice import (
    RecurrenceDate,
    RecurrenceInfo,
    RecurrencePattern,
)


def move_date(followup: FollowUp, date: dt.date, days: int = 1) -> FollowUp:
    """The dialog's Later (``days=+1``) / Earlier (``days=-1``) on the date ``date``."""
    if days not in (1, -1):
        raise MappingError(
            f"must be +1 (later) or -1 (earlier), got {days}", item=followup.id, field="days"
        )
    delta = dt.timedelta(days=days)
    if not is_recurring(followup):
        if date_of(followup.start) != date:
            raise no_date_error(followup, date, "date", [slot_of_single(followup)])
        return rebuild(followup, start=followup.start + delta, end=followup.end + delta)
    slots = slots_through(followup, through=date)
    slot = slot_on_date(followup, slots, date, "date")
    target = date_of(slot.start) + delta
    clash = [s for s in slots if s is not slot and not s.cancelled and date_of(s.start) == target]
    if clash:
        raise MappingError(
            f"cannot move {date} to {target}: {target} already has an occurrence "
            "(the list holds each date once; delete one of them instead)",
            item=followup.id,
            field="date",
        )
    current = exception_at(followup, slot.key) or OccurrenceException(original_start=slot.key)
    moved = current.model_copy(update={"start": slot.start + delta, "end": slot.end + delta})
    return rebuild(followup, exceptions=replace_exception(followup, slot.key, moved))


def add_date(followup: FollowUp, date: dt.date) -> FollowUp:
    """The dialog's Add: one more occurrence on ``date`` at the series' time of day."""
    if not is_recurring(followup):
        first = date_of(followup.start)
        if date == first:
            raise MappingError(
                f"{date} is already the follow-up's date", item=followup.id, field="date"
            )
        info = RecurrenceInfo(
            Pattern=RecurrencePattern.Custom,
            IsRecurrence=True,
            Dates=[RecurrenceDate(Date=d) for d in sorted({first, date})],
        )
        return rebuild(followup, recurrence=info)
    slots = slots_through(followup, through=date)
    if any(not s.cancelled and date_of(s.start) == date for s in slots):
        raise MappingError(f"{date} already has an occurrence", item=followup.id, field="date")
    cancelled = [s for s in slots if s.cancelled and date_of(s.key) == date]
    if cancelled:  # deleted earlier as a cancelled exception: bring it back
        return rebuild(followup, exceptions=replace_exception(followup, cancelled[0].key, None))
    key = at_time(followup, date)
    if followup.ical_recurrence is not None:
        kept = followup.ical_recurrence
        value = (
            key.strftime("%Y%m%d")
            if not isinstance(key, dt.datetime)
            else key.strftime("%Y%m%dT%H%M%S")
        )
        if any(s.key == key for s in slots):
            raise MappingError(f"{date} already has an occurrence", item=followup.id, field="date")
        return rebuild(
            followup, ical_recurrence=kept.model_copy(update={"rdate": [*kept.rdate, value]})
        )
    series = followup.recurrence
    assert series is not None
    if series.Pattern != RecurrencePattern.Custom and not is_bounded(series):
        raise MappingError(
            "the series has no end, so it has no complete date list to add a date to; give "
            "it an end (EndDate or RecurrenceCounter) first, or make the extra date a "
            "follow-up of its own",
            item=followup.id,
            field="date",
        )
    dates = series_dates(followup).final
    if date in dates:  # listed, but moved elsewhere by an exception
        raise MappingError(
            f"{date} is in the list but its occurrence was moved; move it back instead",
            item=followup.id,
            field="date",
        )
    return with_dates(followup, [*dates, date])


def delete_date(followup: FollowUp, date: dt.date) -> FollowUp:
    """The dialog's Delete on the date ``date`` (EXDATE)."""
    if not is_recurring(followup):
        raise MappingError(
            "a single follow-up has no date list; delete the follow-up instead",
            item=followup.id,
            field="date",
        )
    slots = slots_through(followup, through=date)
    slot = slot_on_date(followup, slots, date, "date")
    if not [s for s in all_slots(followup) if not s.cancelled and s.key != slot.key]:
        raise MappingError(
            f"{date} is the last date left; delete the follow-up instead",
            item=followup.id,
            field="date",
        )
    info = followup.recurrence
    if info is not None and (info.Pattern == RecurrencePattern.Custom or is_bounded(info)):
        key_day = date_of(slot.key)
        remaining = [d for d in series_dates(followup).final if d != key_day]
        trimmed = rebuild(
            followup, exceptions=replace_exception(followup, slot.key, None), validate=False
        )
        return with_dates(trimmed, remaining)
    return with_cancelled(followup, slot.key)
