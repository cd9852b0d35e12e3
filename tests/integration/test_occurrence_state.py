"""One occurrence's own state survives the CRM's write-backs, on real Radicale and Xandikos.

A calendar user gives one occurrence something of its own without moving or retitling
it: an alarm ("this event only" in iOS), a tick in a recurring task (Thunderbird), a
private flag and an attendee's answer (Outlook). The CRM has no exception for such an
occurrence, so nothing reaches the CRM; but when the CRM then changes the series and the
resource is written back, the occurrence must keep what its user gave it, re-based on
the new series (a CRM retitle reaches it). Only when the CRM's change removes the
occurrence itself does its override go, and the pass report says so.

The client edits are plain HTTP PUTs of what the clients write (``client_edits``); every
case ends with an idle pass that plans nothing.
"""

from __future__ import annotations

import datetime as dt

import pytest
from icalendar import Component

from mappings.occurrences import occurrences
from tests.integration import client_edits as ce
from tests.integration import test_sync
from tests.integration.client_edits import oslo
from tests.integration.test_sync import STANDUP, TASK, WEEKLY, Env, exception_at

#: The fixtures of the sync tests: one fresh calendar with the follow-up set pushed.
env = test_sync.env
synced = test_sync.synced

pytestmark = pytest.mark.server

#: An unedited Monday of WEEKLY (its moved one is 16 March, its cancelled one 6 April).
MONDAY = oslo(2026, 3, 23, 10)


def override_at(data_env: Env, followup_id: str, original: dt.datetime) -> Component:
    override = ce.override_of(data_env.resource(followup_id).calendar, original)
    assert override is not None, f"no override for {original} on the server"
    return override


def alarms(component: Component) -> list[str]:
    return [str(alarm.get("TRIGGER").to_ical().decode()) for alarm in component.subcomponents]


def assert_idle(env: Env) -> None:
    report = env.sync()
    assert report.plan.actions == (), report.plan.actions


def test_alarm_for_one_occurrence_survives_a_crm_retitle(synced: Env) -> None:
    resource = synced.resource(WEEKLY)
    synced.client.replace(resource, ce.alarm_for_one_occurrence(resource.data, MONDAY))
    before = synced.followup(WEEKLY)
    synced.sync()
    assert occurrences(synced.followup(WEEKLY)) == occurrences(before), (
        "an alarm is nothing the CRM holds"
    )
    assert_idle(synced)

    synced.edit_in_crm(WEEKLY, title="Weekly status (renamed in CRM)")
    report = synced.sync()
    assert report.applied.done == {"server update": 1}
    assert report.applied.notes == []

    override = override_at(synced, WEEKLY, MONDAY)
    assert alarms(override) == ["-PT45M"], "the occurrence's own reminder is kept"
    assert str(override["TRANSP"]) == "TRANSPARENT"
    assert "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR" in override
    assert str(override["SUMMARY"]) == "Weekly status (renamed in CRM)", "re-based on the master"
    assert override["DTSTART"].dt == MONDAY
    moved = override_at(synced, WEEKLY, oslo(2026, 3, 16, 10))
    assert moved["DTSTART"].dt == oslo(2026, 3, 16, 14), "the CRM's own exception is unchanged"
    assert_idle(synced)


def test_a_client_retitle_of_the_occurrence_wins_over_the_crm_retitle(synced: Env) -> None:
    resource = synced.resource(WEEKLY)
    data = ce.alarm_for_one_occurrence(resource.data, MONDAY)
    data = ce.move_occurrence(data, MONDAY, MONDAY, MONDAY + dt.timedelta(hours=1))
    cal = ce.Calendar.from_ical(data)
    override = ce.override_of(cal, MONDAY)
    assert override is not None
    override.pop("SUMMARY")
    override.add("summary", "Status with the auditors")
    synced.client.replace(resource, cal.to_ical())
    synced.sync()
    assert exception_at(synced.followup(WEEKLY), MONDAY.replace(tzinfo=None)).title == (
        "Status with the auditors"
    )

    synced.edit_in_crm(WEEKLY, title="Weekly status (renamed in CRM)")
    synced.sync()
    override = override_at(synced, WEEKLY, MONDAY)
    assert str(override["SUMMARY"]) == "Status with the auditors"
    assert "-PT45M" in alarms(override)
    assert str(ce.master_of(synced.resource(WEEKLY).calendar)["SUMMARY"]) == (
        "Weekly status (renamed in CRM)"
    )
    assert_idle(synced)


def test_one_completed_task_occurrence_stays_completed_after_a_crm_edit(synced: Env) -> None:
    occurrence = oslo(2026, 2, 28, 15)
    resource = synced.resource(TASK)
    synced.client.replace(resource, ce.complete_task_occurrence(resource.data, occurrence))
    synced.sync()
    assert_idle(synced)

    synced.edit_in_crm(TASK, location="Finance office")
    synced.sync()

    override = override_at(synced, TASK, occurrence)
    assert override.name == "VTODO"
    assert str(override["STATUS"]) == "COMPLETED"
    assert int(override["PERCENT-COMPLETE"]) == 100
    assert "COMPLETED" in override
    assert str(override["LOCATION"]) == "Finance office"
    open_ones = [
        c
        for c in ce.components(synced.resource(TASK).data)
        if "RECURRENCE-ID" in c and str(c.get("STATUS", "")) == "COMPLETED"
    ]
    assert len(open_ones) == 1, "only the ticked occurrence is completed"
    assert_idle(synced)


def test_private_occurrence_with_its_own_attendee_survives_a_crm_edit(synced: Env) -> None:
    occurrence = oslo(2026, 1, 14, 9)
    resource = synced.resource(STANDUP)
    synced.client.replace(resource, ce.answer_and_classify_occurrence(resource.data, occurrence))
    synced.sync()

    synced.edit_in_crm(STANDUP, title="Daily standup (CRM)")
    synced.sync()

    override = override_at(synced, STANDUP, occurrence)
    assert str(override["CLASS"]) == "PRIVATE"
    attendee = override["ATTENDEE"]
    assert str(attendee) == "mailto:carol@example.com"
    assert str(attendee.params["PARTSTAT"]) == "TENTATIVE"
    assert str(override["X-MICROSOFT-CDO-BUSYSTATUS"]) == "TENTATIVE"
    assert str(override["SUMMARY"]) == "Daily standup (CRM)"
    assert str(override["LOCATION"]) == "Team room 3"
    assert_idle(synced)


def test_client_addition_and_crm_edit_in_the_same_pass_are_both_kept(synced: Env) -> None:
    resource = synced.resource(WEEKLY)
    synced.client.replace(resource, ce.alarm_for_one_occurrence(resource.data, MONDAY))
    synced.edit_in_crm(WEEKLY, location="Room 12")
    synced.sync()

    override = override_at(synced, WEEKLY, MONDAY)
    assert alarms(override) == ["-PT45M"]
    assert str(override["LOCATION"]) == "Room 12"
    assert synced.followup(WEEKLY).location == "Room 12"
    assert_idle(synced)


def test_crm_moving_the_series_moves_the_occurrence_with_its_alarm(synced: Env) -> None:
    resource = synced.resource(WEEKLY)
    synced.client.replace(resource, ce.alarm_for_one_occurrence(resource.data, MONDAY))
    synced.sync()

    weekly = synced.followup(WEEKLY)
    synced.edit_in_crm(
        WEEKLY,
        start="2026-03-02T12:00:00",
        end="2026-03-02T13:00:00",
        exceptions=[
            {"original_start": "2026-03-16T12:00:00", "start": "2026-03-16T14:00:00",
             "end": "2026-03-16T15:00:00"},
            {"original_start": "2026-04-06T12:00:00", "cancelled": True},
        ],
    )  # fmt: skip
    assert len(weekly.exceptions) == 2
    report = synced.sync()
    assert report.applied.notes == []

    cal = synced.resource(WEEKLY).calendar
    assert ce.override_of(cal, MONDAY) is None
    override = ce.override_of(cal, oslo(2026, 3, 23, 12))
    assert override is not None, "the occurrence moved with its series"
    assert override["DTSTART"].dt == oslo(2026, 3, 23, 12)
    assert alarms(override) == ["-PT45M"]
    assert_idle(synced)


def test_override_whose_occurrence_the_crm_deletes_goes_and_the_report_says_so(
    synced: Env,
) -> None:
    resource = synced.resource(WEEKLY)
    synced.client.replace(resource, ce.alarm_for_one_occurrence(resource.data, MONDAY))
    synced.sync()

    weekly = synced.followup(WEEKLY)
    synced.edit_in_crm(
        WEEKLY,
        exceptions=[
            *[e.model_dump(mode="json", exclude_none=True) for e in weekly.exceptions],
            {"original_start": "2026-03-23T10:00:00", "cancelled": True},
        ],
    )
    report = synced.sync()

    assert len(report.applied.notes) == 1
    item, message = report.applied.notes[0]
    assert item == WEEKLY
    assert "2026-03-23T10:00:00+01:00" in message and "no longer in the series" in message
    cal = synced.resource(WEEKLY).calendar
    assert ce.override_of(cal, MONDAY) is None
    assert MONDAY.astimezone(dt.UTC) in ce.exdates_of(ce.master_of(cal))
    assert_idle(synced)


# ======================================================================== one occurrence all-day


@pytest.mark.parametrize("style", ["thunderbird", "outlook"])
def test_occurrence_made_all_day_in_a_client_reaches_the_crm_and_stays(
    synced: Env, style: str
) -> None:
    resource = synced.resource(WEEKLY)
    synced.client.replace(
        resource, ce.all_day_occurrence(resource.data, MONDAY, dt.date(2026, 3, 23), style=style)
    )
    report = synced.sync()
    assert report.ok and not report.read_errors, "the series stays readable"

    exception = exception_at(synced.followup(WEEKLY), MONDAY.replace(tzinfo=None))
    assert exception is not None and exception.all_day
    assert (exception.start, exception.end) == (dt.date(2026, 3, 23), dt.date(2026, 3, 24))
    assert_idle(synced)

    synced.edit_in_crm(WEEKLY, title="Weekly status (renamed in CRM)")
    synced.sync()
    override = override_at(synced, WEEKLY, MONDAY)
    assert override["DTSTART"].dt == dt.date(2026, 3, 23), "still all-day on the server"
    assert override["DTEND"].dt == dt.date(2026, 3, 24)
    assert str(override["SUMMARY"]) == "Weekly status (renamed in CRM)"
    if style == "outlook":
        assert str(override["X-MICROSOFT-CDO-ALLDAYEVENT"]) == "TRUE"
    assert_idle(synced)


def test_occurrence_made_all_day_in_the_crm_shows_all_day_in_a_client(synced: Env) -> None:
    weekly = synced.followup(WEEKLY)
    synced.edit_in_crm(
        WEEKLY,
        exceptions=[
            *[e.model_dump(mode="json", exclude_none=True) for e in weekly.exceptions],
            {"original_start": "2026-03-23T10:00:00", "all_day": True,
             "title": "Offsite (all day)"},
        ],
    )  # fmt: skip
    synced.sync()

    override = override_at(synced, WEEKLY, MONDAY)
    assert override["DTSTART"].dt == dt.date(2026, 3, 23)
    assert override["DTEND"].dt == dt.date(2026, 3, 24)
    assert override["RECURRENCE-ID"].dt == MONDAY, "the key stays the series' date-time"
    assert_idle(synced)

    # A client then gives that day an alarm; the CRM moves the series' place.
    resource = synced.resource(WEEKLY)
    synced.client.replace(resource, ce.alarm_for_one_occurrence(resource.data, MONDAY))
    synced.sync()
    synced.edit_in_crm(WEEKLY, location="Room 9")
    synced.sync()
    override = override_at(synced, WEEKLY, MONDAY)
    assert override["DTSTART"].dt == dt.date(2026, 3, 23)
    assert str(override["SUMMARY"]) == "Offsite (all day)"
    assert str(override["LOCATION"]) == "Room 9"
    assert alarms(override) == ["-PT45M"]
    exception = exception_at(synced.followup(WEEKLY), MONDAY.replace(tzinfo=None))
    assert exception.all_day and exception.title == "Offsite (all day)"
    assert_idle(synced)


# ======================================================================== odd files on the server

#: Radicale answers 400 to a PUT of either file below (it checks UIDs on write), so only
#: a server that stores what it is sent can hold them: Xandikos does.
xandikos_only = pytest.mark.parametrize("dav_server", ["xandikos"], indirect=True)


@xandikos_only
def test_event_without_uid_is_imported_with_a_stable_uid_and_written_back_once(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.configure(import_new=True)
    url = env.client.create(
        "legacy-export.ics",
        ce.without_uid("Supplier review", oslo(2026, 4, 7, 13), oslo(2026, 4, 7, 14)),
    )
    with caplog.at_level("WARNING"):
        report = env.sync()
    assert report.applied.done == {"crm create": 1}
    [imported] = env.store.all()
    assert imported.title == "Supplier review"
    assert imported.effective_uid.startswith("derived-")
    assert any(
        "legacy-export.ics" in r.getMessage() and "no UID" in r.getMessage() for r in caplog.records
    ), "the warning names the item"
    assert_idle(env)

    env.edit_in_crm(imported.id, title="Supplier review (CRM)")
    report = env.sync()
    assert report.applied.done == {"server update": 1}
    [fetched] = env.client.all()
    assert fetched.url == url, "the same resource, no second copy"
    [event] = ce.components(fetched.data)
    assert str(event["UID"]) == imported.effective_uid, "the derived UID is now on the server"
    assert str(event["SUMMARY"]) == "Supplier review (CRM)"
    assert_idle(env)


@xandikos_only
def test_two_master_copies_keep_the_newest_with_the_others_exdates(
    synced: Env, caplog: pytest.LogCaptureFixture
) -> None:
    resource = synced.resource(WEEKLY)
    synced.client.replace(
        resource,
        ce.second_master_copy(
            resource.data, summary="Weekly status (newest copy)", old_copy_exdate=MONDAY
        ),
    )
    assert (
        len([c for c in ce.components(synced.resource(WEEKLY).data) if "RECURRENCE-ID" not in c])
        == 2
    )
    with caplog.at_level("WARNING"):
        report = synced.sync()
    assert not report.read_errors, "the series is read, not refused"
    assert any("master copies" in r.getMessage() for r in caplog.records)
    weekly = synced.followup(WEEKLY)
    assert weekly.title == "Weekly status (newest copy)"
    assert exception_at(weekly, MONDAY.replace(tzinfo=None)).cancelled, "the old copy's EXDATE"
    moved = exception_at(weekly, dt.datetime(2026, 3, 16, 10))
    assert moved.start == dt.datetime(2026, 3, 16, 14), "the overrides are kept"

    synced.edit_in_crm(WEEKLY, location="Room 7")
    synced.sync()
    cal = synced.resource(WEEKLY).calendar
    masters = [c for c in cal.walk("VEVENT") if "RECURRENCE-ID" not in c]
    assert len(masters) == 1, "the write-back leaves one master"
    assert str(masters[0]["SUMMARY"]) == "Weekly status (newest copy)"
    assert str(masters[0]["LOCATION"]) == "Room 7"
    assert MONDAY.astimezone(dt.UTC) in ce.exdates_of(masters[0])
    assert ce.override_of(cal, oslo(2026, 3, 16, 10)) is not None
    assert_idle(synced)
