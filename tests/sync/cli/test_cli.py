"""The ``followup-sync`` command line: mapper commands, help texts and bad-input handling.

Most tests run the real click group in-process (CliRunner); a few run the installed
console script as a subprocess, which is what a user types.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from icalendar import Calendar

from sync.cli.main import cli
from sync.config import DEFAULT_CALENDAR, Account

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "followups.json"
SCRIPT = Path(sys.executable).parent / "followup-sync"
STAMP = "2026-01-01T00:00:00Z"


def run(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, prog_name="followup-sync")


def doc(**overrides: Any) -> dict[str, Any]:
    """A valid weekly follow-up; tests break one field at a time."""
    data: dict[str, Any] = {
        "id": "77",
        "title": "Status",
        "start": "2026-01-05T09:00:00",
        "end": "2026-01-05T10:00:00",
        "timezone": "Europe/Oslo",
        "recurrence": {
            "Pattern": "Weekly",
            "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
            "RecurrenceCounter": 3,
        },
    }
    data.update(overrides)
    return data


# --- help ----------------------------------------------------------------------------

COMMANDS = ["map", "parse", "expand", "describe"]


def test_top_level_help_explains_and_lists_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "CRM follow-ups and CalDAV calendars" in result.output
    for name in COMMANDS:
        assert name in result.output
    assert "Examples:" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    assert f"followup-sync {command} " in result.output


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.startswith("followup-sync, version ")


def test_expand_help_documents_the_open_ended_window() -> None:
    text = " ".join(run("expand", "--help").output.split())
    assert "an open-ended series (no count, no end date) is listed for 2 years" in text


# --- map -----------------------------------------------------------------------------


def test_map_examples_is_one_calendar_with_every_follow_up() -> None:
    result = run("map", "--stamp", STAMP, str(EXAMPLES))
    assert result.exit_code == 0, result.output
    cal = Calendar.from_ical(result.stdout_bytes)
    uids = {str(c["UID"]) for c in cal.walk() if c.name in ("VEVENT", "VTODO")}
    assert uids == {f"followup-{n}@followup-sync" for n in range(1001, 1008)}
    assert [c.name for c in cal.walk("VTIMEZONE")] == ["VTIMEZONE"]
    assert "DTSTAMP:20260101T000000Z" in result.stdout


def test_map_with_stamp_is_reproducible() -> None:
    first = run("map", "--stamp", STAMP, str(EXAMPLES)).stdout_bytes
    assert first == run("map", "--stamp", STAMP, str(EXAMPLES)).stdout_bytes


def test_map_reads_stdin() -> None:
    result = run("map", "--stamp", STAMP, "-", input=json.dumps(doc()))
    assert result.exit_code == 0
    assert "RRULE:FREQ=WEEKLY;COUNT=3;BYDAY=MO" in result.stdout


def test_map_leaves_out_a_series_with_nothing_left_and_says_so() -> None:
    gone = doc(
        id="78",
        recurrence={
            "Pattern": "Weekly",
            "WeekPattern": {"Weekdays": "Monday"},
            "RecurrenceCounter": 1,
        },
        exceptions=[{"original_start": "2026-01-05T09:00:00", "cancelled": True}],
    )
    result = run("map", "--stamp", STAMP, "-", input=json.dumps([doc(), gone]))
    assert result.exit_code == 0
    assert "followup-77@" in result.stdout
    assert "followup-78@" not in result.stdout
    assert "'78'" in result.stderr
    assert "not emitted" in result.stderr


# --- expand --------------------------------------------------------------------------


def test_expand_examples_window() -> None:
    result = run("expand", "--from", "2026-03-01", "--to", "2026-04-30", str(EXAMPLES))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    status = [r for r in rows if r["id"] == "1002"]
    assert [r["start"] for r in status] == [
        "2026-03-02T10:00:00+01:00",
        "2026-03-09T10:00:00+01:00",
        "2026-03-16T14:00:00+01:00",  # moved
        "2026-03-23T10:00:00+01:00",
        "2026-03-30T10:00:00+02:00",  # summer time: same wall clock, new offset
        "2026-04-06T10:00:00+02:00",  # cancelled, still listed
        "2026-04-13T10:00:00+02:00",
        "2026-04-20T10:00:00+02:00",
        "2026-04-27T10:00:00+02:00",
    ]
    moved = status[2]
    assert moved["moved"] is True and moved["original_start"] == "2026-03-16T10:00:00+01:00"
    assert status[5]["cancelled"] is True
    assert set(moved) == {"id", "start", "end", "original_start", "title", "cancelled", "moved"}


def test_expand_all_day_gives_dates() -> None:
    rows = json.loads(run("expand", str(EXAMPLES)).stdout)
    renewal = [r for r in rows if r["id"] == "1004"]
    assert [r["start"] for r in renewal] == [f"{y}-09-23" for y in range(2026, 2031)]
    assert renewal[0]["end"] == "2026-09-24"


def test_expand_to_is_inclusive() -> None:
    rows = json.loads(
        run("expand", "--from", "2026-03-26", "--to", "2026-03-26", str(EXAMPLES)).stdout
    )
    assert [(r["id"], r["start"]) for r in rows] == [("1003", "2026-03-26T13:00:00+01:00")]


def test_expand_open_ended_default_window_is_two_years() -> None:
    open_ended = doc(recurrence={"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Monday"}})
    rows = json.loads(run("expand", "-", input=json.dumps(open_ended)).stdout)
    assert rows[0]["start"] == "2026-01-05T09:00:00+01:00"
    assert rows[-1]["start"].startswith("2028-01-03")  # up to and including 05.01.2028
    later = json.loads(
        run("expand", "--from", "2030-01-01", "-", input=json.dumps(open_ended)).stdout
    )
    assert later[0]["start"].startswith("2030-01-07")
    assert later[-1]["start"].startswith("2031-12-29")


# --- describe ------------------------------------------------------------------------


def test_describe_examples_in_english() -> None:
    result = run("describe", str(EXAMPLES))
    assert result.exit_code == 0, result.output
    assert "Recurrence: Weekly (02.03.2026 - 04.05.2026)" in result.stdout
    assert "Every week on Monday, 10 times, 1 date moved, 1 deleted" in result.stdout
    assert "Every 2nd week on Tuesday and Thursday, 6 times" in result.stdout


def test_describe_examples_in_norwegian() -> None:
    result = run("describe", "--lang", "nb", str(EXAMPLES))
    assert result.exit_code == 0, result.output
    assert "Gjentas: Månedlig (22.01.2026 - 23.12.2027)" in result.stdout
    assert "Hvert år den 23. september, 5 ganger" in result.stdout


# --- parse (needs mappings.from_ical, written separately) ------------------------------


def test_parse_round_trips_the_examples() -> None:
    pytest.importorskip("mappings.from_ical")
    ics = run("map", "--stamp", STAMP, str(EXAMPLES)).stdout_bytes
    result = run("parse", "--timezone", "Europe/Oslo", "-", input=ics)
    assert result.exit_code == 0, result.output
    assert sorted(f["id"] for f in json.loads(result.stdout)) == [str(n) for n in range(1001, 1008)]


def test_parse_malformed_calendar_is_one_line_exit_2() -> None:
    pytest.importorskip("mappings.from_ical")
    result = run("parse", "-", input="BEGIN:VCALENDAR\nthis is not a content line\n")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


# --- invalid input: exit 2, one line naming the follow-up and the field -------------------

BAD_INPUTS = [
    pytest.param(
        doc(recurrence={"Pattern": "Fortnightly"}), "recurrence.Pattern", id="unknown-pattern"
    ),
    pytest.param(
        doc(recurrence={"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Monday", "Cycle": 0}}),
        "recurrence.WeekPattern.Cycle",
        id="cycle-0",
    ),
    pytest.param(
        doc(recurrence={"Pattern": "Weekly", "WeekPattern": {"Weekdays": 0, "Cycle": 1}}),
        "recurrence.WeekPattern.Weekdays",
        id="no-weekdays",
    ),
    pytest.param(doc(end="2026-01-05T08:00:00"), "end", id="end-before-start"),
    pytest.param(doc(timezone="Mars/Olympus"), "timezone", id="unknown-time-zone"),
]


@pytest.mark.parametrize("command", ["map", "expand", "describe"])
@pytest.mark.parametrize(("document", "field"), BAD_INPUTS)
def test_invalid_document_exits_2_with_one_line(
    command: str, document: dict[str, Any], field: str
) -> None:
    result = run(command, "-", input=json.dumps(document))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "follow-up '77'" in lines[0]
    assert f"field '{field}'" in lines[0]


@pytest.mark.parametrize("command", ["map", "expand", "describe"])
def test_invalid_json_exits_2_with_one_line(command: str) -> None:
    result = run(command, "-", input='{"id": "77", ')
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: not valid JSON: Expecting property name enclosed in double quotes "
        "at line 1 column 14"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["map", "--stamp", "yesterday"],
        ["expand", "--from", "1.1.2026"],
        ["expand", "--from", "2026-02-01", "--to", "2026-01-01"],
        ["parse", "--timezone", "Mars/Olympus"],
    ],
)
def test_bad_option_value_exits_2_with_one_line(args: list[str]) -> None:
    result = run(*args, str(EXAMPLES))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"field '{args[-2]}'" in result.stderr


# --- the installed console script ---------------------------------------------------


@pytest.fixture(scope="module")
def script() -> str:
    path = SCRIPT if SCRIPT.exists() else shutil.which("followup-sync")
    if path is None:
        pytest.skip("followup-sync is not installed (pip install -e .)")
    return str(path)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["map", "--stamp", STAMP, str(EXAMPLES)], "BEGIN:VCALENDAR"),
        (["expand", "--to", "2026-01-31", str(EXAMPLES)], '"id": "1001"'),
        (
            ["describe", "--lang", "nb", str(EXAMPLES)],
            "Hver 2. uke på tirsdag og torsdag, 6 ganger",
        ),
    ],
)
def test_console_script(script: str, args: list[str], expected: str) -> None:
    done = subprocess.run([script, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_console_script_bad_input_has_no_traceback(script: str) -> None:
    bad = json.dumps(
        doc(recurrence={"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Monday", "Cycle": 0}})
    )
    done = subprocess.run(
        [script, "map", "-"], input=bad, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: follow-up '77', field 'recurrence.WeekPattern.Cycle': must be at least 1, got 0"
    ]


# --- command registration -------------------------------------------------------------


def test_help_groups_the_commands_the_way_a_user_looks_for_them() -> None:
    output = run("--help").output
    sync_at = output.index("Sync and operations:")
    store_at = output.index("Follow-ups in the store (the CRM side):")
    files_at = output.index("File tools (no server, no database):")
    assert sync_at < store_at < files_at
    assert sync_at < output.index("  daemon ") < store_at
    assert store_at < output.index("  edit ") < files_at
    assert files_at < output.index("  parse ")
    assert "Other commands" not in output  # every command has its place
    # The old names still work as before: the grouping is the help's only.
    assert run("describe", str(EXAMPLES)).exit_code == 0


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_and_quiet_work_before_and_after_the_command(where: str) -> None:
    for flag, level in (("-vv", logging.DEBUG), ("-q", logging.ERROR)):
        args = [flag, "describe", str(EXAMPLES)] if where == "before" else [
            "describe", str(EXAMPLES), flag,
        ]  # fmt: skip
        assert run(*args).exit_code == 0
        assert logging.getLogger().level == level
    assert run("db", "current", "--help").output.count("--quiet") == 1  # sub-commands too


def test_cli_and_example_config_default_to_the_same_calendar() -> None:
    example = tomllib.loads((ROOT / "config" / "followup-sync.example.toml").read_text())
    assert Account(url="https://dav.example.com/").calendar == DEFAULT_CALENDAR
    assert {a["calendar"] for a in example["accounts"].values()} == {DEFAULT_CALENDAR}
    assert f"Default: {DEFAULT_CALENDAR}." in run("sync", "--help").output
