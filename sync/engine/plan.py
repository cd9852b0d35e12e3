"""Decide what a sync pass will do, from data alone.

``plan()`` is a pure function of three snapshots: the follow-ups (``CrmView``), what the
server listed and what we fetched of it (``ServerView``), and what both sides agreed on
at the end of the last pass (``StateEntry`` per follow-up). It returns a ``Plan``: a list
of small frozen actions that can be printed (``--dry-run``), asserted in tests, and
then carried out by ``sync.engine.apply``. Nothing here talks to a server or a database.

The decision table, per follow-up (CRM side × server side since the last pass):

================  ==================  ===================================================
CRM               server              action
================  ==================  ===================================================
unchanged         unchanged           nothing
unchanged         cosmetic change     RecordState (new ETag/bytes; alarms, X- props kept)
unchanged         changed             SaveFromServer (+ CreateFromServer for a split tail)
unchanged         deleted             DeleteInCrm, or DetachInCrm (``on_server_delete``)
changed           unchanged/cosmetic  UpdateOnServer (If-Match)
changed           changed             Merge (per field and per occurrence; policy on clash)
changed           deleted             conflict: CreateOnServer again, or DeleteInCrm
deleted           unchanged/cosmetic  DeleteOnServer (If-Match)
deleted           changed             conflict: DeleteOnServer, or SaveFromServer (restore)
deleted           deleted             Forget
new               absent              CreateOnServer (If-None-Match: *)
new               present (same UID)  Adopt: RecordState if same meaning, else Merge without base
absent            new on server       CreateFromServer if ``import_new``, else ignored
absent            tail of a split     CreateFromServer ``<id>-<date>`` (``sync.engine.splits``)
================  ==================  ===================================================

A series the calendar cut short (an UNTIL added) with no tail tied to it gets a line in
the plan's ``notices`` telling how the tail can be imported.

"Changed on the server" means the ETag moved *and* the content means something else
(``mappings.equivalence``): servers rewrite ETags and clients add alarms, neither of
which is an edit of the follow-up.

Pending writes (crash safety): every server write is recorded as a ``WriteIntent``
(the document it puts there, the ETag it is conditional on) before its PUT, and
the intent is removed when the write is recorded. An intent still there means the
last pass died between the two, so the write may or may not have landed:

* a resource with the intent's href whose ETag moved and that means the intended
  document: the write landed; the intended document is the merge base (a later CRM
  edit is pushed, nothing is a conflict);
* one that means something else: the write landed and a client edited it since, or it
  never landed and a client edited the old version. The merge takes the intended
  document as base and the old agreed one as ``alt_base``: only a part the client
  changed away from both is the client's edit;
* a resource whose ETag is still the one the write was conditional on, or no resource
  for an intended create: the write never happened; planned as if there were no intent.

Safety (vdirsyncer's StorageEmpty, OCS's mass-deletion reports): a full listing that
comes back empty while the state remembers items, or a CRM side that is suddenly empty,
stops the pass; so does a plan that deletes more than ``max_delete_percent`` of a
calendar. Unreadable items are left alone and reported; they never count as deleted.

A large pass is planned in chunks (``sync.engine.chunks.Chunker``, ``plan_items``): the same
decisions, with the documents of one chunk at a time; the safety checks (``check_sides_not_empty``,
``check_deletions``) still judge the whole pass. ``plan()`` is the whole pass at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from mappings.equivalence import same_meaning
from mappings.errors import MappingError, item_errors
from mappings.model import FollowUp, id_for_uid
from mappings.occurrences import is_recurring
from mappings.operations import split_id
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
from sync.engine.merge import merge, winner_side
from sync.engine.splits import cut_short_notice, first_date, lost_dates, parent_uids
from sync.engine.views import (
    CrmView,
    ServerDoc,
    ServerView,
    StateEntry,
    WriteIntent,
    listed_as_deleted,
)
from sync.errors import SideEmpty, TooManyDeletes
from sync.policies import ConflictPolicy, OnServerDelete
from sync.state.followups import CrmEntry


@dataclass(frozen=True)
class PlanOptions:
    policy: ConflictPolicy = ConflictPolicy.crm_wins
    on_server_delete: OnServerDelete = OnServerDelete.delete
    import_new: bool = False
    max_delete_percent: float = 50.0
    #: Below this many deletions the percentage rule does not apply: deleting 1 of 2 is normal.
    min_deletes_for_threshold: int = 5
    force_delete: bool = False


# --- the planner -----------------------------------------------------------------------


def plan(
    crm: CrmView,
    server: ServerView,
    state: Mapping[str, StateEntry],
    options: PlanOptions,
    pending: Mapping[str, WriteIntent] | None = None,
) -> Plan:
    check_sides_not_empty(crm, server, state, options)
    result = plan_items(crm, server, state, options, pending=pending)
    check_deletions(result.deletions(), len(state), options)
    return result


def plan_items(
    crm: CrmView,
    server: ServerView,
    state: Mapping[str, StateEntry],
    options: PlanOptions,
    *,
    ids: Iterable[str] | None = None,
    synced_hrefs: Collection[str] | None = None,
    pending: Mapping[str, WriteIntent] | None = None,
) -> Plan:
    """``plan()``'s decisions without its whole-pass safety checks, for some follow-ups.

    ``ids``: the follow-ups to decide, in this order (default: every one in ``state`` and
    ``crm.entries``, sorted). ``server.docs`` and ``server.failed``: the resources fetched
    for them, plus fetched resources no follow-up has recorded, which are decided here too
    (adopted by UID, imported, or a crashed write's delete finished). ``synced_hrefs``:
    every href of the pass's state, which is never such an unrecorded resource (default:
    the hrefs of ``state``). A pass planned in chunks (``Chunker``) passes the whole
    listing, ``crm.entries`` and ``crm.uids`` to every chunk, with the documents, state
    entries and fetched resources of that chunk only. ``pending``: the write intents a
    pass that died left (module docstring), by follow-up id.
    """
    intents = pending or {}
    actions: list[Action] = []
    skipped: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    by_href = synced_hrefs if synced_hrefs is not None else {entry.href for entry in state.values()}
    claimed_hrefs: set[str] = set()
    cuts: dict[str, _Cut] = {}

    for followup_id in sorted(set(state) | set(crm.entries)) if ids is None else ids:
        try:
            with item_errors(followup_id, doing="cannot be planned"):
                decided = _decide_item(
                    followup_id, crm, server, state, options, by_href, intents.get(followup_id)
                )
                known = state.get(followup_id)
                cut = (
                    _cut_short(followup_id, known, server)
                    if known is not None and decided.skipped is None
                    else None
                )
        except MappingError as exc:
            # A document that cannot be mapped or compared fails alone; the others go on.
            failed.append((followup_id, str(exc)))
            continue
        if decided.claimed is not None:
            claimed_hrefs.add(decided.claimed)
        if decided.skipped is not None:
            skipped.append((followup_id, decided.skipped))
        actions.extend(decided.actions)
        if cut is not None:
            cuts[followup_id] = cut

    for href, resource in sorted(server.docs.items()):
        if href in claimed_hrefs or href in by_href:
            continue
        owner_id = crm.uids.get(resource.uid) or id_for_uid(resource.uid)
        if owner_id is not None and owner_id in crm.entries:
            if crm.entries[owner_id].deleted:
                # Written before a crash, deleted in the CRM since: finish the delete.
                actions.append(DeleteOnServer(owner_id, href, resource.etag))
            continue
        tail = _tied_tail(resource, crm, state, cuts)
        if tail is not None:
            actions.extend(tail)
            continue
        if options.import_new:
            for index, followup in enumerate(resource.followups):
                if index == 0:
                    actions.append(
                        CreateFromServer(followup.id, href, resource.etag, followup, resource.data)
                    )
                else:
                    actions.append(CreateFromServer(followup.id, None, None, followup, None))
        else:
            skipped.append((href, "created in a calendar client; import_new is off"))

    notices = [
        (followup_id, cut_short_notice(cut.lost))
        for followup_id, cut in sorted(cuts.items())
        if not cut.tied
    ]
    return Plan(tuple(actions), tuple(skipped), tuple(notices), tuple(failed))


# --- "this and following" as two series (Google's way) -----------------------------------


@dataclass
class _Cut:
    """A follow-up whose series the calendar ended early in this pass."""

    kind: str
    lost: list[dt.date]  # the dates it lost, first one first
    tied: bool = False  # a tail in this pass was given to it


def _cut_short(followup_id: str, known: StateEntry, server: ServerView) -> _Cut | None:
    doc = server.docs.get(known.href)
    base = known.synced_document
    if doc is None or doc.etag == known.etag or base is None or len(doc.followups) != 1:
        return None
    lost = lost_dates(base, doc.followups[0])
    return _Cut(base.kind.value, lost) if lost else None


def _tied_tail(
    resource: ServerDoc,
    crm: CrmView,
    state: Mapping[str, StateEntry],
    cuts: Mapping[str, _Cut],
) -> list[Action] | None:
    """The follow-up a new resource split off from, as actions; None when nothing ties it.

    Split the way a RANGE=THISANDFUTURE override splits (``_split_off``): the tail is the
    follow-up ``<id>-<yyyymmdd>``, but it stays in the resource the client wrote.
    """
    if not resource.followups:
        return None
    head = resource.followups[0]
    owner_id = _owner_by_uid(resource, crm)
    if owner_id is None:
        owner_id = next(
            (
                followup_id
                for followup_id, cut in cuts.items()
                if not cut.tied
                and cut.kind == head.kind.value
                and is_recurring(head)
                and first_date(head) == cut.lost[0]
            ),
            None,
        )
    if owner_id is None:
        return None
    tail_id = split_id(owner_id, first_date(head))
    if tail_id in crm.entries or tail_id in state:
        return None  # split there before; this one is a new event after all
    if owner_id in cuts:
        cuts[owner_id].tied = True
    owner = crm.entries[owner_id].owner
    tail = head.model_copy(update={"id": tail_id, "uid": resource.uid, "owner": owner})
    actions: list[Action] = [
        CreateFromServer(tail_id, resource.href, resource.etag, tail, resource.data)
    ]
    if len(resource.followups) > 1:  # the tail was itself split by a THISANDFUTURE override
        actions.append(UpdateOnServer(tail_id, resource.href, resource.etag, tail, resource.data))
        actions.extend(_split_off(resource.followups[1:]))
    return actions


def _owner_by_uid(resource: ServerDoc, crm: CrmView) -> str | None:
    """The live follow-up whose UID the resource names as its origin (``_R``, RELATED-TO)."""
    for parent in parent_uids(resource.uid, resource.data):
        owner_id = crm.uids.get(parent) or id_for_uid(parent)
        entry = crm.entries.get(owner_id) if owner_id is not None else None
        if entry is not None and not entry.deleted:
            return owner_id
    return None


@dataclass(frozen=True)
class _Decided:
    """One follow-up's decision: its actions, or why it was skipped, and the href it claims."""

    actions: Sequence[Action] = ()
    skipped: str | None = None
    claimed: str | None = None


def _decide_item(
    followup_id: str,
    crm: CrmView,
    server: ServerView,
    state: Mapping[str, StateEntry],
    options: PlanOptions,
    synced_hrefs: Collection[str],
    intent: WriteIntent | None = None,
) -> _Decided:
    entry = crm.entries.get(followup_id)
    known = state.get(followup_id)
    if known is not None:
        if known.href in server.failed:
            return _Decided(skipped=server.failed[known.href], claimed=known.href)
        actions = _known_item(followup_id, entry, known, crm, server, options, intent)
        return _Decided(actions, claimed=known.href)
    if entry is None or entry.deleted:
        return _Decided()
    doc = crm.documents[followup_id]
    found = _server_doc_for_uid(server, doc.effective_uid, exclude=synced_hrefs)
    if found is not None:
        return _Decided(_adopt(doc, entry, found, options, intent), claimed=found.href)
    return _Decided([CreateOnServer(followup_id, doc.effective_uid, doc)])


def _known_item(
    followup_id: str,
    entry: CrmEntry | None,
    known: StateEntry,
    crm: CrmView,
    server: ServerView,
    options: PlanOptions,
    intent: WriteIntent | None = None,
) -> list[Action]:
    doc = server.docs.get(known.href)
    alt_base: FollowUp | None = None
    if intent is not None and doc is not None and doc.etag != intent.if_match:
        # Our write may have landed before the pass died (module docstring).
        landed = len(doc.followups) == 1 and same_meaning(doc.followups[0], intent.document)
        alt_base = None if landed else known.synced_document
        known = replace(
            known,
            etag="" if landed else known.etag,
            synced_hash=intent.content_hash,
            synced_document=intent.document,
        )
    crm_state = (
        "deleted"
        if entry is None or entry.deleted
        else ("changed" if entry.content_hash != known.synced_hash else "unchanged")
    )
    if doc is not None and doc.etag != known.etag:
        base = known.synced_document
        cosmetic = (
            base is not None and len(doc.followups) == 1 and same_meaning(doc.followups[0], base)
        )
        server_state = "cosmetic" if cosmetic else "changed"
    elif listed_as_deleted(server, known.href):
        server_state = "deleted"
    else:
        server_state = "unchanged"
        doc = None

    crm_doc = crm.documents.get(followup_id)
    if crm_doc is None and intent is not None and crm_state == "unchanged":
        crm_doc = intent.document
    crm_is_newer = _crm_is_newer(entry, doc)

    if alt_base is not None and server_state == "changed" and crm_state != "deleted":
        # A client edit on top of a write that may or may not have landed: only what the
        # client changed away from both versions is its edit.
        assert doc is not None and crm_doc is not None
        return [
            _merge(
                followup_id,
                known.synced_document,
                crm_doc,
                doc,
                options,
                crm_is_newer,
                alt_base=alt_base,
            )
        ]

    if crm_state == "unchanged":
        if server_state == "unchanged":
            return []
        assert doc is not None or server_state == "deleted"
        if server_state == "cosmetic":
            assert doc is not None and known.synced_document is not None
            return [RecordState(followup_id, doc.href, doc.etag, known.synced_document, doc.data)]
        if server_state == "changed":
            assert doc is not None
            return _save_from_server(followup_id, doc)
        if options.on_server_delete == OnServerDelete.detach:
            return [DetachInCrm(followup_id)]
        return [DeleteInCrm(followup_id)]

    if crm_state == "changed":
        assert crm_doc is not None
        if server_state == "unchanged":
            return [UpdateOnServer(followup_id, known.href, known.etag, crm_doc, None)]
        if server_state == "cosmetic":
            assert doc is not None
            return [UpdateOnServer(followup_id, doc.href, doc.etag, crm_doc, doc.data)]
        if server_state == "changed":
            assert doc is not None
            merged = _merge(followup_id, known.synced_document, crm_doc, doc, options, crm_is_newer)
            tails = doc.followups[1:]
            if not tails:
                return [merged]
            # Split by the client and edited in the CRM: the CRM edit merges into the
            # head, which must be written back (the resource still holds the whole series),
            # and each tail becomes a follow-up of its own, as without the CRM edit.
            return [replace(merged, push=True), *_split_off(tails)]
        # Deleted on the server, edited in the CRM.
        if winner_side(options.policy, crm_is_newer) == "crm":
            return [
                Forget(followup_id),
                CreateOnServer(followup_id, crm_doc.effective_uid, crm_doc),
            ]
        return [DeleteInCrm(followup_id)]

    # Deleted in the CRM.
    if server_state in ("unchanged", "cosmetic"):
        etag = doc.etag if doc is not None else known.etag
        return [DeleteOnServer(followup_id, known.href, etag)]
    if server_state == "changed":
        assert doc is not None
        if winner_side(options.policy, crm_is_newer) == "crm":
            return [DeleteOnServer(followup_id, known.href, doc.etag)]
        return _save_from_server(followup_id, doc)
    return [Forget(followup_id)]


def _save_from_server(followup_id: str, doc: ServerDoc) -> list[Action]:
    series, *tails = doc.followups
    series = series.model_copy(update={"id": followup_id})
    actions: list[Action] = [SaveFromServer(followup_id, doc.href, doc.etag, series, doc.data)]
    if tails:
        # A THISANDFUTURE override split the series: the resource still holds the whole
        # series, so write the head back and give each tail its own resource, or every
        # occurrence after the split would show twice once the tail is pushed.
        actions.append(UpdateOnServer(followup_id, doc.href, doc.etag, series, doc.data))
    return actions + _split_off(tails)


def _split_off(tails: Sequence[FollowUp]) -> list[Action]:
    """Each tail a THISANDFUTURE override split off: a new follow-up and its own resource."""
    actions: list[Action] = []
    for tail in tails:
        actions.append(CreateFromServer(tail.id, None, None, tail, None))
        actions.append(CreateOnServer(tail.id, tail.effective_uid, tail))
    return actions


def _merge(
    followup_id: str,
    base: FollowUp | None,
    crm_doc: FollowUp,
    doc: ServerDoc,
    options: PlanOptions,
    crm_is_newer: bool | None,
    *,
    alt_base: FollowUp | None = None,
) -> Merge:
    # The owner is the CRM's alone (no calendar property holds it): never a difference.
    server_doc = doc.followups[0].model_copy(
        update={"id": followup_id, "uid": crm_doc.uid, "owner": crm_doc.owner}
    )
    result = merge(
        base,
        crm_doc,
        server_doc,
        policy=options.policy,
        crm_is_newer=crm_is_newer,
        alt_base=alt_base,
    )
    merged = result.document
    pull = not same_meaning(merged, crm_doc)
    if not pull:
        # The CRM keeps its own document, so record that one: the merge may write the same
        # meaning another way (exceptions in date order), and a recorded hash that differs
        # from the CRM's would read as a CRM edit on the next pass.
        merged = crm_doc
    return Merge(
        followup_id,
        doc.href,
        doc.etag,
        merged,
        doc.data,
        push=not same_meaning(merged, server_doc),
        pull=pull,
        conflicts=result.conflicts,
    )


def _adopt(
    doc: FollowUp,
    entry: CrmEntry,
    found: ServerDoc,
    options: PlanOptions,
    intent: WriteIntent | None,
) -> list[Action]:
    """A resource with our UID exists although we never recorded it (a crash after the write).

    With the intent of our create at that href, the resource is our write (If-None-Match
    let nobody else's in first): what we wrote is the merge base, so a client's edit
    since is an edit and a CRM change since is a change, neither a conflict. Without
    one (a state lost or restored from a backup) there is no base.
    """
    server_doc = found.followups[0].model_copy(
        update={"id": doc.id, "uid": doc.uid, "owner": doc.owner}
    )
    if same_meaning(server_doc, doc):
        return [RecordState(doc.id, found.href, found.etag, doc, found.data)]
    crm_is_newer = _crm_is_newer(entry, found)
    if intent is None or intent.if_match is not None or intent.href != found.href:
        return [_merge(doc.id, None, doc, found, options, crm_is_newer)]
    if same_meaning(server_doc, intent.document):
        return [UpdateOnServer(doc.id, found.href, found.etag, doc, found.data)]
    return [_merge(doc.id, intent.document, doc, found, options, crm_is_newer)]


def _server_doc_for_uid(
    server: ServerView, uid: str, *, exclude: Collection[str]
) -> ServerDoc | None:
    for href, doc in server.docs.items():
        if doc.uid == uid and href not in exclude:
            return doc
    return None


def _crm_is_newer(entry: CrmEntry | None, doc: ServerDoc | None) -> bool | None:
    if entry is None or doc is None or doc.modified is None:
        return None
    return entry.updated_at >= doc.modified


def check_sides_not_empty(
    crm: CrmView, server: ServerView, state: Mapping[str, StateEntry], options: PlanOptions
) -> None:
    if not state or options.force_delete:
        return
    # An incremental delta that deletes every synced item and reports nothing else is an
    # emptied calendar too; without this it would only be caught as TooManyDeletes.
    every_item_deleted = not server.complete and all(
        e.href in server.deleted for e in state.values()
    )
    if (server.complete and not server.etags) or (every_item_deleted and not server.etags):
        raise SideEmpty(
            f"the calendar listed no items, but {len(state)} were synced before; "
            "refusing to treat that as 'delete everything' (use --force-delete if it is real)"
        )
    if not crm.entries:  # neither a live follow-up nor a tombstone
        raise SideEmpty(
            f"no follow-ups belong to this calendar any more, but {len(state)} were synced before; "
            "refusing to delete them all from the calendar (use --force-delete if it is real)"
        )


def too_many_deletions(deletions: int, synced: int, options: PlanOptions) -> bool:
    """Whether ``deletions`` among ``synced`` recorded items trip ``max_delete_percent``."""
    percent = 100.0 * deletions / max(synced, 1)
    return (
        not options.force_delete
        and deletions >= options.min_deletes_for_threshold
        and percent > options.max_delete_percent
    )


def check_deletions(deletions: int, synced: int, options: PlanOptions) -> None:
    """Refuse a pass that deletes too much (the sum over all its chunks)."""
    if too_many_deletions(deletions, synced, options):
        total = max(synced, 1)
        percent = 100.0 * deletions / total
        raise TooManyDeletes(
            f"this pass would delete {deletions} of {total} items ({percent:.0f} %), more than the "
            f"configured {options.max_delete_percent:.0f} %; nothing was changed "
            "(use --force-delete "
            "or raise max_delete_percent if it is real)",
            deletions=deletions,
            total=total,
            threshold_percent=options.max_delete_percent,
        )
