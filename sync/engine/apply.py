"""Carry out a plan: one action at a time, server first, then the state.

``Applier`` runs each action by the handler ``_HANDLERS`` names for its type; every write
to the database goes through ``sync.state.repo`` (and ``sync.state.followups`` for the CRM).

Order inside an action is always "server first, then record": if the process dies in
between, the next pass finds the server ahead of the state and recognises its own
write by UID and content (``plan._adopt``), instead of writing it a second time.

What makes that recognition safe is the *intent*: before the first PUT of a chunk, one
transaction records, for every server write the chunk plans, the document it puts on
the server and the ETag it is conditional on (``PendingWrite``); the transaction that
records a write removes its intent. A pass that dies in between leaves the intent, and
the next pass knows what the resource holds if our write landed: that is the merge
base, so our own write never looks like a calendar edit (``sync.engine.plan``, "Pending
writes"). One insert per chunk keeps the push as fast as before; a write the chunk did
not plan (a re-plan after a 412) records its own intent just before it is sent.

That recovery is also why our own server writes (creates and updates) are recorded in
batches of ``RECORD_BATCH`` per transaction rather than one each: a crash loses at most
one batch of records, which the next pass adopts with one multiget, never a duplicate;
every other action (CRM writes, merges with their conflict log) keeps its own
transaction. A batch is recorded before any re-read of the state (a 412 re-plan), before
a shutdown stops the run, and at the end of the run.

A push is bound by the server (tens of milliseconds per PUT against about one of ours),
so the next few resources are rendered on a worker thread while the server handles the
write before (``sync.engine.render_ahead``): the server is never kept waiting for our CPU.

A refused conditional write (412) means someone changed the resource since we read it:
the item is read again, planned again on its own, and retried, ``MAX_REPLANS`` times at
most. Any other failure of one item is reported by name and the pass goes on; the item
is retried on the next pass because its state did not move.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.resource import Rendered, render_resource
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
    describe,
)
from sync.engine.render_ahead import RenderAhead, render_job, rendering_ahead
from sync.errors import AlreadyExists, FollowupSyncError, NotFound, PreconditionFailed, StoreError
from sync.logs import log_context
from sync.state import followups as crm_store
from sync.state import intents, records, repo
from sync.state.db import Database, utcnow
from sync.stores.base import CalendarStore

log = logging.getLogger(__name__)

MAX_REPLANS = 3

#: Our own server writes recorded per state transaction (see the module docstring).
RECORD_BATCH = 100


@dataclass
class ApplyReport:
    done: dict[str, int] = field(default_factory=dict)  # "server create" -> n
    conflicts: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (item, message)
    #: What a user should know although nothing failed (item, message): a client's
    #: override dropped with its occurrence by a CRM write-back.
    notes: list[tuple[str, str]] = field(default_factory=list)
    #: The run was asked to stop (daemon shutdown) before every action was applied.
    stopped: bool = False

    def count(self, key: str) -> None:
        self.done[key] = self.done.get(key, 0) + 1

    def note_dropped(self, followup_id: str, rendered: Rendered) -> None:
        """Say which client overrides left with their occurrence (a CRM write-back)."""
        for line in rendered.dropped_lines():
            log.warning("%s: %s", followup_id, line)
            self.notes.append((followup_id, line))


#: Re-reads one item and plans it again after a 412; returns the actions to run instead.
Replanner = Callable[[Action], list[Action]]


@dataclass(frozen=True)
class Written:
    """A resource we wrote whose state record is still in the open batch."""

    followup_id: str
    href: str
    etag: str
    document: FollowUp
    data: bytes


class _Intents:
    """The write intents of one run (module docstring): recorded before the PUTs of a chunk,
    cleared in the transaction that records each write."""

    def __init__(self, account: str, db: Database, calendar: CalendarStore) -> None:
        self.account = account
        self.db = db
        self.calendar = calendar
        #: Follow-up id -> the server write (by identity) whose intent is recorded now.
        self._intended: dict[str, int] = {}

    def record(self, actions: Sequence[Action]) -> None:
        """Record the intent of every server write among ``actions``, in one transaction.

        Replaces what an earlier pass left for those follow-ups: this pass planned them
        with it, so it has done its job.
        """
        rows: list[dict[str, object]] = []
        for action in actions:
            if isinstance(action, CreateOnServer):
                href, if_match = self.calendar.href_for_uid(action.uid), None
            elif isinstance(action, UpdateOnServer):
                href, if_match = action.href, action.etag
            else:
                continue
            rows.append(
                {
                    "account": self.account,
                    "followup_id": action.followup_id,
                    "href": href,
                    "if_match": if_match,
                    "document": action.document.to_json_dict(),
                    "created_at": utcnow(),
                }
            )
        if not rows:
            return
        with self.db.sessions.begin() as session:
            ids = sorted({str(row["followup_id"]) for row in rows})
            self.clear(session, ids)
            # Two writes for one follow-up in one chunk (a split head, then its update):
            # the later one is the one that stands.
            latest = {row["followup_id"]: row for row in rows}
            intents.add_intents(session, list(latest.values()))
        for action in actions:
            if isinstance(action, (CreateOnServer, UpdateOnServer)):
                self._intended[action.followup_id] = id(action)

    def ensure(self, action: CreateOnServer | UpdateOnServer) -> None:
        if self._intended.get(action.followup_id) != id(action):
            self.record([action])

    def clear(self, session: Session, ids: Sequence[str]) -> None:
        for followup_id in ids:
            self._intended.pop(followup_id, None)
        intents.clear_intents(session, self.account, ids, batch=RECORD_BATCH)


class Applier:
    def __init__(
        self,
        account: str,
        db: Database,
        calendar: CalendarStore,
        *,
        policy: str,
        replan: Replanner,
        clock: Callable[[], dt.datetime] = utcnow,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.account = account
        #: SCHEDULE-AGENT for a document's ATTENDEEs (``sync.invitations``): never both
        #: the server and us sending the same invitation.
        self.schedule_agent: Callable[[FollowUp], str | None] = lambda _document: None
        #: Checked between actions: a daemon shutting down lets the current item finish
        #: (server write and its state record belong together) and leaves the rest.
        self.should_stop = should_stop
        self.db = db
        self.calendar = calendar
        self.policy = policy
        self.replan = replan
        self.clock = clock
        self.report = ApplyReport()
        #: Server writes not yet recorded (``RECORD_BATCH``).
        self._unrecorded: list[Written] = []
        self._ahead: RenderAhead | None = None
        self._index = -1
        self.write_intents = _Intents(account, db, calendar)

    def run(self, plan: Plan, *, progress: Callable[[], None] | None = None) -> ApplyReport:
        actions = plan.actions
        self.write_intents.record(actions)
        job = functools.partial(render_job, clock=self.clock, schedule_agent=self.schedule_agent)
        with rendering_ahead(self.calendar, actions, job) as ahead:
            self._ahead = ahead
            try:
                for index, action in enumerate(actions):
                    if self.should_stop is not None and self.should_stop():
                        self.report.stopped = True
                        left = len(actions) - index
                        log.info("stopping: %d action(s) left for the next pass", left)
                        break
                    self._index = index
                    self._ahead.advance(index)
                    with log_context(item=action.followup_id):
                        self.apply(action, attempt=0)
                    if progress is not None:
                        progress()
            finally:
                self._ahead.advance(len(actions))  # cancels what was rendered for nothing
                self._ahead = None
                self.flush()
        return self.report

    def apply(self, action: Action, *, attempt: int) -> None:
        try:
            self._dispatch(action)
        except PreconditionFailed as exc:
            if attempt >= MAX_REPLANS:
                self._fail(action, f"still changing on the server after {attempt} re-reads: {exc}")
                return
            log.info("%s: %s; reading it again", describe(action), exc)
            self.flush()  # the re-read plans against the state: it must be complete
            try:
                replacement = self.replan(action)
            except (FollowupSyncError, ValueError) as err:
                self._fail(action, str(err))
                return
            for new_action in replacement:
                self.apply(new_action, attempt=attempt + 1)
        except (StoreError, MappingError) as exc:
            self._fail(action, str(exc))

    def _fail(self, action: Action, message: str) -> None:
        log.warning("%s failed: %s", describe(action), message)
        self.report.errors.append((action.followup_id, message))

    def _dispatch(self, action: Action) -> None:
        handler = _HANDLERS.get(type(action))
        if handler is None:  # pragma: no cover - the Action union is closed
            raise TypeError(f"unknown action {action!r}")
        handler(self, action)

    # --- CRM writes and records: one transaction each -------------------------------------

    def _save_from_server(self, action: SaveFromServer) -> None:
        with self.db.sessions.begin() as session:
            crm_store.save(session, action.document, origin="calendar")
            self._record(session, action)
        self._done(action, "crm update")

    def _create_from_server(self, action: CreateFromServer) -> None:
        with self.db.sessions.begin() as session:
            crm_store.save(session, action.document, origin_account=self.account, origin="calendar")
            if action.href is not None and action.etag is not None and action.data is not None:
                self._record(
                    session,
                    Written(
                        action.followup_id, action.href, action.etag, action.document, action.data
                    ),
                )
        self._done(action, "crm create")

    def _delete_in_crm(self, action: DeleteInCrm) -> None:
        with self.db.sessions.begin() as session:
            self._forget(session, action.followup_id)
            crm_store.tombstone(session, action.followup_id, origin="calendar")
            records.purge_if_unused(session, action.followup_id)
        self._done(action, "crm delete")

    def _detach_in_crm(self, action: DetachInCrm) -> None:
        with self.db.sessions.begin() as session:
            records.detach(session, self.account, action.followup_id)
        self._done(action, "crm detach")

    def _record_state(self, action: RecordState) -> None:
        with self.db.sessions.begin() as session:
            self._record(session, action)

    def _forget_item(self, action: Forget) -> None:
        with self.db.sessions.begin() as session:
            self._forget(session, action.followup_id)
            records.purge_if_unused(session, action.followup_id)

    # --- server writes -------------------------------------------------------------------

    def _rendered(self, action: CreateOnServer | UpdateOnServer, base: bytes | None) -> Rendered:
        """This action's resource: rendered ahead if it was, else now."""
        ahead = self._ahead.take(self._index, action) if self._ahead is not None else None
        if ahead is not None:
            return ahead.result()
        return render_resource(
            action.document,
            stamp=self.clock(),
            base=base,
            schedule_agent=self.schedule_agent(action.document),
        )

    def _create_on_server(self, action: CreateOnServer) -> None:
        data = self._rendered(action, None).data
        if data is None:
            log.info(
                "%s: every occurrence is deleted; nothing to put on the calendar",
                action.followup_id,
            )
            return
        href = self.calendar.href_for_uid(action.uid)
        self.write_intents.ensure(action)
        try:
            etag = self.calendar.create(href, data)
        except AlreadyExists:
            # Our own earlier write (a crash before it was recorded) or a client's copy:
            # re-plan this item against what is there now rather than overwrite it.
            raise
        self.note_written(Written(action.followup_id, href, etag, action.document, data))
        self._done(action, "server create")

    def _update_on_server(self, action: UpdateOnServer) -> None:
        base = (
            action.base_data
            if action.base_data is not None
            else self._server_data(action.followup_id)
        )
        rendered = self._rendered(action, base)
        data = rendered.data
        if data is None:
            self._delete_on_server(DeleteOnServer(action.followup_id, action.href, action.etag))
            return
        self.write_intents.ensure(action)
        etag = self.calendar.update(action.href, data, action.etag)
        self.report.note_dropped(action.followup_id, rendered)
        self.note_written(Written(action.followup_id, action.href, etag, action.document, data))
        self._done(action, "server update")

    def _delete_on_server(self, action: DeleteOnServer) -> None:
        try:
            self.calendar.delete(action.href, action.etag)
        except NotFound:
            log.info("%s: already gone from the server", action.followup_id)
        with self.db.sessions.begin() as session:
            self._forget(session, action.followup_id)
            records.purge_if_unused(session, action.followup_id)
        self._done(action, "server delete")

    def _merge(self, action: Merge) -> None:
        etag, data = action.etag, action.server_data
        if action.push:
            rendered = render_resource(
                action.document,
                stamp=self.clock(),
                base=action.server_data,
                schedule_agent=self.schedule_agent(action.document),
            )
            if rendered.data is None:
                raise MappingError(
                    "the merged series has no occurrences left", item=action.followup_id
                )
            etag = self.calendar.update(action.href, rendered.data, action.etag)
            data = rendered.data
            self.report.note_dropped(action.followup_id, rendered)
        with self.db.sessions.begin() as session:
            if action.pull:
                crm_store.save(session, action.document, origin="calendar")
            self._record(
                session, Written(action.followup_id, action.href, etag, action.document, data)
            )
            for conflict in action.conflicts:
                repo.log_conflict(
                    session,
                    self.account,
                    action.followup_id,
                    part=conflict.part,
                    policy=self.policy,
                    winner=conflict.winner,
                    kept=conflict.kept,
                    lost=conflict.lost,
                )
        self.report.conflicts += len(action.conflicts)
        if action.push:
            self._done(action, "server update")
        if action.pull:
            self._done(action, "crm update")

    # --- state ---------------------------------------------------------------------------

    def note_written(self, written: Written) -> None:
        self._unrecorded.append(written)
        if len(self._unrecorded) >= RECORD_BATCH:
            self.flush()

    def flush(self) -> None:
        """Record the open batch of server writes in one transaction.

        If that fails, the writes are on the server but not in the state: each is
        reported by name, and the next pass recognises them by UID (no second copy).
        """
        batch, self._unrecorded = self._unrecorded, []
        if not batch:
            return
        try:
            with self.db.sessions.begin() as session:
                self.write_intents.clear(session, [written.followup_id for written in batch])
                records.record_agreed_many(session, self.account, batch)
        except SQLAlchemyError as exc:
            log.error("recording %d server write(s) failed: %s", len(batch), exc)
            for written in batch:
                self.report.errors.append(
                    (
                        written.followup_id,
                        f"written to the server as {written.href} but not recorded ({exc}); "
                        "the next pass recognises it by UID",
                    )
                )

    def _record(self, session: Session, agreed: records.Agreed) -> None:
        """Remember what both sides agree on for one follow-up (batches: ``flush``)."""
        item = records.sync_item(session, self.account, agreed.followup_id)
        self.write_intents.clear(session, [agreed.followup_id])
        records.record_agreed(
            session,
            self.account,
            item,
            followup_id=agreed.followup_id,
            href=agreed.href,
            etag=agreed.etag,
            document=agreed.document,
            data=agreed.data,
        )

    def _forget(self, session: Session, followup_id: str) -> None:
        self.write_intents.clear(session, [followup_id])
        records.forget(session, self.account, followup_id)

    def _server_data(self, followup_id: str) -> bytes | None:
        if any(written.followup_id == followup_id for written in self._unrecorded):
            self.flush()
        with self.db.session() as session:
            return repo.server_data(session, self.account, followup_id)

    def _done(self, action: Action, key: str) -> None:
        log.info("%s", describe(action))
        self.report.count(key)


#: Which method carries out each kind of action.
_HANDLERS: dict[type, Callable[[Applier, Any], None]] = {
    CreateOnServer: Applier._create_on_server,
    UpdateOnServer: Applier._update_on_server,
    DeleteOnServer: Applier._delete_on_server,
    SaveFromServer: Applier._save_from_server,
    CreateFromServer: Applier._create_from_server,
    DeleteInCrm: Applier._delete_in_crm,
    DetachInCrm: Applier._detach_in_crm,
    RecordState: Applier._record_state,
    Forget: Applier._forget_item,
    Merge: Applier._merge,
}
