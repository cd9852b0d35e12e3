"""Mapper commands: ``map``, ``parse``, ``expand`` and ``describe``.

They work on files only (no server, no state), which makes them the quickest way to see
what the sync would write to a calendar for a given follow-up, or what it would make of
a calendar object. Every one of them reads FILE or ``-`` (stdin) and writes the result
to stdout; notes and warnings go to stderr so the output can be piped.

Bad input raises ``MappingError``; the group in ``sync.cli.main`` turns it into one line on
stderr and exit status 2.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from mappings.describe import LANGUAGES, Lang, is_open_ended, sentence, status_text, summary
from mappings.documents import dump_followups_json, load_followups_json
from mappings.errors import MappingError
from mappings.from_ical import parse_calendar
from mappings.model import FollowUp
from mappings.moments import Moment
from mappings.occurrences import occurrences
from mappings.patterns import DEFAULT_OPEN_ENDED_YEARS
from mappings.to_ical import to_calendar

FILE_ARGUMENT = click.argument("file", type=click.File("rb"), metavar="FILE|-")


def register(group: click.Group) -> None:
    """Add the mapper commands to the ``followup-sync`` group."""
    for command in (map_command, parse_command, expand_command, describe_command):
        group.add_command(command)


# --- map -----------------------------------------------------------------------------


@click.command(
    "map",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync map examples/followups.json > followups.ics\n"
        "  followup-sync map --stamp 2026-01-01T00:00:00Z examples/followups.json\n"
        "  cat followup.json | followup-sync map -"
    ),
)
@FILE_ARGUMENT
@click.option(
    "--stamp",
    metavar="ISO",
    help="DTSTAMP to write, e.g. 2026-01-01T00:00:00Z (naive = UTC). Default: now. "
    "Give it for output that is the same on every run.",
)
def map_command(file: IO[bytes], stamp: str | None) -> None:
    """Print one VCALENDAR for the follow-ups in FILE.

    FILE holds one follow-up document (a JSON object) or an array of them. Each becomes
    a master VEVENT (VTODO for tasks) plus one override per edited occurrence, with a
    VTIMEZONE for every zone used. A follow-up whose every occurrence was deleted has
    nothing left to show and is left out, with a note on stderr.
    """
    followups = load_followups_json(_read_text(file))
    calendar, mapped = to_calendar(followups, stamp=_stamp(stamp))
    for series in mapped:
        if not series.emitted:
            click.echo(
                f"note: follow-up {series.followup_id!r}: every occurrence is deleted; not emitted",
                err=True,
            )
    click.echo(calendar.to_ical(), nl=False)


def _stamp(text: str | None) -> dt.datetime:
    """The DTSTAMP: now (only the CLI reads the clock; the mapper is pure) or ``--stamp``."""
    if text is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise MappingError(f"{text!r} is not an ISO date-time", field="--stamp") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


# --- parse ---------------------------------------------------------------------------


@click.command(
    "parse",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync parse calendar.ics\n"
        "  followup-sync map examples/followups.json | followup-sync parse -\n"
        "  followup-sync parse --timezone Europe/Oslo exported.ics"
    ),
)
@FILE_ARGUMENT
@click.option(
    "--timezone",
    "timezone",
    default="UTC",
    show_default=True,
    metavar="ZONE",
    help="IANA zone for floating times (no TZID, no Z) in the calendar.",
)
def parse_command(file: IO[bytes], timezone: str) -> None:
    """Print the follow-ups in an iCalendar FILE as a JSON array.

    Warnings (something was approximated or dropped) go to stderr. Objects that
    cannot be mapped are reported on stderr, one line each, after the good ones are
    printed; the exit status is then 2.
    """
    _zone(timezone, "--timezone")
    data = _read(file)
    try:
        result = parse_calendar(data, default_timezone=timezone)
    except MappingError:
        raise
    except ValueError as exc:  # icalendar's parser reports malformed text this way
        raise MappingError(f"not a valid iCalendar file: {_one_line(str(exc))}") from None
    click.echo(dump_followups_json(result.followups))
    for warning in result.warnings:
        click.echo(f"warning: {_one_line(str(warning))}", err=True)
    for error in result.errors:
        click.echo(f"error: {_one_line(str(error))}", err=True)
    if result.errors:
        raise click.exceptions.Exit(2)


# --- expand --------------------------------------------------------------------------


EXPAND_HELP = f"""Print the occurrences of the follow-ups in FILE as a JSON array.

    Each occurrence has id, start, end (ISO 8601 with the UTC offset in force that day;
    dates for all-day follow-ups), original_start (where the pattern put it), title,
    cancelled and moved. Cancelled occurrences are listed, marked cancelled.

    DATEs are days in each follow-up's own time zone. Without --to, an open-ended
    series (no count, no end date) is listed for {DEFAULT_OPEN_ENDED_YEARS} years from
    --from, or from its start; a bounded series is listed to its end.
    """


@click.command(
    "expand",
    help=EXPAND_HELP,
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync expand examples/followups.json\n"
        "  followup-sync expand --from 2026-03-01 --to 2026-03-31 examples/followups.json"
    ),
)
@FILE_ARGUMENT
@click.option("--from", "date_from", metavar="DATE", help="First day to list (YYYY-MM-DD).")
@click.option("--to", "date_to", metavar="DATE", help="Last day to list, inclusive (YYYY-MM-DD).")
def expand_command(file: IO[bytes], date_from: str | None, date_to: str | None) -> None:
    """List occurrences; the help text is EXPAND_HELP, which names the default window."""
    lo = _date(date_from, "--from")
    hi = _date(date_to, "--to")
    if lo is not None and hi is not None and hi < lo:
        raise MappingError(f"{hi} is before --from {lo}", field="--to")
    followups = load_followups_json(_read_text(file))
    rows: list[dict[str, Any]] = []
    for followup in followups:
        rows.extend(_expand(followup, lo, hi))
    click.echo(json.dumps(rows, indent=2, ensure_ascii=False))


def _expand(followup: FollowUp, lo: dt.date | None, hi: dt.date | None) -> list[dict[str, Any]]:
    if hi is None and is_open_ended(followup):
        hi = _years_later(lo or _date_of(followup.start), DEFAULT_OPEN_ENDED_YEARS)
    found = occurrences(
        followup,
        window_start=_day_start(followup, lo) if lo is not None else None,
        window_end=_day_start(followup, hi + dt.timedelta(days=1)) if hi is not None else None,
    )
    return [
        {
            "id": followup.id,
            "start": o.start.isoformat(),
            "end": o.end.isoformat(),
            "original_start": o.original_start.isoformat(),
            "title": o.title,
            "cancelled": o.cancelled,
            "moved": o.moved,
        }
        for o in found
    ]


def _day_start(followup: FollowUp, day: dt.date) -> Moment:
    """A window bound the expansion compares like its occurrences.

    All-day occurrences are dates, so the bound is a date; timed ones get local midnight
    as a naive time, which ``occurrences`` reads in the follow-up's own zone.
    """
    return day if followup.all_day else dt.datetime.combine(day, dt.time())


# --- describe ------------------------------------------------------------------------


@click.command(
    "describe",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync describe examples/followups.json\n"
        "  followup-sync describe --lang nb examples/followups.json"
    ),
)
@FILE_ARGUMENT
@click.option(
    "--lang",
    type=click.Choice(LANGUAGES),
    default="en",
    show_default=True,
    help="Language: en (English) or nb (Norwegian Bokmål).",
)
def describe_command(file: IO[bytes], lang: Lang) -> None:
    """Put the recurrence of each follow-up in FILE into words.

    For each follow-up: its id and title, the line the CRM shows next to
    "Recurrence" (pattern, first and last date), and a sentence with the rule, its end
    and any hand edits (moved, deleted, added dates); then its status (not started,
    started, completed) when one is known, with occurrences that have their own.
    """
    followups = load_followups_json(_read_text(file))
    label = "Recurrence" if lang == "en" else "Gjentas"
    blocks = []
    for f in followups:
        block = f"{f.id}  {f.title}\n  {label}: {summary(f, lang)}\n  {sentence(f, lang)}"
        if status := status_text(f, lang):
            block += f"\n  Status: {status}"
        blocks.append(block)
    click.echo("\n\n".join(blocks))


# --- shared helpers ------------------------------------------------------------------


def _read(file: IO[bytes]) -> bytes:
    return file.read()


def _read_text(file: IO[bytes]) -> str:
    """The file as text; a byte-order mark (Windows editors write one) is dropped."""
    data = _read(file)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MappingError(f"not UTF-8 text (byte {exc.start})") from None


def _years_later(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _zone(name: str, option: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(f"unknown time zone {name!r} (use an IANA name)", field=option) from None


def _date(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise MappingError(f"{text!r} is not a date (YYYY-MM-DD)", field=option) from None


def _date_of(value: Moment) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _one_line(text: str) -> str:
    return " ".join(text.split())
