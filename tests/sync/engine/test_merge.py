"""Three-way merge of one follow-up edited on both sides (``sync.engine.merge.merge``).

Every test starts from the same weekly series (six Mondays at 09:00 in Oslo, from
6 January 2025) as the common ancestor, edits it on the CRM side and on the server side,
and checks the merged document and the conflicts reported. Plain data only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.equivalence import same_meaning
from mappings.model import FollowUp, OccurrenceException
from sync.engine.merge import Conflict, ConflictPolicy, MergeResult, merge
from tests.factories import status_meeting, weekly_rule

MONDAYS = ["2025-01-06", "2025-01-13", "2025-01-20", "2025-01-27", "2025-02-03", "2025-02-10"]


def weekly(**changes: Any) -> FollowUp:
    """The ancestor series with ``changes`` applied to its JSON document."""
    return load_followup(status_meeting(**changes))


def moved(day: str, hour: int) -> dict[str, Any]:
    """The exception moving the occurrence of ``day`` (originally 09:00) to ``hour``:00."""
    return {
        "original_start": f"{day}T09:00:00",
        "start": f"{day}T{hour:02d}:00:00",
        "end": f"{day}T{hour + 1:02d}:00:00",
    }


def cancelled(day: str) -> dict[str, Any]:
    return {"original_start": f"{day}T09:00:00", "cancelled": True}


def exceptions_of(followup: FollowUp) -> dict[str, dict[str, Any]]:
    """Exceptions keyed by original start, as JSON data (None fields left out)."""
    return {
        e.original_start.isoformat(): e.model_dump(
            mode="json", exclude_none=True, exclude_defaults=True
        )
        for e in followup.exceptions
    }


def as_exception(value: Any) -> OccurrenceException:
    """A conflict value that is an exception (reported as JSON data or canonical JSON text)."""
    return OccurrenceException.model_validate(
        json.loads(value) if isinstance(value, str) else value
    )


def do_merge(
    base: FollowUp | None,
    crm: FollowUp,
    server: FollowUp,
    policy: ConflictPolicy = ConflictPolicy.crm_wins,
    crm_is_newer: bool | None = None,
) -> MergeResult:
    result = merge(base, crm, server, policy=policy, crm_is_newer=crm_is_newer)
    # Whatever the inputs, the merge gives a document the mapper accepts as is.
    assert load_followup(result.document.to_json_dict()) == result.document
    return result


# --- no conflict -----------------------------------------------------------------------


def test_edits_of_different_occurrences_are_both_kept_without_conflict() -> None:
    crm = weekly(exceptions=[cancelled("2025-01-13")])
    server = weekly(exceptions=[moved("2025-01-20", 11)])

    result = do_merge(weekly(), crm, server)

    assert result.conflicts == ()
    assert exceptions_of(result.document) == {
        "2025-01-13T09:00:00": {"original_start": "2025-01-13T09:00:00", "cancelled": True},
        "2025-01-20T09:00:00": {
            "original_start": "2025-01-20T09:00:00",
            "start": "2025-01-20T11:00:00",
            "end": "2025-01-20T12:00:00",
        },
    }


def test_title_changed_in_crm_and_occurrence_moved_on_server_keeps_both() -> None:
    crm = weekly(title="Weekly status")
    server = weekly(exceptions=[moved("2025-01-13", 14)])

    result = do_merge(weekly(), crm, server)

    assert result.conflicts == ()
    assert result.document.title == "Weekly status"
    assert exceptions_of(result.document) == exceptions_of(server)


def test_occurrence_moved_in_crm_and_title_changed_on_server_keeps_both() -> None:
    crm = weekly(exceptions=[moved("2025-01-13", 14)])
    server = weekly(title="Weekly status")

    result = do_merge(weekly(), crm, server, policy=ConflictPolicy.crm_wins)

    assert result.conflicts == ()
    assert result.document.title == "Weekly status"
    assert exceptions_of(result.document) == exceptions_of(crm)


def test_series_changed_on_server_and_location_in_crm_keeps_both() -> None:
    crm = weekly(location="Room 4")
    server = weekly(recurrence=weekly_rule(3))

    result = do_merge(weekly(), crm, server)

    assert result.conflicts == ()
    assert result.document.location == "Room 4"
    assert result.document.recurrence == server.recurrence


@pytest.mark.parametrize("policy", list(ConflictPolicy))
def test_identical_edits_on_both_sides_are_no_conflict(policy: ConflictPolicy) -> None:
    edit: dict[str, Any] = {
        "title": "Weekly status",
        "location": "Room 4",
        "exceptions": [moved("2025-01-13", 14), cancelled("2025-01-27")],
    }

    result = do_merge(weekly(), weekly(**edit), weekly(**edit), policy=policy, crm_is_newer=False)

    assert result.conflicts == ()
    assert same_meaning(result.document, weekly(**edit))


def test_a_part_cleared_on_one_side_only_is_cleared() -> None:
    base = weekly(description="Bring the figures", exceptions=[cancelled("2025-01-13")])
    crm = weekly(exceptions=[cancelled("2025-01-13")])  # description removed
    server = weekly(description="Bring the figures")  # exception removed (occurrence restored)

    result = do_merge(base, crm, server)

    assert result.conflicts == ()
    assert result.document.description is None
    assert result.document.exceptions == []


# --- conflicts -------------------------------------------------------------------------

SAME_EXCEPTION_CASES = [
    # policy, crm_is_newer, which side's edit survives
    (ConflictPolicy.crm_wins, False, "crm"),
    (ConflictPolicy.server_wins, True, "server"),
    (ConflictPolicy.newest_wins, True, "crm"),
    (ConflictPolicy.newest_wins, False, "server"),
    (ConflictPolicy.newest_wins, None, "crm"),  # the server gave no LAST-MODIFIED
]


@pytest.mark.parametrize(("policy", "crm_is_newer", "winner"), SAME_EXCEPTION_CASES)
def test_same_occurrence_edited_on_both_sides_is_decided_by_policy(
    policy: ConflictPolicy, crm_is_newer: bool | None, winner: str
) -> None:
    crm = weekly(exceptions=[moved("2025-01-13", 10)])
    server = weekly(exceptions=[moved("2025-01-13", 15)])

    result = do_merge(weekly(), crm, server, policy=policy, crm_is_newer=crm_is_newer)

    kept, lost = (crm, server) if winner == "crm" else (server, crm)
    assert exceptions_of(result.document) == exceptions_of(kept)
    [conflict] = result.conflicts
    assert conflict.part == "exception 2025-01-13T09:00:00"
    assert conflict.winner == winner
    assert as_exception(conflict.kept) == kept.exceptions[0]
    assert as_exception(conflict.lost) == lost.exceptions[0]


def test_occurrence_cancelled_on_one_side_and_moved_on_the_other_is_a_conflict() -> None:
    crm = weekly(exceptions=[cancelled("2025-01-20")])
    server = weekly(exceptions=[moved("2025-01-20", 13)])

    result = do_merge(weekly(), crm, server, policy=ConflictPolicy.server_wins)

    assert exceptions_of(result.document) == exceptions_of(server)
    [conflict] = result.conflicts
    assert (conflict.part, conflict.winner) == ("exception 2025-01-20T09:00:00", "server")
    assert as_exception(conflict.lost) == crm.exceptions[0]


@pytest.mark.parametrize(
    ("policy", "crm_is_newer", "winner"),
    [
        (ConflictPolicy.crm_wins, None, "crm"),
        (ConflictPolicy.server_wins, None, "server"),
        (ConflictPolicy.newest_wins, True, "crm"),
        (ConflictPolicy.newest_wins, False, "server"),
    ],
)
def test_title_changed_differently_on_both_sides_keeps_the_losing_title(
    policy: ConflictPolicy, crm_is_newer: bool | None, winner: str
) -> None:
    crm, server = weekly(title="CRM title"), weekly(title="Calendar title")

    result = do_merge(weekly(), crm, server, policy=policy, crm_is_newer=crm_is_newer)

    expected = {"crm": "CRM title", "server": "Calendar title"}
    loser = "server" if winner == "crm" else "crm"
    assert result.document.title == expected[winner]
    assert result.conflicts == (Conflict("title", winner, expected[winner], expected[loser]),)


def test_series_changed_differently_on_both_sides_is_one_series_conflict() -> None:
    crm = weekly(recurrence=weekly_rule(4))
    server = weekly(recurrence=weekly_rule(3))

    result = do_merge(weekly(), crm, server, policy=ConflictPolicy.server_wins)

    assert result.document.recurrence == server.recurrence
    [conflict] = result.conflicts
    assert (conflict.part, conflict.winner) == ("series", "server")
    assert conflict.kept != conflict.lost


@pytest.mark.parametrize("policy", list(ConflictPolicy))
def test_rule_shortened_in_crm_drops_an_exception_the_server_added_and_reports_it(
    policy: ConflictPolicy,
) -> None:
    crm = weekly(recurrence=weekly_rule(3))  # 6, 13 and 20 January only
    server = weekly(
        exceptions=[moved("2025-02-03", 11)]
    )  # an occurrence the new rule no longer has

    result = do_merge(weekly(), crm, server, policy=policy, crm_is_newer=False)

    assert result.document.recurrence == crm.recurrence
    assert result.document.exceptions == []
    [conflict] = result.conflicts
    assert conflict.part == "exception 2025-02-03T09:00:00"
    assert conflict.kept is None
    assert as_exception(conflict.lost) == server.exceptions[0]


def test_rule_shortened_on_server_drops_an_exception_the_crm_added_and_reports_it() -> None:
    crm = weekly(exceptions=[cancelled("2025-02-10"), moved("2025-01-13", 12)])
    server = weekly(recurrence=weekly_rule(4))

    result = do_merge(weekly(), crm, server, policy=ConflictPolicy.crm_wins)

    assert result.document.recurrence == server.recurrence
    assert exceptions_of(result.document) == {
        "2025-01-13T09:00:00": exceptions_of(crm)["2025-01-13T09:00:00"]
    }
    [conflict] = result.conflicts
    assert conflict.part == "exception 2025-02-10T09:00:00"
    assert as_exception(conflict.lost) == crm.exceptions[0]


def test_exception_the_new_rule_drops_on_both_sides_is_no_conflict() -> None:
    # The CRM had cancelled 10 February long ago (it is in the base); the server shortens
    # the series, which removes that occurrence and its exception. Nothing is lost.
    base = weekly(exceptions=[cancelled("2025-02-10")])
    crm = weekly(exceptions=[cancelled("2025-02-10")], title="Weekly status")
    server = weekly(recurrence=weekly_rule(4))

    result = do_merge(base, crm, server)

    assert result.conflicts == ()
    assert result.document.title == "Weekly status"
    assert result.document.recurrence == server.recurrence
    assert result.document.exceptions == []


# --- no common ancestor ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "crm_is_newer", "winner"),
    [
        (ConflictPolicy.crm_wins, False, "crm"),
        (ConflictPolicy.server_wins, True, "server"),
        (ConflictPolicy.newest_wins, False, "server"),
        (ConflictPolicy.newest_wins, True, "crm"),
    ],
)
def test_without_base_every_difference_is_a_conflict_decided_by_policy(
    policy: ConflictPolicy, crm_is_newer: bool, winner: str
) -> None:
    crm = weekly(title="CRM title", location="Room 4", exceptions=[cancelled("2025-01-13")])
    server = weekly(
        title="Calendar title",
        description="Agenda attached",
        exceptions=[cancelled("2025-01-13"), moved("2025-01-20", 12)],
    )

    result = do_merge(None, crm, server, policy=policy, crm_is_newer=crm_is_newer)

    parts = {c.part: c for c in result.conflicts}
    # The series and the 13 January cancellation are the same on both sides: no conflict.
    assert set(parts) == {"title", "description", "location", "exception 2025-01-20T09:00:00"}
    assert {c.winner for c in result.conflicts} == {winner}
    kept, lost = (crm, server) if winner == "crm" else (server, crm)
    assert result.document.title == kept.title
    assert result.document.description == kept.description
    assert result.document.location == kept.location
    assert exceptions_of(result.document) == exceptions_of(kept)
    assert parts["title"].lost == lost.title
    assert (parts["description"].lost, parts["location"].lost) == (lost.description, lost.location)


def test_without_base_identical_documents_merge_without_conflict() -> None:
    doc = weekly(exceptions=[moved("2025-01-13", 14)], location="Room 4")

    result = do_merge(None, doc, doc, policy=ConflictPolicy.server_wins)

    assert result.conflicts == ()
    assert same_meaning(result.document, doc)


def test_without_base_a_rewritten_rule_with_the_same_dates_is_no_conflict() -> None:
    # A client that rewrites "6 times" as "until 10 February" changed nothing.
    crm = weekly()
    rule = {**weekly_rule(6), "RecurrenceEndType": "EndDate", "EndDate": "2025-02-10"}
    rule.pop("RecurrenceCounter")
    server = weekly(recurrence=rule)

    result = do_merge(None, crm, server, policy=ConflictPolicy.server_wins)

    assert result.conflicts == ()
    assert same_meaning(result.document, crm)


# --- what the conflict log stores ------------------------------------------------------


@pytest.mark.parametrize(
    ("crm", "server"),
    [
        pytest.param(weekly(title="CRM title"), weekly(title="Calendar title"), id="field"),
        pytest.param(
            weekly(recurrence=weekly_rule(4)), weekly(recurrence=weekly_rule(3)), id="series"
        ),
        pytest.param(
            weekly(exceptions=[moved("2025-01-13", 10)]),
            weekly(exceptions=[moved("2025-01-13", 15)]),
            id="exception",
        ),
        pytest.param(
            weekly(recurrence=weekly_rule(3)),
            weekly(exceptions=[cancelled("2025-02-03")]),
            id="dropped-exception",
        ),
    ],
)
def test_conflict_values_can_be_stored_as_json(crm: FollowUp, server: FollowUp) -> None:
    # ConflictRecord.kept_value/lost_value are JSON columns: a value json cannot write
    # would fail the transaction after the server was already written.
    result = do_merge(weekly(), crm, server, policy=ConflictPolicy.server_wins)

    assert result.conflicts
    for conflict in result.conflicts:
        json.dumps(conflict.kept)
        json.dumps(conflict.lost)
        assert conflict.lost is not None


def test_series_conflict_reports_the_losing_rule() -> None:
    crm = weekly(recurrence=weekly_rule(4))
    server = weekly(recurrence=weekly_rule(3))

    [conflict] = do_merge(weekly(), crm, server, policy=ConflictPolicy.server_wins).conflicts

    assert conflict.lost["recurrence"] == crm.to_json_dict()["recurrence"]
    assert conflict.kept["recurrence"] == server.to_json_dict()["recurrence"]


# --- status (task completion) is a field like any other ------------------------------------


def test_status_changed_on_one_side_merges_with_an_edit_on_the_other() -> None:
    base = weekly()
    crm = weekly(title="Renamed")
    server = weekly(status="completed", completed_at="2025-02-10T10:00:00Z")
    result = merge(base, crm, server, policy=ConflictPolicy.crm_wins, crm_is_newer=True)
    assert result.conflicts == ()
    assert result.document.title == "Renamed"
    assert result.document.status == "completed"
    assert result.document.completed_at is not None, "the completion time goes with its status"


def test_status_changed_differently_on_both_sides_follows_the_policy() -> None:
    base = weekly()
    crm = weekly(status="started")
    server = weekly(status="completed", completed_at="2025-02-10T10:00:00Z")
    result = merge(base, crm, server, policy=ConflictPolicy.server_wins, crm_is_newer=None)
    assert result.document.status == "completed"
    assert result.conflicts == (Conflict("status", "server", "completed", "started"),)
    result = merge(base, crm, server, policy=ConflictPolicy.crm_wins, crm_is_newer=None)
    assert (result.document.status, result.document.completed_at) == ("started", None)


def test_one_occurrence_completed_on_the_server_and_another_moved_in_the_crm() -> None:
    base = weekly()
    crm = weekly(exceptions=[moved("2025-01-13", 11)])
    done = {"original_start": "2025-01-20T09:00:00", "status": "completed"}
    server = weekly(exceptions=[{**done, "completed_at": "2025-01-20T10:00:00Z"}])
    result = merge(base, crm, server, policy=ConflictPolicy.crm_wins, crm_is_newer=True)
    assert result.conflicts == ()
    by_day = {e.original_start.day: e for e in result.document.exceptions}
    assert by_day[13].start is not None
    assert by_day[20].status == "completed" and by_day[20].completed_at is not None


def test_only_the_completion_time_differing_is_no_change() -> None:
    a = weekly(status="completed", completed_at="2025-02-10T10:00:00Z")
    b = weekly(status="completed", completed_at="2025-02-11T08:00:00Z")
    assert same_meaning(a, b)
    assert not same_meaning(a, weekly(status="started"))
