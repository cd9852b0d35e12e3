"""A follow-up's status (not started / started / completed) in iCalendar, both ways.

SuperOffice keeps a status on every follow-up (AppointmentStatus NotStarted, Started,
Completed). What a calendar can say about it depends on the component:

* A task is a VTODO, and RFC 5545 gives a VTODO STATUS (NEEDS-ACTION, IN-PROCESS,
  COMPLETED), COMPLETED (when) and PERCENT-COMPLETE. Thunderbird writes all three when a
  task is ticked off, Apple Reminders STATUS and COMPLETED, some tools only
  PERCENT-COMPLETE:100. We write all three and read any of them, STATUS first.
* An appointment or a call is a VEVENT. Its STATUS (TENTATIVE, CONFIRMED, CANCELLED) says
  whether it takes place, not whether it was done, and no client offers "done" on an
  event; CANCELLED already means "deleted" to this service. So the CRM's status travels
  as ``X-FOLLOWUP-STATUS``, which clients keep and do not show: it round-trips, but a
  calendar user cannot change it. The VEVENT's own STATUS stays the client's.

The same applies to one occurrence: its override carries its own status.
"""

from __future__ import annotations

import datetime as dt

from icalendar import Component

from mappings.model import FollowUpKind, FollowUpStatus

STATUS_PROPERTY = "X-FOLLOWUP-STATUS"

#: Properties this module owns on a task (a write-back takes them from the follow-up).
TASK_STATUS_PROPERTIES = frozenset({"STATUS", "COMPLETED", "PERCENT-COMPLETE"})

_TODO_STATUS = {
    FollowUpStatus.not_started: "NEEDS-ACTION",
    FollowUpStatus.started: "IN-PROCESS",
    FollowUpStatus.completed: "COMPLETED",
}
_FROM_TODO_STATUS = {text: status for status, text in _TODO_STATUS.items()}


def add_status(
    component: Component,
    kind: FollowUpKind,
    status: FollowUpStatus,
    completed_at: dt.datetime | None,
    stamp: dt.datetime,
) -> None:
    """Write ``status`` on ``component``, replacing a status written before.

    A completed task without a known completion time gets ``stamp`` (the DTSTAMP): a
    client shows "completed on" for a task only when COMPLETED is there.
    """
    for name in (*TASK_STATUS_PROPERTIES, STATUS_PROPERTY):
        component.pop(name, None)
    if kind != FollowUpKind.task:
        component.add(STATUS_PROPERTY, status.value)
        return
    component.add("status", _TODO_STATUS[status])
    if status == FollowUpStatus.completed:
        component.add("completed", (completed_at or stamp).astimezone(dt.UTC))
        component.add("percent-complete", 100)
    elif status == FollowUpStatus.not_started:
        component.add("percent-complete", 0)


def read_status(component: Component) -> tuple[FollowUpStatus | None, dt.datetime | None]:
    """The status a VTODO or VEVENT says (None: it says nothing) and, if completed, when."""
    if component.name != "VTODO":
        text = str(component.get(STATUS_PROPERTY, "")).strip().lower()
        try:
            return FollowUpStatus(text), None
        except ValueError:
            return None, None
    status = _FROM_TODO_STATUS.get(str(component.get("STATUS", "")).strip().upper())
    completed_at = _completed_at(component)
    percent = _percent(component)
    if status is None:
        if completed_at is not None or percent == 100:
            status = FollowUpStatus.completed
        elif percent is not None:
            status = FollowUpStatus.started if percent > 0 else FollowUpStatus.not_started
    if status != FollowUpStatus.completed:
        completed_at = None
    return status, completed_at


def _completed_at(component: Component) -> dt.datetime | None:
    value = component.get("COMPLETED")
    moment = getattr(value, "dt", None)
    if not isinstance(moment, dt.datetime):
        return None
    # RFC 5545 says UTC; a floating value is read as UTC too rather than dropped.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _percent(component: Component) -> int | None:
    value = component.get("PERCENT-COMPLETE")
    if value is None:
        return None
    try:
        return max(0, min(100, int(str(value).strip())))
    except ValueError:
        return None
