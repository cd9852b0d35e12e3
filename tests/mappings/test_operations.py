"""The recurrence dialog's operations (mappings.operations), pure: documents in, documents out.

Each test states what a user of the CRM dialog expects and checks it on the occurrences
the result produces (``mappings.occurrences``), plus the document shape where the shape
is the point (an exception, a date list, a split).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.occurrences import occurrences
from mappings.operations import (
    add_date,
    change_occurrence,
    delete_date,
    delete_occurrence,
    find_occurrence,
    move_date,
    stop_repeating,
)
from mappings.superoffice import RecurrenceEndType, RecurrencePattern

D = dt.date
T = dt.datetime


def weekly(**changes: Any) -> FollowUp:
    """Mondays 10:00-11:00 in Oslo, ten times from 2 March 2026."""
    doc: dict[str, Any] = {
        "id": "w1",
        "title": "Weekly status",
        "location": "Room 1",
        "start": "2026-03-02T10:00:00",
        "end": "2026-03-02T11:00:00",
        "timezone": "Europe/Oslo",
        "owner": "alice",
        "recurrence": {
            "Pattern": "Weekly",
            "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
            "RecurrenceEndType": "Counter",
            "RecurrenceCounter": 10,
        },
    }
    doc.update(changes)
    return load_followup(doc)


def open_daily() -> FollowUp:
    return load_followup(
        {
            "id": "d1",
            "title": "Standup",
            "start": "2026-03-02T09:00:00",
            "end": "2026-03-02T09:15:00",
            "timezone": "Europe/Oslo",
            "recurrence": {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}},
        }
    )


def single() -> FollowUp:
    return load_followup(
        {
            "id": "s1",
            "title": "Call",
            "start": "2026-03-04T14:00:00",
            "end": "2026-03-04T14:30:00",
            "timezone": "Europe/Oslo",
        }
    )


def starts(followup: FollowUp) -> list[T]:
    """Where the live occurrences are, as naive Oslo wall-clock times."""
    result = []
    for o in occurrences(followup, include_cancelled=False):
        assert isinstance(o.start, dt.datetime)
        result.append(o.start.replace(tzinfo=None))
    return result


def mondays(n: int = 10, hour: int = 10) -> list[T]:
    return [T(2026, 3, 2, hour) + dt.timedelta(weeks=i) for i in range(n)]


# --- move a date later / earlier -------------------------------------------------------


def test_move_later_is_an_override_at_the_same_time_one_day_on() -> None:
    moved = move_date(weekly(), D(2026, 3, 9), days=+1)
    assert starts(moved) == sorted([*mondays()[:1], T(2026, 3, 10, 10), *mondays()[2:]])
    [exception] = moved.exceptions
    assert exception.original_start == T(2026, 3, 9, 10)
    assert (exception.start, exception.end) == (T(2026, 3, 10, 10), None), (
        "same length as the series"
    )
    assert moved.recurrence == weekly().recurrence, "the pattern itself does not change"


def test_moving_back_makes_the_occurrence_unexceptional() -> None:
    moved = move_date(weekly(), D(2026, 3, 9), days=+1)
    back = move_date(moved, D(2026, 3, 10), days=-1)
    assert back == weekly()


def test_move_refuses_a_date_that_already_has_an_occurrence() -> None:
    daily = open_daily()
    with pytest.raises(MappingError) as info:
        move_date(daily, D(2026, 3, 3), days=+1)
    assert info.value.field == "date" and "already has an occurrence" in info.value.message


def test_move_names_the_date_field_when_no_occurrence_is_there() -> None:
    with pytest.raises(MappingError) as info:
        move_date(weekly(), D(2026, 3, 10), days=1)
    assert info.value.field == "date"
    assert "2026-03-09" in info.value.message, "the nearest occurrences are suggested"


def test_move_takes_only_one_day() -> None:
    with pytest.raises(MappingError) as info:
        move_date(weekly(), D(2026, 3, 9), days=2)
    assert info.value.field == "days"


def test_moving_a_single_followup_moves_it() -> None:
    moved = move_date(single(), D(2026, 3, 4), days=-1)
    assert (moved.start, moved.end) == (T(2026, 3, 3, 14), T(2026, 3, 3, 14, 30))


# --- add a date ------------------------------------------------------------------------


def test_add_date_to_a_bounded_series_builds_the_complete_list() -> None:
    added = add_date(weekly(), D(2026, 3, 11))
    assert starts(added) == sorted([*mondays(), T(2026, 3, 11, 10)])
    assert added.recurrence is not None and added.recurrence.Dates is not None
    assert len(added.recurrence.Dates) == 11


def test_add_then_delete_gives_back_the_original_document() -> None:
    added = add_date(weekly(), D(2026, 3, 11))
    assert delete_date(added, D(2026, 3, 11)) == weekly()


def test_add_date_to_an_open_ended_series_is_refused_with_the_way_out() -> None:
    with pytest.raises(MappingError) as info:
        add_date(open_daily(), D(2026, 3, 7))
    assert info.value.field == "date" and "no end" in info.value.message


def test_add_date_restores_a_cancelled_occurrence() -> None:
    daily = open_daily()
    gone = delete_date(daily, D(2026, 3, 4))
    assert gone.exceptions and gone.exceptions[0].cancelled
    assert add_date(gone, D(2026, 3, 4)) == daily


def test_add_date_to_a_custom_series_and_to_a_single_followup() -> None:
    custom = add_date(single(), D(2026, 3, 11))
    assert custom.recurrence is not None and custom.recurrence.Pattern == RecurrencePattern.Custom
    assert starts(custom) == [T(2026, 3, 4, 14), T(2026, 3, 11, 14)]
    more = add_date(custom, D(2026, 3, 1))
    assert starts(more) == [T(2026, 3, 1, 14), T(2026, 3, 4, 14), T(2026, 3, 11, 14)]


def test_add_date_refuses_a_date_already_there() -> None:
    with pytest.raises(MappingError) as info:
        add_date(weekly(), D(2026, 3, 9))
    assert info.value.field == "date"


# --- delete a date ---------------------------------------------------------------------


def test_delete_date_of_a_bounded_series_edits_the_date_list() -> None:
    deleted = delete_date(weekly(), D(2026, 3, 16))
    assert starts(deleted) == [s for s in mondays() if s.date() != D(2026, 3, 16)]
    assert not deleted.exceptions
    assert deleted.recurrence is not None and deleted.recurrence.Dates is not None


def test_delete_date_of_an_open_series_is_a_cancelled_exception() -> None:
    deleted = delete_date(open_daily(), D(2026, 3, 4))
    assert [(e.original_start, e.cancelled) for e in deleted.exceptions] == [
        (T(2026, 3, 4, 9), True)
    ]


def test_delete_date_of_a_moved_occurrence_uses_where_it_is_now() -> None:
    moved = move_date(weekly(), D(2026, 3, 9), days=+1)
    deleted = delete_date(moved, D(2026, 3, 10))
    assert T(2026, 3, 10, 10) not in starts(deleted) and T(2026, 3, 9, 10) not in starts(deleted)
    assert not deleted.exceptions


def test_the_last_date_cannot_be_deleted() -> None:
    two = add_date(single(), D(2026, 3, 5))
    one = delete_date(two, D(2026, 3, 5))
    with pytest.raises(MappingError) as info:
        delete_date(one, D(2026, 3, 4))
    assert info.value.field == "date" and "delete the follow-up" in info.value.message


# --- change only this ------------------------------------------------------------------


def test_change_only_this_is_an_exception() -> None:
    changed = change_occurrence(
        weekly(),
        T(2026, 3, 16, 10),
        start=T(2026, 3, 16, 14),
        end=T(2026, 3, 16, 15),
        title="Moved",
    )
    assert isinstance(changed, FollowUp)
    [exception] = changed.exceptions
    assert (exception.original_start, exception.start, exception.title) == (
        T(2026, 3, 16, 10),
        T(2026, 3, 16, 14),
        "Moved",
    )
    assert exception.end is None, "the series' length is not repeated in the exception"


def test_change_only_this_back_to_the_series_values_removes_the_exception() -> None:
    changed = change_occurrence(weekly(), T(2026, 3, 16, 10), start=T(2026, 3, 16, 14))
    assert isinstance(changed, FollowUp)
    # The occurrence is found by where it is now, too.
    back = change_occurrence(
        changed, T(2026, 3, 16, 14), start=T(2026, 3, 16, 10), title="Weekly status"
    )
    assert back == weekly()


def test_change_with_an_aware_time_is_read_in_the_followups_zone() -> None:
    utc = dt.datetime(2026, 3, 16, 9, tzinfo=dt.UTC)  # 10:00 in Oslo
    changed = change_occurrence(weekly(), utc, location="Room 2")
    assert isinstance(changed, FollowUp)
    assert changed.exceptions[0].location == "Room 2"


def test_change_rejects_an_end_before_the_start() -> None:
    with pytest.raises(MappingError) as info:
        change_occurrence(
            weekly(), T(2026, 3, 16, 10), start=T(2026, 3, 16, 14), end=T(2026, 3, 16, 13)
        )
    assert info.value.field == "end"


def test_change_rejects_an_unknown_mode_and_a_missing_occurrence() -> None:
    with pytest.raises(MappingError) as info:
        change_occurrence(weekly(), T(2026, 3, 16, 10), mode="all")
    assert info.value.field == "mode"
    with pytest.raises(MappingError) as info:
        change_occurrence(weekly(), T(2026, 3, 16, 11), title="x")
    assert info.value.field == "occurrence"


# --- change this and following ---------------------------------------------------------


def test_this_and_following_splits_the_series() -> None:
    source = change_occurrence(weekly(), T(2026, 3, 30, 10), start=T(2026, 3, 30, 9), title="x")
    assert isinstance(source, FollowUp)  # an exception after the split point travels along
    result = change_occurrence(
        source,
        T(2026, 3, 16, 10),
        mode="this-and-following",
        start=T(2026, 3, 16, 14),
        end=T(2026, 3, 16, 15, 30),
        title="New status",
    )
    assert isinstance(result, tuple)
    old, new = result
    assert starts(old) == mondays()[:2]
    assert old.recurrence is not None
    assert old.recurrence.RecurrenceEndType == RecurrenceEndType.EndDate
    assert old.recurrence.EndDate == D(2026, 3, 15)
    assert not old.exceptions
    assert new.id == "w1-20260316" and new.uid is None
    assert new.title == "New status" and new.location == "Room 1" and new.owner == "alice"
    assert new.duration == dt.timedelta(hours=1, minutes=30)
    assert new.recurrence is not None and new.recurrence.RecurrenceCounter == 8
    expected = [s.replace(hour=14) for s in mondays()[2:]]
    expected[2] = T(2026, 3, 30, 9)  # the exception keeps its own time
    assert starts(new) == sorted(expected)
    [exception] = new.exceptions
    assert exception.original_start == T(2026, 3, 30, 14) and exception.title == "x"


def test_this_and_following_on_the_first_occurrence_changes_the_whole_series() -> None:
    result = change_occurrence(
        weekly(), T(2026, 3, 2, 10), mode="this-and-following", start=T(2026, 3, 2, 8)
    )
    assert isinstance(result, FollowUp)
    assert result.id == "w1"
    assert starts(result) == mondays(hour=8)


def test_this_and_following_does_not_move_dates() -> None:
    with pytest.raises(MappingError) as info:
        change_occurrence(
            weekly(), T(2026, 3, 16, 10), mode="this-and-following", start=T(2026, 3, 17, 10)
        )
    assert info.value.field == "start"


def test_this_and_following_on_an_open_series_keeps_it_open() -> None:
    result = change_occurrence(
        open_daily(), T(2026, 3, 5, 9), mode="this-and-following", title="Later"
    )
    assert isinstance(result, tuple)
    old, new = result
    assert starts(old) == [T(2026, 3, d, 9) for d in (2, 3, 4)]
    assert new.recurrence is not None and new.recurrence.EndDate is None
    assert new.recurrence.RecurrenceEndType == RecurrenceEndType.Unknown
    assert starts(new)[:3] == [T(2026, 3, 5, 9), T(2026, 3, 6, 9), T(2026, 3, 9, 9)]


# --- stop repeating --------------------------------------------------------------------


def test_stop_repeating_keeps_the_chosen_occurrence_and_those_before() -> None:
    stopped = stop_repeating(weekly(), D(2026, 3, 16))
    assert starts(stopped) == mondays()[:3]


def test_stop_repeating_on_the_first_occurrence_leaves_a_single_followup() -> None:
    stopped = stop_repeating(weekly(), T(2026, 3, 2, 10))
    assert stopped.recurrence is None and not stopped.exceptions
    assert (stopped.start, stopped.end) == (T(2026, 3, 2, 10), T(2026, 3, 2, 11))


def test_stop_repeating_on_a_single_followup_names_the_field() -> None:
    with pytest.raises(MappingError) as info:
        stop_repeating(single(), D(2026, 3, 4))
    assert info.value.field == "from"


# --- delete ----------------------------------------------------------------------------


def test_delete_only_this_is_a_cancelled_exception() -> None:
    result = delete_occurrence(weekly(), T(2026, 3, 16, 10), "only-this")
    assert result is not None
    assert [(e.original_start, e.cancelled) for e in result.exceptions] == [
        (T(2026, 3, 16, 10), True)
    ]
    assert T(2026, 3, 16, 10) not in starts(result)


def test_delete_this_and_following_stops_before_it() -> None:
    result = delete_occurrence(weekly(), T(2026, 3, 16, 10), "this-and-following")
    assert result is not None and starts(result) == mondays()[:2]


def test_delete_this_and_following_on_the_first_deletes_the_followup() -> None:
    assert delete_occurrence(weekly(), T(2026, 3, 2, 10), "this-and-following") is None
    assert delete_occurrence(single(), T(2026, 3, 4, 14), "only-this") is None


def test_delete_only_this_of_the_last_live_occurrence_deletes_the_followup() -> None:
    two = add_date(single(), D(2026, 3, 5))
    one = delete_occurrence(two, T(2026, 3, 5, 14), "only-this")
    assert one is not None
    assert delete_occurrence(one, T(2026, 3, 4, 14), "only-this") is None


# --- all-day and finding ---------------------------------------------------------------


def test_all_day_series_take_dates() -> None:
    allday = load_followup(
        {
            "id": "a1",
            "title": "Offsite",
            "all_day": True,
            "start": "2026-03-02",
            "end": "2026-03-03",
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
                "RecurrenceCounter": 4,
            },
        }
    )
    moved = move_date(allday, D(2026, 3, 9), days=1)
    assert moved.exceptions[0].start == D(2026, 3, 10)
    stopped = stop_repeating(allday, D(2026, 3, 9))
    assert [o.start for o in occurrences(stopped)] == [D(2026, 3, 2), D(2026, 3, 9)]


def test_find_occurrence_by_date_prefers_the_one_taking_place_that_day() -> None:
    moved = move_date(weekly(), D(2026, 3, 9), days=1)
    slot = find_occurrence(moved, D(2026, 3, 10))
    assert slot.key == T(2026, 3, 9, 10) and slot.start == T(2026, 3, 10, 10)


# --- an occurrence all-day by itself -------------------------------------------------------


def with_all_day_occurrence() -> FollowUp:
    return weekly(
        exceptions=[{"original_start": "2026-03-09T10:00:00", "all_day": True, "title": "Offsite"}]
    )


def test_an_operation_elsewhere_keeps_an_all_day_occurrence_all_day() -> None:
    result = delete_occurrence(with_all_day_occurrence(), T(2026, 3, 16, 10))
    assert isinstance(result, FollowUp)
    offsite = next(o for o in occurrences(result) if o.original_start.day == 9)
    assert (offsite.start, offsite.end, offsite.title) == (D(2026, 3, 9), D(2026, 3, 10), "Offsite")


def test_retitling_an_all_day_occurrence_keeps_it_all_day() -> None:
    result = change_occurrence(with_all_day_occurrence(), T(2026, 3, 9, 10), title="Offsite day")
    assert isinstance(result, FollowUp)
    [exception] = result.exceptions
    assert exception.all_day and exception.title == "Offsite day"
    assert (exception.start, exception.end) == (D(2026, 3, 9), D(2026, 3, 10))


def test_giving_an_all_day_occurrence_a_time_makes_it_timed_for_the_series_length() -> None:
    result = change_occurrence(
        with_all_day_occurrence(), T(2026, 3, 9, 10), start=T(2026, 3, 9, 13)
    )
    assert isinstance(result, FollowUp)
    moved = next(o for o in occurrences(result) if o.original_start.day == 9)
    assert moved.start.replace(tzinfo=None) == T(2026, 3, 9, 13)  # type: ignore[union-attr]
    assert moved.end - moved.start == dt.timedelta(hours=1)  # type: ignore[operator]
    assert not result.exceptions[0].all_day
