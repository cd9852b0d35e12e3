"""From a follow-up to its occurrences: the model's own expansion.

This is the reference the iCalendar output is tested against (the property tests
expand ``map``'s output with recurring-ical-events and compare). It works in dates
first (``series_dates``), because SuperOffice edits a *date list*; times are applied
last, in the follow-up's zone, so local wall-clock time is kept across DST changes:
a 09:00 meeting in Europe/Oslo is at 08:00 UTC in winter and 07:00 UTC in summer.

A time that does not exist on a given day (inside a spring-forward gap) is read with
the offset from before the gap, as RFC 5545 §3.3.5 prescribes, so 02:30 becomes 03:30.

``Dates`` on a non-Custom pattern is the complete, hand-edited list: pattern dates
missing from it were deleted (EXDATE), extra ones were added (RDATE). Only bounded
series can carry such a list; an open-ended series records deletions as cancelled
``exceptions`` instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from mappings.errors import MappingError
from mappings.model import FollowUp, OccurrenceException
from mappings.moments import Moment, aware, date_of, instant_key, show
from mappings.patterns import (
    MAX_OCCURRENCES,
    is_bounded,
    pattern_dates,
    validate_pattern,
)
from mappings.rrule import ical_recurrence_starts, validate_ical_recurrence
from mappings.superoffice import RecurrencePattern


@dataclass(frozen=True)
class SeriesDates:
    """A series in date terms: what the pattern makes and what the hand edits changed."""

    pattern: list[dt.date]
    final: list[dt.date]
    added: list[dt.date]
    deleted: list[dt.date]
    bounded: bool
    has_rule: bool


@dataclass(frozen=True)
class Occurrence:
    original_start: Moment
    start: Moment
    end: Moment
    title: str
    description: str | None
    location: str | None
    cancelled: bool = False
    moved: bool = False


def is_recurring(followup: FollowUp) -> bool:
    if followup.ical_recurrence is not None:
        return True
    return followup.recurrence is not None and followup.recurrence.repeats


def series_dates(followup: FollowUp, *, until: dt.date | None = None) -> SeriesDates:
    """The pattern's dates and the edited list, for a follow-up with a CRM pattern.

    ``until`` bounds open-ended series (and narrows bounded ones). Custom patterns
    have no rule: everything is an "added" date.
    """
    info = followup.recurrence
    start_date = date_of(followup.start)
    if info is None or not info.repeats:
        return SeriesDates([start_date], [start_date], [], [], True, has_rule=False)
    bounded = is_bounded(info)
    if info.Pattern == RecurrencePattern.Custom:
        dates = pattern_dates(info, start_date, until=until)
        return SeriesDates([], dates, dates, [], True, has_rule=False)
    pattern = pattern_dates(info, start_date, until=until)
    if info.Dates:
        listed = sorted({d.Date for d in info.Dates if d.Date is not None})
        if until is not None:
            listed = [d for d in listed if d <= until]
        pattern_set = set(pattern)
        listed_set = set(listed)
        added = [d for d in listed if d not in pattern_set]
        deleted = [d for d in pattern if d not in listed_set]
        return SeriesDates(pattern, listed, added, deleted, bounded, has_rule=True)
    return SeriesDates(pattern, list(pattern), [], [], bounded, has_rule=True)


def validate_followup(followup: FollowUp) -> None:
    """Checks that need the pattern: a valid rule, and exceptions that hit an occurrence."""
    item = followup.id
    info = followup.recurrence
    if info is not None:
        validate_pattern(info, item, date_of(followup.start))
        if (
            info.repeats
            and info.Pattern != RecurrencePattern.Custom
            and info.Dates
            and not is_bounded(info)
        ):
            raise MappingError(
                "an open-ended series cannot carry a complete date list; record deleted dates "
                "as cancelled exceptions",
                item=item,
                field="recurrence.Dates",
            )
    if followup.ical_recurrence is not None:
        validate_ical_recurrence(followup)
    if not followup.exceptions:
        return
    if not is_recurring(followup):
        raise MappingError(
            "only a recurring follow-up can have exceptions", item=item, field="exceptions"
        )
    for index, exception in enumerate(followup.exceptions):
        if followup.all_day != (type(exception.original_start) is dt.date):
            raise MappingError(
                "must be a date for all-day follow-ups and a date-time for the others",
                item=item,
                field=f"exceptions.{index}.original_start",
            )
    keys = _occurrence_keys(
        followup, until=max(date_of(e.original_start) for e in followup.exceptions)
    )
    for index, exception in enumerate(followup.exceptions):
        if exception.original_start not in keys:
            raise MappingError(
                f"{show(exception.original_start)} is not an occurrence of the series",
                item=item,
                field=f"exceptions.{index}.original_start",
            )


def occurrences(
    followup: FollowUp,
    *,
    window_start: dt.datetime | dt.date | None = None,
    window_end: dt.datetime | dt.date | None = None,
    include_cancelled: bool = True,
) -> list[Occurrence]:
    """Every occurrence (starting inside the window if one is given), in start order.

    Open-ended series without ``window_end`` stop after the default horizon of
    ``mappings.patterns``; no expansion ever exceeds ``MAX_OCCURRENCES``.
    """
    zone = followup.zone
    until = date_of(window_end) + dt.timedelta(days=1) if window_end is not None else None
    originals = _original_starts(followup, until=until)
    edits = {e.original_start: e for e in followup.exceptions}
    duration = followup.duration
    result: list[Occurrence] = []
    for original in originals:
        exception = edits.get(original)
        occurrence = _apply(followup, original, exception, duration)
        if occurrence.cancelled and not include_cancelled:
            continue
        result.append(_localise(occurrence, zone, followup.all_day))
    result.sort(key=lambda o: instant_key(o.start))
    if window_start is not None or window_end is not None:
        lo = instant_key(aware(window_start, zone)) if window_start is not None else None
        hi = instant_key(aware(window_end, zone)) if window_end is not None else None
        result = [
            o
            for o in result
            if (lo is None or instant_key(o.start) >= lo)
            and (hi is None or instant_key(o.start) < hi)
        ]
    return result


def _original_starts(followup: FollowUp, *, until: dt.date | None) -> list[Moment]:
    """The unedited occurrence keys (local, naive), before exceptions apply."""
    if followup.ical_recurrence is not None:
        return ical_recurrence_starts(followup, until=until)
    dates = series_dates(followup, until=until).final
    if followup.all_day:
        return list(dates)
    time_of_day = followup.start.time()  # type: ignore[attr-defined]  # not all-day: a datetime
    starts: list[Moment] = [dt.datetime.combine(d, time_of_day) for d in dates]
    return starts[:MAX_OCCURRENCES]


def _occurrence_keys(followup: FollowUp, *, until: dt.date) -> set[Moment]:
    return set(_original_starts(followup, until=until))


def _apply(
    followup: FollowUp,
    original: Moment,
    exception: OccurrenceException | None,
    duration: dt.timedelta,
) -> Occurrence:
    if exception is None:
        return Occurrence(
            original,
            original,
            original + duration,
            followup.title,
            followup.description,
            followup.location,
        )
    if exception.cancelled:
        return Occurrence(
            original,
            original,
            original + duration,
            followup.title,
            followup.description,
            followup.location,
            cancelled=True,
        )
    start = exception.start if exception.start is not None else original
    end = exception.end if exception.end is not None else start + duration
    if exception.all_day:
        # all_day: start and end are dates (the exception's validator fills them in).
        start, end = date_of(start), date_of(end)
    return Occurrence(
        original,
        start,
        end,
        exception.title if exception.title is not None else followup.title,
        exception.description if exception.description is not None else followup.description,
        exception.location if exception.location is not None else followup.location,
        moved=(start != original or end != original + duration),
    )


def _localise(occurrence: Occurrence, zone: ZoneInfo, all_day: bool) -> Occurrence:
    if all_day:
        return occurrence
    return Occurrence(
        aware(occurrence.original_start, zone),
        aware(occurrence.start, zone),
        aware(occurrence.end, zone),
        occurrence.title,
        occurrence.description,
        occurrence.location,
        occurrence.cancelled,
        occurrence.moved,
    )
