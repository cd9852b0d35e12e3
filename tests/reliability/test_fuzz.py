"""Fuzzing the two readers of untrusted input: the iCalendar reader and the JSON importer.

Hypothesis draws at least 1,000 inputs per target (``FOLLOWUP_SYNC_STRESS=full``: 5,000):
real calendars rendered by the mapper and written by hand (overrides, EXDATE, VTODO,
VTIMEZONE), mutated line by line and byte by byte; random bytes; follow-up documents
mutated field by field; random JSON. The only acceptable outcomes are success or a
``MappingError`` that names the item (and, for documents, the field). Each input must
finish within ``PER_INPUT_SECONDS``, and the whole run must stay within ``RSS_GROWTH_MB``.
"""

from __future__ import annotations

import copy
import json
import resource
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from mappings.documents import load_followups_json
from mappings.errors import MappingError
from mappings.from_ical import parse_calendar, parse_components
from mappings.resource import read, render
from sync.testing.followups import STAMP, realistic_followups
from tests.reliability.helpers import FULL, seed_for

EXAMPLES = 5000 if FULL else 1000
PER_INPUT_SECONDS = 10.0
RSS_GROWTH_MB = 300

HANDWRITTEN = [
    b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Apple Inc.//macOS 14//EN\r
BEGIN:VTIMEZONE\r
TZID:Europe/Oslo\r
BEGIN:DAYLIGHT\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
DTSTART:19810329T020000\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r
TZNAME:CEST\r
END:DAYLIGHT\r
BEGIN:STANDARD\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
DTSTART:19961027T030000\r
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r
TZNAME:CET\r
END:STANDARD\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:weekly-1@example.org\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=Europe/Oslo:20260302T100000\r
DTEND;TZID=Europe/Oslo:20260302T110000\r
RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=10\r
EXDATE;TZID=Europe/Oslo:20260309T100000\r
SUMMARY:Weekly status\r
BEGIN:VALARM\r
ACTION:DISPLAY\r
TRIGGER:-PT15M\r
END:VALARM\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weekly-1@example.org\r
RECURRENCE-ID;TZID=Europe/Oslo:20260316T100000\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=Europe/Oslo:20260316T140000\r
DTEND;TZID=Europe/Oslo:20260316T150000\r
SUMMARY:Weekly status (moved)\r
END:VEVENT\r
END:VCALENDAR\r
""",
    b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN\r
BEGIN:VTODO\r
UID:task-7@example.org\r
DTSTAMP:20260101T000000Z\r
DTSTART;VALUE=DATE:20260105\r
DUE;VALUE=DATE:20260106\r
RRULE:FREQ=MONTHLY;BYDAY=4TH;UNTIL=20261231\r
SUMMARY:Monthly report\r
END:VTODO\r
BEGIN:VEVENT\r
UID:allday-3@example.org\r
DTSTAMP:20260101T000000Z\r
DTSTART;VALUE=DATE:20260110\r
DTEND;VALUE=DATE:20260111\r
RDATE;VALUE=DATE:20260120,20260130\r
SUMMARY:Site visit\r
LOCATION:Oslo\r
END:VEVENT\r
END:VCALENDAR\r
""",
]

INTERESTING_LINES = [
    b"RRULE:FREQ=SECONDLY",
    b"RRULE:FREQ=MINUTELY;COUNT=100000",
    b"RRULE:FREQ=DAILY;COUNT=1000000000",
    b"RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    b"RRULE:FREQ=WEEKLY;BYDAY=XX",
    b"RRULE:",
    b"RRULE:COUNT=3",
    b"RRULE:FREQ=HOURLY;INTERVAL=0",
    b"RRULE:FREQ=DAILY;UNTIL=19000101",
    b"EXDATE:garbage",
    b"EXDATE;VALUE=DATE:20260309",
    b"RDATE;VALUE=PERIOD:20260101T000000Z/PT1H",
    b"RDATE:20260101T000000Z/20250101T000000Z",
    b"DTSTART;TZID=Nowhere/Land:20260302T100000",
    b"DTSTART:99991231T235959Z",
    b"DTSTART;VALUE=DATE:00010101",
    b"DTEND:20200101T000000Z",
    b"DURATION:-P1000000D",
    b"DURATION:PT",
    b"RECURRENCE-ID:20260302T100000Z",
    b"RECURRENCE-ID;RANGE=THISANDFUTURE:20260316T090000Z",
    b"UID:",
    b"UID:other@example.org",
    b"BEGIN:VEVENT",
    b"END:VEVENT",
    b"BEGIN:VTIMEZONE",
    b"STATUS:CANCELLED",
    b"SEQUENCE:-99999999999999999999",
    b"X-WR-TIMEZONE:Mars/Olympus",
    b"CATEGORIES:Phone call",
    b"X-FOLLOWUP-KIND:task",
    b"X-FOLLOWUP-ID:",
]


def _corpus() -> list[bytes]:
    rendered = []
    for followup in realistic_followups(12, seed=3):
        data = render(followup, stamp=STAMP)
        assert data is not None
        rendered.append(data)
    return rendered + HANDWRITTEN


CORPUS = _corpus()


@st.composite
def mutated_calendars(draw: st.DrawFn) -> bytes:
    lines = draw(st.sampled_from(CORPUS)).split(b"\r\n")
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            break
        op = draw(
            st.sampled_from(["delete", "duplicate", "insert", "value", "bytes", "truncate", "swap"])
        )
        i = draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(INTERESTING_LINES)))
        elif op == "value":
            name = lines[i].split(b":", 1)[0]
            lines[i] = name + b":" + draw(st.binary(max_size=40))
        elif op == "bytes":
            line = bytearray(lines[i] or b"X")
            at = draw(st.integers(0, len(line) - 1))
            line[at] = draw(st.integers(0, 255))
            lines[i] = bytes(line)
        elif op == "truncate":
            lines = lines[:i]
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return b"\r\n".join(lines)


class Budget:
    """Per-input time and whole-run memory, checked around every call."""

    def __init__(self) -> None:
        self.inputs = 0
        self.slowest = 0.0
        self.outcomes: dict[str, int] = {}
        self.rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def run(self, what: Callable[[], object], input_repr: Callable[[], str]) -> None:
        started = time.perf_counter()
        try:
            what()
            outcome = "ok"
        except MappingError as exc:
            outcome = "MappingError"
            assert str(exc), "an empty error message"
            self.check_error(exc, input_repr)
        spent = time.perf_counter() - started
        self.inputs += 1
        self.slowest = max(self.slowest, spent)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        assert spent < PER_INPUT_SECONDS, f"{spent:.1f} s for one input: {input_repr()}"

    def check_error(self, exc: MappingError, input_repr: Callable[[], str]) -> None:
        pass

    def report(self, name: str) -> str:
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.rss_start) / 1024
        assert growth < RSS_GROWTH_MB, f"peak RSS grew by {growth:.0f} MB"
        return (
            f"[{name}] {self.inputs} inputs, outcomes {self.outcomes}, "
            f"slowest {self.slowest:.2f} s, "
            f"peak RSS growth {growth:.0f} MB"
        )


def _run_with_seed(test: Callable[..., None], seed: int) -> None:
    hypothesis_seed(seed)(test)()


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # time is checked per input by Budget, with a bound that is not flaky
    database=None,
    suppress_health_check=list(HealthCheck),
    derandomize=False,
)


def _read_calendar(data: bytes) -> None:
    """What the sync worker does with one fetched resource, and what 'parse' does with a file."""
    result = parse_calendar(data)
    for error in result.errors:
        assert isinstance(error, MappingError)
    try:
        resource_ = read(data)
    except MappingError:
        return
    try:
        parse_components(resource_.components)
    except MappingError as exc:
        # The resource's UID is known here: the error must name it.
        assert exc.item is not None, f"error without the item: {exc}"
        raise


def test_fuzz_ical_reader_with_mutated_calendars() -> None:
    seed = seed_for("fuzz-ical-mutated")
    budget = Budget()

    @FUZZ_SETTINGS
    @given(mutated_calendars())
    def check(data: bytes) -> None:
        budget.run(lambda: _read_calendar(data), lambda: repr(data[:2000]))

    _run_with_seed(check, seed)
    print(budget.report("ical mutated"))
    assert budget.inputs >= EXAMPLES


def test_fuzz_ical_reader_with_random_bytes() -> None:
    seed = seed_for("fuzz-ical-bytes")
    budget = Budget()
    header = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n"

    @FUZZ_SETTINGS
    @given(st.binary(max_size=2048), st.booleans())
    def check(noise: bytes, with_header: bool) -> None:
        data = header + noise if with_header else noise
        budget.run(lambda: _read_calendar(data), lambda: repr(data[:2000]))

    _run_with_seed(check, seed)
    print(budget.report("ical random bytes"))
    assert budget.inputs >= EXAMPLES


# --- the JSON importer -------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
DOCUMENTS = [f.to_json_dict() for f in realistic_followups(12, seed=5)]
FIELDS = [
    "id", "kind", "title", "start", "end", "timezone", "all_day", "recurrence", "exceptions",
    "uid", "owner", "ical_recurrence", "location", "description", "unknown_field",
]  # fmt: skip
TRICKY = st.sampled_from(
    [
        "2026-02-30T10:00:00", "2026-01-01", "Europe/Nowhere", "", "Weekly", "Custom", -1, 0,
        10**30,
        "9999-12-31T23:59:59", "0001-01-01T00:00:00", {"Pattern": "Monthly"}, [], [{}],
        [{"original_start": "2026-01-05T09:00:00", "cancelled": True, "start": "x"}],
        {"rrule": ["FREQ=SECONDLY"]}, {"rrule": ["garbage"]}, {"rdate": ["2026"]},
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryCyclicDay", "Cycle": 0}},
        {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Funday", "Cycle": 1}},
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWeekday"},
         "RecurrenceEndType": "Counter", "RecurrenceCounter": 10**9},
    ]
)  # fmt: skip


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    # Every drawn value is copied: TRICKY holds shared constants, and putting the same
    # dict in twice (recurrence, then a value inside it) made a cyclic document that no
    # JSON text can carry (json.dumps failed before the importer was even called).
    def fresh(strategy: st.SearchStrategy[Any]) -> Any:
        return copy.deepcopy(draw(strategy))

    doc: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(DOCUMENTS))))
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(FIELDS))
        op = draw(st.sampled_from(["drop", "random", "tricky", "nested"]))
        if op == "drop":
            doc.pop(key, None)
        elif op == "random":
            doc[key] = fresh(JSON_VALUES)
        elif op == "tricky":
            doc[key] = fresh(TRICKY)
        elif isinstance(doc.get("recurrence"), dict):
            rec = doc["recurrence"]
            sub = draw(st.sampled_from([*rec.keys(), "StartDate", "EndDate", "RecurrenceCounter"]))
            rec[sub] = fresh(JSON_VALUES | TRICKY)
    return doc


class DocumentBudget(Budget):
    def __init__(self) -> None:
        super().__init__()
        self.doc: Any = None

    def check_error(self, exc: MappingError, input_repr: Callable[[], str]) -> None:
        doc = self.doc
        if isinstance(doc, dict):
            if isinstance(doc.get("id"), str) and doc["id"]:
                assert exc.item == doc["id"], (
                    f"error does not name the item: {exc} for {input_repr()}"
                )
            assert exc.field is not None, f"error does not name the field: {exc} for {input_repr()}"


def test_fuzz_json_importer_with_mutated_documents() -> None:
    seed = seed_for("fuzz-json-mutated")
    budget = DocumentBudget()

    @FUZZ_SETTINGS
    @given(mutated_documents())
    def check(doc: Any) -> None:
        budget.doc = doc
        text = json.dumps(doc)
        budget.run(lambda: load_followups_json(text), lambda: text[:2000])

    _run_with_seed(check, seed)
    print(budget.report("json mutated"))
    assert budget.inputs >= EXAMPLES


def test_fuzz_json_importer_with_random_json_and_bytes() -> None:
    seed = seed_for("fuzz-json-random")
    budget = DocumentBudget()

    @FUZZ_SETTINGS
    @given(JSON_VALUES | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
    def check(value: Any) -> None:
        budget.doc = value
        text = json.dumps(value)
        budget.run(lambda: load_followups_json(text), lambda: text[:2000])
        if isinstance(value, str):  # the same text as raw bytes, often not UTF-8 at all
            raw = value.encode("latin-1", errors="ignore") + value.encode("utf-8", "surrogatepass")
            budget.doc = None
            budget.run(lambda: load_followups_json(raw), lambda: repr(raw[:2000]))

    _run_with_seed(check, seed)
    print(budget.report("json random"))
    assert budget.inputs >= EXAMPLES


@pytest.mark.parametrize(
    "rule", ["FREQ=MINUTELY;COUNT=100000", "FREQ=SECONDLY", "FREQ=DAILY;COUNT=1000000000"]
)
def test_huge_series_are_refused_quickly_by_name(rule: str) -> None:
    data = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:huge@example.org\r\n"
        "DTSTAMP:20260101T000000Z\r\nDTSTART:20260105T090000Z\r\nDTEND:20260105T090030Z\r\n"
        f"SUMMARY:huge\r\nRRULE:{rule}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()
    started = time.perf_counter()
    with pytest.raises(MappingError) as caught:
        parse_components(read(data).components)
    assert caught.value.item == "huge@example.org" and caught.value.field == "RRULE"
    assert time.perf_counter() - started < 5
