"""SuperOffice rows as follow-up documents: a series is a rule plus one row per occurrence.

A row at the date and time its rule gives is an ordinary occurrence; a row elsewhere is a
moved one; a rule date without a row is a cancelled one; a row whose texts or status differ
from the series' is an occurrence changed by itself. No documented carrier says which rule
date a moved row stands for, so the connector remembers it from when it first saw the row
(``sync.state.crm_cursors``); a row already moved when first seen is paired with the nearest
rule date left over (docs/superoffice-standin.md, "What the connector has to do itself").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from mappings.documents import load_followup
from mappings.model import FollowUp, FollowUpKind, FollowUpStatus
from mappings.superoffice import RecurrenceInfo
from sync.crm.base import RowStamp

#: Ids before they named the tenant (``so-r<rule>``, ``so-a<row>``): still read as this tenant's.
SERIES_PREFIX = "so-r"
SINGLE_PREFIX = "so-a"
#: Task names SuperOffice ships for calls ("Phone", "Phone call" …).
_CALL_TASKS = ("phone", "call")
_STATUS = {
    "NotStarted": FollowUpStatus.not_started,
    "Started": FollowUpStatus.started,
    "Completed": FollowUpStatus.completed,
}


def tenant_key(url: str, context_identifier: str | None) -> str:
    """The tenant in follow-up ids: its context id (``Cust12345``), else its URL's last part.

    Rule and row numbers are per tenant: two accounts on two tenants would otherwise both
    name a follow-up ``so-r1``.
    """
    parts = urlsplit(url)
    path = [part for part in parts.path.split("/") if part]
    raw = context_identifier or (path[-1] if path else parts.netloc)
    return re.sub(r"[^a-z0-9]", "", raw.casefold()) or "tenant"


def followup_id_for(row_id: int, rule_id: int, tenant: str) -> str:
    """A series is named by its tenant and rule, a single appointment by its tenant and row."""
    return f"so-{tenant}-r{rule_id}" if rule_id else f"so-{tenant}-a{row_id}"


def parse_followup_id(followup_id: str, tenant: str) -> tuple[str, int] | None:
    """("rule" | "row", number) of a follow-up this connector named; None for any other id.

    The ids from before tenants were named (``so-r<rule>``) are read as this tenant's.
    """
    for kind, what in (("r", "rule"), ("a", "row")):
        for prefix in (f"so-{tenant}-{kind}", f"so-{kind}"):
            rest = followup_id.removeprefix(prefix)
            if rest != followup_id and rest.isdigit():
                return what, int(rest)
    return None


def parse_stamp(text: str) -> dt.datetime:
    """A SuperOffice timestamp: local time without an offset."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=None)


def stamp(value: dt.datetime | dt.date) -> str:
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    return value.replace(microsecond=0, tzinfo=None).isoformat()


def _kind(entity: Mapping[str, Any]) -> FollowUpKind:
    task = entity.get("Task")
    name = str(task.get("Value") if isinstance(task, dict) else task or "").casefold()
    if entity.get("Type") in ("inChecklist", "BookingForChecklist"):
        return FollowUpKind.task
    if any(word in name for word in _CALL_TASKS):
        return FollowUpKind.call
    return FollowUpKind.appointment


def _owner(entity: Mapping[str, Any]) -> str | None:
    associate = entity.get("Associate")
    if isinstance(associate, dict) and associate.get("AssociateId"):
        return str(associate["AssociateId"])
    return None


def _text(value: Any) -> str | None:
    return str(value) if value else None


def _recurrence(info: Mapping[str, Any], first: dt.datetime) -> RecurrenceInfo:
    """The rule as the document keeps it, in the form the calendar pull writes it too.

    Pattern, end, the first date and ``IsRecurrence``, without ids or computed dates: the
    same rule read from the CRM and pulled from a calendar gives the same document (and
    content hash), so neither side sees a change that is none.
    """
    if info.get("Pattern") == "Custom":  # the date list is the whole rule
        return RecurrenceInfo.model_validate(
            {"Pattern": "Custom", "Dates": info.get("Dates"), "IsRecurrence": True}
        )
    keep: dict[str, Any] = {"StartDate": first.date().isoformat(), "IsRecurrence": True}
    keep |= {
        key: info[key]
        for key in ("Pattern", "DayPattern", "WeekPattern", "MonthPattern", "YearPattern")
        if info.get(key) is not None
    }
    keep["RecurrenceEndType"] = info.get("RecurrenceEndType", "Unknown")
    if keep["RecurrenceEndType"] == "Counter":
        keep["RecurrenceCounter"] = info.get("RecurrenceCounter")
    else:
        keep["EndDate"] = info.get("EndDate")
    return RecurrenceInfo.model_validate(keep)


def single_followup(
    entity: Mapping[str, Any], timezone: str, tenant: str
) -> tuple[FollowUp, RowStamp]:
    """One appointment, task or call that does not repeat."""
    kind = _kind(entity)
    start, end = parse_stamp(entity["StartDate"]), parse_stamp(entity["EndDate"])
    document: dict[str, Any] = {
        "id": followup_id_for(int(entity["AppointmentId"]), 0, tenant),
        "kind": kind.value,
        "title": entity.get("Title") or "",
        "description": _text(entity.get("Description")),
        "location": _text(entity.get("Location")),
        "start": stamp(start),
        "end": stamp(max(end, start)),
        "timezone": timezone,
        "owner": _owner(entity),
    }
    if entity.get("IsAlldayEvent"):  # dates, the end exclusive, as the calendar pull has them
        last = max(end.date(), start.date() + dt.timedelta(days=1))
        document.update(start=start.date().isoformat(), end=last.isoformat(), all_day=True)
    if kind == FollowUpKind.task:
        document["status"] = _STATUS.get(str(entity.get("Completed")))
        if document["status"] == FollowUpStatus.completed:
            document["completed_at"] = stamp(parse_stamp(entity["UpdatedDate"])) + "Z"
    row = RowStamp(str(entity["AppointmentId"]), stamp(start), str(entity["UpdatedDate"]))
    return load_followup({k: v for k, v in document.items() if v is not None}), row


def pair_rows(
    rows: Sequence[Mapping[str, Any]], rule_dates: list[dt.datetime], known: Iterable[RowStamp]
) -> dict[str, Mapping[str, Any]]:
    """Rule date (ISO) -> the row standing for it; a date left out has no row (cancelled)."""
    keys = {stamp(date) for date in rule_dates}
    remembered = {row.row_id: row.original_start for row in known}
    paired: dict[str, Mapping[str, Any]] = {}
    left: list[Mapping[str, Any]] = []
    for row in rows:
        key = remembered.get(str(row["AppointmentId"]))
        if key in keys and key not in paired:
            paired[key] = row
        else:
            left.append(row)
    still: list[Mapping[str, Any]] = []
    for row in left:
        key = stamp(parse_stamp(row["StartDate"]))
        if key in keys and key not in paired:
            paired[key] = row
        else:
            still.append(row)
    free = sorted(key for key in keys if key not in paired)
    for row in still:  # moved before the connector first saw it: the nearest free date
        if not free:
            break
        start = parse_stamp(row["StartDate"])
        nearest = min(free, key=lambda key: abs(parse_stamp(key) - start))
        paired[nearest] = row
        free.remove(nearest)
    return paired


def series_followup(
    entity: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    rule_dates: list[dt.datetime],
    known: Iterable[RowStamp],
    timezone: str,
    row_stamps: Mapping[str, str],
    tenant: str,
) -> tuple[FollowUp, tuple[RowStamp, ...]]:
    """A series: the rule, the first rule date as start, and every row that differs as exception.

    ``entity`` is the series' first row; ``row_stamps`` each row's ``updated`` stamp (the
    records carrier has none, the listing does).
    """
    info = entity["Recurrence"]
    paired = pair_rows(rows, rule_dates, known)
    first = stamp(rule_dates[0])
    template = paired.get(first) or next(iter(paired.values()), entity)
    duration = parse_stamp(template["EndDate"]) - parse_stamp(template["StartDate"])
    title = template.get("Title") or ""
    description, location = _text(template.get("Description")), _text(template.get("Location"))
    kind = _kind(entity)
    exceptions: list[dict[str, Any]] = []
    stamps: list[RowStamp] = []
    for date in rule_dates:
        key = stamp(date)
        row = paired.get(key)
        if row is None:
            exceptions.append({"original_start": key, "cancelled": True})
            continue
        row_id = str(row["AppointmentId"])
        stamps.append(RowStamp(row_id, key, row_stamps.get(row_id, "")))
        exception: dict[str, Any] = {"original_start": key}
        start, end = parse_stamp(row["StartDate"]), parse_stamp(row["EndDate"])
        # As the calendar pull writes it: ``end`` only when the length differs from the series'.
        if row.get("IsAlldayEvent"):  # dates, the end exclusive, as the calendar pull has them
            last = max(end.date(), start.date() + dt.timedelta(days=1))
            exception.update(start=start.date().isoformat(), end=last.isoformat(), all_day=True)
        elif start != date:
            exception["start"] = stamp(start)
        if end - start != duration and not row.get("IsAlldayEvent"):
            exception.update(start=stamp(start), end=stamp(max(end, start)))
        for field, value, series_value in (
            ("title", row.get("Title") or "", title),
            ("description", _text(row.get("Description")), description),
            ("location", _text(row.get("Location")), location),
        ):
            if value != series_value:
                exception[field] = value if value is not None else ""
        if kind == FollowUpKind.task and row.get("Completed") == "Completed":
            exception["status"] = FollowUpStatus.completed.value
        if len(exception) > 1:
            exceptions.append(exception)
    document: dict[str, Any] = {
        "id": followup_id_for(0, int(info["RecurrenceId"]), tenant),
        "kind": kind.value,
        "title": title,
        "description": description,
        "location": location,
        "start": first,
        "end": stamp(rule_dates[0] + duration),
        "timezone": timezone,
        "owner": _owner(entity),
        "recurrence": _recurrence(info, rule_dates[0]).model_dump(mode="json", exclude_none=True),
        "exceptions": exceptions,
    }
    return load_followup({k: v for k, v in document.items() if v is not None}), tuple(stamps)
