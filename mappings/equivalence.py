"""When do two follow-up documents mean the same thing?

A document read back from a calendar is rarely byte-for-byte the one we wrote: a client
may rewrite ``Daily, every workday`` as a weekly rule on five days, add an alarm, or
reorder properties. The sync worker must not call that a change (it would ping-pong
between the two sides), so it compares meaning: the fields a user sees, and the
occurrences the series produces.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from mappings.model import FollowUp, OccurrenceException
from mappings.moments import instant
from mappings.occurrences import occurrences

#: Fields compared one by one; ``series`` stands for everything that decides the dates.
PLAIN_FIELDS = (
    "kind",
    "title",
    "description",
    "location",
    "owner",
    "organizer",
    "participants",
    "language",
    "status",
)

#: Informative only: when a task was ticked off is not an edit to sync back and forth
#: (a task completed in the CRM gets the time of our write as its COMPLETED).
NOT_COMPARED = frozenset({"completed_at"})


def series_signature(followup: FollowUp) -> tuple[Any, ...]:
    """What the series produces before per-occurrence edits: zone, length and start instants."""
    bare = followup.model_copy(update={"exceptions": []})
    starts = tuple(instant(o.original_start) for o in occurrences(bare))
    return (followup.all_day, followup.timezone, followup.duration, starts)


def exception_map(followup: FollowUp) -> dict[str, str]:
    """Exceptions keyed by their original start, as canonical JSON of what they mean, for
    per-occurrence merging (``exception_documents`` holds the whole of each).

    Canonical: each one as the difference to its series, the way ``mappings.from_ical``
    reads an override back. A CRM may spell out an end, title or place equal to what the
    series gives; the calendar's copy leaves it out, and the two mean the same.
    """
    return {
        exception.original_start.isoformat(): exception_json(_as_difference(exception, followup))
        for exception in followup.exceptions
    }


def exception_json(exception: OccurrenceException) -> str:
    """One exception as canonical JSON, without the informative fields (``NOT_COMPARED``)."""
    doc = exception.model_dump(mode="json", exclude_none=True)
    return json.dumps({k: v for k, v in doc.items() if k not in NOT_COMPARED}, sort_keys=True)


def _as_difference(exception: OccurrenceException, series: FollowUp) -> OccurrenceException:
    if exception.cancelled:
        return exception
    start = exception.start if exception.start is not None else exception.original_start
    length = dt.timedelta(days=1) if exception.all_day else series.duration
    return exception.model_copy(
        update={
            "start": None if exception.start == exception.original_start else exception.start,
            "end": None if exception.end == start + length else exception.end,
            "title": None if exception.title == series.title else exception.title,
            "description": (
                None
                if _norm(exception.description) == _norm(series.description)
                else exception.description
            ),
            "location": (
                None if _norm(exception.location) == _norm(series.location) else exception.location
            ),
        }
    )


def exception_documents(followup: FollowUp) -> dict[str, dict[str, Any]]:
    """Exceptions keyed by their original start, as JSON-ready data."""
    return {
        exception.original_start.isoformat(): exception.model_dump(mode="json", exclude_none=True)
        for exception in followup.exceptions
    }


def same_meaning(a: FollowUp, b: FollowUp) -> bool:
    for name in PLAIN_FIELDS:
        if _norm(getattr(a, name)) != _norm(getattr(b, name)):
            return False
    if exception_map(a) != exception_map(b):
        return False
    return series_signature(a) == series_signature(b)


def differences(old: FollowUp, new: FollowUp) -> list[str]:
    """What a person would see change from ``old`` to ``new`` part by part.

    Plain field names, ``"dates or recurrence"`` when the series produces other
    occurrences, and ``"occurrence <original start>"`` per moved, edited or cancelled
    occurrence. Empty when the two mean the same.
    """
    parts = [
        name for name in PLAIN_FIELDS if _norm(getattr(old, name)) != _norm(getattr(new, name))
    ]
    if series_signature(old) != series_signature(new):
        parts.append("dates or recurrence")
    before, after = exception_map(old), exception_map(new)
    parts.extend(
        f"occurrence {key}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    )
    return parts


def _norm(value: object) -> object:
    # Clients drop empty DESCRIPTION/LOCATION lines; "" and None mean the same.
    return value or None
