"""RANGE=THISANDFUTURE: one override that changes every later occurrence.

Split the series at each such override when every affected occurrence stays on its date
(the tails get the ids ``mappings.operations.split_id`` gives); otherwise, for a bounded
series, write each affected occurrence as an exception of its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import cast

from icalendar import Component

from mappings.from_ical.build import Edits, build_followup, exception_for, override_times
from mappings.from_ical.components import Series, text_of
from mappings.from_ical.expand import BaseRule
from mappings.model import FollowUp, OccurrenceException
from mappings.moments import Moment, date_of, naive, show, wall_clock_key
from mappings.occurrences import occurrences
from mappings.patterns import effective_end_type, pattern_dates
from mappings.superoffice import RecurrenceDate, RecurrenceEndType, RecurrencePattern


def apply_futures(
    followup: FollowUp,
    series: Series,
    rule: BaseRule,
    edits: Edits,
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


def _segments(series: Series, edits: Edits) -> list[tuple[Moment | None, Component | None]]:
    return [(None, None), *[(k, c) for k, c in edits.futures]]


def _split(
    followup: FollowUp, series: Series, edits: Edits, duration: dt.timedelta
) -> list[FollowUp] | None:
    info = followup.recurrence
    if info is None or not info.repeats:
        return None
    segments = _segments(series, edits)
    shifts: list[dt.timedelta] = [dt.timedelta(0)]
    for key, component in segments[1:]:
        assert key is not None and component is not None
        start, _end = override_times(component, series)
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
            start, end = override_times(component, series)
            title = text_of(component, "SUMMARY") or ""
            description = text_of(component, "DESCRIPTION")
            location = text_of(component, "LOCATION")
            seg_duration = end - start
        exceptions = [
            OccurrenceException(original_start=k + shift, cancelled=True)
            for k in edits.cancelled
            if inside(date_of(k))
        ]
        for k, override in edits.overrides:
            if inside(date_of(k)):
                exceptions.append(
                    exception_for(
                        k + shift, override, title, description, location, series, seg_duration
                    )
                )
        if component is None:
            made = build_followup(series, recurrence=part, ical=None, exceptions=exceptions)
        else:
            assert key is not None
            new_id = f"{followup.id}-{date_of(key).strftime('%Y%m%d')}"
            made = build_followup(
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
    series: Series,
    edits: Edits,
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
        start, end = override_times(component, series)
        shift = start - fkey  # type: ignore[operator]
        new_start = key + shift
        new_end = new_start + (end - start)  # type: ignore[operator]
        title = text_of(component, "SUMMARY") or ""
        description = text_of(component, "DESCRIPTION") or ""
        location = text_of(component, "LOCATION") or ""
        existing[key] = OccurrenceException(
            original_start=key,
            start=new_start if new_start != key else None,
            end=new_end if new_end != new_start + duration else None,
            title=title if title != series.title else None,
            description=description if description != (series.description or "") else None,
            location=location if location != (series.location or "") else None,
        )
    exceptions = sorted(existing.values(), key=lambda e: wall_clock_key(e.original_start))
    return build_followup(
        series, recurrence=followup.recurrence, ical=followup.ical_recurrence, exceptions=exceptions
    )
