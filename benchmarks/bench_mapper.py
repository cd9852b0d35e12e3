"""How fast is the mapper, next to icalendar doing the bare minimum?

``python -m benchmarks.bench_mapper [--n 10000] [--seed 7] [--profile]``

It makes ``--n`` realistic recurring follow-ups (fixed seed: weekly meetings most of all,
then daily, monthly, yearly and a few custom ones; several time zones; 10 % with
cancelled or moved occurrences) and times, one calendar object per follow-up as the
sync worker PUTs them:

* **ours** — follow-up documents → ``load_followup`` → ``to_calendar`` → ``to_ical`` bytes;
* **baseline** — icalendar alone building the same components from values prepared
  beforehand (DTSTART, DTEND/DUE, RRULE text, EXDATE/RDATE, overrides, the same
  VTIMEZONE call): the cost of iCalendar itself, with no validation and no pattern logic;
* **parse** — ``mappings.from_ical.parse_calendar`` on our bytes, if that module exists;
* **parse baseline** — icalendar's bare ``Calendar.from_ical`` of the same bytes: the
  cost of reading iCalendar at all, with no grouping, no patterns and no proof.

``--profile`` prints where our time goes (cProfile, top functions by cumulative time);
``--profile-parse`` does the same for ``parse_calendar``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import importlib.util
import io
import pstats
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from icalendar import Calendar, Component, Event, Todo, vRecur

from mappings.documents import load_followup
from mappings.to_ical import followup_components
from sync.testing.mapper_mix import STAMP, make_documents, ours

# --- the two ways of writing them ---


@dataclass
class Recipe:
    """What icalendar needs for one follow-up, computed before the clock starts."""

    todo: bool
    uid: str
    summary: str
    start: Any
    end: Any
    rrule: str | None
    exdates: list[Any] = field(default_factory=list)
    rdates: list[Any] = field(default_factory=list)
    overrides: list[tuple[Any, Any, Any, str]] = field(default_factory=list)
    extra: list[tuple[str, Any]] = field(default_factory=list)


def recipes(docs: list[dict[str, Any]]) -> list[Recipe]:
    """Lift the values out of our own output, so the baseline writes the same thing."""
    result = []
    for doc in docs:
        components = followup_components(load_followup(doc), stamp=STAMP).components
        if not components:
            continue
        master, overrides = components[0], components[1:]
        end_name = "DUE" if master.name == "VTODO" else "DTEND"
        rrule = master.get("RRULE")
        result.append(
            Recipe(
                todo=master.name == "VTODO",
                uid=str(master["UID"]),
                summary=str(master["SUMMARY"]),
                start=master["DTSTART"].dt,
                end=master[end_name].dt,
                rrule=rrule.to_ical().decode() if rrule is not None else None,
                exdates=[d.dt for line in _lines(master.get("EXDATE")) for d in line.dts],
                rdates=[d.dt for line in _lines(master.get("RDATE")) for d in line.dts],
                overrides=[
                    (o["RECURRENCE-ID"].dt, o["DTSTART"].dt, o[end_name].dt, str(o["SUMMARY"]))
                    for o in overrides
                ],
                extra=[
                    (k, str(v)) for k, v in master.items() if k in ("LOCATION", "X-FOLLOWUP-KIND")
                ],
            )
        )
    return result


def _lines(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def baseline(prepared: list[Recipe], *, timezones: bool = True) -> list[bytes]:
    out = []
    for recipe in prepared:
        cal = Calendar()
        cal.add("prodid", "-//baseline//EN")
        cal.add("version", "2.0")
        cls: type[Component] = Todo if recipe.todo else Event
        end_name = "due" if recipe.todo else "dtend"
        master = cls()
        master.add("uid", recipe.uid)
        master.add("dtstamp", STAMP)
        master.add("summary", recipe.summary)
        master.add("dtstart", recipe.start)
        master.add(end_name, recipe.end)
        if recipe.rrule:
            master.add("rrule", vRecur.from_ical(recipe.rrule))
        if recipe.exdates:
            master.add("exdate", recipe.exdates)
        if recipe.rdates:
            master.add("rdate", recipe.rdates)
        for name, value in recipe.extra:
            master.add(name, value)
        cal.add_component(master)
        for rid, start, end, summary in recipe.overrides:
            override = cls()
            override.add("uid", recipe.uid)
            override.add("dtstamp", STAMP)
            override.add("summary", summary)
            override.add("recurrence-id", rid)
            override.add("dtstart", start)
            override.add(end_name, end)
            cal.add_component(override)
        # icalendar's own VTIMEZONE builder, over the span ours covers (a year before
        # the first start up to 2038).
        first = recipe.start if isinstance(recipe.start, dt.date) else STAMP.date()
        if timezones:
            cal.add_missing_timezones(
                first_date=dt.date(first.year - 1, 1, 1), last_date=dt.date(2038, 1, 1)
            )
        out.append(cal.to_ical())
    return out


def parse_bare(blobs: list[bytes]) -> int:
    """icalendar alone reading the same calendars: the floor any parser stands on."""
    return sum(
        len(Calendar.from_ical(blob).subcomponents)
        for blob in blobs
        if b"BEGIN:V" in blob.replace(b"BEGIN:VCALENDAR", b"")
    )


def parse_all(blobs: list[bytes]) -> int:
    from mappings.from_ical import parse_calendar  # type: ignore[import-not-found, unused-ignore]

    # A series with every occurrence cancelled maps to an empty calendar; nothing to parse.
    return sum(
        len(parse_calendar(blob).followups)
        for blob in blobs
        if b"BEGIN:V" in blob.replace(b"BEGIN:VCALENDAR", b"")
    )


# --- running ---


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


def profile(action: Callable[[], Any], lines: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(action)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_mapper", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--n", type=int, default=10_000, help="follow-ups to generate (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of our mapper")
    parser.add_argument(
        "--profile-parse", action="store_true", help="print a cProfile of parse_calendar"
    )
    parser.add_argument(
        "--parse-n", type=int, default=2000, help="how many outputs to parse back (default 2000)"
    )
    args = parser.parse_args(argv)

    setup, docs = timed(lambda: make_documents(args.n, args.seed))
    prepared = recipes(docs)
    print(
        f"{len(docs)} follow-ups generated in {setup:.1f} s "
        f"({sum('exceptions' in d for d in docs)} with exceptions); baseline prepared"
    )

    ours_s, ours_out = timed(lambda: ours(docs))
    base_s, base_out = timed(lambda: baseline(prepared))
    bare_s, _ = timed(lambda: baseline(prepared, timezones=False))
    rows = [
        ("map: ours (load + to_calendar + to_ical)", len(docs), ours_s),
        ("map: baseline (icalendar, its VTIMEZONEs)", len(prepared), base_s),
        ("map: baseline without VTIMEZONE", len(prepared), bare_s),
    ]
    parse_s = parse_bare_s = 0.0
    if importlib.util.find_spec("mappings.from_ical") is not None:
        sample = ours_out[: args.parse_n]
        parse_s, _ = timed(lambda: parse_all(sample))
        parse_bare_s, _ = timed(lambda: parse_bare(sample))
        rows.append(("parse: ours (parse_calendar)", len(sample), parse_s))
        rows.append(("parse: baseline (icalendar from_ical)", len(sample), parse_bare_s))
    else:
        rows.append(("parse: mappings.from_ical not there yet", 0, 0.0))

    print(f"{'what':<44}{'items':>8}{'seconds':>10}{'items/s':>10}")
    for name, count, seconds in rows:
        rate = f"{count / seconds:,.0f}" if seconds else "-"
        print(f"{name:<44}{count:>8}{seconds:>10.2f}{rate:>10}")
    print(
        f"time ours / baseline: {ours_s / base_s:.2f}x; ours / baseline without VTIMEZONE: "
        f"{ours_s / bare_s:.2f}x "
        f"(output bytes {sum(map(len, ours_out)):,} vs {sum(map(len, base_out)):,})"
    )
    if parse_s:
        print(f"time parse ours / icalendar from_ical: {parse_s / parse_bare_s:.1f}x")
    if args.profile:
        sample = docs[: min(len(docs), 2000)]
        print(profile(lambda: ours(sample)))
    if args.profile_parse:
        blobs = ours_out[: args.parse_n]
        print(profile(lambda: parse_all(blobs), lines=40))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
