"""Task completion and Google-style "this and following", end to end on Radicale and Xandikos.

Client edits are written by plain HTTP the way Thunderbird, Apple and Google write them
(``tests/integration/client_edits.py``). Every case ends the same way: a change of the
same series in the CRM, a pass that writes it, and an idle pass that writes nothing.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from mappings.model import FollowUp, FollowUpStatus
from mappings.operations import change_occurrence
from sync.cli.main import cli
from tests.integration import client_edits as ce
from tests.integration import test_sync
from tests.integration.client_edits import oslo
from tests.integration.test_sync import CALL, STANDUP, TASK, Env, starts

pytestmark = pytest.mark.server

# The same fresh calendar with the same follow-ups pushed once, as in test_sync.
env = test_sync.env
synced = test_sync.synced

TASK_DUE_FEB = oslo(2026, 2, 28, 15)
SPLIT_AT = oslo(2026, 1, 19, 9)
HEAD_DAYS = [dt.datetime(2026, 1, d, 9) for d in (5, 6, 7, 8, 9, 12, 13, 14, 15, 16)]


def retitle_in_crm(env: Env, followup_id: str, title: str) -> FollowUp:
    return env.edit_in_crm(followup_id, title=title)


def assert_idle(env: Env) -> None:
    report = env.sync()
    assert report.plan.actions == (), report.plan.actions
    assert report.plan.notices == ()


def master(env: Env, followup_id: str) -> ce.Component:
    return ce.master_of(env.resource(followup_id).calendar)


# ======================================================================== task completion


@pytest.mark.parametrize("style", ["thunderbird", "apple"])
def test_task_completed_in_a_client_reaches_the_crm_and_survives_a_crm_edit(
    synced: Env, style: str
) -> None:
    ticked = dt.datetime(2026, 1, 29, 8, 30, tzinfo=dt.UTC)
    resource = synced.resource(TASK)
    synced.client.replace(resource, ce.complete_task(resource.data, style=style, when=ticked))
    synced.sync()

    task = synced.followup(TASK)
    assert task.status == FollowUpStatus.completed
    assert task.completed_at == ticked
    exported = CliRunner().invoke(cli, ["export", "--database", str(synced.db_path), "--id", TASK])
    assert exported.exit_code == 0, exported.output
    [document] = json.loads(exported.output)
    assert (document["status"], document["completed_at"]) == ("completed", "2026-01-29T08:30:00Z")

    retitle_in_crm(synced, TASK, "Submit expense report (Q1)")
    synced.sync()
    todo = master(synced, TASK)
    assert str(todo["SUMMARY"]) == "Submit expense report (Q1)"
    assert str(todo["STATUS"]) == "COMPLETED", "a CRM edit does not re-open the task"
    assert todo["COMPLETED"].dt == ticked, "the client's completion time is kept"
    assert_idle(synced)


def test_one_occurrence_of_a_recurring_task_completed_in_a_client(synced: Env) -> None:
    resource = synced.resource(TASK)
    synced.client.replace(resource, ce.complete_task(resource.data, TASK_DUE_FEB))
    synced.sync()

    task = synced.followup(TASK)
    assert task.status is None, "the series itself is still open"
    [exception] = task.exceptions
    assert exception.original_start == dt.datetime(2026, 2, 28, 15)
    assert exception.status == FollowUpStatus.completed
    assert len(starts(task)) == 6, "a completed occurrence is still an occurrence"

    retitle_in_crm(synced, TASK, "Expense report")
    synced.sync()
    cal = synced.resource(TASK).calendar
    override = ce.override_of(cal, TASK_DUE_FEB)
    assert override is not None, "the occurrence ticked off in the client is still there"
    assert str(override["STATUS"]) == "COMPLETED"
    assert int(override["PERCENT-COMPLETE"]) == 100
    assert str(override["SUMMARY"]) == "Expense report", "the CRM retitle reaches it"
    assert "STATUS" not in ce.master_of(cal), "the other occurrences stay open"
    assert_idle(synced)


def test_task_completed_in_the_crm_reaches_the_calendar(synced: Env) -> None:
    synced.edit_in_crm(TASK, status="completed")
    synced.sync()
    todo = master(synced, TASK)
    assert str(todo["STATUS"]) == "COMPLETED"
    assert int(todo["PERCENT-COMPLETE"]) == 100
    assert isinstance(todo["COMPLETED"].dt, dt.datetime), "clients show 'completed on' from it"

    # Re-opened in the CRM: a client must not go on showing it ticked off.
    synced.edit_in_crm(TASK, status="started", completed_at=None)
    synced.sync()
    todo = master(synced, TASK)
    assert str(todo["STATUS"]) == "IN-PROCESS"
    assert "COMPLETED" not in todo
    assert synced.followup(TASK).status == FollowUpStatus.started
    assert_idle(synced)


def test_one_occurrence_completed_in_the_crm_reaches_the_calendar(synced: Env) -> None:
    synced.edit_in_crm(
        TASK, exceptions=[{"original_start": "2026-02-28T15:00:00", "status": "completed"}]
    )
    synced.sync()
    override = ce.override_of(synced.resource(TASK).calendar, TASK_DUE_FEB)
    assert override is not None
    assert str(override["STATUS"]) == "COMPLETED"

    retitle_in_crm(synced, TASK, "Expense report")
    synced.sync()
    cal = synced.resource(TASK).calendar
    override = ce.override_of(cal, TASK_DUE_FEB)
    assert override is not None and str(override["STATUS"]) == "COMPLETED"
    assert str(override["SUMMARY"]) == "Expense report"
    [exception] = synced.followup(TASK).exceptions
    assert exception.status == FollowUpStatus.completed
    assert_idle(synced)


def test_completion_in_a_client_and_a_crm_edit_in_the_same_pass_are_both_kept(
    synced: Env,
) -> None:
    resource = synced.resource(TASK)
    synced.client.replace(resource, ce.complete_task(resource.data, TASK_DUE_FEB))
    retitle_in_crm(synced, TASK, "Expense report")
    synced.sync()

    task = synced.followup(TASK)
    assert task.title == "Expense report"
    assert [e.status for e in task.exceptions] == [FollowUpStatus.completed]
    override = ce.override_of(synced.resource(TASK).calendar, TASK_DUE_FEB)
    assert override is not None and str(override["STATUS"]) == "COMPLETED"
    assert str(override["SUMMARY"]) == "Expense report"
    assert synced.conflicts() == []
    assert_idle(synced)


def test_status_of_a_call_round_trips_without_touching_the_events_own_status(
    synced: Env,
) -> None:
    """A VEVENT cannot say "done": the CRM's status rides along in X-FOLLOWUP-STATUS."""
    synced.edit_in_crm(CALL, status="completed")
    synced.sync()
    event = master(synced, CALL)
    assert str(event["X-FOLLOWUP-STATUS"]) == "completed"
    assert "STATUS" not in event

    # The client confirms the event and moves it; the CRM's status is not lost.
    resource = synced.resource(CALL)
    cal = resource.calendar
    vevent = ce.master_of(cal)
    vevent.add("status", "CONFIRMED")
    data = ce.edit_series(
        bytes(cal.to_ical()), start=oslo(2026, 2, 3, 12), end=oslo(2026, 2, 3, 12, 30)
    )
    synced.client.replace(resource, data)
    synced.sync()
    call = synced.followup(CALL)
    assert call.start == dt.datetime(2026, 2, 3, 12)
    assert call.status == FollowUpStatus.completed

    retitle_in_crm(synced, CALL, "Call with Nordic Freight (done)")
    synced.sync()
    event = master(synced, CALL)
    assert str(event["STATUS"]) == "CONFIRMED", "the client's VEVENT STATUS is kept"
    assert str(event["X-FOLLOWUP-STATUS"]) == "completed"
    assert_idle(synced)


# ======================================================================== this and following


def _split_by_client(env: Env, tail_uid: str, *, related: bool = False) -> None:
    """Google's "this and following" from 19 January: 09:30 from then on."""
    resource = env.resource(STANDUP)
    old, new = ce.google_split(
        resource.data,
        SPLIT_AT,
        tail_uid,
        oslo(2026, 1, 19, 9, 30),
        oslo(2026, 1, 19, 9, 45),
        related_to=ce.uid_of(resource.data) if related else None,
    )
    env.client.replace(resource, old)
    env.client.create(f"{tail_uid.split('@')[0]}.ics", new)


@pytest.mark.parametrize(
    ("tie", "tail_uid"),
    [
        ("google _R UID", "followup-2002@followup-sync_R20260119T090000"),
        ("RELATED-TO", "0c51a8e2-tail@example.com"),
        ("same series in the same pass", "5B2D9F7A-APPLE-TAIL"),
    ],
)
def test_tail_of_a_google_style_split_stays_with_the_followup_without_import_new(
    synced: Env, tie: str, tail_uid: str
) -> None:
    assert not synced.account.import_new
    synced.edit_in_crm(STANDUP, owner="alice")
    synced.sync()
    _split_by_client(synced, tail_uid, related=tie == "RELATED-TO")
    report = synced.sync()
    assert report.plan.notices == ()
    assert report.plan.skipped == ()

    head = synced.followup(STANDUP)
    assert starts(head) == HEAD_DAYS
    tail = synced.followup(f"{STANDUP}-20260119")
    assert tail.effective_uid == tail_uid, "the tail stays in the resource the client made"
    assert tail.owner == "alice", "the tail belongs to the same CRM associate"
    assert starts(tail)[0] == dt.datetime(2026, 1, 19, 9, 30)
    assert starts(tail)[-1] == dt.datetime(2026, 1, 30, 9, 30)
    assert len(synced.client.list()) == 6

    # The CRM renames the tail: the client's resource is updated in place.
    retitle_in_crm(synced, tail.id, "Daily standup (new time)")
    synced.sync()
    assert len(synced.client.list()) == 6
    written = synced.client.by_uid(tail_uid)
    assert str(ce.master_of(written.calendar)["SUMMARY"]) == "Daily standup (new time)"
    assert starts(synced.followup(STANDUP)) == HEAD_DAYS
    assert_idle(synced)


def test_series_cut_short_with_nothing_tied_to_it_is_reported_with_the_way_to_import(
    synced: Env,
) -> None:
    resource = synced.resource(STANDUP)
    synced.client.replace(resource, ce.end_series(resource.data, SPLIT_AT))
    # A new series in the same pass that does not start where the cut did: not a tail.
    synced.client.create(
        "later.ics",
        ce.new_event(
            "later-standup@example.com",
            "Standup, new slot",
            oslo(2026, 1, 21, 9, 30),
            oslo(2026, 1, 21, 9, 45),
            rrule="FREQ=DAILY;COUNT=5",
        ),
    )
    report = synced.sync()

    assert starts(synced.followup(STANDUP)) == HEAD_DAYS
    [(item, text)] = report.plan.notices
    assert item == STANDUP
    assert "cut short" in text and "--import-new" in text
    assert [f.id for f in synced.store.all() if f.id.startswith(f"{STANDUP}-")] == []

    # Doing what the notice says brings the event in.
    synced.configure(import_new=True)
    synced.sync(full=True)
    assert any(f.effective_uid == "later-standup@example.com" for f in synced.store.all())

    retitle_in_crm(synced, STANDUP, "Daily standup (January)")
    synced.sync()
    assert str(master(synced, STANDUP)["SUMMARY"]) == "Daily standup (January)"
    assert_idle(synced)


def test_this_and_following_in_the_crm_reaches_the_calendar_as_two_series(synced: Env) -> None:
    head, tail = change_occurrence(
        synced.followup(STANDUP),
        dt.datetime(2026, 1, 19, 9),
        mode="this-and-following",
        start=dt.datetime(2026, 1, 19, 9, 30),
    )
    synced.store.put(head)
    synced.store.put(tail)
    synced.sync()

    assert len(synced.client.list()) == 6
    head_rule = master(synced, STANDUP)["RRULE"]
    assert "UNTIL" in head_rule
    tail_master = master(synced, tail.id)
    assert tail_master["DTSTART"].dt == oslo(2026, 1, 19, 9, 30)

    retitle_in_crm(synced, tail.id, "Daily standup (new time)")
    synced.sync()
    assert str(master(synced, tail.id)["SUMMARY"]) == "Daily standup (new time)"
    assert starts(synced.followup(STANDUP)) == HEAD_DAYS
    assert_idle(synced)
