"""ORGANIZER, ATTENDEE and the language, read back onto proven follow-ups.

The occurrences are decided without them; they are attached afterwards, and only where
the follow-up is a scheduling object (RFC 6638 §3.1) or already had participants.
"""

from __future__ import annotations

from typing import Any

from icalendar import Component
from pydantic import ValidationError

from mappings.errors import MappingError
from mappings.from_ical.components import Series, as_list, text_of
from mappings.model import FollowUp
from mappings.moments import to_local


def with_participants(
    followups: list[FollowUp],
    master: Component,
    overrides: list[Component],
    series: Series,
    known: FollowUp | None,
) -> list[FollowUp]:
    """Attach ORGANIZER/ATTENDEE and the language to what ``represent`` proved.

    Attendees become participants only on a scheduling object (one with an ORGANIZER,
    RFC 6638 §3.1) or when the follow-up already had participants: an ATTENDEE a client
    typed into a plain event is the client's business, kept on the server by
    ``mappings.resource`` but never invited by us.
    """
    update: dict[str, Any] = {}
    language = text_of(master, "X-FOLLOWUP-LANGUAGE")
    if language in ("nb", "en"):
        update["language"] = language
    elif known is not None:
        update["language"] = known.language
    organizer = master.get("ORGANIZER") or next(
        (o.get("ORGANIZER") for o in overrides if o.get("ORGANIZER")), None
    )
    if organizer is not None or (known is not None and (known.participants or known.organizer)):
        if organizer is not None and _address(organizer):
            update["organizer"] = {"name": _cn(organizer), "email": _address(organizer)}
        update["participants"] = _participants(master, overrides, series)
    if not update:
        return followups
    result = []
    for followup in followups:
        try:
            result.append(FollowUp.model_validate({**followup.model_dump(), **update}))
        except ValidationError as exc:
            raise MappingError(
                f"ATTENDEE/ORGANIZER cannot be read: {exc.errors()[0]['msg']}",
                item=series.uid,
                field="ATTENDEE",
            ) from None
    return result


_PARTSTATS = {
    "NEEDS-ACTION": "needs-action",
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
}


def _address(value: Any) -> str:
    text = str(value).strip()
    return text[7:] if text.lower().startswith("mailto:") else ""


def _cn(value: Any) -> str | None:
    params = getattr(value, "params", {})
    name = params.get("CN")
    return str(name) if name else None


def _partstat(value: Any) -> str:
    # DELEGATED, COMPLETED, IN-PROCESS have no place in the CRM: they read as "not answered".
    return _PARTSTATS.get(
        str(getattr(value, "params", {}).get("PARTSTAT", "NEEDS-ACTION")).upper(), "needs-action"
    )


def _participants(
    master: Component, overrides: list[Component], series: Series
) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for attendee in as_list(master.get("ATTENDEE")):
        email = _address(attendee)
        if not email or email.casefold() in found:
            continue
        role = str(attendee.params.get("ROLE", "REQ-PARTICIPANT")).upper()
        found[email.casefold()] = {
            "name": _cn(attendee),
            "email": email,
            "role": "optional" if role in ("OPT-PARTICIPANT", "NON-PARTICIPANT") else "required",
            "status": _partstat(attendee),
            "occurrence_status": {},
        }
    for override in overrides:
        key_value = override.get("RECURRENCE-ID")
        if key_value is None or str(override.get("STATUS", "")).upper() == "CANCELLED":
            continue
        key = to_local(key_value.dt, series.zone, series.all_day).isoformat()
        for attendee in as_list(override.get("ATTENDEE")):
            entry = found.get(_address(attendee).casefold())
            if entry is not None and _partstat(attendee) != entry["status"]:
                entry["occurrence_status"][key] = _partstat(attendee)
    return list(found.values())
