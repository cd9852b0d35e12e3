"""One-way mode: a filter on the plan, so a pass never writes to the side that only follows.

An account syncs both ways unless its ``direction`` (config, or ``PUT
/v1/accounts/NAME/direction``, ``sync.state.directions``) says otherwise:

* ``to-calendar``: the CRM is the master. Nothing is written to the CRM. A change made
  in a calendar client is not taken in: the calendar copy is put back to the CRM's
  version (an edit is overwritten, a deleted event is created again), and an event
  created in the calendar is left alone, never imported.
* ``to-crm``: the calendar is the master. Nothing is written to the calendar. A change
  made in the CRM is not taken out: the follow-up is put back to the calendar's version
  (an edit is undone, a deleted follow-up restored), and a follow-up new in the CRM is
  left alone, never created in the calendar.

What a CRM admin expects of a master and a copy: the copy is corrected at the next pass,
not left to drift. The correction is an ordinary action of the plan (a conditional
write to the calendar, or a CRM write in the feed with origin ``calendar``), so a dry
run shows it, and each one is named in the plan's notices; what is left alone is in
its ``skipped`` list.

The planner decides as for a two-way account; ``one_way`` then rewrites each follow-up's
actions (a pure function of the plan and the versions it is given), and ``OneWay``
feeds it from the database. The runner calls it on every plan it is about to apply or
show: each chunk's, and the re-plan after a refused write.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.config import Account
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
from sync.engine.views import ServerDoc
from sync.policies import OnServerDelete, SyncDirection
from sync.state import directions, repo
from sync.state import followups as crm_store
from sync.state.db import Database

#: Live follow-ups by id (a deleted or unknown one is left out).
CrmDocuments = Callable[[Collection[str]], Mapping[str, FollowUp]]
#: What both sides agreed on by follow-up id: the document and the calendar's bytes.
AgreedVersions = Callable[[Collection[str]], Mapping[str, tuple[FollowUp, bytes]]]

NOT_IMPORTED = "created in a calendar client; not imported (direction = to-calendar)"
NOT_CREATED = "new in the CRM; not created in the calendar (direction = to-crm)"
NO_CALENDAR_VERSION = (
    "changed in the CRM; the calendar has no version to restore (direction = to-crm)"
)
CALENDAR_CORRECTED = (
    "changed in the calendar; the calendar gets the CRM's version back (direction = to-calendar)"
)
CALENDAR_RECREATED = (
    "deleted in the calendar; created there again from the CRM (direction = to-calendar)"
)
CRM_CORRECTED = (
    "changed in the CRM; the follow-up gets the calendar's version back (direction = to-crm)"
)
CRM_RESTORED = "deleted in the CRM; restored from the calendar (direction = to-crm)"
CRM_DELETED = "deleted in the calendar; the CRM's edit is not kept (direction = to-crm)"


def one_way(
    plan: Plan,
    direction: SyncDirection,
    *,
    fetched: Mapping[str, ServerDoc],
    crm_documents: CrmDocuments,
    agreed: AgreedVersions,
    on_server_delete: OnServerDelete = OnServerDelete.delete,
) -> Plan:
    """``plan`` with nothing written to the side ``direction`` does not write to.

    ``fetched``: the resources the plan was made with, by href (the calendar's current
    versions). ``crm_documents`` and ``agreed`` are asked only for the follow-ups whose
    actions are rewritten.
    """
    if direction == "both" or not plan.actions:
        return plan
    groups = _by_followup(plan.actions)
    actions: list[Action] = []
    skipped = list(plan.skipped)
    notices = list(plan.notices)
    if direction == "to-calendar":
        wanted = [fid for fid, group in groups.items() if _writes_crm(group)]
        crm = crm_documents(wanted) if wanted else {}
        for fid, group in groups.items():
            actions.extend(_to_calendar(fid, group, crm.get(fid), skipped, notices))
    else:
        undone = [fid for fid, group in groups.items() if _undoes_crm_change(group, fetched)]
        versions = agreed(undone) if undone else {}
        for fid, group in groups.items():
            actions.extend(
                _to_crm(fid, group, fetched, versions.get(fid), on_server_delete, skipped, notices)
            )
    return Plan(tuple(actions), tuple(skipped), tuple(notices), plan.failed)


def _by_followup(actions: Sequence[Action]) -> dict[str, list[Action]]:
    """Actions by follow-up, in the order the follow-ups first appear (dicts keep it)."""
    groups: dict[str, list[Action]] = {}
    for action in actions:
        groups.setdefault(action.followup_id, []).append(action)
    return groups


def _writes_crm(group: Sequence[Action]) -> bool:
    return any(action.side in ("crm", "both") for action in group)


# --- to-calendar: the CRM is the master -----------------------------------------------------


def _to_calendar(
    followup_id: str,
    group: Sequence[Action],
    crm_doc: FollowUp | None,
    skipped: list[tuple[str, str]],
    notices: list[tuple[str, str]],
) -> list[Action]:
    if any(isinstance(action, CreateFromServer) for action in group):
        # An event made in a client, or the tail of a series a client split: not the
        # CRM's, so neither imported nor written back.
        skipped.append((followup_id, NOT_IMPORTED))
        return []
    crm_write = next((action for action in group if action.side in ("crm", "both")), None)
    if crm_write is None:
        return list(group)
    # The CRM write replaces the group: a split's write-back of the calendar's series
    # (an UpdateOnServer beside it) would carry the calendar's version too.
    corrected = _calendar_corrected(crm_write, crm_doc)
    if any(isinstance(action, CreateOnServer) for action in corrected):
        notices.append((followup_id, CALENDAR_RECREATED))
    elif any(action.side == "server" for action in corrected):
        notices.append((followup_id, CALENDAR_CORRECTED))
    return corrected


def _calendar_corrected(action: Action, crm_doc: FollowUp | None) -> list[Action]:
    """The calendar write that puts the CRM's version back in place of a CRM write."""
    followup_id = action.followup_id
    if isinstance(action, (DeleteInCrm, DetachInCrm)):
        if crm_doc is None:
            return [Forget(followup_id)]
        return [Forget(followup_id), CreateOnServer(followup_id, crm_doc.effective_uid, crm_doc)]
    if isinstance(action, SaveFromServer):
        if crm_doc is None:  # the CRM deleted it; the calendar's edit would have restored it
            return [DeleteOnServer(followup_id, action.href, action.etag)]
        return [UpdateOnServer(followup_id, action.href, action.etag, crm_doc, action.data)]
    if isinstance(action, Merge):
        document = crm_doc if crm_doc is not None else action.document
        if not action.push and not action.pull:
            return [
                RecordState(followup_id, action.href, action.etag, document, action.server_data)
            ]
        return [UpdateOnServer(followup_id, action.href, action.etag, document, action.server_data)]
    return [action]


# --- to-crm: the calendar is the master -----------------------------------------------------


def _undoes_crm_change(group: Sequence[Action], fetched: Mapping[str, ServerDoc]) -> bool:
    """Whether the group undoes a CRM change with a version the calendar did not resend."""
    if _writes_crm(group):
        return False
    return any(
        isinstance(action, (UpdateOnServer, DeleteOnServer)) and action.href not in fetched
        for action in group
    )


def _to_crm(
    followup_id: str,
    group: Sequence[Action],
    fetched: Mapping[str, ServerDoc],
    agreed: tuple[FollowUp, bytes] | None,
    on_server_delete: OnServerDelete,
    skipped: list[tuple[str, str]],
    notices: list[tuple[str, str]],
) -> list[Action]:
    if _writes_crm(group):
        # The calendar's version goes to the CRM; what the planner would also write to the
        # calendar (a split's write-back and tails, the CRM's side of a merge) does not.
        kept: list[Action] = []
        for action in group:
            if isinstance(action, Merge) and action.push:
                corrected = _calendar_version_of_merge(action, fetched)
                if corrected is None:
                    skipped.append((followup_id, NO_CALENDAR_VERSION))
                else:
                    kept.append(corrected)
                    notices.append((followup_id, CRM_CORRECTED))
            elif action.side != "server":
                kept.append(action)
        return kept
    if any(isinstance(action, CreateOnServer) for action in group):
        if any(isinstance(action, Forget) for action in group):
            # Deleted in the calendar and edited in the CRM: the calendar's deletion stands.
            notices.append((followup_id, CRM_DELETED))
            if on_server_delete == OnServerDelete.detach:
                return [DetachInCrm(followup_id)]
            return [DeleteInCrm(followup_id)]
        skipped.append((followup_id, NOT_CREATED))
        return []
    push = next(
        (action for action in group if isinstance(action, (UpdateOnServer, DeleteOnServer))), None
    )
    if push is None:
        return list(group)  # records and forgets only
    restored = _calendar_version(push, fetched, agreed)
    if restored is None:
        skipped.append((followup_id, NO_CALENDAR_VERSION))
        return []
    notices.append(
        (followup_id, CRM_RESTORED if isinstance(push, DeleteOnServer) else CRM_CORRECTED)
    )
    return [restored]


def _calendar_version_of_merge(action: Merge, fetched: Mapping[str, ServerDoc]) -> Action | None:
    doc = fetched.get(action.href)
    if doc is None or not doc.followups:
        return None
    series = doc.followups[0].model_copy(
        update={
            "id": action.followup_id,
            "uid": action.document.uid,
            "owner": action.document.owner,
        }
    )
    return SaveFromServer(action.followup_id, action.href, action.etag, series, action.server_data)


def _calendar_version(
    push: UpdateOnServer | DeleteOnServer,
    fetched: Mapping[str, ServerDoc],
    agreed: tuple[FollowUp, bytes] | None,
) -> SaveFromServer | None:
    """The follow-up as the calendar holds it, in place of a write of the CRM's change.

    The resource as fetched this pass (a cosmetic change, or our own create found again)
    or, when the calendar did not change it, the version both sides last agreed on.
    """
    followup_id = push.followup_id
    doc = fetched.get(push.href)
    if doc is not None and doc.followups:
        update: dict[str, Any] = {"id": followup_id}
        if isinstance(push, UpdateOnServer):
            # The owner is the CRM's alone (no calendar property holds it), as in a merge.
            update |= {"uid": push.document.uid, "owner": push.document.owner}
        series = doc.followups[0].model_copy(update=update)
        return SaveFromServer(followup_id, push.href, doc.etag, series, doc.data)
    if agreed is None:
        return None
    document, data = agreed
    return SaveFromServer(followup_id, push.href, push.etag, document, data)


# --- the database side --------------------------------------------------------------------


class OneWay:
    """An account's direction for one pass, with the versions ``one_way`` reads.

    The direction is read when the first plan with actions comes: an idle pass (nothing
    planned) costs no query more than it did.
    """

    def __init__(self, account: Account, db: Database) -> None:
        self.account = account
        self.db = db
        self._direction: SyncDirection | None = None

    @property
    def direction(self) -> SyncDirection:
        """The account's direction: set over the API, else the config's."""
        if self._direction is None:
            with self.db.session() as session:
                chosen = directions.override(session, self.account.name)
            self._direction = chosen or self.account.direction
        return self._direction

    def apply(self, plan: Plan, fetched: Mapping[str, ServerDoc]) -> Plan:
        """``one_way`` for this account (the plan itself when it syncs both ways)."""
        if not plan.actions:
            return plan
        return one_way(
            plan,
            self.direction,
            fetched=fetched,
            crm_documents=self._crm_documents,
            agreed=self._agreed,
            on_server_delete=self.account.on_server_delete,
        )

    def _crm_documents(self, ids: Collection[str]) -> dict[str, FollowUp]:
        with self.db.session() as session:
            entries = crm_store.crm_entries(session, list(ids))
            live = [fid for fid, entry in entries.items() if not entry.deleted]
            return crm_store.load_documents(session, live)

    def _agreed(self, ids: Collection[str]) -> dict[str, tuple[FollowUp, bytes]]:
        with self.db.session() as session:
            rows = repo.agreed_versions(session, self.account.name, ids)
        return {fid: (load_followup(document), data) for fid, (document, data) in rows.items()}
