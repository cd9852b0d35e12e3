"""The SuperOffice connector end to end: the CRM stand-in, the store, and Radicale / Xandikos.

A series booked in the (stand-in) CRM reaches the calendar through one reconcile pass and one
sync pass; a calendar user's edit, written by plain HTTP as clients write it, comes back
through a sync pass and a reconcile pass as that occurrence only. Every test ends with the
stand-in's traffic inside SuperOffice's published API descriptions, and with idle passes
(nothing read back as a new change on either side: no loops).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from mappings.occurrences import occurrences
from sync.cli.main import cli as cli_main
from sync.config.crm import CrmSettings
from sync.crm.reconcile import ReconcileReport, reconcile
from sync.crm.superoffice import documents
from sync.crm.superoffice.connector import SuperOfficeConnector, open_connector
from sync.policies import ConflictPolicy
from sync.testing.superoffice.auth import private_pem
from sync.testing.superoffice.server import SuperOfficeStandIn
from sync.testing.superoffice.tenant import Row
from tests.integration import client_edits as ce
from tests.integration import test_sync
from tests.integration.test_sync import Env

env = test_sync.env
pytestmark = pytest.mark.server

ASSOCIATE = 5


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


WEEKLY_RULE: dict[str, Any] = {
    "IsRecurrence": True,
    "Pattern": "Weekly",
    "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
    "RecurrenceEndType": "Counter",
    "RecurrenceCounter": 4,
}


@pytest.fixture
def crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[SuperOfficeStandIn]:
    monkeypatch.setenv("SO_PASSWORD", "secret")
    with SuperOfficeStandIn() as standin:
        standin.add_basic_user("sync", "secret", associate_id=ASSOCIATE)
        yield standin
        assert standin.violations == []
        assert standin.refused_requests == []


@pytest.fixture
def linked(env: Env, crm: SuperOfficeStandIn) -> Env:
    settings = CrmSettings(
        url=crm.base_url,
        username="sync",
        password_env="SO_PASSWORD",
        associates=[ASSOCIATE],
        timezone="UTC",  # the stand-in's local time
        context_identifier="Cust12345",  # names the tenant in follow-up ids
    )
    env.configure(crm=settings)
    return env


def run_reconcile(env: Env) -> ReconcileReport:
    assert env.account.crm is not None
    connector = open_connector(env.account.crm, env.account.name)
    try:
        report = reconcile(env.account, env.db, connector)
    finally:
        connector.close()
    assert report.ok, report.errors
    return report


def book_weekly(crm: SuperOfficeStandIn, title: str = "Weekly status") -> list[Row]:
    first = crm.create(
        {
            "Title": title,
            "StartDate": "2026-03-02T09:00:00",
            "EndDate": "2026-03-02T10:00:00",
            "Recurrence": WEEKLY_RULE,
        },
        associate_id=ASSOCIATE,
    )
    return crm.tenant.series_rows(first.rule_id)


def so_id(env: Env, *, rule: int = 0, row: int = 0) -> str:
    """The follow-up id the connector gives a series (``rule``) or a single row, per tenant."""
    settings = env.account.crm
    assert settings is not None
    tenant = documents.tenant_key(settings.url, settings.context_identifier)
    return documents.followup_id_for(row, rule, tenant)


def rows_now(crm: SuperOfficeStandIn, rule_id: int) -> list[tuple[str, str]]:
    return [(row.start.isoformat(), row.title) for row in crm.tenant.series_rows(rule_id)]


def listed_conflicts(env: Env) -> list[dict[str, Any]]:
    """What ``followup-sync conflicts --json`` lists for the account's database."""
    result = CliRunner().invoke(
        cli_main, ["conflicts", "--json", "--database", str(env.db_path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    listed: list[dict[str, Any]] = json.loads(result.output)
    return listed


def assert_idle(env: Env) -> None:
    again = run_reconcile(env)
    assert (again.imported, again.written, again.deleted) == ([], [], []), again
    assert env.sync().plan.actions == ()


def test_crm_series_reaches_the_calendar_and_a_moved_occurrence_comes_back_alone(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    rows = book_weekly(crm)
    rule = rows[0].rule_id
    followup_id = so_id(linked, rule=rule)

    first = run_reconcile(linked)
    assert first.imported == [followup_id]
    linked.sync()
    resource = linked.resource(followup_id)
    assert "RRULE" in resource.text and "Weekly status" in resource.text

    linked.client.replace(
        resource,
        ce.move_occurrence(
            resource.data, utc(2026, 3, 16, 9), utc(2026, 3, 17, 11), utc(2026, 3, 17, 12)
        ),
    )
    pulled = linked.sync()
    assert pulled.applied.done == {"crm update": 1}
    back = run_reconcile(linked)
    assert back.written == [followup_id] and back.conflicts == []

    assert rows_now(crm, rule) == [
        ("2026-03-02T09:00:00", "Weekly status"),
        ("2026-03-09T09:00:00", "Weekly status"),
        ("2026-03-17T11:00:00", "Weekly status"),
        ("2026-03-23T09:00:00", "Weekly status"),
    ]
    moved = crm.tenant.series_rows(rule)[2]
    assert moved.is_exception and moved.original_start == dt.datetime(2026, 3, 16, 9)
    assert_idle(linked)


def test_occurrence_deleted_in_a_client_is_deleted_in_the_crm_only_there(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    rule = book_weekly(crm)[0].rule_id
    followup_id = so_id(linked, rule=rule)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    linked.client.replace(resource, ce.exdate_occurrence(resource.data, utc(2026, 3, 9, 9)))
    linked.sync()
    run_reconcile(linked)
    assert [start for start, _ in rows_now(crm, rule)] == [
        "2026-03-02T09:00:00",
        "2026-03-16T09:00:00",
        "2026-03-23T09:00:00",
    ]
    assert_idle(linked)


def test_crm_edits_and_deletions_reach_the_calendar_without_a_webhook(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    rows = book_weekly(crm)
    followup_id = so_id(linked, rule=rows[0].rule_id)
    run_reconcile(linked)
    linked.sync()
    crm.drop_next_webhooks(5)  # lost: the next reconcile heals it all the same
    crm.edit_behind(rows[1].appointment_id, title="Status with the auditors")
    with crm.lock:
        crm.tenant.delete_row(crm.tenant.row(rows[3].appointment_id))
    report = run_reconcile(linked)
    assert report.imported == [followup_id]
    linked.sync()
    stored = linked.followup(followup_id)
    by_start = {e.original_start: e for e in stored.exceptions}
    assert by_start[dt.datetime(2026, 3, 9, 9)].title == "Status with the auditors"
    assert by_start[dt.datetime(2026, 3, 23, 9)].cancelled
    assert "Status with the auditors" in linked.resource(followup_id).text
    assert_idle(linked)


def test_a_crm_edit_racing_a_calendar_edit_is_a_logged_conflict_the_crm_wins(
    linked: Env, crm: SuperOfficeStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    rows = book_weekly(crm)
    rule = rows[0].rule_id
    followup_id = so_id(linked, rule=rule)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    linked.client.replace(
        resource,
        ce.move_occurrence(
            resource.data, utc(2026, 3, 16, 9), utc(2026, 3, 17, 11), utc(2026, 3, 17, 12)
        ),
    )
    linked.sync()
    crm.edit_behind(rows[2].appointment_id, title="Moved to the board room")  # meanwhile
    report = run_reconcile(linked)
    assert report.conflicts == [followup_id]
    assert "conflict on " + followup_id in caplog.text
    assert rows_now(crm, rule)[2] == ("2026-03-16T09:00:00", "Moved to the board room")
    [listed] = listed_conflicts(linked)
    assert (listed["followup_id"], listed["policy"], listed["winner"]) == (
        followup_id, "crm-wins", "crm"
    )  # fmt: skip
    assert "Moved to the board room" in json.dumps(listed["kept"])
    assert "Moved to the board room" not in json.dumps(listed["lost"])
    assert "2026-03-17T11:00:00" in json.dumps(listed["lost"])  # the calendar's move
    linked.sync()
    assert "Moved to the board room" in linked.resource(followup_id).text
    assert_idle(linked)


#: One series per SuperOffice pattern (superoffice-recurrence.md §1.2, §2.1): its first start.
PATTERNS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "every-workday",
        "2026-03-05T14:00:00",
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}},
    ),
    (
        "every-3-days",
        "2026-03-02T09:00:00",
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryCyclicDay", "Cycle": 3}},
    ),
    (
        "tuesday-and-thursday",
        "2026-03-03T11:30:00",
        {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Tuesday, Thursday", "Cycle": 1}},
    ),
    (
        "every-2-weeks",
        "2026-03-02T09:00:00",
        {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Monday", "Cycle": 2}},
    ),
    (
        "day-20-monthly",
        "2026-03-20T10:00:00",
        {"Pattern": "Monthly", "MonthPattern": {"Pattern": "DayOfMonth", "Day": 20, "Cycle": 1}},
    ),
    (
        "fourth-thursday",
        "2026-03-26T13:00:00",
        {
            "Pattern": "Monthly",
            "MonthPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 1,
                "Weekday": "Thursday",
                "WeekOfMonth": "Fourth",
            },
        },
    ),
    (
        "yearly-day",
        "2026-03-15T08:00:00",
        {"Pattern": "Yearly", "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 3, "Day": 15}},
    ),
    (
        "yearly-fourth-thursday-of-august",
        "2026-08-27T10:00:00",
        {
            "Pattern": "Yearly",
            "YearPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 8,
                "Weekday": "Thursday",
                "WeekOfMonth": "Fourth",
            },
        },
    ),
    (
        "every-weekday",
        "2026-03-06T07:30:00",
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWeekday"}},
    ),
    (
        "custom-dates",
        "2026-03-02T09:00:00",
        {
            "Pattern": "Custom",
            "Dates": [
                {"Date": f"{day}T00:00:00"}
                for day in ("2026-03-02", "2026-03-19", "2026-04-07", "2026-05-11")
            ],
        },
    ),
]


@pytest.mark.parametrize(("name", "start", "rule"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_every_pattern_goes_to_the_calendar_and_one_moved_occurrence_comes_back(
    linked: Env, crm: SuperOfficeStandIn, name: str, start: str, rule: dict[str, Any]
) -> None:
    begin = dt.datetime.fromisoformat(start)
    first = crm.create(
        {
            "Title": name,
            "StartDate": start,
            "EndDate": (begin + dt.timedelta(minutes=45)).isoformat(),
            "Recurrence": {
                "IsRecurrence": True,
                **rule,
                "RecurrenceEndType": "Counter",
                "RecurrenceCounter": 4,
            },
        },
        associate_id=ASSOCIATE,
    )
    rule_id = first.rule_id
    before = [row.start for row in crm.tenant.series_rows(rule_id)]
    assert len(before) == 4
    followup_id = so_id(linked, rule=rule_id)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    second = before[1].replace(tzinfo=dt.UTC)
    linked.client.replace(
        resource,
        ce.move_occurrence(
            resource.data,
            second,
            second + dt.timedelta(hours=2),
            second + dt.timedelta(hours=2, minutes=45),
        ),
    )
    linked.sync()
    assert run_reconcile(linked).written == [followup_id]
    after = [row.start for row in crm.tenant.series_rows(rule_id)]
    assert after == [before[0], before[1] + dt.timedelta(hours=2), before[2], before[3]]
    assert_idle(linked)


def test_a_task_occurrence_completed_in_a_client_is_completed_in_the_crm_only(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    first = crm.create(
        {
            "Title": "Submit the report",
            "Type": "inChecklist",
            "StartDate": "2026-03-02T15:00:00",
            "EndDate": "2026-03-02T16:00:00",
            "Recurrence": WEEKLY_RULE,
        },
        associate_id=ASSOCIATE,
    )
    followup_id = so_id(linked, rule=first.rule_id)
    run_reconcile(linked)
    assert linked.followup(followup_id).kind.value == "task"
    linked.sync()
    resource = linked.resource(followup_id)
    assert "VTODO" in resource.text
    linked.client.replace(resource, ce.complete_task_occurrence(resource.data, utc(2026, 3, 9, 15)))
    linked.sync()
    assert run_reconcile(linked).written == [followup_id]
    assert [row.completed for row in crm.tenant.series_rows(first.rule_id)] == [
        "NotStarted",
        "Completed",
        "NotStarted",
        "NotStarted",
    ]
    assert_idle(linked)


def test_a_ticket_expiring_mid_pass_is_renewed_and_the_pass_completes(
    env: Env, crm: SuperOfficeStandIn, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(private_pem(crm.sign_in.application_key))
    monkeypatch.setenv("SO_APP_TOKEN", crm.sign_in.application_token)
    monkeypatch.setenv("SO_SYSTEM_TOKEN", crm.sign_in.system_user_token)
    env.configure(
        crm=CrmSettings(
            url=crm.base_url,
            auth="ticket",
            app_token_env="SO_APP_TOKEN",
            system_token_env="SO_SYSTEM_TOKEN",
            private_key_file=str(key_file),
            context_identifier=crm.sign_in.context_identifier,
            associates=[ASSOCIATE],
            timezone="UTC",
        )
    )
    rule_id = book_weekly(crm)[0].rule_id
    assert env.account.crm is not None
    connector = open_connector(env.account.crm, env.account.name)
    reads = SuperOfficeConnector.read_series

    def expire_then_read(self: SuperOfficeConnector, *args: Any) -> Any:
        crm.expire_tickets()  # between the listing and the reads: mid-pass
        return reads(self, *args)

    monkeypatch.setattr(SuperOfficeConnector, "read_series", expire_then_read)
    try:
        report = reconcile(env.account, env.db, connector)
        auth = connector.client.auth
    finally:
        connector.close()
    assert report.ok and report.imported == [so_id(env, rule=rule_id)], report
    assert getattr(auth, "sign_ins", 0) >= 2, "signed in again after the 401"
    env.sync()
    assert "RRULE" in env.resource(so_id(env, rule=rule_id)).text


def test_a_series_deleted_in_a_client_is_deleted_in_the_crm(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    rule_id = book_weekly(crm)[0].rule_id
    followup_id = so_id(linked, rule=rule_id)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    linked.client.delete(resource.url, resource.etag)
    linked.sync(force_delete=True)  # the only resource: past the empty-calendar safety stop
    assert run_reconcile(linked).written == [followup_id]
    assert crm.tenant.series_rows(rule_id) == []
    assert_idle(linked)


def test_under_server_wins_the_calendar_edit_overwrites_a_racing_crm_edit_and_is_logged(
    linked: Env, crm: SuperOfficeStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    linked.configure(conflict_policy=ConflictPolicy.server_wins)
    rows = book_weekly(crm)
    rule = rows[0].rule_id
    followup_id = so_id(linked, rule=rule)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    linked.client.replace(
        resource,
        ce.move_occurrence(
            resource.data, utc(2026, 3, 16, 9), utc(2026, 3, 17, 11), utc(2026, 3, 17, 12)
        ),
    )
    linked.sync()
    crm.edit_behind(rows[1].appointment_id, location="Board room")  # another occurrence
    report = run_reconcile(linked)
    assert report.conflicts == [followup_id]
    assert "the calendar's version wins" in caplog.text
    [listed] = listed_conflicts(linked)
    assert (listed["followup_id"], listed["policy"], listed["winner"]) == (
        followup_id, "server-wins", "server"
    )  # fmt: skip
    assert "Board room" in json.dumps(listed["lost"]) and "Board room" not in json.dumps(
        listed["kept"]
    )
    assert rows_now(crm, rule)[2] == ("2026-03-17T11:00:00", "Weekly status")
    linked.sync()
    assert_idle(linked)


@pytest.mark.parametrize(
    ("crm_clock", "winner", "row_after"),
    [
        # The CRM edit is an hour after the calendar's: the CRM's version is kept.
        (dt.timedelta(hours=1), "crm", ("2026-03-16T09:00:00", "Weekly status")),
        # The CRM's clock says its edit was two hours before the calendar's: the calendar wins.
        (dt.timedelta(hours=-2), "server", ("2026-03-17T11:00:00", "Weekly status")),
    ],
    ids=["crm-newer", "calendar-newer"],
)
def test_under_newest_wins_the_later_of_a_racing_crm_and_calendar_edit_is_kept(
    linked: Env,
    crm: SuperOfficeStandIn,
    crm_clock: dt.timedelta,
    winner: str,
    row_after: tuple[str, str],
) -> None:
    linked.configure(conflict_policy=ConflictPolicy.newest_wins)
    if crm_clock < dt.timedelta():
        crm.advance_clock(crm_clock)  # before booking: the tenant's stamps only move forward
    rows = book_weekly(crm)
    rule = rows[0].rule_id
    followup_id = so_id(linked, rule=rule)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    linked.client.replace(
        resource,
        ce.move_occurrence(
            resource.data, utc(2026, 3, 16, 9), utc(2026, 3, 17, 11), utc(2026, 3, 17, 12)
        ),
    )
    linked.sync()
    if crm_clock > dt.timedelta():
        crm.advance_clock(crm_clock)
    crm.edit_behind(rows[1].appointment_id, location="Board room")  # another occurrence
    report = run_reconcile(linked)
    assert report.conflicts == [followup_id]
    assert rows_now(crm, rule)[2] == row_after
    [listed] = listed_conflicts(linked)
    assert (listed["followup_id"], listed["policy"], listed["winner"]) == (
        followup_id, "newest-wins", winner
    )  # fmt: skip
    assert ("Board room" in json.dumps(listed["kept"])) == (winner == "crm")
    linked.sync()
    assert_idle(linked)


def test_this_and_following_in_a_client_is_the_crms_this_and_forward(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    rule = book_weekly(crm)[0].rule_id
    followup_id = so_id(linked, rule=rule)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    linked.client.replace(
        resource,
        ce.this_and_future_override(
            resource.data, utc(2026, 3, 16, 9), utc(2026, 3, 16, 11), utc(2026, 3, 16, 12)
        ),
    )
    linked.sync()
    tail_id = f"{followup_id}-20260316"
    assert linked.store.get(tail_id) is not None, "the engine split the follow-up"
    report = run_reconcile(linked)
    assert report.written == [followup_id, tail_id]
    assert [start for start, _ in rows_now(crm, rule)] == [
        "2026-03-02T09:00:00",
        "2026-03-09T09:00:00",
        "2026-03-16T11:00:00",
        "2026-03-23T11:00:00",
    ], "one series in the CRM, the later rows at the new time"
    assert linked.store.get(tail_id) is None, "the tail is the CRM series' again"
    linked.sync()
    assert linked.uids_on_server() == [linked.followup(followup_id).effective_uid]
    shown = [o.start for o in occurrences(linked.followup(followup_id), include_cancelled=False)]
    assert [s.replace(tzinfo=None) for s in shown] == [  # type: ignore[call-arg]
        dt.datetime(2026, 3, 2, 9),
        dt.datetime(2026, 3, 9, 9),
        dt.datetime(2026, 3, 16, 11),
        dt.datetime(2026, 3, 23, 11),
    ]
    assert_idle(linked)


def test_one_occurrence_retitled_or_cancelled_as_an_override_changes_that_row_only(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    rule = book_weekly(crm)[0].rule_id
    followup_id = so_id(linked, rule=rule)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    data = ce.move_occurrence(
        resource.data,
        utc(2026, 3, 9, 9),
        utc(2026, 3, 9, 9),
        utc(2026, 3, 9, 10),
        summary="Status with the auditors",
    )
    data = ce.cancel_occurrence(data, utc(2026, 3, 23, 9), duration=dt.timedelta(hours=1))
    linked.client.replace(resource, data)
    linked.sync()
    assert run_reconcile(linked).written == [followup_id]
    assert rows_now(crm, rule) == [
        ("2026-03-02T09:00:00", "Weekly status"),
        ("2026-03-09T09:00:00", "Status with the auditors"),
        ("2026-03-16T09:00:00", "Weekly status"),
    ]
    assert_idle(linked)


def test_a_single_call_moved_and_a_single_task_completed_in_clients_reach_the_crm(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    call = crm.create(
        {
            "Title": "Call Nordic Freight",
            "Task": {"Value": "Phone"},
            "StartDate": "2026-03-03T11:00:00",
            "EndDate": "2026-03-03T11:30:00",
        },
        associate_id=ASSOCIATE,
    )
    task = crm.create(
        {
            "Title": "Send the offer",
            "Type": "inChecklist",
            "StartDate": "2026-03-04T15:00:00",
            "EndDate": "2026-03-04T16:00:00",
        },
        associate_id=ASSOCIATE,
    )
    call_id, task_id = (
        so_id(linked, row=call.appointment_id),
        so_id(linked, row=task.appointment_id),
    )
    run_reconcile(linked)
    assert linked.followup(task_id).kind.value == "task"
    linked.sync()
    resource = linked.resource(call_id)
    linked.client.replace(
        resource,
        ce.edit_series(resource.data, start=utc(2026, 3, 5, 14), end=utc(2026, 3, 5, 14, 30)),
    )
    resource = linked.resource(task_id)
    linked.client.replace(resource, ce.complete_task(resource.data))
    linked.sync()
    assert sorted(run_reconcile(linked).written) == sorted([call_id, task_id])
    moved = crm.tenant.row(call.appointment_id)
    assert (moved.start, moved.end) == (
        dt.datetime(2026, 3, 5, 14),
        dt.datetime(2026, 3, 5, 14, 30),
    )
    assert crm.tenant.row(task.appointment_id).completed == "Completed"
    assert_idle(linked)
