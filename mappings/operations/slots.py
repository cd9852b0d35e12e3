"""Finding occurrences: a document's occurrences as ``Slot``s, named by their start.

An occurrence is named by where the series put it (its key, the RECURRENCE-ID) or where
it is now; a date without a time names it where that is unambiguous. Open-ended series
are expanded only as far as the date asked about and the exceptions reach.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, get_args

from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.moments import Moment, date_of, naive, show_to_minute, wall_clock_key
from mappings.occurrences import occurrences
from mappings.patterns import is_bounded

Mode = Literal["only-this", "this-and-following"]
MODES: tuple[str, ...] = get_args(Mode)


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


def find_occurrence(followup: FollowUp, when: Moment, *, field: str = "occurrence") -> Slot:
    """The occurrence ``when`` names: its original start, else where it is now.

    A date (or any moment of an all-day series) names the occurrence taking place that
    day, else the one the series put there. Aware date-times are read in the follow-up's
    zone.
    """
    local = as_local(followup, when, field, allow_date=True)
    assert local is not None
    slots = slots_through(followup, through=date_of(local))
    if isinstance(local, dt.datetime) and not followup.all_day:
        for slot in slots:
            if slot.key == local:
                return slot
        for slot in slots:
            if not slot.cancelled and slot.start == local:
                return slot
        raise no_date_error(followup, local, field, slots)
    day = date_of(local)
    live = [s for s in slots if not s.cancelled and date_of(s.start) == day]
    if live:
        return _prefer_own_date(live, day)
    dead = [s for s in slots if date_of(s.key) == day]
    if dead:
        return dead[0]
    raise no_date_error(followup, day, field, slots)


def check_mode(followup: FollowUp, mode: str) -> None:
    if mode not in MODES:
        raise MappingError(
            f"must be one of {', '.join(MODES)}, got {mode!r}", item=followup.id, field="mode"
        )


def slots_through(followup: FollowUp, *, through: dt.date) -> list[Slot]:
    """Occurrences far enough to hold ``through`` and every exception; all of them if bounded."""
    if _bounded(followup):
        return all_slots(followup)
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


def all_slots(followup: FollowUp) -> list[Slot]:
    """Every occurrence (open-ended series up to the mapper's default horizon)."""
    return [_slot(o.original_start, o.start, o.end, o.cancelled) for o in occurrences(followup)]


def _slot(key: Moment, start: Moment, end: Moment, cancelled: bool) -> Slot:
    return Slot(naive(key), naive(start), naive(end), cancelled)


def slot_of_single(followup: FollowUp) -> Slot:
    return Slot(followup.start, followup.start, followup.end, False)


def _bounded(followup: FollowUp) -> bool:
    if followup.ical_recurrence is not None:
        return False
    info = followup.recurrence
    return info is None or not info.repeats or is_bounded(info)


def slot_on_date(followup: FollowUp, slots: list[Slot], day: dt.date, field: str) -> Slot:
    live = [s for s in slots if not s.cancelled and date_of(s.start) == day]
    if not live:
        raise no_date_error(followup, day, field, slots)
    return _prefer_own_date(live, day)


def _prefer_own_date(slots: list[Slot], day: dt.date) -> Slot:
    """Of several occurrences on one day, the one the series put there (not one moved in)."""
    for slot in slots:
        if date_of(slot.key) == day:
            return slot
    return slots[0]


def no_date_error(followup: FollowUp, when: Moment, field: str, slots: list[Slot]) -> MappingError:
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


def is_first_live(followup: FollowUp, slot: Slot) -> bool:
    slots = slots_through(followup, through=date_of(slot.key))
    earlier = [
        s
        for s in slots
        if not s.cancelled
        and s.key != slot.key
        and wall_clock_key(s.key) < wall_clock_key(slot.key)
    ]
    return not earlier


def as_local(
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
