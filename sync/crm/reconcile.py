"""One reconcile pass between an account's CRM and the follow-up store.

The engine syncs the store with the calendars; this pass syncs the CRM with the store:

1. store -> CRM: change feed entries with origin ``calendar`` after the connector's feed cursor
   are written to the CRM series-aware (one occurrence moved, changed, cancelled or completed
   as that occurrence only; the series' own fields as this-and-following; a deleted follow-up
   as a deletion), each write guarded by the row's ``updated`` stamp as last read. A CRM edit
   made since (a stamp that moved, or the CRM's 412) is a conflict: the account's
   ``conflict_policy`` picks the side, and the loser is logged.
2. CRM -> store: rows changed since the watermark are read as follow-up documents and saved
   with origin ``crm``; rows gone from the CRM cancel their occurrence or delete the follow-up.
   This also heals any webhook that was lost: webhooks only make the pass run sooner.

No loops: the store's feed entries with origin ``crm`` (this pass's own imports) are never
written back, and after each CRM write the series is read again and its rows' new stamps
remembered (``sync.state.crm_cursors``), so the next listing recognises them as the
connector's own and does not import them as a CRM change.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from mappings.model import FollowUp
from mappings.resource import check_renderable
from sync.config import Account
from sync.crm.base import (
    CrmCannotExpress,
    CrmConflict,
    CrmConnector,
    CrmError,
    CrmSeries,
    OccurrenceEdit,
    RowStamp,
)
from sync.crm.differences import (
    naive,
    pattern,
    rename,
    with_completion_times,
    write_differences,
)
from sync.policies import ConflictPolicy
from sync.state import changes, crm_cursors, repo
from sync.state import followups as store
from sync.state.db import Database
from sync.state.rows import as_utc

log = logging.getLogger(__name__)
FEED_PAGE = 500
#: The conflict log's ``part`` for a CRM write-back conflict: the follow-up as a whole.
CONFLICT_PART = "follow-up (CRM write-back)"


@dataclass
class ReconcileReport:
    """What one pass did, by follow-up id."""

    imported: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Reconciler:
    """One account's pass: its CRM connector, the store, and the connector's own state."""

    def __init__(self, account: Account, db: Database, crm: CrmConnector) -> None:
        self.account = account
        self.name = account.name
        self.db = db
        self.crm = crm
        self.report = ReconcileReport()
        #: When the calendar last changed each follow-up written back (``newest-wins``).
        self.calendar_changed_at: dict[str, dt.datetime] = {}

    def run(self) -> ReconcileReport:
        try:
            self.write_back()
            self.import_changes()
        except CrmError as exc:
            log.error("account %s: CRM reconcile stopped: %s", self.name, exc)
            self.report.errors.append(str(exc))
        return self.report

    def _mine(self, owner: str | None) -> bool:
        """A follow-up of one of this account's associates (another account writes the rest)."""
        associates = self.account.crm.associates if self.account.crm is not None else []
        return not associates or owner in {str(a) for a in associates}

    # --- state ---------------------------------------------------------------------------

    def _known(self, followup_id: str) -> list[RowStamp]:
        with self.db.session() as session:
            return [
                RowStamp(row.row_id, row.original_start, row.updated)
                for row in crm_cursors.known_rows(session, self.name, followup_id)
            ]

    def _adopt(self, series: CrmSeries) -> None:
        """Store the CRM's version (origin ``crm``) and remember its rows' stamps."""
        series = _keeping_calendar_uid(self.db, series)
        check_renderable(series.followup)
        with self.db.sessions.begin() as session:
            outcome = store.save(session, series.followup, origin="crm")
            crm_cursors.remember_series(
                session,
                self.name,
                series.followup.id,
                [
                    crm_cursors.KnownRow(r.row_id, series.followup.id, r.original_start, r.updated)
                    for r in series.rows
                ],
            )
        if outcome != "unchanged":
            self.report.imported.append(series.followup.id)

    def _gone(self, followup_id: str) -> None:
        with self.db.sessions.begin() as session:
            if store.tombstone(session, followup_id, origin="crm"):
                self.report.deleted.append(followup_id)
            crm_cursors.forget_series(session, self.name, followup_id)

    # --- store -> CRM --------------------------------------------------------------------

    def write_back(self) -> None:
        with self.db.session() as session:
            since = crm_cursors.cursor(session, self.name).feed_seq
            page = changes.read(session, since, limit=FEED_PAGE)
            pending: list[str] = []
            mades = {e.followup_id for e in page.entries if e.owner is None}  # made in a calendar
            in_mine = repo.synced_followup_ids(session, self.name, mades)
            for entry in page.entries:
                if entry.origin == "calendar" and (
                    self._mine(entry.owner) or entry.followup_id in in_mine
                ):
                    if entry.followup_id not in pending:
                        pending.append(entry.followup_id)
                    self.calendar_changed_at[entry.followup_id] = as_utc(entry.at)
        tails = {head: tail for tail in pending if (head := self._split_head(tail)) is not None}
        for followup_id in pending:
            if followup_id in tails.values():
                continue  # written with its head, as the CRM's this-and-forward
            if followup_id in tails:
                try:
                    self._write_split(followup_id, tails[followup_id])
                except CrmConflict as exc:
                    self._conflict(followup_id, str(exc), also=tails[followup_id])
                continue
            if not self.crm.owns(followup_id) and not self._known(followup_id):
                self._create(followup_id)
                continue
            try:
                self._write_one(followup_id)
            except CrmConflict as exc:
                self._conflict(followup_id, str(exc))
        with self.db.sessions.begin() as session:
            crm_cursors.save_cursor(session, self.name, feed_seq=page.next_seq)

    def _write_one(self, followup_id: str) -> None:
        known = self._known(followup_id)
        current = self._read(followup_id, known)
        if current is None:
            return  # gone from the CRM: the import half deletes it
        wanted = self._stored(followup_id)
        if {(r.row_id, r.updated) for r in current.rows} != {(r.row_id, r.updated) for r in known}:
            raise CrmConflict(f"{followup_id} (rows changed in the CRM since the last read)")
        if wanted is None:
            self.crm.delete_followup(current.first_row)
        else:
            write_differences(self.crm, current, wanted)
        self.report.written.append(followup_id)
        after = self._read(followup_id, current.rows)
        if after is None:
            self._gone(followup_id)
        else:
            self._adopt(with_completion_times(after, wanted))

    def _read(
        self, followup_id: str, known: list[RowStamp] | tuple[RowStamp, ...]
    ) -> CrmSeries | None:
        """The follow-up as the CRM has it, under the id the store keeps it by.

        A follow-up made in a calendar (or named before ids named the tenant) is found in the
        CRM through a row the connector knows for it.
        """
        crm_id: str | None = followup_id if self.crm.owns(followup_id) else None
        for row in known if crm_id is None else ():
            if (crm_id := self.crm.followup_of_row(row.row_id)) is not None:
                break
        series = None if crm_id is None else self.crm.read_series(crm_id, known)
        return None if series is None else rename(series, followup_id)

    def _create(self, followup_id: str) -> None:
        """Made in a calendar: booked in the CRM (import_new), its rows remembered (linked)."""
        wanted = self._stored(followup_id)
        if not self.account.import_new or wanted is None or wanted.uid is None:
            self.report.skipped.append(followup_id)  # not made in a client (its UID): not ours
            return
        try:
            crm_id = self.crm.create_followup(wanted)
        except CrmCannotExpress as exc:
            log.warning("account %s: %s; it stays in the calendar only", self.name, exc)
            self.report.skipped.append(followup_id)
            return
        created = self.crm.read_series(crm_id, ())
        if created is None:
            raise CrmError(f"{followup_id}: booked as {crm_id} but not found in the CRM")
        write_differences(self.crm, rename(created, followup_id), wanted)
        after = self.crm.read_series(crm_id, created.rows)
        self.report.written.append(followup_id)
        if after is not None:
            self._adopt(with_completion_times(rename(after, followup_id), wanted))

    def _split_head(self, followup_id: str) -> str | None:
        """The follow-up a calendar split ``followup_id`` off (``mappings.operations.split_id``)."""
        head, _, day = followup_id.rpartition("-")
        if len(day) == 8 and day.isdigit() and head and self.crm.owns(head):
            return head
        return None

    def _write_split(self, head_id: str, tail_id: str) -> None:
        """A calendar's this-and-following as the CRM's own this-and-forward from the split row.

        The CRM keeps one series (or starts a new one for a new pattern); the tail the engine
        made is then replaced by what the CRM has, so every occurrence is in one place.
        """
        known = self._known(head_id)
        current = self._read(head_id, known)
        tail = self._stored(tail_id)
        if current is None or tail is None:
            return
        if {(r.row_id, r.updated) for r in current.rows} != {(r.row_id, r.updated) for r in known}:
            raise CrmConflict(f"{head_id} (rows changed in the CRM since the last read)")
        split_day = dt.datetime.strptime(tail_id.rpartition("-")[2], "%Y%m%d").date()
        row = min(
            (r for r in current.rows if dt.date.fromisoformat(r.original_start[:10]) >= split_day),
            key=lambda r: r.original_start,
            default=None,
        )
        if row is None:
            return
        have = current.followup
        new_pattern = (
            tail.recurrence
            if tail.recurrence is not None
            and have.recurrence is not None
            and pattern(tail.recurrence) != pattern(have.recurrence)
            else None
        )
        new_id = self.crm.edit_this_and_following(
            row,
            OccurrenceEdit(
                start=naive(tail.start),
                end=naive(tail.end),
                title=tail.title if tail.title != have.title else None,
                description=(tail.description or "")
                if tail.description != have.description
                else None,
                location=(tail.location or "") if tail.location != have.location else None,
                recurrence=new_pattern,
            ),
        )
        self.report.written += [head_id, tail_id]
        for followup_id, rows in ((head_id, current.rows), (new_id, ())):
            after = self.crm.read_series(followup_id, rows)
            if after is not None:
                self._adopt(after)
            elif followup_id == head_id:
                self._gone(head_id)
        if new_id != tail_id:
            with self.db.sessions.begin() as session:
                store.tombstone(session, tail_id, origin="crm")

    def _stored(self, followup_id: str) -> FollowUp | None:
        with self.db.session() as session:
            row = store.live_row(session, followup_id)
            return (
                None if row is None else store.load_documents(session, [followup_id])[followup_id]
            )

    def _conflict(self, followup_id: str, reason: str, also: str | None = None) -> None:
        """Settle a CRM edit racing a calendar edit by the policy; ``also``: a split's tail."""
        policy = self.account.conflict_policy
        self.report.conflicts.append(followup_id)
        current = self._read(followup_id, self._known(followup_id))
        calendar_wins = current is not None and (
            policy == ConflictPolicy.server_wins
            or (
                policy == ConflictPolicy.newest_wins
                and calendar_is_newer(
                    self.crm, self.calendar_changed_at, current, [followup_id, also]
                )
            )
        )
        log_conflict(
            self.db,
            self.account,
            followup_id,
            self._stored(followup_id),
            current,
            calendar_wins=calendar_wins,
        )
        if calendar_wins and current is not None:
            log.warning(
                "account %s: conflict on %s (%s): the calendar's version wins, "
                "the CRM edit is overwritten",
                self.name, followup_id, reason,
            )  # fmt: skip
            self._adopt_stamps(current)
            try:
                self._write_one(followup_id)
            except CrmConflict as exc:
                self.report.errors.append(f"{followup_id}: {exc}")
            return
        log.warning(
            "account %s: conflict on %s (%s): the CRM's version wins, the calendar edit is dropped",
            self.name, followup_id, reason,
        )  # fmt: skip
        if current is None:
            self._gone(followup_id)
        else:
            self._adopt(current)

    def _adopt_stamps(self, series: CrmSeries) -> None:
        """Take the CRM's current stamps as read (the calendar's version is then written)."""
        with self.db.sessions.begin() as session:
            crm_cursors.remember_series(
                session,
                self.name,
                series.followup.id,
                [
                    crm_cursors.KnownRow(r.row_id, series.followup.id, r.original_start, r.updated)
                    for r in series.rows
                ],
            )

    # --- CRM -> store --------------------------------------------------------------------

    def import_changes(self) -> None:
        with self.db.session() as session:
            watermark = crm_cursors.cursor(session, self.name).watermark
            known_all = crm_cursors.known_rows(session, self.name)
        known_stamps = {row.row_id: row.updated for row in known_all}
        stored_as = {row.row_id: row.followup_id for row in known_all}
        listing = self.crm.changed_since(watermark)
        touched = [
            # A known row keeps the id the store has (made in a calendar, or an older id).
            next((stored_as[r] for r in rows if r in stored_as), followup_id)
            for followup_id, rows in listing.followups.items()
            if any(known_stamps.get(row_id) != updated for row_id, updated in rows.items())
        ]
        present = self.crm.all_row_ids()
        for row in known_all:
            if row.row_id not in present and row.followup_id not in touched:
                touched.append(row.followup_id)  # a row deleted in the CRM
        for followup_id in touched:
            series = self._read(followup_id, self._known(followup_id))
            if series is None:
                self._gone(followup_id)
            else:
                self._adopt(series)
        with self.db.sessions.begin() as session:
            crm_cursors.save_cursor(session, self.name, watermark=listing.watermark)


def calendar_is_newer(
    crm: CrmConnector,
    changed_at: dict[str, dt.datetime],
    current: CrmSeries,
    followup_ids: list[str | None],
) -> bool:
    """``newest-wins``: the calendar's change is later than the CRM rows' newest stamp.

    CRM stamps have whole seconds, so the calendar's time is compared at whole seconds
    too, and a tie goes to the CRM (as the engine's merge gives an unknown order to it).
    """
    changed = [changed_at[i] for i in followup_ids if i in changed_at]
    if not changed or not current.rows:
        return False
    crm_time = max(crm.stamp_time(row.updated) for row in current.rows)
    return max(changed).replace(microsecond=0) > crm_time


def log_conflict(
    db: Database,
    account: Account,
    followup_id: str,
    stored: FollowUp | None,
    current: CrmSeries | None,
    *,
    calendar_wins: bool,
) -> None:
    """Keep both versions in the conflict log (``followup-sync conflicts``, the API).

    The calendar's version is the store's (what the calendar pull saved); None on either
    side is a deletion. The connector writes whole follow-ups, so the part is the whole.
    """
    calendar_doc = stored.to_json_dict() if stored is not None else None
    crm_doc = current.followup.to_json_dict() if current is not None else None
    kept, lost = (calendar_doc, crm_doc) if calendar_wins else (crm_doc, calendar_doc)
    with db.sessions.begin() as session:
        repo.log_conflict(
            session,
            account.name,
            followup_id,
            part=CONFLICT_PART,
            policy=account.conflict_policy.value,
            winner="server" if calendar_wins else "crm",
            kept=kept,
            lost=lost,
        )


def _keeping_calendar_uid(db: Database, series: CrmSeries) -> CrmSeries:
    """A follow-up made in a calendar keeps the client's UID (the CRM has no field for it)."""
    with db.session() as session:
        row = store.live_row(session, series.followup.id)
        docs = store.load_documents(session, [series.followup.id]) if row is not None else {}
    uid = docs[series.followup.id].uid if docs else None
    if uid is None or series.followup.uid is not None:
        return series
    return CrmSeries(series.followup.model_copy(update={"uid": uid}), series.rows, series.crm_id)


def reconcile(account: Account, db: Database, crm: CrmConnector) -> ReconcileReport:
    """One pass for ``account`` (see the module docstring); errors are in the report."""
    return Reconciler(account, db, crm).run()
