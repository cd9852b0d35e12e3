"""Property: a CRM write-back keeps what a client gave one occurrence, while it exists.

For any follow-up and any set of per-occurrence additions the mapper does not own
(an alarm, STATUS/COMPLETED/PERCENT-COMPLETE, TRANSP, CLASS, an attendee with its own
PARTSTAT, X- properties), made the way a client makes them (in the override already
there, or in a new override that copies the series at that occurrence), a CRM change of
the series rendered on top of the client's copy (``mappings.resource.render_resource``)
keeps every addition whose occurrence the new series still has, on the override of that
occurrence; and names every other one in ``Rendered.dropped``.

A task's STATUS/COMPLETED/PERCENT-COMPLETE is not such an addition: a task's completion,
of the series or of one occurrence, is the follow-up's own ``status`` (``mappings.task_status``),
which the mapper owns and the pull brings into the CRM before any write-back; its round trip
is tested in ``tests/mappings/test_task_status.py`` and end to end in
``tests/integration/test_tasks_and_splits.py``. For appointments and calls STATUS is the
client's, and it is drawn here.

The CRM change is drawn too: a retitle (which must reach every re-based override the
client did not retitle), occurrences cancelled, and the CRM's own exceptions taken back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import assume, given, note
from hypothesis import strategies as st
from icalendar import Alarm, Calendar, Component, Event, Todo, vCalAddress

from mappings.documents import load_followup
from mappings.model import FollowUp, FollowUpKind
from mappings.moments import Moment
from mappings.occurrences import is_recurring, occurrences
from mappings.resource import render, render_resource
from tests.mappings.test_properties import STAMP, tuned
from tests.strategies import followups

#: What a client may give one occurrence, and how to see it was kept.
ADDITIONS = ("alarm", "completed", "transp", "class", "partstat", "x-only")
#: A task's completion is its follow-up's status, owned by the mapper (see the docstring).
ADDITIONS_OF_TASKS = tuple(a for a in ADDITIONS if a != "completed")


def _key(value: Moment) -> Moment:
    """A RECURRENCE-ID as a comparable key: the UTC instant, or the date."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return value


def _aware(value: Moment, followup: FollowUp) -> Moment:
    """A document's naive local key as the aware moment it means."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=followup.zone)
    return value


def _components(data: bytes) -> list[Component]:
    return [c for c in Calendar.from_ical(data).walk() if c.name in ("VEVENT", "VTODO")]


def _override_for(cal: Calendar, followup: FollowUp, original: Moment) -> Component:
    """The override a client edits for this occurrence: the one there, or a new copy of
    the master at that occurrence."""
    for component in cal.walk():
        rid = component.get("RECURRENCE-ID")
        if rid is not None and _key(rid.dt) == _key(original):
            return component
    master = next(c for c in cal.walk() if c.name in ("VEVENT", "VTODO"))
    override: Component = Todo() if master.name == "VTODO" else Event()
    override.add("uid", str(master["UID"]))
    override.add("recurrence-id", original)
    for name in ("SUMMARY", "DESCRIPTION", "LOCATION", "CATEGORIES", "X-FOLLOWUP-KIND"):
        if name in master:
            override.add(name, master[name], encode=False)
    override.add("dtstart", original)
    end = original + followup.duration
    override.add("due" if master.name == "VTODO" else "dtend", end)
    cal.add_component(override)
    return override


def _add(override: Component, addition: str, mark: str) -> None:
    override.add("x-client-mark", mark)
    if addition == "alarm":
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", mark)
        alarm.add("trigger", dt.timedelta(minutes=-10))
        override.add_component(alarm)
    elif addition == "completed":
        override.add("status", "COMPLETED" if override.name == "VTODO" else "TENTATIVE")
        override.add("percent-complete", 100)
    elif addition == "transp":
        override.add("transp", "TRANSPARENT")
    elif addition == "class":
        override.add("class", "CONFIDENTIAL")
    elif addition == "partstat":
        attendee = vCalAddress("mailto:guest@example.com")
        attendee.params["PARTSTAT"] = "DECLINED"
        override.add("attendee", attendee, encode=False)


def _kept(override: Component, addition: str, mark: str) -> bool:
    if str(override.get("X-CLIENT-MARK", "")) != mark:
        return False
    if addition == "alarm":
        return any(str(a.get("DESCRIPTION")) == mark for a in override.subcomponents)
    if addition == "completed":
        return str(override.get("STATUS")) in ("COMPLETED", "TENTATIVE")
    if addition == "transp":
        return str(override.get("TRANSP")) == "TRANSPARENT"
    if addition == "class":
        return str(override.get("CLASS")) == "CONFIDENTIAL"
    if addition == "partstat":
        attendee = override.get("ATTENDEE")
        return attendee is not None and str(attendee.params.get("PARTSTAT")) == "DECLINED"
    return True


@st.composite
def _client_and_crm(draw: st.DrawFn) -> tuple[FollowUp, dict[Moment, str], FollowUp]:
    followup = draw(followups().filter(is_recurring))
    alive = [o.original_start for o in occurrences(followup, include_cancelled=False)][:60]
    assume(alive)
    chosen = draw(st.lists(st.sampled_from(alive), min_size=1, max_size=5, unique=True))
    offered = ADDITIONS_OF_TASKS if followup.kind == FollowUpKind.task else ADDITIONS
    additions = {key: draw(st.sampled_from(offered)) for key in chosen}

    doc: dict[str, Any] = followup.to_json_dict()
    doc["title"] = f"{followup.title} (renamed in CRM)"
    if draw(st.booleans()):
        doc["exceptions"] = []  # the CRM takes its own exceptions back
    cancel = draw(st.lists(st.sampled_from(alive), max_size=3, unique=True))
    exceptions = [e for e in doc.get("exceptions", []) if e["original_start"] not in cancel]
    for key in cancel:
        local = key.replace(tzinfo=None) if isinstance(key, dt.datetime) else key
        exceptions = [e for e in exceptions if e["original_start"] != local.isoformat()]
        exceptions.append({"original_start": local.isoformat(), "cancelled": True})
    doc["exceptions"] = exceptions
    return followup, additions, load_followup(doc)


@tuned(150)
@given(_client_and_crm())
def test_crm_write_back_keeps_client_additions_of_every_occurrence_left(
    case: tuple[FollowUp, dict[Moment, str], FollowUp],
) -> None:
    followup, additions, changed = case
    served = render(followup, stamp=STAMP)
    assert served is not None
    cal = Calendar.from_ical(served)
    marks = {}
    for index, (original, addition) in enumerate(
        sorted(additions.items(), key=lambda p: _key(p[0]))
    ):
        mark = f"mark-{index}"
        _add(_override_for(cal, followup, original), addition, mark)
        marks[_key(original)] = (addition, mark)
    note(cal.to_ical().decode())

    result = render_resource(changed, stamp=STAMP, base=cal.to_ical())
    if result.data is None:
        return  # every occurrence is gone: the resource is deleted, not written back
    alive = {_key(o.original_start) for o in occurrences(changed, include_cancelled=False)}
    written = {
        _key(c["RECURRENCE-ID"].dt): c for c in _components(result.data) if "RECURRENCE-ID" in c
    }
    retitled = {
        _key(_aware(e.original_start, changed)) for e in changed.exceptions if e.title is not None
    }
    for key, (addition, mark) in marks.items():
        if key in alive:
            override = written.get(key)
            assert override is not None, f"{addition} at {key}: the override is gone"
            assert _kept(override, addition, mark), f"{addition} at {key} lost"
            if key not in retitled:
                assert str(override["SUMMARY"]) == changed.title, "the CRM retitle reaches it"
        else:
            assert key in {_key(d) for d in result.dropped}, f"{key} dropped without a word"
    for key in {_key(d) for d in result.dropped}:
        assert key not in alive, f"{key} reported dropped but its occurrence is there"


def test_a_series_that_is_not_a_task_keeps_an_occurrence_status_too() -> None:
    """STATUS on a VEVENT override (TENTATIVE) is the client's as well."""
    followup = load_followup(
        {
            "id": "p1",
            "kind": FollowUpKind.appointment,
            "title": "Planning",
            "start": "2026-05-04T09:00:00",
            "end": "2026-05-04T10:00:00",
            "timezone": "Europe/Oslo",
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
                "RecurrenceEndType": "Counter",
                "RecurrenceCounter": 3,
            },
        }
    )
    served = render(followup, stamp=STAMP)
    assert served is not None
    cal = Calendar.from_ical(served)
    original = occurrences(followup)[1].original_start
    _add(_override_for(cal, followup, original), "completed", "m")
    changed = followup.model_copy(update={"location": "Room 2"})
    result = render_resource(changed, stamp=STAMP, base=cal.to_ical())
    overrides = [c for c in _components(result.data or b"") if "RECURRENCE-ID" in c]
    assert [str(c["STATUS"]) for c in overrides] == ["TENTATIVE"]
    assert [str(c["LOCATION"]) for c in overrides] == ["Room 2"]
