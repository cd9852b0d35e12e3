"""The stand-in's data: appointment rows and recurrence rules, in memory, as SuperOffice keeps them.

A series is a rule plus one row per occurrence (superoffice-recurrence.md §2.4). Every row carries
its own `updated` stamp, and its `original_start` (the rule's date, the source of RECURRENCE-ID):
a row whose start differs from it is an exception, and moving it back makes it ordinary again.
Series-aware writes take an update mode (§2.2 RecurrenceUpdateMode, §4); each write reports the
rows it created, changed or deleted to `on_change`, which turns them into `activity.*` webhooks.

The HTTP layer (server.py) holds the lock; this module is plain data and rules.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.testing.superoffice.recurrence import expand, parse_time

TYPE_NUMBERS = {"inDiary": 1, "inChecklist": 2, "BookingForDiary": 6, "BookingForChecklist": 7}
STATUS_NUMBERS = {"NotStarted": 1, "Started": 2, "Completed": 3}
# Our field -> the appointment table column an `activity.changed` event lists in `Changes`.
COLUMNS = {
    "start": "do_by",
    "end": "endDate",
    "title": "text_id",
    "description": "text_id",
    "location": "location",
    "completed": "status",
    "type": "type",
    "associate_id": "associate_id",
    "rule_id": "recurrenceRuleId",
    "is_allday": "alldayEvent",
}

ChangeListener = Callable[[str, "Row", list[str]], None]


def effective_mode(mode: str | None) -> str:
    """An unset `UpdateMode` acts as ThisAndForward, the COM default (§2.2; *inferred* for REST)."""
    return mode if mode in ("OnlyThis", "ThisAndForward", "StopRecurrence") else "ThisAndForward"


class NotFound(LookupError):
    """No appointment row with that id."""


class PreconditionFailed(RuntimeError):
    """The row changed after the caller's If-Unmodified-Since (HTTP 412)."""


@dataclass
class Row:
    """One appointment row (a single appointment, or one occurrence of a series)."""

    appointment_id: int
    associate_id: int
    start: datetime
    end: datetime
    registered: datetime
    updated: datetime
    type: str = "inDiary"
    task: str = "Meeting"
    title: str = ""
    description: str = ""
    location: str = ""
    completed: str = "NotStarted"
    is_allday: bool = False
    rule_id: int = 0
    original_start: datetime | None = None

    @property
    def is_exception(self) -> bool:
        """Moved by hand away from the date and time its rule gave it."""
        return self.rule_id != 0 and self.original_start not in (None, self.start)


@dataclass
class Rule:
    """A recurrence rule: the RecurrenceInfo it was saved with (pattern, end) and its id."""

    rule_id: int
    info: dict[str, Any]


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


class Tenant:
    """One SuperOffice database: rows, rules and a clock whose stamps always move forward."""

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
        self.rows: dict[int, Row] = {}
        self.rules: dict[int, Rule] = {}
        self.listeners: list[ChangeListener] = []
        self._clock = clock
        self._last_stamp = datetime.min
        self._row_ids = itertools.count(1000)
        self._rule_ids = itertools.count(1)

    # --- stamps and events -------------------------------------------------------------

    def stamp(self) -> datetime:
        """`updated` for a write: the clock, in whole seconds, at least one second after the last.

        HTTP dates carry whole seconds, so two writes in one second would make
        If-Unmodified-Since blind to the second one; a real tenant's writes are slower than that.
        """
        now = self._clock().replace(microsecond=0, tzinfo=None)
        self._last_stamp = max(now, self._last_stamp + timedelta(seconds=1))
        return self._last_stamp

    def _emit(self, event: str, row: Row, changes: Iterable[str]) -> None:
        for listener in self.listeners:
            listener(event, row, sorted(set(changes)))

    # --- reading -----------------------------------------------------------------------

    def row(self, appointment_id: int) -> Row:
        try:
            return self.rows[appointment_id]
        except KeyError:
            raise NotFound(appointment_id) from None

    def series_rows(self, rule_id: int) -> list[Row]:
        return sorted(
            (row for row in self.rows.values() if row.rule_id == rule_id and rule_id != 0),
            key=lambda row: (row.original_start or row.start, row.appointment_id),
        )

    @staticmethod
    def check_unmodified_since(row: Row, since: datetime | None) -> None:
        if since is not None and row.updated > since.replace(tzinfo=None):
            raise PreconditionFailed(row.appointment_id)

    # --- writing -----------------------------------------------------------------------

    def create(self, entity: dict[str, Any], associate_id: int) -> Row:
        """Save a new appointment; a recurring one books one row per date of its rule."""
        base = self._row_from_entity(entity, associate_id)
        recurrence = entity.get("Recurrence") or {}
        if not recurrence.get("IsRecurrence"):
            self.rows[base.appointment_id] = base
            self._emit("activity.created", base, COLUMNS.values())
            return base
        return self._book_series(base, recurrence)[0]

    def _book_series(self, template: Row, recurrence: dict[str, Any]) -> list[Row]:
        info = dict(recurrence)
        info.setdefault("StartDate", template.start.isoformat())
        rule = Rule(next(self._rule_ids), info)
        self.rules[rule.rule_id] = rule
        duration = template.end - template.start
        booked = []
        for index, day in enumerate(expand(info)):
            start = datetime.combine(day, template.start.time())
            row_id = template.appointment_id if index == 0 else next(self._row_ids)
            row = replace(
                template,
                appointment_id=row_id,
                start=start,
                end=start + duration,
                rule_id=rule.rule_id,
                original_start=start,
            )
            event = "activity.changed" if row.appointment_id in self.rows else "activity.created"
            self.rows[row.appointment_id] = row
            booked.append(row)
            self._emit(event, row, COLUMNS.values())
        return booked

    def _row_from_entity(self, entity: dict[str, Any], associate_id: int) -> Row:
        now = self.stamp()
        start = parse_time(entity.get("StartDate") or now.isoformat())
        end = parse_time(entity["EndDate"]) if entity.get("EndDate") else start
        associate = (entity.get("Associate") or {}).get("AssociateId") or associate_id
        task = (entity.get("Task") or {}).get("Value") or (
            "To-do" if entity.get("Type") == "inChecklist" else "Meeting"
        )
        return Row(
            appointment_id=next(self._row_ids),
            associate_id=int(associate),
            start=start,
            end=end,
            registered=now,
            updated=now,
            type=entity.get("Type") or "inDiary",
            task=task,
            title=entity.get("Title") or "",
            description=entity.get("Description") or "",
            location=entity.get("Location") or "",
            completed=entity.get("Completed") or "NotStarted",
            is_allday=bool(entity.get("IsAlldayEvent")),
        )

    def update_row(self, row: Row, **changes: Any) -> Row:
        """Change one row's fields (a user's edit, or the entity PUT): stamps it, fires changed."""
        names = {item.name for item in fields(Row)}
        differing = {
            key: value
            for key, value in changes.items()
            if key in names and getattr(row, key) != value
        }
        if not differing:
            return row
        for key, value in differing.items():
            setattr(row, key, value)
        row.updated = self.stamp()
        self._emit("activity.changed", row, [COLUMNS.get(key, key) for key in differing])
        return row

    def delete_row(self, row: Row) -> None:
        del self.rows[row.appointment_id]
        self._emit("activity.deleted", row, ["appointment_id"])

    # --- the Agents API update modes ----------------------------------------------------

    def _this_and_later(self, row: Row) -> list[Row]:
        if row.rule_id == 0:
            return [row]
        anchor = row.original_start or row.start
        return [r for r in self.series_rows(row.rule_id) if (r.original_start or r.start) >= anchor]

    def stop_recurrence(self, row: Row) -> None:
        """Stop repeating: delete every later occurrence; the first alone stops being a series."""
        if row.rule_id == 0:
            return
        later = [r for r in self._this_and_later(row) if r is not row]
        for other in later:
            self.delete_row(other)
        if not any(r is not row for r in self.series_rows(row.rule_id)):
            rule_id = row.rule_id
            self.update_row(row, rule_id=0, original_start=None)
            self.rules.pop(rule_id, None)
        else:
            self.rules[row.rule_id].info["EndDate"] = row.start.isoformat()
            self.rules[row.rule_id].info["RecurrenceEndType"] = "EndDate"

    def delete_with_mode(self, row: Row, mode: str | None) -> None:
        """Agents `Delete`: this occurrence only, or this and every later one."""
        mode = effective_mode(mode)
        if mode in ("ThisAndForward", "StopRecurrence") and row.rule_id:
            for other in self._this_and_later(row):
                self.delete_row(other)
            return
        self.delete_row(row)

    def move_with_mode(self, row: Row, new_start: datetime, mode: str | None) -> Row:
        """Agents `Move`: shift this occurrence (an exception then), or this and later ones."""
        mode = effective_mode(mode)
        delta = new_start - row.start
        targets = self._this_and_later(row) if mode == "ThisAndForward" else [row]
        for target in targets:
            self.update_row(target, start=target.start + delta, end=target.end + delta)
            if mode == "ThisAndForward" and target.original_start is not None:
                target.original_start = target.start
        return row

    def save_with_mode(self, row: Row, entity: dict[str, Any], mode: str | None) -> Row:
        """Agents `Save` of an existing row.

        OnlyThis changes this row alone (a new start makes it an exception). ThisAndForward gives
        every later row this row's time of day, length and texts (their dates stay: SuperOffice
        advises against date changes in a series, §3.10); a changed pattern ends the old
        rule before this row and books a new rule from it (§3.11). StopRecurrence stops the series
        here. An unset mode acts as ThisAndForward (`effective_mode`).
        """
        mode = effective_mode(mode)
        if mode == "StopRecurrence":
            self.stop_recurrence(row)
            return self._apply_entity(row, entity)
        if row.rule_id == 0 or mode == "OnlyThis":
            return self._apply_entity(row, entity)
        new_rule = entity.get("Recurrence") or {}
        old_info = self.rules[row.rule_id].info
        if new_rule.get("IsRecurrence") and _pattern_of(new_rule) != _pattern_of(old_info):
            return self._split(row, entity, new_rule)
        later_rows = [later for later in self._this_and_later(row) if later is not row]
        changed = self._apply_entity(row, entity)
        changed.original_start = changed.start
        for later in later_rows:
            start = datetime.combine(later.start.date(), changed.start.time())
            self.update_row(
                later,
                start=start,
                end=start + (changed.end - changed.start),
                title=changed.title,
                description=changed.description,
                location=changed.location,
            )
            later.original_start = later.start
        return changed

    def _split(self, row: Row, entity: dict[str, Any], new_rule: dict[str, Any]) -> Row:
        old_rule = self.rules[row.rule_id]
        earlier = [r for r in self.series_rows(row.rule_id) if r.start < row.start]
        for later in self._this_and_later(row):
            if later is not row:
                self.delete_row(later)
        if earlier:
            old_rule.info["EndDate"] = earlier[-1].start.isoformat()
            old_rule.info["RecurrenceEndType"] = "EndDate"
        else:
            self.rules.pop(old_rule.rule_id)
        template = self._apply_entity(row, entity)
        info = dict(new_rule, StartDate=template.start.isoformat())
        booked = self._book_series(replace(template, updated=self.stamp()), info)
        return booked[0]

    def _apply_entity(self, row: Row, entity: dict[str, Any]) -> Row:
        changes: dict[str, Any] = {}
        if entity.get("StartDate"):
            changes["start"] = parse_time(entity["StartDate"])
        if entity.get("EndDate"):
            changes["end"] = parse_time(entity["EndDate"])
        for key, name in (
            ("Title", "title"),
            ("Description", "description"),
            ("Location", "location"),
            ("Completed", "completed"),
            ("Type", "type"),
        ):
            if key in entity and entity[key] is not None:
                changes[name] = entity[key]
        if "IsAlldayEvent" in entity:
            changes["is_allday"] = bool(entity["IsAlldayEvent"])
        return self.update_row(row, **changes)


def _pattern_of(info: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two rules the same pattern (the end is not part of it)."""
    keys = ("Pattern", "DayPattern", "WeekPattern", "MonthPattern", "YearPattern")
    return tuple(repr(info.get(key)) for key in keys)
