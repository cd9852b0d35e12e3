"""The SuperOffice connector's follow-up ids per tenant, and follow-ups made in a calendar.

Against the stand-in and Radicale / Xandikos, as ``test_crm_superoffice``: a follow-up made in
a calendar client (``import_new``) is booked in the CRM once and linked to its rows (no
duplicate, no loop); one whose rule no SuperOffice pattern is stays in the calendar only; and
follow-ups stored under the ids from before tenants were named keep them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mappings.occurrences import occurrences
from sync.crm.superoffice import documents
from sync.testing.superoffice.server import SuperOfficeStandIn
from tests.integration import client_edits as ce
from tests.integration.test_crm_superoffice import (
    ASSOCIATE,
    assert_idle,
    book_weekly,
    crm,
    linked,
    run_reconcile,
    so_id,
    utc,
)
from tests.integration.test_sync import Env, env

__all__ = ["crm", "env", "linked"]
pytestmark = pytest.mark.server


def stored_ids(env: Env) -> list[str]:
    return sorted(f.id for f in env.store.all())


def test_follow_up_ids_name_the_tenant(linked: Env, crm: SuperOfficeStandIn) -> None:
    rule = book_weekly(crm)[0].rule_id
    assert run_reconcile(linked).imported == [so_id(linked, rule=rule)]
    assert so_id(linked, rule=rule) != f"so-r{rule}"
    assert so_id(linked, rule=rule).startswith("so-cust")


def test_a_follow_up_stored_under_its_old_id_keeps_it(
    linked: Env, crm: SuperOfficeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = documents.followup_id_for
    with monkeypatch.context() as before_tenants:
        before_tenants.setattr(
            documents,
            "followup_id_for",
            lambda row, rule, _tenant: f"so-r{rule}" if rule else f"so-a{row}",
        )
        rows = book_weekly(crm)
        assert run_reconcile(linked).imported == [f"so-r{rows[0].rule_id}"]
        linked.sync()
    assert documents.followup_id_for is named
    crm.tenant.update_row(rows[1], title="Renamed in the CRM")
    assert run_reconcile(linked).imported == [f"so-r{rows[0].rule_id}"]
    linked.sync()
    assert stored_ids(linked) == [f"so-r{rows[0].rule_id}"]
    assert "Renamed in the CRM" in linked.resource(f"so-r{rows[0].rule_id}").text
    assert_idle(linked)


def crm_rows(crm: SuperOfficeStandIn) -> list[Any]:
    return sorted(crm.tenant.rows.values(), key=lambda row: row.start)


def test_a_series_made_in_a_client_is_booked_in_the_crm_once_and_linked(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    linked.configure(import_new=True)
    uid = "5d2e-thunderbird-new@example.com"
    linked.client.create(
        "5d2e.ics",
        ce.new_event(
            uid, "Planning", utc(2026, 4, 6, 9), utc(2026, 4, 6, 10), rrule="FREQ=WEEKLY;COUNT=3"
        ),
    )
    linked.sync()
    [made] = linked.store.all()
    report = run_reconcile(linked)
    # Read back, it gains the CRM's owner (the associate): saved once, then idle.
    assert report.written == [made.id] and report.imported in ([], [made.id])
    booked = crm_rows(crm)
    assert [(row.start, row.title, row.associate_id) for row in booked] == [
        (dt.datetime(2026, 4, day, 9), "Planning", ASSOCIATE) for day in (6, 13, 20)
    ]
    assert len({row.rule_id for row in booked}) == 1 and booked[0].rule_id
    assert stored_ids(linked) == [made.id], "linked, not imported a second time"
    linked.sync()  # the CRM's reading (with its owner) reaches the calendar once
    assert_idle(linked)

    # Linked: a client's move of one occurrence reaches that row only.
    resource = linked.client.by_uid(made.effective_uid)
    linked.client.replace(
        resource,
        ce.move_occurrence(
            resource.data, utc(2026, 4, 13, 9), utc(2026, 4, 14, 11), utc(2026, 4, 14, 12)
        ),
    )
    linked.sync()
    assert run_reconcile(linked).written == [made.id]
    assert [row.start for row in crm_rows(crm)] == [
        dt.datetime(2026, 4, 6, 9),
        dt.datetime(2026, 4, 14, 11),
        dt.datetime(2026, 4, 20, 9),
    ]
    assert stored_ids(linked) == [made.id]
    assert_idle(linked)


def test_a_single_event_made_in_a_client_is_booked_and_a_crm_edit_comes_back(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    linked.configure(import_new=True)
    linked.client.create(
        "a1.ics",
        ce.new_event("a1-new@example.com", "Lunch", utc(2026, 4, 7, 11), utc(2026, 4, 7, 12)),
    )
    linked.sync()
    [made] = linked.store.all()
    assert run_reconcile(linked).written == [made.id]
    [row] = crm_rows(crm)
    assert (row.start, row.end, row.rule_id) == (
        dt.datetime(2026, 4, 7, 11),
        dt.datetime(2026, 4, 7, 12),
        0,
    )
    linked.sync()
    assert_idle(linked)
    crm.tenant.update_row(row, title="Lunch with Erin")
    assert run_reconcile(linked).imported == [made.id]
    linked.sync()
    assert "Lunch with Erin" in linked.client.by_uid(made.effective_uid).text
    assert stored_ids(linked) == [made.id]
    assert_idle(linked)


def test_a_rule_no_superoffice_pattern_is_stays_in_the_calendar_reported(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    linked.configure(import_new=True)
    linked.client.create(
        "h1.ics",
        ce.new_event(
            "h1-new@example.com", "Stand-up", utc(2026, 4, 8, 9), utc(2026, 4, 8, 9, 15),
            rrule="FREQ=HOURLY;COUNT=3",
        ),
    )  # fmt: skip
    linked.sync()
    [made] = linked.store.all()
    assert len(list(occurrences(made))) == 3
    report = run_reconcile(linked)
    assert report.skipped == [made.id] and report.written == []
    assert crm.tenant.rows == {}
    assert_idle(linked)


def test_an_occurrence_made_all_day_in_a_client_is_all_day_in_that_crm_row_only(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    rows = book_weekly(crm)
    followup_id = so_id(linked, rule=rows[0].rule_id)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    linked.client.replace(
        resource, ce.all_day_occurrence(resource.data, utc(2026, 3, 16, 9), dt.date(2026, 3, 16))
    )
    linked.sync()
    [stored] = linked.store.all()
    assert run_reconcile(linked).written == [followup_id]
    after = crm.tenant.series_rows(rows[0].rule_id)
    assert [(row.start, row.end, row.is_allday) for row in after] == [
        (dt.datetime(2026, 3, 2, 9), dt.datetime(2026, 3, 2, 10), False),
        (dt.datetime(2026, 3, 9, 9), dt.datetime(2026, 3, 9, 10), False),
        (dt.datetime(2026, 3, 16), dt.datetime(2026, 3, 17), True),
        (dt.datetime(2026, 3, 23, 9), dt.datetime(2026, 3, 23, 10), False),
    ]
    # Read back as the calendar has it (a day has no time zone: the tenant's is kept).
    [now] = linked.store.all()
    assert now.model_copy(update={"timezone": stored.timezone}) == stored
    linked.sync()
    assert_idle(linked)


def test_a_single_appointment_made_all_day_in_a_client_is_all_day_in_the_crm(
    linked: Env, crm: SuperOfficeStandIn
) -> None:
    row = crm.create(
        {"Title": "Offsite", "StartDate": "2026-03-04T09:00:00", "EndDate": "2026-03-04T17:00:00"},
        associate_id=ASSOCIATE,
    )
    followup_id = so_id(linked, row=row.appointment_id)
    run_reconcile(linked)
    linked.sync()
    resource = linked.resource(followup_id)
    linked.client.replace(resource, ce.all_day_single(resource.data, dt.date(2026, 3, 4)))
    linked.sync()
    [stored] = linked.store.all()
    assert run_reconcile(linked).written == [followup_id]
    after = crm.tenant.rows[row.appointment_id]
    assert (after.start, after.end, after.is_allday) == (
        dt.datetime(2026, 3, 4),
        dt.datetime(2026, 3, 5),
        True,
    )
    # Read back as the calendar has it (a day has no time zone: the tenant's is kept).
    [now] = linked.store.all()
    assert now.model_copy(update={"timezone": stored.timezone}) == stored
    linked.sync()
    assert_idle(linked)
