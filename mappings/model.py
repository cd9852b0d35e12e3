"""The follow-up document: what the CRM sends us and what ``parse`` gives back.

One JSON object per follow-up (or an array of them)::

    {"id": "1001", "kind": "appointment", "title": "Status meeting",
     "start": "2025-01-06T09:00:00", "end": "2025-01-06T10:00:00",
     "timezone": "Europe/Oslo",
     "recurrence": {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
                    "RecurrenceEndType": "Counter", "RecurrenceCounter": 10},
     "exceptions": [{"original_start": "2025-01-13T09:00:00", "cancelled": true}]}

Times are local wall-clock times in ``timezone`` (an IANA name); an offset given on
input is converted to that zone. ``start``/``end`` describe the first occurrence: every
occurrence has the same time of day and the same duration. For ``all_day`` follow-ups
they are dates and ``end`` is exclusive, as in iCalendar (a one-day event on 6 January
ends on 7 January).

Two extension fields are ours, not SuperOffice's:

* ``owner`` — the CRM associate it belongs to (which calendar it goes to);
* ``uid`` — the iCalendar UID when it is not the one derived from ``id`` (events made in
  a calendar client keep theirs);
* ``ical_recurrence`` — a recurrence rule the CRM's patterns cannot express exactly
  (hourly, several RRULEs, EXRULE, …). It is kept verbatim so that nothing is lost; the
  CRM cannot show it as a pattern, and ``crm_note`` says so.

Invitations (``mappings.itip``, ``sync.invitations``) add three optional fields:

* ``organizer`` — ``{"name", "email"}``: who invites (ORGANIZER);
* ``participants`` — ``[{"name", "email", "role", "status", "occurrence_status"}]``:
  who is invited (ATTENDEE). ``status`` is the answer for the whole series;
  ``occurrence_status`` maps an occurrence's original start (the same key as an
  exception's ``original_start``) to an answer for that occurrence only;
* ``language`` — ``"nb"`` or ``"en"``: the language of the invitation's text part.

Completion (SuperOffice's appointment status NotStarted/Started/Completed, §2.2 of the
reference) is two optional fields, on the follow-up and on each exception:

* ``status`` — ``"not-started"``, ``"started"`` or ``"completed"``. Left out, nothing is
  known (documents written before this field existed); an exception without it has the
  series' status. ``docs/explanation/tasks-and-splits.md`` says what each maps to in a calendar.
* ``completed_at`` — when it was completed (UTC), if known: a calendar's COMPLETED.
  Informative only: two documents that differ only here mean the same.

This module holds the model and its parts only; reading documents (JSON, validation of
the recurrence included) is ``mappings.documents``, the date helpers ``mappings.moments``.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from mappings.moments import Moment, date_of
from mappings.superoffice import RecurrenceInfo

#: UIDs we make are ``followup-<id>@followup-sync``; ``parse`` recognises them.
UID_PREFIX = "followup-"
UID_SUFFIX = "@followup-sync"

CRM_CANNOT_SHOW_RULE = (
    "The CRM cannot show this recurrence as a pattern; it is kept as an iCalendar rule "
    "so that no occurrence is lost."
)


class FollowUpKind(StrEnum):
    appointment = "appointment"
    task = "task"
    call = "call"


class FollowUpStatus(StrEnum):
    """SuperOffice's AppointmentStatus 1-3, the part a calendar can express."""

    not_started = "not-started"
    started = "started"
    completed = "completed"


class OccurrenceException(BaseModel):
    """One occurrence edited by itself: cancelled, or moved and/or changed.

    ``original_start`` is where the series put it (local time, or a date for all-day
    series); it is the key, like iCalendar's RECURRENCE-ID.

    ``all_day``: one occurrence of a timed series made all-day by itself (Thunderbird
    and Outlook let a user tick "all day" on one occurrence). Its ``start`` and ``end``
    are then dates, ``end`` exclusive (one day when left out), while ``original_start``
    stays the series' date-time. Left out (None) the occurrence is timed like its series.
    """

    model_config = ConfigDict(extra="forbid")

    original_start: Moment
    cancelled: bool = False
    start: Moment | None = None
    end: Moment | None = None
    title: str | None = None
    description: str | None = None
    location: str | None = None
    #: This occurrence's own status (one occurrence of a recurring task ticked off).
    status: FollowUpStatus | None = None
    completed_at: dt.datetime | None = None
    all_day: bool | None = None

    _utc_completed = field_validator("completed_at")(lambda value: _utc(value))

    @model_validator(mode="after")
    def _check(self) -> OccurrenceException:
        if self.cancelled and (self.start is not None or self.end is not None):
            raise ValueError("a cancelled exception has no new start or end")
        _check_completion(self.status, self.completed_at)
        if self.all_day is False:
            self.all_day = None  # "as its series" has one spelling, so documents compare equal
        if self.all_day:
            if self.cancelled:
                raise ValueError("a cancelled exception is not all-day")
            if self.start is None:
                self.start = date_of(self.original_start)
            if self.end is None:
                self.end = date_of(self.start) + dt.timedelta(days=1)
            if type(self.start) is not dt.date or type(self.end) is not dt.date:
                raise ValueError("an all-day exception takes dates for start and end")
            if self.end <= self.start:
                raise ValueError("an all-day exception ends at least one day after it starts")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError("end is before start")
        return self


class ParticipantRole(StrEnum):
    required = "required"
    optional = "optional"


class ParticipantStatus(StrEnum):
    needs_action = "needs-action"
    accepted = "accepted"
    declined = "declined"
    tentative = "tentative"


class Language(StrEnum):
    nb = "nb"
    en = "en"


class Organizer(BaseModel):
    """Who sends the invitations; replies go to ``email``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    email: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")


class Participant(BaseModel):
    """One invited person. ``email`` is the key: replies are matched on it, case-insensitively.

    ``occurrence_status`` keys are occurrence original starts as ISO text (local time in
    the follow-up's zone, or a date for all-day follow-ups); ``FollowUp`` normalises them
    so the same occurrence always has the same key.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    email: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    role: ParticipantRole = ParticipantRole.required
    status: ParticipantStatus = ParticipantStatus.needs_action
    occurrence_status: dict[str, ParticipantStatus] = Field(default_factory=dict)


class IcalRecurrence(BaseModel):
    """A rule kept as iCalendar text because no CRM pattern expresses it exactly.

    ``rrule``/``exrule`` hold RRULE values (``FREQ=HOURLY;INTERVAL=3;COUNT=5``).
    ``rdate`` holds RDATE values in the follow-up's time zone: ``20250112T090000``, a
    date ``20250112``, a UTC time ``20250112T080000Z`` or a period
    ``20250112T090000/PT2H``. Deleted occurrences are not here: they are cancelled
    ``exceptions``, as for every other series.
    """

    model_config = ConfigDict(extra="forbid")

    rrule: list[str] = Field(default_factory=list)
    exrule: list[str] = Field(default_factory=list)
    rdate: list[str] = Field(default_factory=list)
    crm_note: str = CRM_CANNOT_SHOW_RULE


class FollowUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    kind: FollowUpKind = FollowUpKind.appointment
    title: str = ""
    description: str | None = None
    location: str | None = None
    all_day: bool = False
    start: Moment
    end: Moment
    timezone: str = "UTC"
    recurrence: RecurrenceInfo | None = None
    exceptions: list[OccurrenceException] = Field(default_factory=list)
    uid: str | None = None
    ical_recurrence: IcalRecurrence | None = None
    #: The CRM associate the follow-up belongs to; accounts pick follow-ups by owner.
    owner: str | None = None
    organizer: Organizer | None = None
    participants: list[Participant] = Field(default_factory=list)
    language: Language = Language.en
    status: FollowUpStatus | None = None
    completed_at: dt.datetime | None = None

    _utc_completed = field_validator("completed_at")(lambda value: _utc(value))

    @model_validator(mode="before")
    @classmethod
    def _normalise_times(cls, data: Any) -> Any:
        """Bring every moment into one shape before field validation.

        All-day follow-ups hold dates; the others hold naive local date-times in
        ``timezone``. Doing it here, once, keeps the rest of the mapper free of
        "is it aware?" checks.
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "timezone" in data and not data["timezone"]:
            raise ValueError("timezone: is empty; give an IANA name such as Europe/Oslo")
        zone_name = data.get("timezone") or "UTC"
        if not isinstance(zone_name, str):  # else aware and naive times meet in _check
            raise ValueError(f"timezone: {zone_name!r} is not a time zone name (use an IANA name)")
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone: unknown time zone {zone_name!r} (use an IANA name)"
            ) from None
        all_day = bool(data.get("all_day"))
        for key in ("start", "end"):
            if key in data:
                data[key] = _local(data[key], zone, all_day, key)
        exceptions = data.get("exceptions")
        if isinstance(exceptions, list):
            fixed = []
            for index, item in enumerate(exceptions):
                if isinstance(item, dict):
                    item = dict(item)
                    for key in ("original_start", "start", "end"):
                        if item.get(key) is not None:
                            # An all-day occurrence of a timed series moves by dates.
                            dates = all_day or (
                                key != "original_start" and bool(item.get("all_day"))
                            )
                            item[key] = _local(item[key], zone, dates, f"exceptions.{index}.{key}")
                fixed.append(item)
            data["exceptions"] = fixed
        return data

    @model_validator(mode="after")
    def _check(self) -> FollowUp:
        if self.all_day != (type(self.start) is dt.date):
            raise ValueError("start: all-day follow-ups take dates, the others date-times")
        if type(self.start) is not type(self.end):
            raise ValueError(
                "end: must be of the same type as start (both dates or both date-times)"
            )
        if self.end < self.start:
            raise ValueError("end: is before start")
        if self.recurrence is not None and self.ical_recurrence is not None:
            raise ValueError("ical_recurrence: give either recurrence or ical_recurrence, not both")
        _check_completion(self.status, self.completed_at)
        seen: set[Moment] = set()
        for exception in self.exceptions:
            if exception.all_day and self.all_day:
                raise ValueError(
                    f"exceptions: {exception.original_start} is all-day in an all-day series; "
                    "leave all_day out"
                )
            if exception.original_start in seen:
                raise ValueError(f"exceptions: {exception.original_start} is listed twice")
            seen.add(exception.original_start)
        return self

    @model_validator(mode="after")
    def _check_participants(self) -> FollowUp:
        """One entry per address, and occurrence keys in the exceptions' canonical form."""
        seen_emails: set[str] = set()
        for index, participant in enumerate(self.participants):
            email = participant.email.casefold()
            if email in seen_emails:
                raise ValueError(f"participants: {participant.email} is listed twice")
            seen_emails.add(email)
            if participant.occurrence_status:
                normalised: dict[str, ParticipantStatus] = {}
                for key, value in participant.occurrence_status.items():
                    moment = _local(
                        key, self.zone, self.all_day, f"participants.{index}.occurrence_status"
                    )
                    normalised[moment.isoformat()] = value
                participant.occurrence_status = normalised
        return self

    def participant(self, email: str) -> Participant | None:
        """The participant with this address (case-insensitive), if any."""
        wanted = email.casefold()
        return next((p for p in self.participants if p.email.casefold() == wanted), None)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def duration(self) -> dt.timedelta:
        return self.end - self.start

    @property
    def effective_uid(self) -> str:
        return self.uid or uid_for_id(self.id)

    def to_json_dict(self) -> dict[str, Any]:
        """The document as JSON-ready data, without empty optional fields."""
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
        # The invitation fields are left out while unused, so that documents (and the
        # content hashes the sync state compares) of follow-ups without them stay as they were.
        if not data.get("participants"):
            data.pop("participants", None)
        if data.get("language") == Language.en.value:
            data.pop("language", None)
        return data


def uid_for_id(followup_id: str) -> str:
    return f"{UID_PREFIX}{followup_id}{UID_SUFFIX}"


def id_for_uid(uid: str) -> str | None:
    """The follow-up id a UID was derived from, or None if we did not make it."""
    if uid.startswith(UID_PREFIX) and uid.endswith(UID_SUFFIX):
        inner = uid[len(UID_PREFIX) : -len(UID_SUFFIX)]
        return inner or None
    return None


def _local(value: Any, zone: ZoneInfo, all_day: bool, field: str) -> Any:
    """Parse a moment and make it naive local time in ``zone`` (or a date for all-day)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                value = dt.date.fromisoformat(text)
            else:
                value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{field}: {value!r} is not an ISO date or date-time") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(zone).replace(tzinfo=None)
        if all_day:
            return value.date()
        return value
    if isinstance(value, dt.date):
        if not all_day:
            return dt.datetime.combine(value, dt.time())
        return value
    if value is None:
        return value  # "field required" or "may be null" is the model's to say
    # A number would otherwise be read as seconds since 1970 (in UTC), then fail far away.
    raise ValueError(f"{field}: {value!r} is not an ISO date or date-time (give a string)")


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """A completion time in UTC; a naive one is taken as UTC (as iCalendar's COMPLETED is)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _check_completion(status: FollowUpStatus | None, completed_at: dt.datetime | None) -> None:
    if completed_at is not None and status != FollowUpStatus.completed:
        raise ValueError("completed_at: is given, but status is not completed")
