"""One-way mode as a filter on the plan (``sync.engine.direction``), with plain data.

Each test lets the planner decide as for a two-way account, then filters: in
``to-calendar`` nothing may be written to the CRM and the calendar copy is put back to
the CRM's version; in ``to-crm`` nothing may be written to the calendar and the
follow-up is put back to the calendar's version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.engine.actions import (
    CreateOnServer,
    DeleteInCrm,
    DeleteOnServer,
    DetachInCrm,
    Forget,
    Plan,
    RecordState,
    SaveFromServer,
    UpdateOnServer,
)
from sync.engine.direction import (
    CALENDAR_CORRECTED,
    CALENDAR_RECREATED,
    CRM_CORRECTED,
    CRM_DELETED,
    CRM_RESTORED,
    NOT_CREATED,
    NOT_IMPORTED,
    one_way,
)
from sync.engine.plan import PlanOptions, plan
from sync.engine.views import CrmView, ServerDoc, ServerView, StateEntry
from sync.policies import ConflictPolicy, OnServerDelete, SyncDirection
from sync.state.followups import CrmEntry, content_hash

SYNCED_AT = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def single(followup_id: str = "2001", **changes: Any) -> FollowUp:
    data: dict[str, Any] = {
        "id": followup_id,
        "kind": "call",
        "title": "Call Kari",
        "owner": "alice",
        "start": "2025-01-08T14:00:00",
        "end": "2025-01-08T14:30:00",
        "timezone": "Europe/Oslo",
    }
    return load_followup(data | changes)


def href_of(followup: FollowUp) -> str:
    return f"/cal/{followup.effective_uid}.ics"


def data_of(followup: FollowUp) -> bytes:
    return b"BEGIN:VCALENDAR\r\n" + followup.title.encode() + b"\r\nEND:VCALENDAR\r\n"


def synced(*docs: FollowUp) -> dict[str, StateEntry]:
    return {
        d.id: StateEntry(d.id, d.effective_uid, href_of(d), '"1"', content_hash(d), d) for d in docs
    }


def crm_view(*live: FollowUp, deleted: Iterable[FollowUp] = ()) -> CrmView:
    entries = {d.id: CrmEntry(d.id, content_hash(d), False, SYNCED_AT) for d in live}
    gone = list(deleted)
    entries.update({d.id: CrmEntry(d.id, content_hash(d), True, SYNCED_AT) for d in gone})
    return CrmView(
        entries, {d.id: d for d in live}, {d.effective_uid: d.id for d in [*live, *gone]}
    )


def fetched(followup: FollowUp, etag: str = '"2"', href: str | None = None) -> ServerDoc:
    return ServerDoc(
        href or href_of(followup), etag, followup.effective_uid, (followup,), data_of(followup)
    )


def listing(
    state: Mapping[str, StateEntry], *docs: ServerDoc, gone: Iterable[str] = ()
) -> ServerView:
    removed = set(gone)
    etags = {e.href: e.etag for e in state.values() if e.href not in removed}
    etags.update({d.href: d.etag for d in docs})
    return ServerView(True, etags, docs={d.href: d for d in docs})


class Versions:
    """What ``one_way`` may read: the CRM's live documents and the agreed versions."""

    def __init__(self, crm: Iterable[FollowUp] = (), agreed: Iterable[FollowUp] = ()) -> None:
        self.crm = {d.id: d for d in crm}
        self.agreed = {d.id: (d, data_of(d)) for d in agreed}
        self.asked: list[str] = []

    def crm_documents(self, ids: Collection[str]) -> dict[str, FollowUp]:
        self.asked += ids
        return {i: self.crm[i] for i in ids if i in self.crm}

    def agreed_versions(self, ids: Collection[str]) -> dict[str, tuple[FollowUp, bytes]]:
        self.asked += ids
        return {i: self.agreed[i] for i in ids if i in self.agreed}


def filtered(
    decided: Plan,
    direction: SyncDirection,
    server: ServerView,
    versions: Versions,
    on_server_delete: OnServerDelete = OnServerDelete.delete,
) -> Plan:
    result = one_way(
        decided,
        direction,
        fetched=server.docs,
        crm_documents=versions.crm_documents,
        agreed=versions.agreed_versions,
        on_server_delete=on_server_delete,
    )
    written = {action.side for action in result.actions}
    forbidden = {"to-calendar": {"crm", "both"}, "to-crm": {"server", "both"}}[direction]
    assert not written & forbidden, result.actions
    return result


# --- both ---------------------------------------------------------------------------------------


def test_both_ways_is_the_plan_itself_and_reads_nothing() -> None:
    doc, edited = single(), single(title="Call Kari (moved)")
    state = synced(doc)
    server = listing(state, fetched(edited))
    decided = plan(crm_view(doc), server, state, PlanOptions())
    versions = Versions()
    assert (
        one_way(
            decided,
            "both",
            fetched=server.docs,
            crm_documents=versions.crm_documents,
            agreed=versions.agreed_versions,
        )
        is decided
    )
    assert versions.asked == []


# --- to-calendar: the CRM is the master ---------------------------------------------------------


def test_to_calendar_a_calendar_edit_is_overwritten_with_the_crms_version() -> None:
    doc, edited = single(), single(title="Call Kari (client)")
    state = synced(doc)
    server = listing(state, fetched(edited))
    decided = plan(crm_view(doc), server, state, PlanOptions())
    assert decided.actions == (
        SaveFromServer(doc.id, href_of(doc), '"2"', edited, data_of(edited)),
    )

    result = filtered(decided, "to-calendar", server, Versions(crm=[doc]))

    # Conditional on the client's version; the client's bytes are the base, so its own
    # properties (alarms, X- properties) survive the correction.
    assert result.actions == (UpdateOnServer(doc.id, href_of(doc), '"2"', doc, data_of(edited)),)
    assert result.notices == ((doc.id, CALENDAR_CORRECTED),)


def test_to_calendar_a_calendar_deletion_is_created_again() -> None:
    doc, other = single(), single("2002")
    state = synced(doc, other)
    server = listing(state, gone=[href_of(doc)])
    decided = plan(crm_view(doc, other), server, state, PlanOptions())
    assert decided.actions == (DeleteInCrm(doc.id),)

    result = filtered(decided, "to-calendar", server, Versions(crm=[doc, other]))

    assert result.actions == (Forget(doc.id), CreateOnServer(doc.id, doc.effective_uid, doc))
    assert result.notices == ((doc.id, CALENDAR_RECREATED),)
    assert result.deletions() == 0


def test_to_calendar_an_event_made_in_a_client_is_not_imported() -> None:
    doc = single()
    state = synced(doc)
    stranger = single("client-made", title="Lunch")
    server = listing(state, fetched(stranger, href="/cal/lunch.ics"))
    decided = plan(crm_view(doc), server, state, PlanOptions(import_new=True))

    result = filtered(decided, "to-calendar", server, Versions(crm=[doc]))

    assert result.actions == ()
    assert result.skipped == (("client-made", NOT_IMPORTED),)


def test_to_calendar_both_changed_keeps_the_crm_whole_and_logs_no_conflict() -> None:
    doc = single()
    crm_doc = doc.model_copy(update={"title": "Call Kari (CRM)"})
    client = doc.model_copy(update={"location": "Room 4", "title": "Call Kari (client)"})
    state = synced(doc)
    server = listing(state, fetched(client))
    decided = plan(crm_view(crm_doc), server, state, PlanOptions(policy=ConflictPolicy.server_wins))

    result = filtered(decided, "to-calendar", server, Versions(crm=[crm_doc]))

    assert result.actions == (
        UpdateOnServer(doc.id, href_of(doc), '"2"', crm_doc, data_of(client)),
    )
    assert result.conflicts == []


def test_to_calendar_a_calendar_edit_of_a_follow_up_deleted_in_the_crm_is_deleted() -> None:
    doc, edited = single(), single(title="Call Kari (client)")
    state = synced(doc, single("2002"))
    server = listing(state, fetched(edited))
    decided = plan(
        crm_view(single("2002"), deleted=[doc]),
        server,
        state,
        PlanOptions(policy=ConflictPolicy.server_wins),
    )
    assert isinstance(decided.actions[0], SaveFromServer)  # two-way would restore it

    result = filtered(decided, "to-calendar", server, Versions(crm=[single("2002")]))

    assert result.actions == (DeleteOnServer(doc.id, href_of(doc), '"2"'),)


def test_to_calendar_crm_writes_go_out_as_planned() -> None:
    doc, gone = single(), single("2002")
    crm_doc = doc.model_copy(update={"title": "Call Kari (CRM)"})
    new = single("2003")
    state = synced(doc, gone)
    server = listing(state)
    decided = plan(crm_view(crm_doc, new, deleted=[gone]), server, state, PlanOptions())

    versions = Versions()
    result = filtered(decided, "to-calendar", server, versions)

    assert result == decided
    assert versions.asked == []  # nothing to correct: nothing read


# --- to-crm: the calendar is the master ---------------------------------------------------------


def test_to_crm_a_crm_edit_is_undone_with_the_calendars_version() -> None:
    doc = single()
    crm_doc = doc.model_copy(update={"title": "Call Kari (CRM)"})
    state = synced(doc)
    server = listing(state)
    decided = plan(crm_view(crm_doc), server, state, PlanOptions())
    assert decided.actions == (UpdateOnServer(doc.id, href_of(doc), '"1"', crm_doc, None),)

    result = filtered(decided, "to-crm", server, Versions(agreed=[doc]))

    assert result.actions == (SaveFromServer(doc.id, href_of(doc), '"1"', doc, data_of(doc)),)
    assert result.notices == ((doc.id, CRM_CORRECTED),)


def test_to_crm_a_crm_deletion_is_restored_from_the_calendar() -> None:
    doc, other = single(), single("2002")
    state = synced(doc, other)
    server = listing(state)
    decided = plan(crm_view(other, deleted=[doc]), server, state, PlanOptions())
    assert decided.actions == (DeleteOnServer(doc.id, href_of(doc), '"1"'),)

    result = filtered(decided, "to-crm", server, Versions(agreed=[doc]))

    assert result.actions == (SaveFromServer(doc.id, href_of(doc), '"1"', doc, data_of(doc)),)
    assert result.notices == ((doc.id, CRM_RESTORED),)
    assert result.deletions() == 0


def test_to_crm_a_follow_up_new_in_the_crm_is_not_created_in_the_calendar() -> None:
    doc, new = single(), single("2003")
    state = synced(doc)
    server = listing(state)
    decided = plan(crm_view(doc, new), server, state, PlanOptions())

    result = filtered(decided, "to-crm", server, Versions())

    assert result.actions == ()
    assert result.skipped == ((new.id, NOT_CREATED),)


def test_to_crm_a_calendar_edit_comes_in_as_planned() -> None:
    doc, edited = single(), single(title="Call Kari (client)")
    state = synced(doc)
    server = listing(state, fetched(edited))
    decided = plan(crm_view(doc), server, state, PlanOptions())

    assert filtered(decided, "to-crm", server, Versions()) == decided


def test_to_crm_both_changed_takes_the_calendars_version_whatever_the_policy() -> None:
    doc = single()
    crm_doc = doc.model_copy(update={"title": "Call Kari (CRM)", "location": "Room 1"})
    client = doc.model_copy(update={"title": "Call Kari (client)"})
    state = synced(doc)
    server = listing(state, fetched(client))
    decided = plan(crm_view(crm_doc), server, state, PlanOptions(policy=ConflictPolicy.crm_wins))

    result = filtered(decided, "to-crm", server, Versions())

    assert result.actions == (SaveFromServer(doc.id, href_of(doc), '"2"', client, data_of(client)),)
    assert result.notices == ((doc.id, CRM_CORRECTED),)


@pytest.mark.parametrize(
    ("on_delete", "expected"),
    [(OnServerDelete.delete, DeleteInCrm), (OnServerDelete.detach, DetachInCrm)],
)
def test_to_crm_a_calendar_deletion_wins_over_a_crm_edit(
    on_delete: OnServerDelete, expected: type[DeleteInCrm | DetachInCrm]
) -> None:
    doc, other = single(), single("2002")
    crm_doc = doc.model_copy(update={"title": "Call Kari (CRM)"})
    state = synced(doc, other)
    server = listing(state, gone=[href_of(doc)])
    decided = plan(crm_view(crm_doc, other), server, state, PlanOptions())
    assert decided.actions == (Forget(doc.id), CreateOnServer(doc.id, doc.effective_uid, crm_doc))

    result = filtered(decided, "to-crm", server, Versions(), on_server_delete=on_delete)

    assert result.actions == (expected(doc.id),)
    assert result.notices == ((doc.id, CRM_DELETED),)


def test_to_crm_a_cosmetic_server_change_with_a_crm_edit_takes_the_fetched_version() -> None:
    doc = single()
    crm_doc = doc.model_copy(update={"title": "Call Kari (CRM)"})
    state = synced(doc)
    cosmetic = fetched(doc, etag='"3"')
    server = listing(state, cosmetic)
    decided = plan(crm_view(crm_doc), server, state, PlanOptions())
    assert decided.actions == (UpdateOnServer(doc.id, href_of(doc), '"3"', crm_doc, cosmetic.data),)

    versions = Versions()
    result = filtered(decided, "to-crm", server, versions)

    assert result.actions == (SaveFromServer(doc.id, href_of(doc), '"3"', doc, cosmetic.data),)
    assert versions.asked == []  # the fetched resource is the calendar's version


def test_to_crm_record_only_actions_stay() -> None:
    doc = single()
    state = synced(doc)
    cosmetic = fetched(doc, etag='"3"')
    server = listing(state, cosmetic)
    decided = plan(crm_view(doc), server, state, PlanOptions())
    assert decided.actions == (RecordState(doc.id, href_of(doc), '"3"', doc, cosmetic.data),)

    assert filtered(decided, "to-crm", server, Versions()) == decided
