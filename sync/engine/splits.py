""" "This and following" done the Google way: the old series ends, a new one holds the tail.

RFC 5545 lets a client split a series in place (a RANGE=THISANDFUTURE override; see
``mappings.from_ical``), but Google Calendar, and Apple Calendar in some versions, end the
old series with UNTIL and create a second resource for the rest. Google's tail has the
old UID plus ``_R<start>`` (``…_R20260323T090000``); other clients may name the old series
in RELATED-TO. Either ties the tail to the follow-up it was cut from, and then it belongs
to that follow-up's CRM series whatever ``import_new`` says: it becomes the follow-up
``<id>-<yyyymmdd>``, the same id a THISANDFUTURE split or the CRM's own "this and
following" gives (``mappings.operations.split_id``), kept in the resource the client made.

A third tie needs both halves in one pass: a new recurring resource of the same kind
whose first occurrence is on the first date the cut took away from a follow-up. That is
how Apple writes it (a fresh UID, nothing else in common).

When nothing ties a new series to the cut, the pass report says that the follow-up was
cut short in the calendar and how its tail can be imported (``cut_short_notice``).

Pure functions over documents and bytes, for ``sync.engine.plan``.
"""

from __future__ import annotations

import datetime as dt
import re

from icalendar import Calendar

from mappings.model import FollowUp
from mappings.moments import Moment
from mappings.occurrences import is_recurring, occurrences

#: Google's suffix on a split-off tail: ``_R`` and the tail's first start (UTC or floating).
_GOOGLE_TAIL = re.compile(r"^(?P<parent>.+)_R(?P<day>\d{8})(T\d{6}Z?)?$")

#: How far ahead an open-ended series is expanded to compare its dates.
_HORIZON_YEARS = 5


def parent_uids(uid: str, data: bytes) -> list[str]:
    """The UIDs a resource says it was split from: Google's ``_R`` suffix, then RELATED-TO."""
    found: list[str] = []
    match = _GOOGLE_TAIL.match(uid)
    if match is not None:
        found.append(match.group("parent"))
    found.extend(_related_to(data))
    return [parent for parent in dict.fromkeys(found) if parent != uid]


def _related_to(data: bytes) -> list[str]:
    """RELATED-TO values of the masters, except those naming a child (RELTYPE=CHILD)."""
    try:
        cal = Calendar.from_ical(data)
    except Exception:  # the resource was read by the mapper already; unreadable here = no tie
        return []
    found: list[str] = []
    for component in cal.walk():
        if component.name not in ("VEVENT", "VTODO") or "RECURRENCE-ID" in component:
            continue
        values = component.get("RELATED-TO")
        for value in values if isinstance(values, list) else [values]:
            if value is None:
                continue
            if str(getattr(value, "params", {}).get("RELTYPE", "PARENT")).upper() == "CHILD":
                continue
            found.append(str(value).strip())
    return found


def lost_dates(before: FollowUp, after: FollowUp) -> list[dt.date]:
    """The dates ``after`` lost at the end of ``before``, if it is ``before`` ended early.

    Empty unless every occurrence ``after`` has is one ``before`` had (an edit that only
    took dates away at the end): a moved or retimed series is an edit, not a cut.
    """
    if not is_recurring(before):
        return []
    horizon = _horizon(before)
    was = [_date_of(o.original_start) for o in occurrences(before, window_end=horizon)]
    now = [_date_of(o.original_start) for o in occurrences(after, window_end=horizon)]
    if not now or len(now) >= len(was) or was[: len(now)] != now:
        return []
    if after.start != before.start or after.duration != before.duration:
        return []
    return was[len(now) :]


def first_date(followup: FollowUp) -> dt.date:
    return _date_of(followup.start)


def cut_short_notice(lost: list[dt.date]) -> str:
    """What the pass report says about a series cut short with no tail tied to it."""
    return (
        f"the series was cut short in the calendar: it now ends before {lost[0].isoformat()}, "
        "and the CRM follow-up ends there too. If the calendar client moved the rest to a new "
        'event ("this and following"), nothing ties that event to this follow-up: import it '
        "with `followup-sync sync --import-new --full` (or set import_new = true for this "
        "account) to keep it in the CRM"
    )


def _horizon(followup: FollowUp) -> Moment:
    start = followup.start
    day = _date_of(start)
    end = dt.date(day.year + _HORIZON_YEARS, day.month, min(day.day, 28))
    if isinstance(start, dt.datetime):
        return dt.datetime.combine(end, dt.time())
    return end


def _date_of(value: Moment) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value
