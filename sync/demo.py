"""``python -m sync.demo`` (``make demo``): the mapper on the README's sample follow-ups.

It needs no server and no configuration, so a newcomer sees in seconds what the
service does with a follow-up: how the CRM would describe it, which occurrences it
produces (with DST-correct UTC offsets), and the iCalendar that would go to the
calendar server. The full sync loop will replace this later.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from mappings.describe import LANGUAGES, sentence, summary
from mappings.model import FollowUp, Moment, load_followups_json
from mappings.occurrences import occurrences
from mappings.to_ical import to_ical_bytes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "followups.json"
#: Occurrences shown per follow-up: enough to see the rhythm and an edit or two.
SHOWN = 5
#: The follow-up whose iCalendar is printed: the one with a moved and a cancelled date.
ICAL_EXAMPLE_ID = "1002"


def occurrence_table(followup: FollowUp, limit: int = SHOWN) -> Table:
    """The first ``limit`` occurrences, with the edits the CRM user made."""
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("#", justify="right")
    table.add_column("Date")
    table.add_column("Time")
    table.add_column("UTC offset")
    table.add_column("Note")
    found = occurrences(followup)
    for number, occurrence in enumerate(found[:limit], start=1):
        note = ""
        if occurrence.cancelled:
            note = "[red]cancelled[/red]"
        elif occurrence.moved:
            note = f"[yellow]moved from {_when(occurrence.original_start)}[/yellow]"
        table.add_row(str(number), *_row(occurrence.start, occurrence.end), note)
    if len(found) > limit:
        table.caption = f"… and {len(found) - limit} more"
    return table


def main() -> None:
    console = Console()
    followups = load_followups_json(EXAMPLES.read_text(encoding="utf-8"))
    console.rule(f"[bold]{len(followups)} sample follow-ups[/bold] from examples/{EXAMPLES.name}")
    for followup in followups:
        console.print()
        console.print(f"[bold]{followup.id}  {followup.title}[/bold] ({followup.kind.value})")
        for lang in LANGUAGES:
            console.print(f"  {lang}  {summary(followup, lang)}\n      {sentence(followup, lang)}")
        console.print(occurrence_table(followup))
    chosen = next(f for f in followups if f.id == ICAL_EXAMPLE_ID)
    console.rule(f"[bold]iCalendar for {chosen.id} {chosen.title}[/bold] (VTIMEZONE left out)")
    # The clock is read here, in the program, never in the mapper.
    text = to_ical_bytes([chosen], stamp=dt.datetime.now(dt.UTC).replace(microsecond=0)).decode()
    console.print(_without_timezones(text), markup=False, highlight=False)
    console.print("Next: .venv/bin/followup-sync --help")


def _row(start: Moment, end: Moment) -> tuple[str, str, str]:
    """Date, time span and UTC offset; an all-day occurrence has no time."""
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
        offset = start.strftime("%z")
        return (
            start.strftime("%a %d.%m.%Y"),
            f"{start:%H:%M}–{end:%H:%M}",
            f"{offset[:3]}:{offset[3:]}",
        )
    return (start.strftime("%a %d.%m.%Y"), "all day", "")


def _when(value: Moment) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%a %d.%m %H:%M")
    return value.strftime("%a %d.%m")


def _without_timezones(text: str) -> str:
    """Drop the VTIMEZONE block: dozens of transition lines that hide the event."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line == "BEGIN:VTIMEZONE":
            skipping = True
        if not skipping:
            kept.append(line)
        if line == "END:VTIMEZONE":
            skipping = False
    return "\n".join(kept)


if __name__ == "__main__":
    main()
