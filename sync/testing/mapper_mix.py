"""The mapper benchmark's realistic mix: follow-up documents and the calendars we write of them.

Shared by ``benchmarks/bench_mapper.py`` (which times writing and reading them) and the tests
that prove the fast reading of a calendar gives what the full expansion gives on the same mix
(tests never import ``benchmarks/``). A fixed seed gives the same documents every run: weekly
meetings most of all, then daily, monthly, yearly and a few custom ones; several time zones;
10 % with cancelled or moved occurrences.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from mappings.documents import load_followup
from mappings.model import FollowUp
from mappings.occurrences import occurrences
from mappings.to_ical import add_timezones, followup_components, new_calendar

STAMP = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
ZONES = ["Europe/Oslo"] * 6 + [
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "UTC",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TITLES = [
    "Weekly status",
    "1:1 with Kari",
    "Call supplier",
    "Board meeting",
    "Stand-up",
    "Send report",
]


def _recurrence(rng: random.Random, start: dt.date) -> dict[str, Any]:
    kind = rng.choices(
        ["weekly", "daily", "monthly", "yearly", "custom"], weights=[45, 20, 20, 10, 5]
    )[0]
    if kind == "custom":
        days = sorted(rng.sample(range(1, 200), rng.randint(2, 12)))
        return {
            "Pattern": "Custom",
            "Dates": [{"Date": (start + dt.timedelta(days=d)).isoformat()} for d in [0, *days]],
        }
    info: dict[str, Any]
    if kind == "weekly":
        picked = sorted(rng.sample(range(5), rng.choice([1, 1, 1, 2, 3])))
        info = {
            "Pattern": "Weekly",
            "WeekPattern": {
                "Weekdays": ", ".join(DAYS[i] for i in picked),
                "Cycle": rng.choice([1, 1, 1, 2, 4]),
            },
        }
    elif kind == "daily":
        sub = rng.choice(["EveryWorkday", "EveryWorkday", "EveryWeekday", "EveryCyclicDay"])
        info = {"Pattern": "Daily", "DayPattern": {"Pattern": sub, "Cycle": rng.randint(2, 7)}}
    elif kind == "monthly":
        if rng.random() < 0.6:
            month = {"Pattern": "DayOfMonth", "Day": rng.choice([start.day, 1, 15, 31])}
        else:
            month = {
                "Pattern": "WeekdayOfMonth",
                "Weekday": rng.choice(DAYS[:5]),
                "WeekOfMonth": rng.choice(["First", "Second", "Third", "Fourth", "Last"]),
            }
        info = {
            "Pattern": "Monthly",
            "MonthPattern": {**month, "Cycle": rng.choice([1, 1, 1, 3, 6])},
        }
    else:
        info = {
            "Pattern": "Yearly",
            "YearPattern": {"Pattern": "DayOfMonth", "Cycle": start.month, "Day": start.day},
        }
    end = rng.random()
    if end < 0.45:
        info.update(RecurrenceEndType="Counter", RecurrenceCounter=rng.randint(2, 52))
    elif end < 0.85:
        info.update(
            RecurrenceEndType="EndDate",
            EndDate=(start + dt.timedelta(days=rng.randint(30, 720))).isoformat(),
        )
    return info


def make_documents(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    docs = []
    for index in range(n):
        zone = rng.choice(ZONES)
        day = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 700))
        all_day = rng.random() < 0.08
        kind = rng.choices(["appointment", "task", "call"], weights=[70, 15, 15])[0]
        if all_day:
            start: Any = day
            end: Any = day + dt.timedelta(days=1)
        else:
            start = dt.datetime.combine(day, dt.time(rng.randint(7, 17), rng.choice([0, 15, 30])))
            end = start + dt.timedelta(minutes=rng.choice([15, 30, 60, 60, 90, 120]))
        doc: dict[str, Any] = {
            "id": str(10_000 + index),
            "kind": kind,
            "title": rng.choice(TITLES),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "timezone": zone,
            "all_day": all_day,
            "recurrence": _recurrence(rng, day),
        }
        if rng.random() < 0.3:
            doc["location"] = "Meeting room 2"
        if rng.random() < 0.10:
            doc["exceptions"] = _exceptions(rng, load_followup(doc))
        docs.append(doc)
    return docs


def _exceptions(rng: random.Random, followup: FollowUp) -> list[dict[str, Any]]:
    originals = [o.original_start for o in occurrences(followup)][:40]
    result = []
    for key in rng.sample(originals, min(len(originals), rng.randint(1, 3))):
        local = key.replace(tzinfo=None) if isinstance(key, dt.datetime) else key
        if rng.random() < 0.5:
            result.append({"original_start": local.isoformat(), "cancelled": True})
        else:
            result.append(
                {
                    "original_start": local.isoformat(),
                    "start": (local + dt.timedelta(days=1)).isoformat(),
                    "title": "Moved",
                }
            )
    return result


def ours(docs: list[dict[str, Any]]) -> list[bytes]:
    """One calendar object per document, as the sync worker PUTs them."""
    out = []
    for doc in docs:
        followup = load_followup(doc)
        cal = new_calendar()
        for component in followup_components(followup, stamp=STAMP).components:
            cal.add_component(component)
        add_timezones(cal)
        out.append(cal.to_ical())
    return out
