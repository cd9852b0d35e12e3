"""The planner's decision table, one test per row, with plain data (no server, no database).

Each test describes the last agreed state, what the CRM holds now and what the server
listed and returned, then asserts the exact actions ``plan()`` decides. The rows are
those of the table in the docstring of ``sync/engine/plan.py``; the safety rules
(``SideEmpty``, ``TooManyDeletes``, unreadable items, incremental listings) follow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.equivalence import same_meaning
from mappings.model import FollowUp, uid_for_id
from sync.engine.actions import (
    CreateFromServer,
    CreateOnServer,
    DeleteInCrm,
    DeleteOnServer,
    DetachInCrm,
    Forget,
    Merge,
    Plan,
    Planned,
    RecordState,
    SaveFromServer,
    UpdateOnServer,
    describe,
)
from sync.engine.chunks import Chunker
from sync.engine.merge import ConflictPolicy
from sync.engine.plan import OnServerDelete, PlanOptions, plan, plan_items
from sync.engine.views import CrmView, ServerDoc, ServerView, StateEntry, WriteIntent
from sync.errors import SideEmpty, TooManyDeletes
from sync.state.followups import CrmEntry, content_hash
from tests.factories import appointment, status_meeting

SYNCED_AT = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
EARLIER = SYNCED_AT + dt.timedelta(hours=1)
LATER = SYNCED_AT + dt.timedelta(hours=2)
ALARM = b"BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n"


# --- data ------------------------------------------------------------------------------


def weekly(followup_id: str = "1001", **changes: Any) -> FollowUp:
    """Six Mondays at 09:00 in Oslo from 6 January 2025, with ``changes`` applied."""
    data = status_meeting(
        followup_id, exceptions=[{"original_start": "2025-01-13T09:00:00", "cancelled": True}]
    )
    data.update(changes)
    return load_followup(data)


def single(followup_id: str = "2001", **changes: Any) -> FollowUp:
    data = appointment(
        followup_id,
        title="Call Kari",
        start="2025-01-08T14:00:00",
        end="2025-01-08T14:30:00",
        kind="call",
    )
    data.update(changes)
    return load_followup(data)


def href_of(followup: FollowUp) -> str:
    return f"/cal/{followup.effective_uid}.ics"


def data_of(followup: FollowUp, extra: bytes = b"") -> bytes:
    """Stand-in bytes of a resource: the planner only carries them."""
    return b"BEGIN:VCALENDAR\r\n" + followup.title.encode() + b"\r\n" + extra + b"END:VCALENDAR\r\n"


def synced(*docs: FollowUp, etag: str = '"1"') -> dict[str, StateEntry]:
    """The state after a pass that left ``docs`` on both sides."""
    return {
        d.id: StateEntry(d.id, d.effective_uid, href_of(d), etag, content_hash(d), d) for d in docs
    }


def crm_view(
    *live: FollowUp,
    deleted: Iterable[FollowUp] = (),
    updated_at: dt.datetime = SYNCED_AT,
) -> CrmView:
    """The CRM holding ``live`` follow-ups and tombstones for ``deleted``."""
    entries = {d.id: CrmEntry(d.id, content_hash(d), False, updated_at) for d in live}
    gone = list(deleted)
    entries.update({d.id: CrmEntry(d.id, content_hash(d), True, updated_at) for d in gone})
    uids = {d.effective_uid: d.id for d in [*live, *gone]}
    return CrmView(entries, {d.id: d for d in live}, uids)


def fetched(
    followup: FollowUp,
    etag: str = '"2"',
    *,
    data: bytes | None = None,
    modified: dt.datetime | None = None,
    href: str | None = None,
) -> ServerDoc:
    """A resource the runner fetched this pass because its ETag moved (or it is new)."""
    return ServerDoc(
        href or href_of(followup),
        etag,
        followup.effective_uid,
        (followup,),
        data=data if data is not None else data_of(followup),
        modified=modified,
    )


def listing(
    state: Mapping[str, StateEntry],
    *docs: ServerDoc,
    gone: Iterable[str] = (),
    failed: Mapping[str, str] | None = None,
) -> ServerView:
    """A complete listing: what the state knows, minus ``gone`` hrefs, plus fetched ``docs``."""
    gone = set(gone)
    etags = {e.href: e.etag for e in state.values() if e.href not in gone}
    etags.update({d.href: d.etag for d in docs})
    return ServerView(True, etags, docs={d.href: d for d in docs}, failed=failed or {})


def delta(*docs: ServerDoc, deleted: Iterable[str] = ()) -> ServerView:
    """An incremental listing (sync-collection): only what changed since the last token."""
    return ServerView(
        False, {d.href: d.etag for d in docs}, frozenset(deleted), docs={d.href: d for d in docs}
    )


def options(**changes: Any) -> PlanOptions:
    return PlanOptions(**changes)


def only(result: Plan) -> Any:
    [action] = result.actions
    return action


# --- both sides unchanged, or one side changed -----------------------------------------


def test_nothing_changed_plans_nothing() -> None:
    doc = weekly()
    state = synced(doc, single())

    result = plan(crm_view(doc, single()), listing(state), state, options())

    assert result.actions == ()
    assert result.skipped == ()


@pytest.mark.parametrize(
    "cosmetic",
    [
        pytest.param(lambda d: fetched(d, data=data_of(d, ALARM)), id="alarm-added"),
        pytest.param(
            lambda d: fetched(
                weekly(
                    recurrence={
                        "Pattern": "Weekly",
                        "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
                        "RecurrenceEndType": "EndDate",
                        "EndDate": "2025-02-10",
                    }
                )
            ),
            id="count-rewritten-as-until",
        ),
        pytest.param(
            lambda d: fetched(d.model_copy(update={"description": ""})), id="empty-description"
        ),
    ],
)
def test_server_cosmetic_change_only_records_state(cosmetic: Any) -> None:
    doc = weekly()
    state = synced(doc)
    server_doc: ServerDoc = cosmetic(doc)

    result = plan(crm_view(doc), listing(state, server_doc), state, options())

    assert result.actions == (RecordState(doc.id, href_of(doc), '"2"', doc, server_doc.data),)


def test_server_change_with_crm_unchanged_saves_it_in_crm() -> None:
    doc = weekly()
    state = synced(doc)
    edited = weekly(title="Status meeting (room 4)")

    result = plan(crm_view(doc), listing(state, fetched(edited)), state, options())

    assert result.actions == (SaveFromServer(doc.id, href_of(doc), '"2"', edited, data_of(edited)),)


def test_server_change_without_merge_base_is_a_change() -> None:
    # The runner loads the synced document only for fetched items; without it the planner
    # cannot call the change cosmetic and must take the server's version.
    doc = weekly()
    state = {
        doc.id: StateEntry(doc.id, doc.effective_uid, href_of(doc), '"1"', content_hash(doc), None)
    }

    result = plan(crm_view(doc), listing(state, fetched(doc)), state, options())

    assert result.actions == (SaveFromServer(doc.id, href_of(doc), '"2"', doc, data_of(doc)),)


def test_server_delete_with_crm_unchanged_deletes_in_crm() -> None:
    doc = weekly()
    state = synced(doc, single())

    result = plan(crm_view(doc, single()), listing(state, gone=[href_of(doc)]), state, options())

    assert result.actions == (DeleteInCrm(doc.id),)


def test_server_delete_with_detach_policy_detaches() -> None:
    doc = weekly()
    state = synced(doc, single())

    result = plan(
        crm_view(doc, single()),
        listing(state, gone=[href_of(doc)]),
        state,
        options(on_server_delete=OnServerDelete.detach),
    )

    assert result.actions == (DetachInCrm(doc.id),)
    assert result.deletions() == 0


def test_crm_change_with_server_unchanged_updates_server_with_if_match_etag() -> None:
    doc = weekly()
    state = synced(doc)
    edited = weekly(title="Weekly status")

    result = plan(crm_view(edited), listing(state), state, options())

    assert result.actions == (UpdateOnServer(doc.id, href_of(doc), '"1"', edited, None),)


def test_crm_change_with_server_cosmetic_change_updates_the_new_etag_and_keeps_its_bytes() -> None:
    doc = weekly()
    state = synced(doc)
    edited = weekly(title="Weekly status")
    with_alarm = fetched(doc, data=data_of(doc, ALARM))

    result = plan(crm_view(edited), listing(state, with_alarm), state, options())

    # base_data is what the update patches: the alarm the client added survives.
    assert result.actions == (UpdateOnServer(doc.id, href_of(doc), '"2"', edited, with_alarm.data),)


def test_crm_delete_with_server_unchanged_deletes_on_server_with_if_match_etag() -> None:
    doc = weekly()
    state = synced(doc, single())

    result = plan(crm_view(single(), deleted=[doc]), listing(state), state, options())

    assert result.actions == (DeleteOnServer(doc.id, href_of(doc), '"1"'),)


def test_crm_delete_with_server_cosmetic_change_deletes_the_new_etag() -> None:
    doc = weekly()
    state = synced(doc, single())
    with_alarm = fetched(doc, data=data_of(doc, ALARM))

    result = plan(crm_view(single(), deleted=[doc]), listing(state, with_alarm), state, options())

    assert result.actions == (DeleteOnServer(doc.id, href_of(doc), '"2"'),)


def test_deleted_on_both_sides_is_forgotten() -> None:
    doc = weekly()
    state = synced(doc, single())

    result = plan(
        crm_view(single(), deleted=[doc]), listing(state, gone=[href_of(doc)]), state, options()
    )

    assert result.actions == (Forget(doc.id),)
    assert result.deletions() == 0


def test_crm_row_gone_entirely_counts_as_deleted_in_crm() -> None:
    doc = weekly()
    state = synced(doc, single())

    result = plan(crm_view(single()), listing(state), state, options())

    assert result.actions == (DeleteOnServer(doc.id, href_of(doc), '"1"'),)


# --- both sides changed ----------------------------------------------------------------


def test_both_sides_changed_different_parts_merges_and_writes_both_sides() -> None:
    doc = weekly()
    state = synced(doc)
    crm_doc = weekly(title="Weekly status")
    server_doc = weekly(location="Room 4")

    result = plan(crm_view(crm_doc), listing(state, fetched(server_doc)), state, options())

    action = only(result)
    assert isinstance(action, Merge)
    assert (action.href, action.etag, action.push, action.pull) == (href_of(doc), '"2"', True, True)
    assert action.conflicts == ()
    assert (action.document.title, action.document.location) == ("Weekly status", "Room 4")


def test_both_sides_made_the_same_change_merges_without_writing() -> None:
    doc = weekly()
    state = synced(doc)
    edited = weekly(title="Weekly status")

    result = plan(crm_view(edited), listing(state, fetched(edited)), state, options())

    action = only(result)
    assert isinstance(action, Merge)
    assert (action.push, action.pull, action.conflicts) == (False, False, ())


def test_merge_that_leaves_the_crm_as_is_records_the_crm_document() -> None:
    # The CRM lists its exceptions in the order they were made; the merge puts them in
    # date order. Recording that form would make the next pass see a CRM edit.
    doc = weekly()
    state = synced(doc)
    late_first = [
        {"original_start": "2025-01-20T09:00:00", "cancelled": True},
        {"original_start": "2025-01-13T09:00:00", "cancelled": True},
    ]
    crm_doc = weekly(exceptions=late_first)
    server_doc = weekly(exceptions=late_first[::-1])

    result = plan(crm_view(crm_doc), listing(state, fetched(server_doc)), state, options())

    action = only(result)
    assert isinstance(action, Merge)
    assert (action.push, action.pull) == (False, False)
    assert content_hash(action.document) == content_hash(crm_doc)


# Conflict rows: (policy, CRM updated_at, server LAST-MODIFIED, winning side).
POLICY_CASES = [
    pytest.param(ConflictPolicy.crm_wins, LATER, EARLIER, "crm", id="crm-wins"),
    pytest.param(ConflictPolicy.crm_wins, EARLIER, LATER, "crm", id="crm-wins-server-newer"),
    pytest.param(ConflictPolicy.server_wins, LATER, EARLIER, "server", id="server-wins-crm-newer"),
    pytest.param(ConflictPolicy.server_wins, EARLIER, LATER, "server", id="server-wins"),
    pytest.param(ConflictPolicy.newest_wins, LATER, EARLIER, "crm", id="newest-wins-crm-newer"),
    pytest.param(
        ConflictPolicy.newest_wins, EARLIER, LATER, "server", id="newest-wins-server-newer"
    ),
    pytest.param(
        ConflictPolicy.newest_wins, EARLIER, None, "crm", id="newest-wins-no-last-modified"
    ),
]


@pytest.mark.parametrize(("policy", "crm_at", "server_at", "winner"), POLICY_CASES)
def test_both_sides_changed_the_same_field_is_decided_by_policy(
    policy: ConflictPolicy, crm_at: dt.datetime, server_at: dt.datetime | None, winner: str
) -> None:
    doc = weekly()
    state = synced(doc)
    crm_doc = weekly(title="CRM title")
    server_doc = weekly(title="Calendar title")

    result = plan(
        crm_view(crm_doc, updated_at=crm_at),
        listing(state, fetched(server_doc, modified=server_at)),
        state,
        options(policy=policy),
    )

    action = only(result)
    assert isinstance(action, Merge)
    titles = {"crm": "CRM title", "server": "Calendar title"}
    loser = "server" if winner == "crm" else "crm"
    assert action.document.title == titles[winner]
    assert (action.push, action.pull) == (winner == "crm", winner == "server")
    [(followup_id, conflict)] = result.conflicts
    assert followup_id == doc.id
    assert (conflict.part, conflict.winner, conflict.lost) == ("title", winner, titles[loser])


@pytest.mark.parametrize(
    ("policy", "winner"),
    [
        (ConflictPolicy.crm_wins, "crm"),
        (ConflictPolicy.server_wins, "server"),
        # A deleted resource has no LAST-MODIFIED: newest-wins cannot tell, the CRM's edit stays.
        (ConflictPolicy.newest_wins, "crm"),
    ],
)
def test_crm_change_with_server_delete_is_decided_by_policy(
    policy: ConflictPolicy, winner: str
) -> None:
    doc = weekly()
    state = synced(doc, single())
    edited = weekly(title="Weekly status")

    result = plan(
        crm_view(edited, single(), updated_at=EARLIER),
        listing(state, gone=[href_of(doc)]),
        state,
        options(policy=policy),
    )

    if winner == "crm":
        assert result.actions == (Forget(doc.id), CreateOnServer(doc.id, doc.effective_uid, edited))
    else:
        assert result.actions == (DeleteInCrm(doc.id),)


@pytest.mark.parametrize(("policy", "crm_at", "server_at", "winner"), POLICY_CASES)
def test_crm_delete_with_server_change_is_decided_by_policy(
    policy: ConflictPolicy, crm_at: dt.datetime, server_at: dt.datetime | None, winner: str
) -> None:
    doc = weekly()
    state = synced(doc, single())
    edited = weekly(title="Status (moved to Teams)")
    server_doc = fetched(edited, modified=server_at)

    result = plan(
        crm_view(single(), deleted=[doc], updated_at=crm_at),
        listing(state, server_doc),
        state,
        options(policy=policy),
    )

    if winner == "crm":
        # Deleted with the ETag just read: a newer edit on the server makes the delete fail.
        assert result.actions == (DeleteOnServer(doc.id, href_of(doc), '"2"'),)
    else:
        assert result.actions == (
            SaveFromServer(doc.id, href_of(doc), '"2"', edited, server_doc.data),
        )


# --- new on one side -------------------------------------------------------------------


def test_new_followup_is_created_on_server_with_its_uid() -> None:
    doc, new = weekly(), single()
    state = synced(doc)

    result = plan(crm_view(doc, new), listing(state), state, options())

    assert result.actions == (CreateOnServer(new.id, uid_for_id(new.id), new),)


def test_new_followup_with_existing_resource_of_same_uid_is_adopted_not_duplicated() -> None:
    # We wrote it, then crashed before recording the state.
    doc = single()
    found = fetched(doc, '"7"')

    result = plan(crm_view(doc), listing({}, found), {}, options())

    assert result.actions == (RecordState(doc.id, found.href, '"7"', doc, found.data),)


def test_new_followup_with_different_resource_of_same_uid_is_merged_without_base() -> None:
    doc = single(title="Call Kari")
    found = fetched(single(title="Call Kari about the offer"), '"7"')

    result = plan(crm_view(doc), listing({}, found), {}, options(policy=ConflictPolicy.server_wins))

    action = only(result)
    assert isinstance(action, Merge)
    assert (action.href, action.etag, action.push, action.pull) == (found.href, '"7"', False, True)
    assert action.document.title == "Call Kari about the offer"
    assert [c.part for c in action.conflicts] == ["title"]
    assert not any(isinstance(a, CreateOnServer) for a in result.actions)


def test_an_adopted_resource_has_the_crm_owner_and_only_real_differences_conflict() -> None:
    # The owner is not a calendar property: a series re-linked by UID must not log
    # "owner lost: null" (issue #15, item 5).
    doc = single(title="Call Kari", owner="associate-7")
    found = fetched(single(title="Call Kari about the offer"), '"7"')

    action = only(plan(crm_view(doc), listing({}, found), {}, options()))

    assert isinstance(action, Merge)
    assert [c.part for c in action.conflicts] == ["title"]
    assert action.document.owner == "associate-7"


def create_intent(doc: FollowUp) -> dict[str, WriteIntent]:
    return {doc.id: WriteIntent(doc.id, href_of(doc), None, doc, content_hash(doc))}


def test_our_create_found_after_a_crash_and_edited_by_a_client_is_a_client_edit() -> None:
    ours = single(title="Call Kari")
    found = fetched(single(title="Call Kari about the offer"), '"7"')

    result = plan(crm_view(ours), listing({}, found), {}, options(), pending=create_intent(ours))

    action = only(result)
    assert isinstance(action, Merge) and not action.conflicts
    assert action.document.title == "Call Kari about the offer"
    assert (action.push, action.pull) == (False, True)


def test_our_create_found_after_a_crash_pushes_a_crm_edit_made_since() -> None:
    ours, edited = single(title="Call Kari"), single(title="Call Kari and Ola")
    found = fetched(ours, '"7"')

    result = plan(
        crm_view(edited),
        listing({}, found),
        {},
        options(policy=ConflictPolicy.server_wins),
        pending=create_intent(ours),
    )

    assert result.actions == (UpdateOnServer(ours.id, found.href, '"7"', edited, found.data),)


def test_an_update_that_landed_before_a_crash_is_the_base_of_the_next_pass() -> None:
    old, ours, newer = single(), single(title="Renamed"), single(title="Renamed again")
    state = synced(old)
    intent = {old.id: WriteIntent(old.id, href_of(old), '"1"', ours, content_hash(ours))}
    found = fetched(ours, '"2"')

    result = plan(
        crm_view(newer),
        listing(state, found),
        state,
        options(policy=ConflictPolicy.server_wins),
        pending=intent,
    )

    assert result.actions == (UpdateOnServer(old.id, found.href, '"2"', newer, found.data),)


@pytest.mark.parametrize("landed", [True, False])
def test_a_client_edit_after_a_crashed_update_keeps_both_edits(landed: bool) -> None:
    # The CRM renamed it; the write may or may not have landed before the crash; a
    # client then moved the location. Either way: the CRM's title, the client's location.
    old = single(location="Room 1")
    ours = single(title="Renamed", location="Room 1")
    state = synced(old)
    intent = {old.id: WriteIntent(old.id, href_of(old), '"1"', ours, content_hash(ours))}
    found = fetched(single(title="Renamed" if landed else old.title, location="Room 2"), '"3"')

    result = plan(crm_view(ours), listing(state, found), state, options(), pending=intent)

    action = only(result)
    assert isinstance(action, Merge) and not action.conflicts
    assert (action.document.title, action.document.location) == ("Renamed", "Room 2")


def test_an_intent_whose_write_never_landed_changes_nothing() -> None:
    old, ours = single(), single(title="Renamed")
    state = synced(old)
    intent = {old.id: WriteIntent(old.id, href_of(old), '"1"', ours, content_hash(ours))}

    result = plan(crm_view(ours), listing(state), state, options(), pending=intent)

    assert result.actions == (UpdateOnServer(old.id, href_of(old), '"1"', ours, None),)


def test_resource_of_a_deleted_followup_never_recorded_is_deleted() -> None:
    # Written before a crash, deleted in the CRM since.
    doc = single()
    found = fetched(doc, '"7"')

    result = plan(crm_view(deleted=[doc]), listing({}, found), {}, options())

    assert result.actions == (DeleteOnServer(doc.id, found.href, '"7"'),)


def foreign_event() -> FollowUp:
    """A meeting made in a calendar client: its UID is not one of ours, and is its id."""
    uid = "9f1c2e7a@thunderbird.example"
    return single(uid, title="Dentist", uid=uid)


def test_foreign_event_ignored_unless_import_new() -> None:
    doc, event = weekly(), foreign_event()
    state = synced(doc)
    resource = fetched(event, '"9"')

    result = plan(crm_view(doc), listing(state, resource), state, options(import_new=False))

    assert result.actions == ()
    assert result.skipped == ((resource.href, "created in a calendar client; import_new is off"),)


def test_foreign_event_imported_with_import_new() -> None:
    doc, event = weekly(), foreign_event()
    state = synced(doc)
    resource = fetched(event, '"9"')

    result = plan(crm_view(doc), listing(state, resource), state, options(import_new=True))

    assert result.actions == (
        CreateFromServer(event.id, resource.href, '"9"', event, resource.data),
    )


def test_imported_event_is_known_by_its_uid_on_the_next_pass() -> None:
    event = foreign_event()
    state = synced(event, etag='"9"')

    result = plan(crm_view(event), listing(state), state, options(import_new=True))

    assert result.actions == ()


# --- safety ----------------------------------------------------------------------------


def many(n: int) -> list[FollowUp]:
    return [single(str(3000 + i), title=f"Call {i}") for i in range(n)]


def test_empty_complete_listing_with_known_items_stops_the_pass() -> None:
    docs = many(3)
    state = synced(*docs)

    with pytest.raises(SideEmpty):
        plan(crm_view(*docs), ServerView(True, {}), state, options())


def test_empty_crm_side_with_known_items_stops_the_pass() -> None:
    docs = many(3)
    state = synced(*docs)

    with pytest.raises(SideEmpty):
        plan(crm_view(), listing(state), state, options())


def test_empty_sides_without_state_are_a_first_pass() -> None:
    assert plan(crm_view(), ServerView(True, {}), {}, options()).actions == ()


def test_force_delete_lets_an_empty_listing_delete_everything_in_crm() -> None:
    docs = many(3)
    state = synced(*docs)

    result = plan(crm_view(*docs), ServerView(True, {}), state, options(force_delete=True))

    assert result.actions == tuple(DeleteInCrm(d.id) for d in docs)


def test_force_delete_lets_an_empty_crm_delete_everything_on_server() -> None:
    docs = many(3)
    state = synced(*docs)

    result = plan(crm_view(), listing(state), state, options(force_delete=True))

    assert result.actions == tuple(DeleteOnServer(d.id, href_of(d), '"1"') for d in docs)


def test_deleting_more_than_the_threshold_stops_the_pass() -> None:
    docs = many(10)
    state = synced(*docs)

    with pytest.raises(TooManyDeletes) as caught:
        plan(crm_view(*docs[6:]), listing(state), state, options(max_delete_percent=50.0))

    assert (caught.value.deletions, caught.value.total, caught.value.threshold_percent) == (
        6,
        10,
        50.0,
    )


def test_deletions_on_both_sides_count_together() -> None:
    docs = many(10)
    state = synced(*docs)
    gone_on_server = [href_of(d) for d in docs[:3]]

    with pytest.raises(TooManyDeletes):
        plan(crm_view(*docs[:7]), listing(state, gone=gone_on_server), state, options())


def test_deleting_up_to_the_threshold_is_allowed() -> None:
    docs = many(10)
    state = synced(*docs)

    result = plan(crm_view(*docs[5:]), listing(state), state, options(max_delete_percent=50.0))

    assert result.deletions() == 5


def test_few_deletions_are_allowed_whatever_the_share() -> None:
    docs = many(5)
    state = synced(*docs)

    result = plan(crm_view(docs[4]), listing(state), state, options(min_deletes_for_threshold=5))

    assert result.deletions() == 4


def test_force_delete_bypasses_the_threshold() -> None:
    docs = many(10)
    state = synced(*docs)

    result = plan(crm_view(docs[9]), listing(state), state, options(force_delete=True))

    assert result.deletions() == 9


def test_unreadable_resource_is_skipped_and_never_deleted() -> None:
    docs = many(3)
    state = synced(*docs)
    broken = href_of(docs[0])
    reason = "could not be fetched (500): Internal Server Error"

    # Listed but unreadable, while deleted in the CRM and edited in the CRM: nothing happens.
    for crm in (
        crm_view(*docs[1:], deleted=[docs[0]]),
        crm_view(single(docs[0].id, title="x"), *docs[1:]),
    ):
        result = plan(crm, listing(state, failed={broken: reason}), state, options())
        assert result.actions == ()
        assert result.skipped == ((docs[0].id, reason),)

    # Not even listed (the listing failed for it): still not read as deleted on the server.
    result = plan(
        crm_view(*docs), listing(state, gone=[broken], failed={broken: reason}), state, options()
    )
    assert result.actions == ()
    assert result.skipped == ((docs[0].id, reason),)


def test_delta_that_does_not_mention_an_href_never_deletes_it() -> None:
    docs = many(3)
    state = synced(*docs)
    edited = single(docs[1].id, title="Call 1 again")

    result = plan(crm_view(*docs), delta(fetched(edited)), state, options())

    assert result.actions == (
        SaveFromServer(edited.id, href_of(edited), '"2"', edited, data_of(edited)),
    )


def test_empty_delta_is_not_an_empty_side() -> None:
    docs = many(3)
    state = synced(*docs)

    assert plan(crm_view(*docs), delta(), state, options()).actions == ()


def test_delta_that_deletes_every_synced_item_stops_the_pass() -> None:
    docs = many(2)
    state = synced(*docs)
    everything = [href_of(d) for d in docs]

    with pytest.raises(SideEmpty):
        plan(crm_view(*docs), delta(deleted=everything), state, options())

    forced = plan(crm_view(*docs), delta(deleted=everything), state, options(force_delete=True))
    assert forced.actions == tuple(DeleteInCrm(d.id) for d in docs)


def test_delta_that_reports_a_delete_deletes_in_crm() -> None:
    docs = many(3)
    state = synced(*docs)

    result = plan(crm_view(*docs), delta(deleted=[href_of(docs[2])]), state, options())

    assert result.actions == (DeleteInCrm(docs[2].id),)


def test_every_planned_document_keeps_the_followup_id() -> None:
    # The server's parse may not know our id; the planner puts it back on what it saves.
    doc = weekly()
    state = synced(doc)
    edited = weekly(title="Renamed").model_copy(update={"id": "parsed-elsewhere"})
    resource = ServerDoc(href_of(doc), '"2"', doc.effective_uid, (edited,), data_of(edited))

    result = plan(crm_view(doc), listing(state, resource), state, options())

    action = only(result)
    assert isinstance(action, SaveFromServer)
    assert action.document.id == doc.id
    assert same_meaning(action.document, edited)


# --- a pass in chunks ------------------------------------------------------------------
# (tests/sync/engine/test_sync_machine.py checks on random passes that the chunks decide what
# plan() decides; tests/sync/engine/test_chunked_pass.py runs chunked passes end to end.)


def lite(crm: CrmView, server: ServerView) -> tuple[CrmView, ServerView]:
    """What the runner has for the whole pass: no documents, no fetched resources."""
    return CrmView(crm.entries, {}, crm.uids), ServerView(
        server.complete, server.etags, server.deleted
    )


def test_slices_are_whole_multiget_batches_in_fetch_order() -> None:
    fetch = [f"/cal/{i}.ics" for i in range(7)]
    chunks = Chunker(CrmView({}, {}, {}), ServerView(True, {}), {}, fetch, size=3, batch=2)

    assert [list(s) for s in chunks.slices()] == [fetch[:4], fetch[4:]]
    assert chunks.left() == 0


def test_a_slice_claims_the_owners_of_its_resources_and_the_adopter_by_uid() -> None:
    docs = many(4)
    state = synced(*docs[:2])
    new = docs[2]  # in the CRM, never recorded; its resource is on the server already
    crm = crm_view(*docs)
    edited = fetched(single(docs[0].id, title="Edited"))
    found = fetched(new, href="/cal/written-before-a-crash.ics")
    server = listing(state, edited, found)
    chunks = Chunker(*lite(crm, server), state, [edited.href, found.href], size=10)

    claimed = chunks.claim({edited.href: edited, found.href: found}, {})

    assert claimed == [docs[0].id, new.id]
    assert list(chunks.rest()) == [[docs[3].id]]  # a create, with nothing fetched
    result = plan_items(
        crm, server, {docs[0].id: state[docs[0].id]}, options(), ids=claimed,
        synced_hrefs=chunks.by_href,
    )  # fmt: skip
    assert [type(a).__name__ for a in result.actions] == ["SaveFromServer", "RecordState"]


def test_possible_deletions_bound_the_deletions_without_documents() -> None:
    docs = many(10)
    state = synced(*docs)
    crm = crm_view(*docs[4:], deleted=docs[:3])  # 3 tombstones, docs[3] gone from the CRM
    server = listing(state, gone=[href_of(docs[9])])
    chunks = Chunker(*lite(crm, server), state, [], size=2)

    assert chunks.possible_deletions() == 5
    assert plan(crm, server, state, options(force_delete=True)).deletions() == 5
    idle = Chunker(*lite(crm_view(*docs), listing(state)), state, [], size=2)
    assert idle.possible_deletions() == 0 and list(idle.rest()) == []


def test_describe_reads_the_same_for_an_action_and_its_summary() -> None:
    doc = weekly()
    state = synced(doc)
    result = plan(crm_view(single(doc.id, title="x")), listing(state), state, options())

    [action] = result.actions
    assert (
        describe(action)
        == describe(Planned.of(action))
        == f"update in the calendar: follow-up {doc.id}, calendar item {href_of(doc)}"
    )
    explained = Planned.of(action, title="x", changes=("title",))
    assert describe(explained) == (
        f"update in the calendar: follow-up {doc.id} 'x', calendar item {href_of(doc)}; "
        "changes: title"
    )
