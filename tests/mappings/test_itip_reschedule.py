"""Which occurrences a change concerns: what is cancelled, asked again, or rescheduled."""

from __future__ import annotations

import datetime as dt

from mappings import itip
from mappings.documents import load_followup
from tests.mappings.test_itip import doc

MOVED = {
    "original_start": "2026-03-09T10:00:00",
    "start": "2026-03-09T13:00:00",
    "end": "2026-03-09T14:00:00",
}


def test_moving_the_series_is_a_reschedule_not_five_cancellations() -> None:
    old = load_followup(doc())
    new = load_followup(doc(start="2026-03-02T12:00:00", end="2026-03-02T13:00:00"))
    assert itip.removed_occurrences(old, new) == []
    assert itip.rescheduled(old, new, ignoring=[])
    assert itip.changed_occurrences(old, new, ignoring=[]) is None  # the whole series


def test_a_cancelled_occurrence_is_removed_and_asks_nobody_again() -> None:
    old = load_followup(doc())
    new = load_followup(
        doc(exceptions=[{"original_start": "2026-03-16T10:00:00", "cancelled": True}])
    )
    removed = itip.removed_occurrences(old, new)
    assert removed == [dt.datetime(2026, 3, 16, 10)]
    assert itip.changed_occurrences(old, new, ignoring=removed) == []
    assert not itip.rescheduled(old, new, ignoring=removed)


def test_a_shorter_rule_cancels_the_dates_it_drops() -> None:
    old = load_followup(doc())
    shorter = doc()["recurrence"] | {"RecurrenceCounter": 3}
    new = load_followup(doc(recurrence=shorter))
    assert itip.removed_occurrences(old, new) == [
        dt.datetime(2026, 3, 23, 10),
        dt.datetime(2026, 3, 30, 10),
    ]


def test_one_moved_occurrence_concerns_that_occurrence_only() -> None:
    old = load_followup(doc())
    new = load_followup(doc(exceptions=[MOVED]))
    assert itip.changed_occurrences(old, new, ignoring=[]) == [dt.datetime(2026, 3, 9, 10)]
    relocated = load_followup(
        doc(exceptions=[{"original_start": "2026-03-23T10:00:00", "location": "Room 9"}])
    )
    assert itip.changed_occurrences(old, relocated, ignoring=[]) == [dt.datetime(2026, 3, 23, 10)]


def test_series_wide_changes_concern_the_whole_series() -> None:
    old = load_followup(doc())
    assert itip.changed_occurrences(old, load_followup(doc(location="Room 9")), ignoring=[]) is None
    longer = doc()["recurrence"] | {"RecurrenceCounter": 7}
    assert itip.changed_occurrences(old, load_followup(doc(recurrence=longer)), ignoring=[]) is None
    single = load_followup(doc(recurrence=None))
    moved_single = load_followup(
        doc(recurrence=None, start="2026-03-02T09:00:00", end="2026-03-02T10:00:00")
    )
    assert itip.changed_occurrences(single, moved_single, ignoring=[]) is None


def test_title_and_description_concern_nobody() -> None:
    old = load_followup(doc())
    new = load_followup(doc(title="Board (renamed)", description="Agenda"))
    assert itip.changed_occurrences(old, new, ignoring=[]) == []
    assert not itip.significant_change(old, new)
