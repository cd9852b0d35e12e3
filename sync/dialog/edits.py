"""The recurrence dialog's stored edits: load a follow-up, apply one operation, store it.

``DialogService`` loads a follow-up, applies one of the pure operations of
``mappings.operations``, stores the result (a split as two follow-ups in one
transaction, "nothing left" as a deletion) and says what changed in a sentence. The next
sync pass, or the daemon, takes it to the calendar. With ``expect_hash`` (HTTP If-Match)
an edit is stored only over the version it was based on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.moments import Moment
from mappings.occurrences import occurrences
from mappings.operations import (
    add_date,
    change_occurrence,
    delete_date,
    delete_occurrence,
    move_date,
    stop_repeating,
)
from sync.dialog.dates import local_moment, utc_moment
from sync.errors import FollowupSyncError
from sync.state import changes
from sync.state import followups as crm_store
from sync.state.db import Database

#: How many changed occurrences a summary spells out before saying "and N more".
SUMMARY_ITEMS = 4


class FollowUpNotFound(MappingError):
    """No (live) follow-up with that id: bad input, like any other wrong field."""

    def __init__(self, followup_id: str) -> None:
        super().__init__("no such follow-up", item=followup_id, field="id")


class VersionMoved(FollowupSyncError):
    """The follow-up is no longer the version the caller based its edit on (HTTP If-Match)."""

    def __init__(self, followup_id: str, current: FollowUp | None) -> None:
        super().__init__(f"follow-up {followup_id!r} changed since the version given")
        self.followup_id = followup_id
        self.current = current


@dataclass(frozen=True)
class OperationResult:
    """What one operation stored: follow-ups written (a split writes two), ids deleted."""

    saved: list[FollowUp]
    deleted: list[str]
    summary: str

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "saved": [f.to_json_dict() for f in self.saved],
            "deleted": self.deleted,
        }


class DialogService:
    """The dialog's operations on stored follow-ups: load, apply, store, explain."""

    def __init__(self, db: Database, *, expect_hash: str | None = None) -> None:
        self.db = db
        self.store = crm_store.FollowUpStore(db)
        #: Content hash the caller's edit is based on (If-Match): checked when the
        #: follow-up is read and again, under the feed's write lock, when it is stored.
        self.expect_hash = expect_hash

    def get(self, followup_id: str) -> FollowUp:
        found = self.store.get(followup_id)
        if found is None:
            raise FollowUpNotFound(followup_id)
        if self.expect_hash is not None and crm_store.content_hash(found) != self.expect_hash:
            raise VersionMoved(followup_id, found)
        return found

    def _still_expected(self, session: Session, followup_id: str) -> None:
        if self.expect_hash is None:
            return
        changes.lock_writes(session)
        live = crm_store.live_row(session, followup_id)
        if live is None or live.content_hash != self.expect_hash:
            current = None if live is None else load_followup(live.document)
            raise VersionMoved(followup_id, current)

    def move(self, followup_id: str, date: dt.date, days: int) -> OperationResult:
        before = self.get(followup_id)
        after = move_date(before, date, days)
        word = "later" if days > 0 else "earlier"
        return self._store(before, [after], f"moved the {date} occurrence one day {word}")

    def add_date(self, followup_id: str, date: dt.date) -> OperationResult:
        before = self.get(followup_id)
        return self._store(before, [add_date(before, date)], f"added {date}")

    def delete_date(self, followup_id: str, date: dt.date) -> OperationResult:
        before = self.get(followup_id)
        return self._store(before, [delete_date(before, date)], f"deleted {date}")

    def change(
        self,
        followup_id: str,
        occurrence: Moment,
        *,
        mode: str,
        start: Moment | None = None,
        end: Moment | None = None,
        title: str | None = None,
        description: str | None = None,
        location: str | None = None,
    ) -> OperationResult:
        before = self.get(followup_id)
        result = change_occurrence(
            before,
            occurrence,
            mode=mode,
            start=start,
            end=end,
            title=title,
            description=description,
            location=location,
        )
        parts = list(result) if isinstance(result, tuple) else [result]
        if len(parts) == 2:
            old, new = parts
            assert old.recurrence is not None
            headline = (
                f"split the series: {old.id} now ends {old.recurrence.EndDate}, "
                f"{new.id} starts {_moment_text(new.start)} with the new values"
            )
            existing = self.store.get(new.id)
            if existing is not None:
                raise MappingError(
                    f"the series was already split here: follow-up {new.id!r} exists",
                    item=followup_id,
                    field="occurrence",
                )
        else:
            scope = "one occurrence" if mode == "only-this" else "this and every later occurrence"
            headline = f"changed {scope}"
        return self._store(before, parts, headline)

    def stop(self, followup_id: str, from_occurrence: Moment) -> OperationResult:
        before = self.get(followup_id)
        after = stop_repeating(before, from_occurrence)
        if after.recurrence is None and after.ical_recurrence is None:
            headline = "stopped repeating: it is a single follow-up now"
        else:
            headline = f"stopped repeating after {_moment_text(from_occurrence)}"
        return self._store(before, [after], headline)

    def delete(
        self, followup_id: str, occurrence: Moment | None = None, mode: str = "only-this"
    ) -> OperationResult:
        before = self.get(followup_id)
        after = None if occurrence is None else delete_occurrence(before, occurrence, mode)
        if after is None:
            with self.db.sessions.begin() as session:
                self._still_expected(session, followup_id)
                crm_store.tombstone(session, followup_id)
            return OperationResult([], [followup_id], f"{followup_id}: deleted the follow-up")
        what = "this occurrence" if mode == "only-this" else "this and every later occurrence"
        return self._store(before, [after], f"deleted {what} ({_moment_text(occurrence)})")

    def _store(self, before: FollowUp, after: list[FollowUp], headline: str) -> OperationResult:
        # A split (two documents) says so in the change feed: the old id and the new one.
        notes: list[dict[str, str] | None] = [None] * len(after)
        if len(after) == 2:
            notes = [{"split_into": after[1].id}, {"split_from": after[0].id}]
        with self.db.sessions.begin() as session:
            self._still_expected(session, before.id)
            for followup, note in zip(after, notes, strict=True):
                crm_store.save(session, followup, note=note)
        return OperationResult(
            after, [], f"{before.id}: {headline}" + describe_change(before, after)
        )


def describe_change(before: FollowUp, after: Sequence[FollowUp]) -> str:
    """The occurrences an edit removed and added, a few spelled out (``"; removed …"``)."""

    def seen(items: Iterable[FollowUp]) -> dict[tuple[Any, ...], str]:
        out: dict[tuple[Any, ...], str] = {}
        for f in items:
            for o in occurrences(f, include_cancelled=False):
                key = (
                    utc_moment(o.start, f.zone),
                    utc_moment(o.end, f.zone),
                    o.title,
                    o.location or None,
                )
                out[key] = f"{_moment_text(local_moment(o.start, f.zone))} {o.title!r}"
        return out

    old, new = seen([before]), seen(after)
    removed = [text for key, text in old.items() if key not in new]
    added = [text for key, text in new.items() if key not in old]
    if not removed and not added:
        return "; no occurrence changed"
    return "".join(
        f"; {label}: {_some(items)}"
        for label, items in (("removed", removed), ("now", added))
        if items
    )


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:SUMMARY_ITEMS])
    more = len(items) - SUMMARY_ITEMS
    return shown + (f" and {more} more" if more > 0 else "")


def _moment_text(value: Moment | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.strftime("%a %Y-%m-%d %H:%M")
    return value.strftime("%a %Y-%m-%d")
