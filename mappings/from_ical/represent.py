"""Propose, then prove: the first representation whose occurrences match wins.

Each proposal (``proposals``) is built into follow-ups (``build``, and ``splits`` for a
RANGE=THISANDFUTURE override), mapped forward with ``mappings.to_ical`` and expanded over
the same window as the original (``expand``). If none reproduces the calendar's
occurrences exactly, a ``MappingError`` says so: never a silent change of occurrences.

The calendar the mapper itself would write is read first and proved without expanding
(``literal_reading``); a forward mapping identical to the original in every expansion
input needs no expansion either, and the original is expanded at most once.
"""

from __future__ import annotations

from icalendar import Component

from mappings.errors import MappingError
from mappings.from_ical.build import build_followup, exception_for, read_edits, series_duration
from mappings.from_ical.components import Series, raw_property, rules_of, values_of
from mappings.from_ical.expand import (
    Occ,
    base_rule,
    expand_occurrences,
    map_forward,
    same_expansion_inputs,
    window_of,
)
from mappings.from_ical.proposals import proposals, rule_candidates
from mappings.from_ical.splits import apply_futures
from mappings.model import FollowUp, OccurrenceException
from mappings.moments import Moment, date_of, show, time_of, to_local, wall_clock_key
from mappings.superoffice import RecurrenceDate, RecurrenceInfo, RecurrencePattern


def represent(
    series: Series, known: FollowUp | None, warnings: list[str], synthetic: bool
) -> list[FollowUp]:
    window = window_of(series)
    if not synthetic:
        literal = literal_reading(series, known)
        if literal is not None:
            return [literal]
    rule = base_rule(series, window)
    edits = read_edits(series, rule, warnings)
    duration = series_duration(series)

    def exceptions_for(keys: set[Moment] | None = None) -> list[OccurrenceException]:
        result = [OccurrenceException(original_start=k, cancelled=True) for k in edits.cancelled]
        for key, component in edits.overrides:
            result.append(
                exception_for(
                    key,
                    component,
                    series.title,
                    series.description,
                    series.location,
                    series,
                    duration,
                )
            )
        return sorted(result, key=lambda e: wall_clock_key(e.original_start))

    expected: list[tuple[Occ, ...]] = []  # the original's occurrences, expanded at most once

    def exact(followups: list[FollowUp]) -> bool:
        """Proved structurally when the calendar is literally what the mapper writes for
        ``followups``; otherwise by expanding both sides (the original once per parse)."""
        forward = map_forward(followups)
        if same_expansion_inputs(series.original, forward):
            return True
        if not expected:
            expected.append(
                tuple(expand_occurrences(series.original, window, series.zone, series.uid))
            )
        return tuple(expand_occurrences(forward, window, series.zone, series.uid)) == expected[0]

    reasons: list[str] = []
    for recurrence, ical, note in proposals(series, rule, edits, known, window, reasons, synthetic):
        followup = build_followup(
            series, recurrence=recurrence, ical=ical, exceptions=exceptions_for()
        )
        if followup is None:
            continue
        if edits.futures:
            result = apply_futures(
                followup, series, rule, edits, duration, exact, warnings, window.hi
            )
            if result is None:
                continue
            if exact(result):
                return result
            continue
        if exact([followup]):
            if note:
                warnings.append(f"{series.uid}: {note}")
            return [followup]
    if edits.futures:
        key = edits.futures[0][0]
        raise MappingError(
            f"the THISANDFUTURE override at RECURRENCE-ID {show(key)} moves occurrences to "
            "other dates of an open-ended series; the CRM cannot split it exactly",
            item=series.uid,
            field="RECURRENCE-ID",
        )
    detail = f" ({'; '.join(reasons)})" if reasons else ""
    raise MappingError(
        f"no representation reproduces the calendar's occurrences exactly{detail}",
        item=series.uid,
        field="RRULE",
    )


def literal_reading(series: Series, known: FollowUp | None) -> FollowUp | None:
    """The follow-up whose mapping is literally this calendar, or None.

    The common case, proved without expanding anything: the proposal ``represent`` would
    try first (the first pattern the RRULE may mean, or the Custom list of DTSTART and the
    RDATEs), with every EXDATE and cancelled override as a cancelled exception and every
    other override as an edit, is mapped forward; when that feeds the expander exactly
    the calendar's own inputs (``same_expansion_inputs``), the occurrences are the same
    by construction. The model accepts exceptions only on occurrences of the pattern, so
    these are the edits ``read_edits`` would find. Anything else (several rules, EXRULE,
    RANGE=THISANDFUTURE, periods, duplicates, a rule the mapper would write differently)
    is None, and ``represent`` proposes and proves by expansion as before.
    """
    master = series.master
    rrules = rules_of(master, "RRULE")
    rdates = values_of(master, "RDATE")
    if len(rrules) > 1 or "EXRULE" in master or (rrules and rdates):
        return None
    cancelled: list[Moment] = []
    for value in values_of(master, "EXDATE"):
        key = to_local(value[0] if isinstance(value, tuple) else value, series.zone, series.all_day)
        if key not in cancelled:
            cancelled.append(key)
    overrides: list[tuple[Moment, Component]] = []
    for component in series.overrides:
        rid = raw_property(component, "RECURRENCE-ID")
        if "RANGE" in rid.params:
            return None
        key = to_local(rid.dt, series.zone, series.all_day)
        if str(component.get("STATUS", "")).upper() == "CANCELLED":
            if key not in cancelled:
                cancelled.append(key)
        elif component.get("DTSTART") is None and component.get("DUE") is None:
            return None
        else:
            overrides.append((key, component))
    recurrence: RecurrenceInfo | None = None
    if rrules:
        candidates = rule_candidates(series, rrules[0], known)
        if not candidates:
            return None
        recurrence = candidates[0]
    elif rdates:
        if any(isinstance(v, tuple) for v in rdates):
            return None
        keys = sorted(
            {series.start, *(to_local(v, series.zone, series.all_day) for v in rdates)},
            key=wall_clock_key,
        )
        if any(time_of(k) != time_of(series.start) for k in keys):
            return None
        recurrence = RecurrenceInfo(
            Pattern=RecurrencePattern.Custom,
            Dates=[RecurrenceDate(Date=date_of(k)) for k in keys],
            IsRecurrence=True,
        )
    elif cancelled or overrides:
        return None
    duration = series_duration(series)
    exceptions = [OccurrenceException(original_start=k, cancelled=True) for k in cancelled]
    exceptions.extend(
        exception_for(
            key, component, series.title, series.description, series.location, series, duration
        )
        for key, component in overrides
    )
    exceptions.sort(key=lambda e: wall_clock_key(e.original_start))
    followup = build_followup(series, recurrence=recurrence, ical=None, exceptions=exceptions)
    if followup is None or not same_expansion_inputs(series.original, map_forward([followup])):
        return None
    return followup
