"""Realistic CRM follow-ups in any number, for tests and benchmarks.

``realistic_followups(n)`` deals N recurring series like a CRM team's (mixed patterns,
some with a cancelled date), the same for the same ``seed``; ``iter_followups`` yields
them one at a time, so 50,000 need not be in memory at once.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any, cast

from mappings.documents import load_followup
from mappings.model import FollowUp
from mappings.occurrences import occurrences

#: The DTSTAMP benchmarks render with, so that the same series render to the same bytes.
STAMP = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PATTERNS: list[dict[str, Any]] = [
    {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}},
    {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Monday", "Cycle": 1}},
    {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Tuesday, Thursday", "Cycle": 2}},
    {
        "Pattern": "Monthly",
        "MonthPattern": {
            "Pattern": "WeekdayOfMonth",
            "Weekday": "Thursday",
            "WeekOfMonth": "Fourth",
            "Cycle": 1,
        },
    },
    {"Pattern": "Monthly", "MonthPattern": {"Pattern": "DayOfMonth", "Day": 15, "Cycle": 1}},
    {"Pattern": "Yearly", "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 9, "Day": 23}},
]


def realistic_followups(n: int, seed: int = 7, owners: int = 1) -> list[FollowUp]:
    """N recurring series like a CRM team's: mixed patterns, some with a moved or cancelled date."""
    return list(iter_followups(n, seed, owners))


def iter_followups(n: int, seed: int = 7, owners: int = 1) -> Iterator[FollowUp]:
    """``realistic_followups`` one at a time, so 50,000 need not be in memory at once.

    With ``owners`` > 1 the series are dealt round-robin to owners ``owner-0`` .. (the
    natural way to spread a large CRM over one calendar per owner).
    """
    rng = random.Random(seed)
    for i in range(n):
        day = dt.date(2026, 1, 5) + dt.timedelta(days=rng.randrange(0, 60))
        hour = rng.choice([8, 9, 10, 13, 14, 15])
        start = dt.datetime.combine(day, dt.time(hour))
        pattern = dict(rng.choice(PATTERNS))
        pattern.update({"RecurrenceEndType": "Counter", "RecurrenceCounter": rng.randrange(5, 40)})
        doc: dict[str, Any] = {
            "id": f"bench-{i:06d}",
            "kind": rng.choice(["appointment", "appointment", "call", "task"]),
            "title": f"Follow-up {i} with customer {rng.randrange(1000)}",
            "description": "Agenda: status, open issues, next steps. " * rng.randrange(1, 4),
            "location": rng.choice([None, "Meeting room 2", "Teams"]),
            "start": start.isoformat(),
            "end": (start + dt.timedelta(minutes=rng.choice([15, 30, 60]))).isoformat(),
            "timezone": "Europe/Oslo",
            "recurrence": pattern,
            "owner": f"owner-{i % owners}" if owners > 1 else None,
        }
        followup = load_followup({k: v for k, v in doc.items() if v is not None})
        if rng.random() < 0.1:
            first = occurrences(followup)[1]
            # The series are all timed: their occurrences start at a datetime.
            original = cast("dt.datetime", first.original_start).replace(tzinfo=None)
            followup = load_followup(
                {
                    **followup.to_json_dict(),
                    "exceptions": [{"original_start": original.isoformat(), "cancelled": True}],
                }
            )
        yield followup


def weekly_series(
    followup_id: str, start: str, weekday: str, count: int, timezone: str = "Europe/Oslo"
) -> FollowUp:
    """A weekly series of half-hour appointments from ``start`` (wall time in ``timezone``).

    For the hours a time zone's definition can get wrong (a change of offset), which the
    realistic mix, between 08:00 and 15:00, never reaches.
    """
    begin = dt.datetime.fromisoformat(start)
    return load_followup(
        {
            "id": followup_id,
            "title": f"Series {followup_id}",
            "start": begin.isoformat(),
            "end": (begin + dt.timedelta(minutes=30)).isoformat(),
            "timezone": timezone,
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {"Weekdays": weekday, "Cycle": 1},
                "RecurrenceEndType": "Counter",
                "RecurrenceCounter": count,
            },
        }
    )
