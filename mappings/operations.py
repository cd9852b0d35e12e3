"""The CRM's recurrence dialog as operations on a follow-up document.

Pure functions: a ``FollowUp`` in, a new ``FollowUp`` out (two for a split, ``None``
when nothing is left), no I/O and no clock. Every bad input raises ``MappingError``
naming the follow-up and the argument at fault, so the CLI and the HTTP API can report
it as "field X: why" without knowing the rules themselves.

Why these semantics (``shared/reference/superoffice-recurrence.md`` §1.4, §3.11–12, §4):

**The date list** (§1.4: the dialog lists every date; Later/Earlier, Add, Delete).

* ``move_date(f, day, days=+1|-1)`` — the occurrence shown on ``day`` moves one day
  later or earlier at the same time of day. It becomes an override exception (RECURRENCE-ID
  = where the series put it), because that is what the CRM stores: a row whose start
  differs from its ``original_start_date``. Moving it back to where the series had it
  removes the exception. The list holds each date once, so moving onto a date that
  already has an occurrence is refused. A single follow-up simply moves.
* ``add_date(f, day)`` — an extra occurrence at the series' time of day (RDATE). A bounded
  CRM pattern gets it in ``Dates``, the complete list (built from the pattern the first
  time); a Custom pattern likewise; a rule kept as iCalendar gets an RDATE. An open-ended
  CRM series has no complete list to add to (``Dates`` there would say "and nothing
  else"), so it is refused with the way out. A date that was deleted by a cancelled
  exception is simply restored. A single follow-up becomes a Custom series of two dates,
  which is what the CRM's Custom frequency is.
* ``delete_date(f, day)`` — a bounded CRM pattern loses the date from ``Dates`` (EXDATE);
  otherwise the occurrence becomes a cancelled exception. The last date cannot be
  deleted: that is deleting the follow-up.

  When ``Dates`` ends up equal to what the pattern makes, it is dropped again, so
  deleting and re-adding a date gives back the document one started with.

**One occurrence, or this and all following** (§4: UpdateMode OnlyThis/ThisAndForward).
Occurrences are named by their start: the original start (the RECURRENCE-ID) or, for a
moved one, where it is now. Dates without a time work too where unambiguous.

* ``change_occurrence(..., mode="only-this")`` — an override exception with the new
  values. Values equal to the series' are not kept, and an edit that puts the
  occurrence back exactly as the series had it removes the exception (§3.12:
  "un-exceptional").
* ``change_occurrence(..., mode="this-and-following")`` — the series splits (§3.11: the
  old rule "is stopped at the point where the break occurs"): the old follow-up ends the
  day before the chosen occurrence (``EndDate``; a Counter series is turned into an
  EndDate one, as UNTIL is the only end every client writes back), and a new follow-up
  ``<id>-<yyyymmdd>`` starts at the chosen occurrence with the new values, the same
  pattern, the remaining count and the exceptions that fall from the split on. This id is
  the one ``mappings.from_ical`` gives the tail of a RANGE=THISANDFUTURE split, so the
  same edit made in a calendar client arrives as the same follow-up. On the first
  occurrence there is nothing before to keep: the whole series changes, no split.
  The new values may change the time of day and the length, not the date: shifting every
  later date would move the pattern itself (§3.10 discourages date changes; edit the
  pattern instead). Occurrences edited one by one keep their own values.
* ``stop_repeating(f, from_occurrence)`` — occurrences after the chosen one go (§4 "Stop
  repeating"); on the first occurrence the follow-up becomes a single one at that
  occurrence's time, recurrence removed.
* ``delete_occurrence(f, occurrence, mode)`` — only-this cancels the occurrence;
  this-and-following stops the series before it (the chosen one goes too). When nothing
  is left — the first occurrence with this-and-following, the last live one with
  only-this, or a single follow-up — the result is ``None``: delete the follow-up.

A rule kept verbatim as iCalendar (``ical_recurrence``) supports the per-occurrence
operations and ``add_date``; truncating or splitting it would mean rewriting a rule the
CRM cannot show, so those are refused with a pointer to the calendar client.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, get_args

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp, OccurrenceException
from mappings.moments import Moment, date_of, naive, show_to_minute, wall_clock_key
from mappings.occurrences import is_recurring, occurrences, series_dates
from mappings.patterns import effective_end_type, is_bounded, pattern_dates
from mappings.superoffice import (
    RecurrenceDate,
    RecurrenceEndType,
    RecurrenceInfo,
    RecurrencePattern,
)

Mode = Literal["only-this", "this-and-following"]
MODES: tuple[str, ...] = get_args(Mode)

__all__ = [
    "MODES",
    "Mode",
    "Slot",
    "add_date",
    "change_occurrence",
    "delete_date",
    "delete_occurrence",
    "find_occurrence",
    "move_date",
    "split_id",
    "stop_repeating",
]


@dataclass(frozen=True)
class Slot:
    """One occurrence in the document's own terms: naive local times (dates if all-day)."""

    key: Moment  # where the series puts it: the exception key / RECURRENCE-ID
    start: Moment  # where it is now
    end: Moment
    cancelled: bool


def split_id(followup_id: str, day: dt.date) -> str:
    """The id of the tail of a series split at ``day`` (the same as ``mappings.from_ical``)."""
    return f"{followup_id}-{day.strftime('%Y%m%d')}"


# --- the date list -----------------------------------------------------------------------


def move_date(followup: FollowUp, date: dt.date, days: int = 1) -> FollowUp:
    """The dialog's Later (``days=+1``) / Earlier (``days=-1``) on the date ``date``."""
    if days not in (1, -1):
        raise MappingError(
            f"must be +1 (later) or -1 (earlier), got {days}", item=followup.id, field="days"
        )
    delta = dt.timedelta(days=days)
    if not is_recurring(followup):
        if date_of(followup.start) != date:
            raise _no_date(followup, date, "date", [_slot_of_single(followup)])
        return _rebuild(followup, start=followup.start + delta, end=followup.end + delta)
    slots = _slots(followup, through=date)
    slot = _on_date(followup, slots, date, "date")
    target = date_of(slot.start) + delta
    clash = [s for s in slots if s is not slot and not s.cancelled and date_of(s.start) == target]
    if clash:
        raise MappingError(
            f"cannot move {date} to {target}: {target} already has an occurrence "
            "(the list holds each date once; delete one of them instead)",
            item=followup.id,
            field="date",
        )
    current = _exception(followup, slot.key) or OccurrenceException(original_start=slot.key)
    moved = current.model_copy(update={"start": slot.start + delta, "end": slot.end + delta})
    return _rebuild(followup, exceptions=_replace_exception(followup, slot.key, moved))


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
        return _rebuild(followup, recurrence=info)
    slots = _slots(followup, through=date)
    if any(not s.cancelled and date_of(s.start) == date for s in slots):
        raise MappingError(f"{date} already has an occurrence", item=followup.id, field="date")
    cancelled = [s for s in slots if s.cancelled and date_of(s.key) == date]
    if cancelled:  # deleted earlier as a cancelled exception: bring it back
        return _rebuild(followup, exceptions=_replace_exception(followup, cancelled[0].key, None))
    key = _at_time(followup, date)
    if followup.ical_recurrence is not None:
        kept = followup.ical_recurrence
        value = (
            key.strftime("%Y%m%d")
            if not isinstance(key, dt.datetime)
            else key.strftime("%Y%m%dT%H%M%S")
        )
        if any(s.key == key for s in slots):
            raise MappingError(f"{date} already has an occurrence", item=followup.id, field="date")
        return _rebuild(
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
    return _with_dates(followup, [*dates, date])


def delete_date(followup: FollowUp, date: dt.date) -> FollowUp:
    """The dialog's Delete on the date ``date`` (EXDATE)."""
    if not is_recurring(followup):
        raise MappingError(
            "a single follow-up has no date list; delete the follow-up instead",
            item=followup.id,
            field="date",
        )
    slots = _slots(followup, through=date)
    slot = _on_date(followup, slots, date, "date")
    if not [s for s in _all_slots(followup) if not s.cancelled and s.key != slot.key]:
        raise MappingError(
            f"{date} is the last date left; delete the follow-up instead",
            item=followup.id,
            field="date",
        )
    info = followup.recurrence
    if info is not None and (info.Pattern == RecurrencePattern.Custom or is_bounded(info)):
        key_day = date_of(slot.key)
        remaining = [d for d in series_dates(followup).final if d != key_day]
        trimmed = _rebuild(
            followup, exceptions=_replace_exception(followup, slot.key, None), validate=False
        )
        return _with_dates(trimmed, remaining)
    return _cancel(followup, slot.key)


# --- one occurrence or this and following -------------------------------------------------


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
    _check_mode(followup, mode)
    start = _as_local(followup, start, "start")
    end = _as_local(followup, end, "end")
    if start is not None and end is not None and end < start:
        raise MappingError("is before start", item=followup.id, field="end")
    if not is_recurring(followup):
        return _edit_single(
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
        current = _exception(followup, slot.key) or OccurrenceException(original_start=slot.key)
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
        return _rebuild(followup, exceptions=_replace_exception(followup, slot.key, edited))

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
    values = _SeriesValues(
        shift=shift,
        duration=duration,
        title=title,
        description=description,
        location=location,
        chosen=slot.key,
        times_given=start is not None or end is not None,
    )
    if _is_first_live(followup, slot):
        return _retime(followup, values)
    old = _truncate(followup, key_day - dt.timedelta(days=1))
    new = _tail(followup, slot, values)
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
    if _is_first_live(followup, slot):
        exception = _exception(followup, slot.key)
        changes: dict[str, Any] = {"start": slot.start, "end": slot.end}
        if exception is not None:
            for name in ("title", "description", "location"):
                if getattr(exception, name) is not None:
                    changes[name] = getattr(exception, name)
        return _rebuild(followup, recurrence=None, ical_recurrence=None, exceptions=[], **changes)
    return _truncate(followup, date_of(slot.key), field="from")


def delete_occurrence(
    followup: FollowUp, occurrence_start: Moment, mode: str = "only-this"
) -> FollowUp | None:
    """Delete one occurrence, or it and every later one; ``None`` means delete the follow-up."""
    _check_mode(followup, mode)
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
        if not [s for s in _all_slots(followup) if not s.cancelled and s.key != slot.key]:
            return None
        return _cancel(followup, slot.key)
    if _is_first_live(followup, slot):
        return None
    return _truncate(followup, date_of(slot.key) - dt.timedelta(days=1), field="occurrence")


# --- finding occurrences -------------------------------------------------------------------


def find_occurrence(followup: FollowUp, when: Moment, *, field: str = "occurrence") -> Slot:
    """The occurrence ``when`` names: its original start, else where it is now.

    A date (or any moment of an all-day series) names the occurrence taking place that
    day, else the one the series put there. Aware date-times are read in the follow-up's
    zone.
    """
    local = _as_local(followup, when, field, allow_date=True)
    assert local is not None
    slots = _slots(followup, through=date_of(local))
    if isinstance(local, dt.datetime) and not followup.all_day:
        for slot in slots:
            if slot.key == local:
                return slot
        for slot in slots:
            if not slot.cancelled and slot.start == local:
                return slot
        raise _no_date(followup, local, field, slots)
    day = date_of(local)
    live = [s for s in slots if not s.cancelled and date_of(s.start) == day]
    if live:
        return _prefer_own_date(live, day)
    dead = [s for s in slots if date_of(s.key) == day]
    if dead:
        return dead[0]
    raise _no_date(followup, day, field, slots)


# --- internals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _SeriesValues:
    """What a this-and-following edit sets on the part it applies to."""

    shift: dt.timedelta
    duration: dt.timedelta
    title: str | None
    description: str | None
    location: str | None
    chosen: Moment
    times_given: bool


def _check_mode(followup: FollowUp, mode: str) -> None:
    if mode not in MODES:
        raise MappingError(
            f"must be one of {', '.join(MODES)}, got {mode!r}", item=followup.id, field="mode"
        )


def _slots(followup: FollowUp, *, through: dt.date) -> list[Slot]:
    """Occurrences far enough to hold ``through`` and every exception; all of them if bounded."""
    if _bounded(followup):
        return _all_slots(followup)
    horizon = through
    for exception in followup.exceptions:
        horizon = max(horizon, date_of(exception.original_start))
        if exception.start is not None:
            horizon = max(horizon, date_of(exception.start))
    window_end = dt.datetime.combine(horizon + dt.timedelta(days=2), dt.time())
    window: Moment = window_end.date() if followup.all_day else window_end
    return [
        _slot(o.original_start, o.start, o.end, o.cancelled)
        for o in occurrences(followup, window_end=window)
    ]


def _all_slots(followup: FollowUp) -> list[Slot]:
    """Every occurrence (open-ended series up to the mapper's default horizon)."""
    return [_slot(o.original_start, o.start, o.end, o.cancelled) for o in occurrences(followup)]


def _slot(key: Moment, start: Moment, end: Moment, cancelled: bool) -> Slot:
    return Slot(naive(key), naive(start), naive(end), cancelled)


def _slot_of_single(followup: FollowUp) -> Slot:
    return Slot(followup.start, followup.start, followup.end, False)


def _bounded(followup: FollowUp) -> bool:
    if followup.ical_recurrence is not None:
        return False
    info = followup.recurrence
    return info is None or not info.repeats or is_bounded(info)


def _on_date(followup: FollowUp, slots: list[Slot], day: dt.date, field: str) -> Slot:
    live = [s for s in slots if not s.cancelled and date_of(s.start) == day]
    if not live:
        raise _no_date(followup, day, field, slots)
    return _prefer_own_date(live, day)


def _prefer_own_date(slots: list[Slot], day: dt.date) -> Slot:
    """Of several occurrences on one day, the one the series put there (not one moved in)."""
    for slot in slots:
        if date_of(slot.key) == day:
            return slot
    return slots[0]


def _no_date(followup: FollowUp, when: Moment, field: str, slots: list[Slot]) -> MappingError:
    live = [s for s in slots if not s.cancelled]
    near = sorted(live, key=lambda s: abs((date_of(s.start) - date_of(when)).days))[:3]
    hint = ", ".join(
        show_to_minute(s.start) for s in sorted(near, key=lambda s: wall_clock_key(s.start))
    )
    return MappingError(
        f"no occurrence at {show_to_minute(when)}" + (f" (nearest: {hint})" if hint else ""),
        item=followup.id,
        field=field,
    )


def _is_first_live(followup: FollowUp, slot: Slot) -> bool:
    slots = _slots(followup, through=date_of(slot.key))
    earlier = [
        s
        for s in slots
        if not s.cancelled
        and s.key != slot.key
        and wall_clock_key(s.key) < wall_clock_key(slot.key)
    ]
    return not earlier


def _exception(followup: FollowUp, key: Moment) -> OccurrenceException | None:
    return next((e for e in followup.exceptions if e.original_start == key), None)


def _replace_exception(
    followup: FollowUp, key: Moment, exception: OccurrenceException | None
) -> list[OccurrenceException]:
    others = [e for e in followup.exceptions if e.original_start != key]
    if exception is not None:
        others.append(exception)
    return others


def _cancel(followup: FollowUp, key: Moment) -> FollowUp:
    cancelled = OccurrenceException(original_start=key, cancelled=True)
    return _rebuild(followup, exceptions=_replace_exception(followup, key, cancelled))


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


def _rebuild(followup: FollowUp, *, validate: bool = True, **changes: Any) -> FollowUp:
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


def _with_dates(followup: FollowUp, dates: list[dt.date]) -> FollowUp:
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
    keys = {_at_time(followup, d) for d in unique}
    exceptions = [e for e in followup.exceptions if e.original_start in keys]
    return _rebuild(followup, recurrence=new_info, exceptions=exceptions)


def _truncate(followup: FollowUp, last_day: dt.date, *, field: str = "occurrence") -> FollowUp:
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
    truncated = _rebuild(followup, recurrence=new_info, exceptions=exceptions, validate=False)
    if new_info.Dates is not None and new_info.Pattern != RecurrencePattern.Custom:
        return _with_dates(truncated, keep)
    return _rebuild(truncated)


def _tail(followup: FollowUp, slot: Slot, values: _SeriesValues) -> FollowUp:
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
    return _retime(tail, values)


def _retime(followup: FollowUp, values: _SeriesValues) -> FollowUp:
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
    return _rebuild(followup, **changes)


def _edit_single(followup: FollowUp, **values: Any) -> FollowUp:
    changes = {k: v for k, v in values.items() if v is not None}
    if "start" in changes and "end" not in changes:
        changes["end"] = changes["start"] + followup.duration
    if "end" in changes and changes["end"] < changes.get("start", followup.start):
        raise MappingError("is before start", item=followup.id, field="end")
    return _rebuild(followup, **changes)


def _as_local(
    followup: FollowUp, value: Moment | None, field: str, *, allow_date: bool = False
) -> Moment | None:
    """A moment in the document's form: naive local date-time, or a date for all-day."""
    if value is None:
        return None
    if isinstance(value, str):  # tolerated for callers that pass JSON values through
        try:
            value = (
                dt.date.fromisoformat(value)
                if len(value) == 10
                else dt.datetime.fromisoformat(value)
            )
        except ValueError:
            raise MappingError(
                f"{value!r} is not an ISO date or date-time", item=followup.id, field=field
            ) from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(followup.zone).replace(tzinfo=None)
        return value.date() if followup.all_day else value
    if isinstance(value, dt.date):
        if followup.all_day or allow_date:
            return value
        raise MappingError(
            f"needs a date and time for a follow-up that is not all-day, got {value}",
            item=followup.id,
            field=field,
        )
    raise MappingError(
        f"expected a date or date-time, got {type(value).__name__}", item=followup.id, field=field
    )


def _at_time(followup: FollowUp, day: dt.date) -> Moment:
    if followup.all_day:
        return day
    assert isinstance(followup.start, dt.datetime)
    return dt.datetime.combine(day, followup.start.time())
