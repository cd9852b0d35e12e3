"""Propose, then prove: the first representation whose occurrences match wins.

Each proposal (``proposals``) is built into follow-ups (``build``, and ``splits`` for a
RANGE=THISANDFUTURE override), mapped forward with ``mappings.to_ical`` and expanded over
the same window as the original (``expand``). If none reproduces the calendar's
occurrences exactly, a ``MappingError`` says so: never a silent change of occurrences.
"""

from __future__ import annotations

from mappings.errors import MappingError
from mappings.from_ical.build import build_followup, exception_for, read_edits, series_duration
from mappings.from_ical.components import Series
from mappings.from_ical.expand import base_rule, expand_occurrences, map_forward, window_of
from mappings.from_ical.proposals import proposals
from mappings.from_ical.splits import apply_futures
from mappings.model import FollowUp, OccurrenceException
from mappings.moments import Moment, show, wall_clock_key


def represent(
    series: Series, known: FollowUp | None, warnings: list[str], synthetic: bool
) -> list[FollowUp]:
    window = window_of(series)
    expected = expand_occurrences(series.original, window, series.zone, series.uid)
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

    def exact(followups: list[FollowUp]) -> bool:
        return (
            expand_occurrences(map_forward(followups), window, series.zone, series.uid) == expected
        )

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
