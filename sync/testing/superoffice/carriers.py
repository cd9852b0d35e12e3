"""Rows and rules as SuperOffice's JSON carriers, and the archive's OData-style list.

Field names are those of the vendored descriptions (`AppointmentEntity`, `Appointment`,
`RecurrenceInfo`, `ODataSlimResponse`) and of the appointment archive provider's columns
(SuperOfficeDocs/docs en/api/archive-providers/reference/appointment.md). Timestamps are local
times without an offset, as SuperOffice writes them; the stand-in's local time is UTC.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sync.testing.superoffice.recurrence import parse_time
from sync.testing.superoffice.tenant import STATUS_NUMBERS, TYPE_NUMBERS, Row, Tenant


def stamp(value: datetime) -> str:
    return value.replace(microsecond=0, tzinfo=None).isoformat()


def recurrence_info(tenant: Tenant, row: Row) -> dict[str, Any]:
    """The series' RecurrenceInfo as saved, with its id and current span (or IsRecurrence false)."""
    rule = tenant.rules.get(row.rule_id)
    if rule is None:
        return {"RecurrenceId": 0, "IsRecurrence": False}
    rows = tenant.series_rows(row.rule_id)
    keys = (
        "RecurrenceEndType",
        "RecurrenceCounter",
        "Pattern",
        "DayPattern",
        "WeekPattern",
        "MonthPattern",
        "YearPattern",
    )
    info: dict[str, Any] = {key: rule.info[key] for key in keys if key in rule.info}
    info.update(
        RecurrenceId=rule.rule_id,
        StartDate=stamp(parse_time(str(rule.info["StartDate"]))),
        EndDate=stamp(rows[-1].start if rows else parse_time(str(rule.info["StartDate"]))),
        IsRecurrence=True,
    )
    if rule.info.get("Pattern") == "Custom":
        info["Dates"] = [{"Date": stamp(r.start), "IsConflict": False} for r in rows]
    return info


def appointment_entity(tenant: Tenant, row: Row) -> dict[str, Any]:
    """`AppointmentEntity` (entity GET/PUT and the Agents' Save/Move/GetAppointmentEntity)."""
    return {
        "AppointmentId": row.appointment_id,
        "Associate": {"AssociateId": row.associate_id},
        "Title": row.title,
        "Description": row.description,
        "Location": row.location,
        "StartDate": stamp(row.start),
        "EndDate": stamp(row.end),
        "ActiveDate": stamp(row.start),
        "Type": row.type,
        "Task": {"Value": row.task},
        "Completed": row.completed,
        "IsAlldayEvent": row.is_allday,
        "MotherId": 0,
        "CreatedDate": stamp(row.registered),
        "UpdatedDate": stamp(row.updated),
        "Recurrence": recurrence_info(tenant, row),
    }


def appointment_slim(tenant: Tenant, row: Row) -> dict[str, Any]:
    """`Appointment` (GetAppointmentRecords, UpdateAppointmentWithMode)."""
    rule = tenant.rules.get(row.rule_id)
    rows = tenant.series_rows(row.rule_id) if rule else []
    slim: dict[str, Any] = {
        "AppointmentId": row.appointment_id,
        "AssociateId": row.associate_id,
        "StartDate": stamp(row.start),
        "EndDate": stamp(row.end),
        "ActiveDate": stamp(row.start),
        "Type": row.type,
        "Task": row.task,
        "Title": row.title,
        "Description": row.description,
        "Location": row.location,
        "Completed": row.completed,
        "IsAlldayEvent": row.is_allday,
        "IsRecurrence": rule is not None,
        "MotherId": 0,
        "CreatedDate": stamp(row.registered),
    }
    if rule is not None and rows:
        slim["RecurringPattern"] = rule.info.get("Pattern", "Unknown")
        slim["RecurringStartDate"] = stamp(rows[0].start)
        slim["RecurringEndDate"] = stamp(rows[-1].start)
    return slim


# The appointment archive's columns the stand-in knows, and how to read them from a row.
ARCHIVE_COLUMNS: dict[str, Callable[[Row], Any]] = {
    "appointmentId": lambda row: row.appointment_id,
    "associateId": lambda row: row.associate_id,
    "date": lambda row: stamp(row.start),
    "endDate": lambda row: stamp(row.end),
    "text": lambda row: row.title or row.description,
    "location": lambda row: row.location,
    "completed": lambda row: row.completed == "Completed",
    "rawType": lambda row: TYPE_NUMBERS.get(row.type, 0),
    "rawStatus": lambda row: STATUS_NUMBERS.get(row.completed, 0),
    "recurring": lambda row: row.rule_id != 0,
    "recurrenceRuleId": lambda row: row.rule_id,
    "registeredDate": lambda row: stamp(row.registered),
    "updatedDate": lambda row: stamp(row.updated),
}
DEFAULT_SELECT = ("appointmentId", "associateId", "date", "endDate", "recurrenceRuleId")
_CONDITION = re.compile(r"^\s*(\w+)\s+(eq|ne|gt|ge|lt|le|after|before)\s+(.+?)\s*$", re.IGNORECASE)


class FilterError(ValueError):
    """A `$filter` the stand-in does not understand (answered 400)."""


def _literal(text: str) -> Any:
    text = text.strip()
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        raise FilterError(f"literal {text!r}") from None


def _compare(value: Any, operator: str, literal: Any) -> bool:
    if isinstance(literal, str) and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value, literal = parse_time(value), parse_time(literal)
    operator = {"after": "gt", "before": "lt"}.get(operator.lower(), operator.lower())
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
    }
    return checks[operator](value, literal)


def archive_list(tenant: Tenant, query: dict[str, str]) -> dict[str, Any]:
    """`GET /api/v1/Appointment`: $select, $filter (`col op value` and ...), $orderBy, $top, $skip.

    The operator set is the part of the archive's OData dialect a connector needs for an
    `updatedDate` watermark; SuperOffice supports many more.
    """
    conditions = []
    for part in re.split(r"\s+and\s+", query.get("$filter", ""), flags=re.IGNORECASE):
        if not part.strip():
            continue
        match = _CONDITION.match(part)
        if match is None or match.group(1) not in ARCHIVE_COLUMNS:
            raise FilterError(part)
        conditions.append(
            (ARCHIVE_COLUMNS[match.group(1)], match.group(2), _literal(match.group(3)))
        )
    rows = [
        row
        for row in tenant.rows.values()
        if all(_compare(column(row), op, literal) for column, op, literal in conditions)
    ]
    order = query.get("$orderBy", "appointmentId").split(",")[0].split()
    if order[0] not in ARCHIVE_COLUMNS:
        raise FilterError(f"$orderBy {order[0]}")
    rows.sort(key=ARCHIVE_COLUMNS[order[0]], reverse=len(order) > 1 and order[1].lower() == "desc")
    skip = int(query.get("$skip", 0))
    top = int(query.get("$top", 0)) or len(rows)
    selected = [name.strip() for name in query.get("$select", "").split(",") if name.strip()]
    for name in selected:
        if name not in ARCHIVE_COLUMNS:
            raise FilterError(f"$select {name}")
    columns = selected or list(DEFAULT_SELECT)
    page = rows[skip : skip + top]
    value = [
        {"PrimaryKey": row.appointment_id, "EntityName": "appointment"}
        | {name: ARCHIVE_COLUMNS[name](row) for name in columns}
        for row in page
    ]
    response: dict[str, Any] = {"odata.metadata": "<placeholder>", "value": value}
    if skip + top < len(rows):
        response["odata.nextLink"] = f"$skip={skip + top}&$top={top}"
    return response
