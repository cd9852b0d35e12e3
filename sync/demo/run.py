"""``python -m sync.demo`` (``make demo``): the whole loop on the README's samples.

Nothing to install or configure: a Radicale CalDAV server runs inside this process on
127.0.0.1 (a port the OS picks) and the state is a SQLite file in a fresh folder under
``.demo/``. The demo

1. imports ``examples/followups.json`` (seven follow-ups: workdays, weekly with a moved
   and a cancelled date, 4th Thursday monthly, yearly, custom dates, a task, a call);
2. syncs them to the calendar;
3. edits the calendar the way Thunderbird does when a user drags one meeting to
   another time: a RECURRENCE-ID override, with an alarm, PUT by plain HTTP;
4. syncs again and shows the follow-up with its new exception, and that the override
   and the alarm are still on the server after the CRM renames the series.

The folder is kept, so ``followup-sync export --database .demo/<run>/state.sqlite``
works afterwards. From a checkout, ``make demo`` has everything; an installed package
needs the ``demo`` extra (``pip install 'followup-sync[demo]'``: Radicale and niquests).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from importlib import resources
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from mappings.describe import LANGUAGES, sentence, summary
from mappings.documents import load_followups_json
from mappings.model import FollowUp
from mappings.moments import Moment
from mappings.occurrences import occurrences
from sync.config import Account
from sync.run import PassReport, run_pass
from sync.state.db import Database, SyncItem
from sync.state.followups import FollowUpStore

try:
    import niquests

    from sync.demo.embedded import EmbeddedRadicale
except ImportError as missing:
    raise SystemExit(
        f"the demo needs {missing.name!r}: pip install 'followup-sync[demo]'"
    ) from None

#: The sample follow-ups, shipped in the package (a link to examples/followups.json).
EXAMPLES = resources.files("sync") / "examples" / "followups.json"
#: The weekly status meeting: the series the "calendar user" edits.
EDITED_ID = "1002"
SHOWN = 6


def main() -> int:
    console = Console()
    run_dir = Path(".demo") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    followups = load_followups_json(EXAMPLES.read_text(encoding="utf-8"))

    with EmbeddedRadicale(run_dir / "radicale", username="demo", password="demo") as server:
        os.environ["FOLLOWUP_SYNC_DEMO_PASSWORD"] = "demo"
        account = Account(
            name="demo",
            url=server.url,
            username="demo",
            password_env="FOLLOWUP_SYNC_DEMO_PASSWORD",
            calendar="followups",
            server_kind="radicale",
            default_timezone="Europe/Oslo",
        )
        db = Database.open(str(run_dir / "state.sqlite"))
        store = FollowUpStore(db)

        console.rule("[bold]1. Import the sample follow-ups")
        result = store.import_followups(followups)
        console.print(f"{len(result.created)} follow-ups stored in {run_dir}/state.sqlite")
        for followup in followups:
            console.print(
                f"  [bold]{followup.id}[/bold] {followup.title:28} {summary(followup, 'en')}"
            )

        console.rule(f"[bold]2. Sync to the CalDAV server at {server.url}")
        show_report(console, run_pass(account, db))

        console.rule("[bold]3. A calendar user moves one meeting in Thunderbird")
        moved_from, moved_to = client_moves_one_meeting(server.url, db, console)

        console.rule("[bold]4. Sync again: the move comes back as an exception")
        show_report(console, run_pass(account, db))
        edited = store.get(EDITED_ID)
        assert edited is not None
        followup = edited
        show_followup(console, followup, moved_from)
        if not any(e.start is not None and e.start == moved_to for e in followup.exceptions):
            console.print("[red]the client's move did not arrive in the follow-up[/red]")
            return 1

        console.rule("[bold]5. The CRM renames the series; the client's edit survives")
        store.put(followup.model_copy(update={"title": "Weekly status meeting (renamed in CRM)"}))
        show_report(console, run_pass(account, db))
        data = server_copy(server.url, db)
        kept = "RECURRENCE-ID" in data and "BEGIN:VALARM" in data and "X-MOZ-GENERATION" in data
        console.print(
            f"On the server now: SUMMARY renamed: {'renamed in CRM' in data}; "
            "Thunderbird's override, "
            f"alarm and X-MOZ property kept: {kept}"
        )
        console.rule("[bold]6. Nothing changed: one request")
        # A daemon's passes are minutes apart; Radicale's getlastmodified (whole seconds)
        # is trusted once read two seconds after the last write, so wait that long here.
        time.sleep(2)
        console.print("The pass after a write still lists that write once (getlastmodified moved):")
        show_report(console, run_pass(account, db))
        console.print("Every pass after that, while nobody changes anything:")
        show_report(console, run_pass(account, db))
        db.close()
    console.print(
        f"\nState kept in {run_dir}/. Try:\n"
        f"  .venv/bin/followup-sync export --database {run_dir}/state.sqlite\n"
        "  .venv/bin/followup-sync --help"
    )
    return 0 if kept else 1


def client_moves_one_meeting(
    server_url: str, db: Database, console: Console
) -> tuple[dt.datetime, dt.datetime]:
    """PUT what Thunderbird writes when one occurrence is dragged: an override plus an alarm."""
    with db.session() as session:
        item = session.get(SyncItem, ("demo", EDITED_ID))
        assert item is not None
        href, etag = item.href, item.etag
    url = server_url.rstrip("/") + href
    current = niquests.get(url, auth=("demo", "demo"))
    original = dt.datetime(2026, 3, 23, 10, 0)
    new_start = dt.datetime(2026, 3, 24, 8, 30)
    override = (
        "BEGIN:VEVENT\r\n"
        f"UID:{_uid(current.text or '')}\r\n"
        "DTSTAMP:20260301T120000Z\r\n"
        f"RECURRENCE-ID;TZID=Europe/Oslo:{original:%Y%m%dT%H%M%S}\r\n"
        f"DTSTART;TZID=Europe/Oslo:{new_start:%Y%m%dT%H%M%S}\r\n"
        f"DTEND;TZID=Europe/Oslo:{new_start + dt.timedelta(hours=1):%Y%m%dT%H%M%S}\r\n"
        "SUMMARY:Weekly status meeting\r\n"
        "SEQUENCE:1\r\n"
        "X-MOZ-GENERATION:2\r\n"
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\n"
        "DESCRIPTION:Status meeting\r\nEND:VALARM\r\n"
        "END:VEVENT\r\n"
    )
    body = (
        (current.text or "")
        .replace("\r\n", "\n")
        .replace("\n", "\r\n")
        .replace("END:VCALENDAR", override + "END:VCALENDAR")
    )
    response = niquests.put(
        url,
        data=body.encode(),
        headers={
            "If-Match": current.headers.get("ETag") or etag,
            "Content-Type": "text/calendar; charset=utf-8",
        },
        auth=("demo", "demo"),
    )
    console.print(
        f"PUT {href} (If-Match) → {response.status_code}: the meeting of "
        f"{original:%a %d.%m %H:%M} now starts {new_start:%a %d.%m %H:%M}, with a 15-minute alarm"
    )
    return original, new_start


def server_copy(server_url: str, db: Database) -> str:
    with db.session() as session:
        item = session.get(SyncItem, ("demo", EDITED_ID))
        assert item is not None
        href = item.href
    return str(niquests.get(server_url.rstrip("/") + href, auth=("demo", "demo")).text)


def show_report(console: Console, report: PassReport) -> None:
    done = report.applied.done
    console.print(
        f"{report.mode} sync, {report.requests} HTTP request(s): calendar "
        f"+{done.get('server create', 0)} ~{done.get('server update', 0)} "
        f"-{done.get('server delete', 0)}, "
        f"follow-ups +{done.get('crm create', 0)} ~{done.get('crm update', 0)} "
        f"-{done.get('crm delete', 0)}, "
        f"{report.applied.conflicts} conflict(s), {len(report.errors)} error(s)"
    )
    for item, message in report.errors:
        console.print(f"  [red]{item}: {message}[/red]")


def show_followup(console: Console, followup: FollowUp, highlight: dt.datetime) -> None:
    console.print(f"[bold]{followup.id} {followup.title}[/bold]")
    for lang in LANGUAGES:
        console.print(f"  {lang}: {summary(followup, lang)} — {sentence(followup, lang)}")
    table = Table("original", "now", "note", box=box.SIMPLE_HEAD)
    for exception in followup.exceptions:
        note = "cancelled" if exception.cancelled else "moved"
        if exception.original_start == highlight:
            note += " [bold green](from the calendar client)[/bold green]"
        table.add_row(
            _when(exception.original_start),
            "" if exception.cancelled else _when(exception.start),
            note,
        )
    console.print("Exceptions:")
    console.print(table)
    console.print(f"First {SHOWN} occurrences:")
    occ = Table("start", "end", "note", box=box.SIMPLE_HEAD)
    for occurrence in occurrences(followup)[:SHOWN]:
        note = "cancelled" if occurrence.cancelled else ("moved" if occurrence.moved else "")
        occ.add_row(_when(occurrence.start), _when(occurrence.end), note)
    console.print(occ)


def _when(value: Moment | None) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%a %d.%m.%Y %H:%M %z").strip()
    return value.strftime("%a %d.%m.%Y") if value is not None else ""


def _uid(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("UID:"):
            return line[4:].strip()
    raise ValueError("no UID in the server's copy")


if __name__ == "__main__":
    sys.exit(main())
