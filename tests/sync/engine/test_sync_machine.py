"""Random edits on both sides, then sync passes: the planner must converge and lose nothing.

Like vdirsyncer's ``SyncMachine`` (tests/unit/sync/test_sync.py), but over an in-memory
model of our two sides instead of storages:

* the CRM: follow-up id -> (document, tombstone flag, updated_at);
* the server: href -> (ETag, document, bytes, LAST-MODIFIED), with the rules a CalDAV
  server enforces (If-Match, If-None-Match: *, one resource per UID);
* the state: follow-up id -> ``StateEntry``, written the way ``sync.engine.apply`` writes it.

A pass lists the server completely or incrementally (as with a sync token), fetches
what the runner would fetch, calls ``plan()`` and carries the actions out with a tiny
``apply`` below. Users edit, delete and create on both sides between passes, and a
calendar client may make cosmetic edits (an alarm, a rewritten rule: a new ETag, the
same meaning) or create events of its own. A pass may also die halfway (after a server
write, before its database transaction) or find a resource unreadable.

Checked: a pass never makes a write the server refuses, nothing a user did not delete
vanishes from both sides, and after two passes with no edit in between both sides hold
the same follow-ups with the same meaning, once each, and the second pass plans nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mappings.documents import load_followup
from mappings.equivalence import same_meaning
from mappings.model import FollowUp
from mappings.occurrences import occurrences
from sync.engine.actions import (
    Action,
    CreateFromServer,
    CreateOnServer,
    DeleteInCrm,
    DeleteOnServer,
    DetachInCrm,
    Forget,
    Merge,
    Plan,
    RecordState,
    SaveFromServer,
    UpdateOnServer,
)
from sync.engine.chunks import Chunker
from sync.engine.merge import ConflictPolicy
from sync.engine.plan import (
    OnServerDelete,
    PlanOptions,
    check_deletions,
    check_sides_not_empty,
    plan,
    plan_items,
)
from sync.engine.views import CrmView, ServerDoc, ServerView, StateEntry
from sync.errors import SafetyStop, SideEmpty, TooManyDeletes
from sync.state.followups import CrmEntry, content_hash

EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
#: Each pass is also planned in chunks of these sizes and must decide the same.
CHUNK_SIZES = (1, 2, 3)
ALARM = b"BEGIN:VALARM\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n"

# --- follow-ups and edits --------------------------------------------------------------

TEMPLATES: dict[str, dict[str, Any]] = {
    "weekly": {
        "title": "Status meeting",
        "start": "2025-01-06T09:00:00",
        "end": "2025-01-06T10:00:00",
        "timezone": "Europe/Oslo",
        "recurrence": {
            "Pattern": "Weekly",
            "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
            "RecurrenceEndType": "Counter",
            "RecurrenceCounter": 6,
        },
        # Not in date order: the CRM keeps exceptions in the order they were made.
        "exceptions": [
            {"original_start": "2025-01-27T09:00:00", "cancelled": True},
            {
                "original_start": "2025-01-13T09:00:00",
                "start": "2025-01-13T11:00:00",
                "end": "2025-01-13T12:00:00",
            },
        ],
    },
    "fortnightly": {
        "title": "Planning",
        "start": "2025-01-07T13:00:00",
        "end": "2025-01-07T14:30:00",
        "timezone": "Europe/Oslo",
        "recurrence": {
            "Pattern": "Weekly",
            "WeekPattern": {"Weekdays": "Tuesday|Thursday", "Cycle": 2},
            "RecurrenceEndType": "Counter",
            "RecurrenceCounter": 5,
        },
    },
    "single": {
        "kind": "call",
        "title": "Call Kari",
        "start": "2025-01-08T14:00:00",
        "end": "2025-01-08T14:30:00",
        "timezone": "Europe/Oslo",
    },
}

TITLES = ("Status meeting", "Weekly status", "Planning", "Call Kari", "Call Kari again")
LOCATIONS = (None, "", "Room 4", "Teams")


def new_followup(followup_id: str, template: str, **extra: Any) -> FollowUp:
    return load_followup({"id": followup_id, **TEMPLATES[template], **extra})


def occurrence_starts(followup: FollowUp) -> list[dt.datetime]:
    """Where the series puts its occurrences, as naive local times (exception keys)."""
    bare = followup.model_copy(update={"exceptions": []})
    starts = [o.original_start for o in occurrences(bare)]
    return [s.replace(tzinfo=None) for s in starts if isinstance(s, dt.datetime)]


def edit(followup: FollowUp, kind: str, pick: int) -> FollowUp:
    """A user's edit of ``followup``; always a valid document (a no-op where it cannot apply)."""
    data = followup.to_json_dict()
    starts = occurrence_starts(followup) if followup.recurrence is not None else []
    exceptions = {e["original_start"]: e for e in data.get("exceptions", [])}
    if kind == "title":
        data["title"] = TITLES[pick % len(TITLES)]
    elif kind == "location":
        data["location"] = LOCATIONS[pick % len(LOCATIONS)]
    elif kind == "cancel" and starts:
        start = starts[pick % len(starts)]
        exceptions[start.isoformat()] = {"original_start": start.isoformat(), "cancelled": True}
    elif kind == "move" and starts:
        start = starts[pick % len(starts)]
        new_start = start + dt.timedelta(hours=1 + pick % 3)
        new_end = new_start + followup.duration
        exceptions[start.isoformat()] = {
            "original_start": start.isoformat(),
            "start": new_start.isoformat(),
            "end": new_end.isoformat(),
        }
    elif kind == "restore" and exceptions:
        exceptions.pop(sorted(exceptions)[pick % len(exceptions)])
    elif kind == "count" and followup.recurrence is not None:
        # Lengthen or shorten the series; exceptions of occurrences it loses go with them.
        count = 2 + pick % 6
        data["recurrence"] = {
            **data["recurrence"],
            "RecurrenceEndType": "Counter",
            "RecurrenceCounter": count,
        }
        data["recurrence"].pop("EndDate", None)
        kept = {s.isoformat() for s in occurrence_starts(load_followup({**data, "exceptions": []}))}
        exceptions = {k: v for k, v in exceptions.items() if k in kept}
    data["exceptions"] = list(exceptions.values())
    return load_followup(data)


def reshaped(followup: FollowUp) -> FollowUp:
    """The same series written another way, as some clients do: a count becomes an end date."""
    info = followup.recurrence
    if info is None or followup.ical_recurrence is not None:
        return followup.model_copy(update={"description": followup.description or None})
    data = followup.to_json_dict()
    last = occurrence_starts(followup)[-1].date()
    rule = {k: v for k, v in data["recurrence"].items() if k != "RecurrenceCounter"}
    data["recurrence"] = {**rule, "RecurrenceEndType": "EndDate", "EndDate": last.isoformat()}
    result = load_followup(data)
    assert same_meaning(result, followup)
    return result


EDITS = st.sampled_from(["title", "location", "cancel", "move", "restore", "count"])
PICKS = st.integers(min_value=0, max_value=50)


# --- the two sides and the state -------------------------------------------------------


@dataclass
class CrmRecord:
    document: FollowUp
    deleted: bool
    updated_at: dt.datetime


@dataclass
class Resource:
    etag: str
    document: FollowUp
    data: bytes
    modified: dt.datetime


class ServerRefused(AssertionError):
    """A write the plan made that a CalDAV server would refuse (412).

    Nothing changes the server while a pass runs, so this is a planner bug, unless the
    planner could not read the resource in the way (``href``) this pass.
    """

    def __init__(self, message: str, href: str) -> None:
        super().__init__(message)
        self.href = href


@dataclass
class World:
    crm: dict[str, CrmRecord] = field(default_factory=dict)
    server: dict[str, Resource] = field(default_factory=dict)
    state: dict[str, StateEntry] = field(default_factory=dict)
    detached: set[str] = field(default_factory=set)
    journal: list[str] = field(default_factory=list)  # hrefs written or deleted, in order
    token: int | None = None  # the journal's length when the last pass listed the server
    pending: set[str] = field(default_factory=set)  # hrefs that could not be read
    ticks: itertools.count[int] = field(default_factory=itertools.count)

    def now(self) -> dt.datetime:
        return EPOCH + dt.timedelta(seconds=next(self.ticks))

    def new_etag(self) -> str:
        return f'"{next(self.ticks)}"'

    # CRM ---------------------------------------------------------------------------------

    def crm_save(self, document: FollowUp) -> None:
        old = self.crm.get(document.id)
        if (
            old is not None
            and not old.deleted
            and content_hash(old.document) == content_hash(document)
        ):
            return
        self.crm[document.id] = CrmRecord(document, False, self.now())

    def crm_tombstone(self, followup_id: str) -> None:
        record = self.crm.get(followup_id)
        if record is not None and not record.deleted:
            self.crm[followup_id] = replace(record, deleted=True, updated_at=self.now())

    def crm_purge_if_unused(self, followup_id: str) -> None:
        record = self.crm.get(followup_id)
        if record is not None and record.deleted and followup_id not in self.state:
            del self.crm[followup_id]

    def present(self) -> set[str]:
        """Follow-ups that exist somewhere: in the CRM (linked or not) or on the server."""
        in_crm = {i for i, r in self.crm.items() if not r.deleted}
        return in_crm | {r.document.id for r in self.server.values()}

    def live_crm(self) -> dict[str, FollowUp]:
        """Follow-ups that belong in the calendar."""
        return {
            i: r.document for i, r in self.crm.items() if not r.deleted and i not in self.detached
        }

    # server ------------------------------------------------------------------------------

    def put(self, href: str, resource: Resource) -> None:
        self.server[href] = resource
        self.journal.append(href)

    def remove(self, href: str) -> Resource:
        self.journal.append(href)
        return self.server.pop(href)

    def server_create(self, href: str, document: FollowUp, data: bytes) -> str:
        if href in self.server:
            raise ServerRefused(f"If-None-Match: * failed, {href} exists", href)
        uid = document.effective_uid
        for other, resource in self.server.items():
            if resource.document.effective_uid == uid:
                raise ServerRefused(f"UID {uid} already exists on the server at {other}", other)
        etag = self.new_etag()
        self.put(href, Resource(etag, document, data, self.now()))
        return etag

    def server_update(self, href: str, document: FollowUp, data: bytes, if_match: str) -> str:
        current = self.server.get(href)
        if current is None or current.etag != if_match:
            raise ServerRefused(f"If-Match {if_match} failed at {href}", href)
        etag = self.new_etag()
        self.put(href, Resource(etag, document, data, self.now()))
        return etag

    def server_delete(self, href: str, if_match: str) -> None:
        current = self.server.get(href)
        if current is None:
            return  # already gone: sync.engine.apply treats 404 as done
        if current.etag != if_match:
            raise ServerRefused(f"If-Match {if_match} failed at {href}", href)
        self.remove(href)

    # state -------------------------------------------------------------------------------

    def record(self, followup_id: str, href: str, etag: str, document: FollowUp) -> None:
        self.state[followup_id] = StateEntry(
            followup_id, document.effective_uid, href, etag, content_hash(document), document
        )
        self.detached.discard(followup_id)

    def forget(self, followup_id: str) -> None:
        self.state.pop(followup_id, None)
        self.crm_purge_if_unused(followup_id)


def render(document: FollowUp) -> bytes:
    """Stand-in for the iCalendar text: the planner only carries it along."""
    return f"BEGIN:VCALENDAR {document.id} {content_hash(document)[:12]} END:VCALENDAR".encode()


def href_for_uid(uid: str) -> str:
    return f"/calendars/user/work/{uid}.ics"


def apply(
    world: World, the_plan: Plan, *, crash_at: int | None = None, unread: Iterable[str] = ()
) -> None:
    """Carry out the actions the way ``sync.engine.apply.Applier`` does, on the in-memory sides.

    ``crash_at``: the process dies during that action, after its server write (if it has
    one) and before its database transaction; the actions after it never run.
    ``unread``: hrefs that could not be read this pass. A write refused because of one of
    them is that item's error (``sync.engine.apply`` re-reads, reports it, and the next pass
    retries); any other refusal fails the test.
    """
    unread = set(unread)
    for index, action in enumerate(the_plan.actions):
        crash = index == crash_at
        try:
            (server_write_only if crash else apply_one)(world, action)
        except ServerRefused as refused:
            if refused.href not in unread:
                raise
        if crash:
            return


def server_write_only(world: World, action: Action) -> None:
    """The first half of an action that writes to the server (``sync.engine.apply``)."""
    if isinstance(action, CreateOnServer):
        world.server_create(href_for_uid(action.uid), action.document, render(action.document))
    elif isinstance(action, UpdateOnServer) or (isinstance(action, Merge) and action.push):
        world.server_update(action.href, action.document, render(action.document), action.etag)
    elif isinstance(action, DeleteOnServer):
        world.server_delete(action.href, action.etag)


def apply_one(world: World, action: Action) -> None:
    if isinstance(action, CreateOnServer):
        href = href_for_uid(action.uid)
        etag = world.server_create(href, action.document, render(action.document))
        world.record(action.followup_id, href, etag, action.document)
    elif isinstance(action, UpdateOnServer):
        etag = world.server_update(
            action.href, action.document, render(action.document), action.etag
        )
        world.record(action.followup_id, action.href, etag, action.document)
    elif isinstance(action, DeleteOnServer):
        world.server_delete(action.href, action.etag)
        world.forget(action.followup_id)
    elif isinstance(action, SaveFromServer):
        world.crm_save(action.document)
        world.record(action.followup_id, action.href, action.etag, action.document)
    elif isinstance(action, CreateFromServer):
        world.crm_save(action.document)
        if action.href is not None and action.etag is not None:
            world.record(action.followup_id, action.href, action.etag, action.document)
    elif isinstance(action, DeleteInCrm):
        world.state.pop(action.followup_id, None)
        world.crm_tombstone(action.followup_id)
        world.crm_purge_if_unused(action.followup_id)
    elif isinstance(action, DetachInCrm):
        world.detached.add(action.followup_id)
        world.state.pop(action.followup_id, None)  # the runner leaves detached rows out
    elif isinstance(action, RecordState):
        world.record(action.followup_id, action.href, action.etag, action.document)
    elif isinstance(action, Forget):
        world.forget(action.followup_id)
    elif isinstance(action, Merge):
        etag = action.etag
        if action.push:
            etag = world.server_update(
                action.href, action.document, render(action.document), action.etag
            )
        if action.pull:
            world.crm_save(action.document)
        world.record(action.followup_id, action.href, etag, action.document)
    else:  # pragma: no cover - the Action union is closed
        raise TypeError(action)


def views(
    world: World, *, complete: bool, unreadable: int | None = None
) -> tuple[CrmView, ServerView, dict[str, StateEntry]]:
    """What ``sync.engine.runner`` hands the planner: a listing, fetched resources, documents.

    ``unreadable`` picks one of the resources to fetch that cannot be read this time.
    """
    etags_now = {href: r.etag for href, r in world.server.items()}
    if complete or world.token is None:
        listed, deleted = etags_now, frozenset[str]()
    else:
        # sync-collection since the token: every href touched since, present or removed.
        touched = set(world.journal[world.token :])
        listed = {h: e for h, e in etags_now.items() if h in touched}
        deleted = frozenset(touched - set(etags_now))
    by_href = {e.href: e for e in world.state.values()}
    wanted = [h for h, e in listed.items() if h not in by_href or by_href[h].etag != e]
    # Unreadable last time: fetched again whether or not this listing mentions them.
    wanted += [h for h in sorted(world.pending - set(wanted)) if h in world.server]
    failed = {}
    if unreadable is not None and wanted:
        href = sorted(wanted)[unreadable % len(wanted)]
        failed[href] = "could not be fetched (500): Internal Server Error"
    docs = {}
    for href in wanted:
        if href in failed:
            continue
        resource = world.server[href]
        followups = (resource.document,)
        docs[href] = ServerDoc(
            href,
            resource.etag,
            resource.document.effective_uid,
            followups,
            resource.data,
            resource.modified,
        )
    # The merge base is loaded only for fetched items, as the runner does.
    state = {
        i: e if e.href in docs else replace(e, synced_document=None) for i, e in world.state.items()
    }
    entries: dict[str, CrmEntry] = {}
    uids: dict[str, str] = {}
    for followup_id, record in world.crm.items():
        if followup_id in world.detached:
            continue
        entries[followup_id] = CrmEntry(
            followup_id, content_hash(record.document), record.deleted, record.updated_at
        )
        uids[record.document.effective_uid] = followup_id
    documents = {
        i: world.crm[i].document
        for i, e in entries.items()
        if not e.deleted and (i not in state or state[i].synced_hash != e.content_hash)
    }
    complete = complete or world.token is None
    server = ServerView(complete, listed, deleted, docs, failed)
    return CrmView(entries, documents, uids), server, state


# --- the same pass in chunks -------------------------------------------------------------


def plan_in_chunks(
    crm: CrmView,
    server: ServerView,
    state: dict[str, StateEntry],
    options: PlanOptions,
    size: int,
) -> list[Action]:
    """What ``sync.engine.runner`` does with ``Chunker``: the pass planned one chunk at a time.

    Each chunk sees the whole listing, CRM entries, UIDs and state hrefs, but only its
    own documents, state entries and fetched resources. The safety rails run on the
    whole pass first: the empty-side check on the listing, the deletion check on the
    sum of the chunks' deletions.
    """
    check_sides_not_empty(crm, server, state, options)
    fetch = [*server.docs, *[h for h in server.failed if h not in server.docs]]
    listing = ServerView(server.complete, server.etags, server.deleted)
    lite_crm = CrmView(crm.entries, {}, crm.uids)
    lite_state = {i: replace(e, synced_document=None) for i, e in state.items()}

    def sweep() -> Iterable[Plan]:
        chunks = Chunker(lite_crm, listing, lite_state, fetch, size=size, batch=1)
        for hrefs in chunks.slices():
            docs = {h: server.docs[h] for h in hrefs if h in server.docs}
            failed = {h: server.failed[h] for h in hrefs if h in server.failed}
            ids = chunks.claim(docs, failed)
            yield chunk_plan(ids, docs, failed, chunks)
        for ids in chunks.rest():
            yield chunk_plan(ids, {}, {}, chunks)

    def chunk_plan(
        ids: list[str], docs: dict[str, ServerDoc], failed: dict[str, str], chunks: Chunker
    ) -> Plan:
        assert len(ids) <= max(size, len(docs) + len(failed))
        documents = {i: crm.documents[i] for i in ids if i in crm.documents}
        return plan_items(
            CrmView(crm.entries, documents, crm.uids),
            ServerView(server.complete, server.etags, server.deleted, docs, failed),
            {i: state[i] for i in ids if i in state},
            options,
            ids=ids,
            synced_hrefs=chunks.by_href,
        )

    deletions = sum(p.deletions() for p in sweep())
    bound = Chunker(lite_crm, listing, lite_state, fetch, size=size).possible_deletions()
    assert bound >= deletions, (bound, deletions)
    check_deletions(deletions, len(state), options)
    return [action for p in sweep() for action in p.actions]


def same_actions(chunked: list[Action], whole: Plan) -> bool:
    """The same actions, each as often, in any order (chunks run in another order)."""
    return sorted(map(repr, chunked)) == sorted(map(repr, whole.actions))


# --- the machine -----------------------------------------------------------------------


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.options = PlanOptions()
        self.ids = itertools.count(1001)
        self.user_deleted: set[str] = set()
        self.edited_since_pass = True
        self.foreign: set[str] = set()  # ids of events made in a calendar client

    @initialize(
        policy=st.sampled_from(list(ConflictPolicy)),
        on_server_delete=st.sampled_from(list(OnServerDelete)),
        import_new=st.booleans(),
    )
    def choose_options(
        self, policy: ConflictPolicy, on_server_delete: OnServerDelete, import_new: bool
    ) -> None:
        self.options = PlanOptions(
            policy=policy, on_server_delete=on_server_delete, import_new=import_new
        )

    # -- helpers --

    def _edited(self) -> None:
        self.edited_since_pass = True

    def _pick(self, keys: list[str], pick: int) -> str:
        return sorted(keys)[pick % len(keys)]

    # -- CRM users --

    @rule(template=st.sampled_from(sorted(TEMPLATES)))
    def crm_create(self, template: str) -> None:
        followup = new_followup(str(next(self.ids)), template)
        self.world.crm_save(followup)
        self._edited()

    @precondition(lambda self: self.world.live_crm())
    @rule(kind=EDITS, which=PICKS, pick=PICKS)
    def crm_edit(self, kind: str, which: int, pick: int) -> None:
        followup_id = self._pick(list(self.world.live_crm()), which)
        self.world.crm_save(edit(self.world.crm[followup_id].document, kind, pick))
        self._edited()

    @precondition(lambda self: self.world.live_crm())
    @rule(which=PICKS)
    def crm_delete(self, which: int) -> None:
        followup_id = self._pick(list(self.world.live_crm()), which)
        self.world.crm_tombstone(followup_id)
        self.user_deleted.add(followup_id)
        self._edited()

    # -- calendar clients --

    @precondition(lambda self: self.world.server)
    @rule(kind=EDITS, which=PICKS, pick=PICKS)
    def client_edit(self, kind: str, which: int, pick: int) -> None:
        href = self._pick(list(self.world.server), which)
        resource = self.world.server[href]
        document = edit(resource.document, kind, pick)
        self.world.put(
            href, Resource(self.world.new_etag(), document, render(document), self.world.now())
        )
        self._edited()

    @precondition(lambda self: self.world.server)
    @rule(which=PICKS, rewrite=st.booleans())
    def client_cosmetic_edit(self, which: int, rewrite: bool) -> None:
        """An alarm added, or the rule rewritten: a new ETag and new bytes, the same meaning."""
        href = self._pick(list(self.world.server), which)
        resource = self.world.server[href]
        document = reshaped(resource.document) if rewrite else resource.document
        self.world.put(
            href,
            replace(
                resource, etag=self.world.new_etag(), document=document, data=resource.data + ALARM
            ),
        )
        self._edited()

    @precondition(lambda self: self.world.server)
    @rule(which=PICKS)
    def client_delete(self, which: int) -> None:
        href = self._pick(list(self.world.server), which)
        self.user_deleted.add(self.world.remove(href).document.id)
        self._edited()

    @rule(template=st.sampled_from(sorted(TEMPLATES)))
    def client_create(self, template: str) -> None:
        """A meeting made in a calendar client: a UID of its own, which the parser uses as id."""
        uid = f"{next(self.ids)}-client@example.org"
        followup = new_followup(uid, template, uid=uid)
        self.world.server_create(href_for_uid(uid), followup, render(followup))
        self.foreign.add(uid)
        self._edited()

    # -- the same user on both sides --

    def _on_both_sides(self) -> dict[str, str]:
        """Follow-up id -> href for those live in the CRM and on the server."""
        live = self.world.live_crm()
        return {r.document.id: h for h, r in self.world.server.items() if r.document.id in live}

    @precondition(lambda self: self._on_both_sides())
    @rule(kind=EDITS, which=PICKS, pick=PICKS)
    def same_edit_on_both_sides(self, kind: str, which: int, pick: int) -> None:
        """The meeting is cancelled (moved, renamed…) in the CRM and in the calendar alike."""
        both = self._on_both_sides()
        followup_id = self._pick(list(both), which)
        href = both[followup_id]
        self.world.crm_save(edit(self.world.crm[followup_id].document, kind, pick))
        document = edit(self.world.server[href].document, kind, pick)
        self.world.put(
            href, Resource(self.world.new_etag(), document, render(document), self.world.now())
        )
        self._edited()

    # -- the sync service --

    @rule(complete=st.booleans(), unreadable=st.none() | PICKS)
    def sync(self, complete: bool, unreadable: int | None) -> None:
        self.run_pass(complete=complete, unreadable=unreadable)

    @rule(first_complete=st.booleans(), second_complete=st.booleans())
    def sync_twice(self, first_complete: bool, second_complete: bool) -> None:
        self.run_pass(complete=first_complete)
        self.run_pass(complete=second_complete)

    @rule(complete=st.booleans(), crash_at=PICKS)
    def sync_and_crash(self, complete: bool, crash_at: int) -> None:
        """The process dies in the middle of a pass (vdirsyncer's failing actions)."""
        self.run_pass(complete=complete, crash_at=crash_at)

    def teardown(self) -> None:
        self.run_pass(complete=False)
        self.run_pass(complete=True)

    def run_pass(
        self, *, complete: bool, crash_at: int | None = None, unreadable: int | None = None
    ) -> None:
        """One sync pass; after two in a row without edits, the sides must have converged."""
        world = self.world
        before = world.present()
        crm, server, state = views(world, complete=complete, unreadable=unreadable)
        try:
            the_plan = plan(crm, server, state, self.options)
        except SafetyStop as stop:
            # Only a user's deletes may trip the safety checks; the user then confirms.
            assert self.user_deleted, "safety stop without any delete"
            # Planned in chunks, the pass stops the same way, before any chunk is applied.
            for size in CHUNK_SIZES:
                try:
                    plan_in_chunks(crm, server, state, self.options, size)
                except (SideEmpty, TooManyDeletes) as again:
                    assert type(again) is type(stop) and str(again) == str(stop)
                else:
                    raise AssertionError(f"chunks of {size} did not stop: {stop}")
            forced = replace(self.options, force_delete=True)
            the_plan = plan(crm, server, state, forced)
            for size in CHUNK_SIZES:
                assert same_actions(plan_in_chunks(crm, server, state, forced, size), the_plan)
        else:
            for size in CHUNK_SIZES:
                chunked = plan_in_chunks(crm, server, state, self.options, size)
                assert same_actions(chunked, the_plan), (size, chunked, the_plan.actions)
        token = len(world.journal)  # taken at listing time, before our own writes
        crashed = crash_at is not None and crash_at < len(the_plan.actions)
        apply(world, the_plan, crash_at=crash_at, unread=server.failed)
        if not crashed:
            world.token = token  # the runner keeps the new token only when the pass ends
            world.pending = (world.pending - set(server.docs)) | set(server.failed)

        vanished = before - world.present() - self.user_deleted
        assert not vanished, f"{sorted(vanished)} vanished from both sides without a user's delete"
        if crashed or server.failed:
            # The user's deletes may not be done yet, and the next pass has work to finish.
            self.edited_since_pass = True
            return
        if not self.edited_since_pass:
            self.check_converged(the_plan)
        self.user_deleted.clear()
        self.edited_since_pass = False

    def check_converged(self, second: Plan) -> None:
        world = self.world
        assert second.actions == (), f"a second pass with no edits planned {second.actions}"
        on_server: dict[str, FollowUp] = {}
        for href, resource in world.server.items():
            followup_id = resource.document.id
            if followup_id in self.foreign and not self.options.import_new:
                assert followup_id not in world.crm, f"{followup_id} was imported"
                continue
            assert followup_id not in on_server, f"{followup_id} is on the server twice"
            on_server[followup_id] = resource.document
            assert href == world.state[followup_id].href
        crm = world.live_crm()
        assert set(crm) == set(on_server)
        for followup_id, document in crm.items():
            assert same_meaning(document, on_server[followup_id]), followup_id
        assert set(world.state) == set(crm)

    @invariant()
    def state_points_at_known_followups(self) -> None:
        for followup_id, entry in self.world.state.items():
            assert followup_id in self.world.crm, f"state for {followup_id}, which the CRM forgot"
            assert entry.followup_id == followup_id


SyncMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=20, deadline=None)
test_sync_machine = SyncMachine.TestCase
