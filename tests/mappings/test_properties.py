"""Property tests: what a calendar client makes of ``map``'s output is the model's series.

``map`` is ``mappings.to_ical.to_calendar``; its bytes are parsed back with icalendar and
expanded with recurring-ical-events, as a client would, and compared with the model's
own expansion (``mappings.occurrences.occurrences``): start instant, end instant and
summary of every occurrence (dates for all-day follow-ups).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import recurring_ical_events
from hypothesis import HealthCheck, given, note, settings
from icalendar import Calendar, Component

from mappings.documents import load_followup
from mappings.from_ical import parse_calendar
from mappings.model import FollowUp
from mappings.moments import Moment
from mappings.occurrences import Occurrence, occurrences
from mappings.patterns import is_bounded
from mappings.to_ical import followup_components, to_calendar
from tests.strategies import all_cancelled_documents, followup_documents, followups

STAMP = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
#: How far an open-ended series is compared (the model's own horizon is longer).
OPEN_WINDOW_DAYS = 400
#: A window wide enough for every bounded series the strategies make.
FAR_PAST = dt.date(2000, 1, 1)
FAR_FUTURE = dt.date(2040, 1, 1)

Key = tuple[Any, Any, str]

#: PROPERTY_SCALE=10 runs ten times the examples (a longer bug hunt than CI's).
SCALE = float(os.environ.get("PROPERTY_SCALE", "1"))


def tuned(max_examples: int) -> settings:
    """Our settings: no per-example deadline (VTIMEZONE building is slow), print_blob on."""
    return settings(
        max_examples=max(1, int(max_examples * SCALE)),
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _map(followup: FollowUp) -> bytes:
    cal, _ = to_calendar([followup], stamp=STAMP)
    return bytes(cal.to_ical())


def _instant(value: Moment) -> Moment:
    """Dates stay dates; date-times become UTC instants."""
    if isinstance(value, dt.datetime):
        assert value.tzinfo is not None, f"floating time {value} in the output"
        return value.astimezone(dt.UTC)
    return value


def _open_ended(followup: FollowUp) -> bool:
    info = followup.recurrence
    return info is not None and info.repeats and not is_bounded(info)


def _window(followup: FollowUp) -> tuple[Moment, Moment] | None:
    """None for bounded series (compare everything), else a window from the start."""
    if not _open_ended(followup):
        return None
    first = followup.start if followup.all_day else followup.start.date()  # type: ignore[union-attr]
    lo = first - dt.timedelta(days=7)  # type: ignore[operator]
    hi = first + dt.timedelta(days=OPEN_WINDOW_DAYS)  # type: ignore[operator]
    if followup.all_day:
        return lo, hi
    return (
        dt.datetime.combine(lo, dt.time(), tzinfo=dt.UTC),
        dt.datetime.combine(hi, dt.time(), tzinfo=dt.UTC),
    )


def _inside(start: Moment, window: tuple[Moment, Moment] | None) -> bool:
    return window is None or window[0] <= start < window[1]  # type: ignore[operator]


def model_keys(followup: FollowUp, window: tuple[Moment, Moment] | None) -> list[Key]:
    # An explicit window, so that two documents of one series starting on different days
    # (an off-pattern StartDate, a parsed DTSTART) are expanded over the same span.
    if window is None:
        found: list[Occurrence] = occurrences(followup, include_cancelled=False)
    else:
        found = occurrences(
            followup, window_start=window[0], window_end=window[1], include_cancelled=False
        )
    keys = [(_instant(o.start), _instant(o.end), o.title) for o in found]
    return sorted(k for k in keys if _inside(k[0], window))


def ical_keys(data: bytes, window: tuple[Moment, Moment] | None, *, all_day: bool) -> list[Key]:
    cal = Calendar.from_ical(data)
    query = recurring_ical_events.of(cal, components=["VEVENT", "VTODO"])
    if window is None:
        lo: Moment = FAR_PAST
        hi: Moment = FAR_FUTURE
        if not all_day:
            lo = dt.datetime.combine(FAR_PAST, dt.time(), tzinfo=dt.UTC)
            hi = dt.datetime.combine(FAR_FUTURE, dt.time(), tzinfo=dt.UTC)
    else:
        lo, hi = window
    keys = []
    for component in query.between(lo, hi):
        start = _instant(component["DTSTART"].dt)
        end_prop = component.get("DTEND") or component.get("DUE")
        end = _instant(end_prop.dt) if end_prop is not None else start
        keys.append((start, end, str(component.get("SUMMARY", ""))))
    return sorted(k for k in keys if _inside(k[0], window))


# --- forward ---


@tuned(250)
@given(followups())
def test_clients_see_the_models_occurrences(followup: FollowUp) -> None:
    data = _map(followup)
    note(data.decode())
    window = _window(followup)
    assert ical_keys(data, window, all_day=followup.all_day) == model_keys(followup, window)


# --- round trip ---


@tuned(150)
@given(followups())
def test_parse_of_map_has_the_same_occurrences(followup: FollowUp) -> None:
    data = _map(followup)
    note(data.decode())
    window = _window(followup)
    expected = model_keys(followup, window)
    if not _components(Calendar.from_ical(data)):
        # Nothing emitted (every occurrence cancelled): nothing to parse back.
        assert expected == []
        return
    result = parse_calendar(data)
    note(f"warnings: {result.warnings}")
    assert not result.errors, result.errors
    back: list[Key] = []
    for parsed in result.followups:
        note(f"parsed: {parsed.to_json_dict()}")
        back.extend(model_keys(parsed, window))
    back = sorted(k for k in back if _inside(k[0], window))
    assert back == expected
    if expected:
        assert len(result.followups) == 1
        assert result.followups[0].kind == followup.kind
        assert result.followups[0].all_day == followup.all_day


# --- shape of the output ---


def _components(cal: Calendar) -> list[Component]:
    return [c for c in cal.walk() if c.name in ("VEVENT", "VTODO")]


def _tzids(component: Component) -> set[str]:
    found = set()
    for value in component.values():
        for item in value if isinstance(value, list) else [value]:
            params = getattr(item, "params", None)
            if params is not None and "TZID" in params:
                found.add(str(params["TZID"]))
    return found


@tuned(250)
@given(followups())
def test_output_is_well_formed(followup: FollowUp) -> None:
    data = _map(followup)
    note(data.decode())
    cal = Calendar.from_ical(data)
    components = _components(cal)
    if is_bounded_or_single(followup) and not occurrences(followup, include_cancelled=False):
        assert components == [], "a series with no occurrence left must not be emitted"
        return
    masters = [c for c in components if "RECURRENCE-ID" not in c]
    assert len(masters) == 1
    master = masters[0]
    assert {c["UID"] for c in components} == {followup.effective_uid}

    # DTSTART is an occurrence of the model, never an off-pattern date.
    originals = {_instant(o.original_start) for o in occurrences(followup)}
    assert _instant(master["DTSTART"].dt) in originals

    # Overrides: RECURRENCE-ID of the master's value type and TZID, no rule of their own.
    master_start = master["DTSTART"]
    for override in components:
        if override is master:
            continue
        rid = override["RECURRENCE-ID"]
        assert type(rid.dt) is type(master_start.dt)
        assert rid.params.get("TZID") == master_start.params.get("TZID")
        assert _instant(rid.dt) in originals
        for name in ("RRULE", "RDATE", "EXDATE", "EXRULE"):
            assert name not in override, f"{name} in an override"

    # A VTIMEZONE for every TZID used.
    defined = {str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")}
    used = set().union(*(_tzids(c) for c in components))
    assert used <= defined, f"no VTIMEZONE for {used - defined}"


def is_bounded_or_single(followup: FollowUp) -> bool:
    return not _open_ended(followup)


@tuned(60)
@given(all_cancelled_documents())
def test_a_series_with_every_occurrence_cancelled_is_not_emitted(doc: dict[str, Any]) -> None:
    followup = load_followup(doc)
    assert occurrences(followup, include_cancelled=False) == []
    assert followup_components(followup, stamp=STAMP).components == []
    cal, mapped = to_calendar([followup], stamp=STAMP)
    assert _components(cal) == []
    assert not mapped[0].emitted


@tuned(100)
@given(followup_documents())
def test_documents_survive_their_own_json(doc: dict[str, Any]) -> None:
    """Writing a follow-up back out (names, not numbers) keeps its occurrences."""
    followup = load_followup(doc)
    again = load_followup(followup.to_json_dict())
    assert model_keys(again, _window(again)) == model_keys(followup, _window(followup))
