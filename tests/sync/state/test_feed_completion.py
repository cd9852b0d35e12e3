"""The change feed names completions: an occurrence ticked off, or the whole follow-up.

Issue #19 lists the occurrence changes a CRM adapter reads from ``GET /v1/changes``:
moved, cancelled, completed, added. A client completes a task occurrence by writing
STATUS:COMPLETED on that occurrence's VTODO override (the mapper reads it as the
exception's own ``status``); completing the task or series itself sets the follow-up's
``status``.
"""

from __future__ import annotations

import copy
from typing import Any

from sync.state.changes import describe

WEEKLY_TASK: dict[str, Any] = {
    "id": "t-1",
    "kind": "task",
    "title": "Weekly report",
    "owner": "alice",
    "timezone": "Europe/Oslo",
    "start": "2026-03-02T10:00:00",
    "end": "2026-03-02T10:30:00",
    "status": "not-started",
    "recurrence": {
        "Pattern": "Weekly",
        "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
        "RecurrenceEndType": "Counter",
        "RecurrenceCounter": 4,
    },
}

SECOND = "2026-03-09T10:00:00"
SECOND_KEY = "2026-03-09T10:00:00+01:00"


def with_exceptions(*exceptions: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(WEEKLY_TASK)
    document["exceptions"] = list(exceptions)
    return document


def test_one_occurrence_completed_is_listed_as_completed() -> None:
    done = with_exceptions(
        {"original_start": SECOND, "status": "completed", "completed_at": "2026-03-09T11:02:00Z"}
    )
    changes = describe(WEEKLY_TASK, done)
    assert changes["occurrences"] == {"completed": [SECOND_KEY]}
    assert "completed" not in changes  # the task as a whole is still open


def test_a_completed_occurrence_that_also_moved_is_listed_under_both() -> None:
    done = with_exceptions(
        {
            "original_start": SECOND,
            "start": "2026-03-10T10:00:00",
            "end": "2026-03-10T10:30:00",
            "status": "completed",
        }
    )
    assert describe(WEEKLY_TASK, done)["occurrences"] == {
        "completed": [SECOND_KEY],
        "moved": [SECOND_KEY],
    }


def test_an_occurrence_completed_before_is_not_listed_again() -> None:
    done = with_exceptions({"original_start": SECOND, "status": "completed"})
    retitled = with_exceptions(
        {"original_start": SECOND, "status": "completed", "title": "Weekly report (late)"}
    )
    assert describe(done, retitled)["occurrences"] == {"changed": [SECOND_KEY]}


def test_reopening_an_occurrence_is_not_a_completion() -> None:
    done = with_exceptions({"original_start": SECOND, "status": "completed"})
    reopened = with_exceptions({"original_start": SECOND, "status": "started"})
    assert "occurrences" not in describe(done, reopened)


def test_the_whole_series_completed_is_one_flag_not_a_list_of_dates() -> None:
    finished = copy.deepcopy(WEEKLY_TASK) | {"status": "completed"}
    changes = describe(WEEKLY_TASK, finished)
    assert changes["completed"] is True
    assert changes["fields"] == ["status"]
    assert "occurrences" not in changes
    # Ticking off an occurrence of a series that was completed already is no news.
    again = finished | {"exceptions": [{"original_start": SECOND, "status": "completed"}]}
    assert "completed" not in describe(finished, again).get("occurrences", {})


def test_a_single_task_completed_sets_the_flag() -> None:
    task = {k: v for k, v in WEEKLY_TASK.items() if k != "recurrence"}
    changes = describe(task, task | {"status": "completed", "completed_at": "2026-03-02T10:20:00Z"})
    assert changes["completed"] is True
    assert changes["fields"] == ["completed_at", "status"]
