"""The recurrence dialog on the command line: ``dates``, ``edit``, ``update``, ``stop``,
``delete``, and ``api`` to serve the same operations over HTTP.

Each editing command loads the stored follow-up, applies one operation of
``mappings.operations`` (through ``sync.dialog.DialogService``), stores the result and
prints what changed; ``--sync`` then runs one sync pass so the calendar shows it at once.
The state database and the account come from the same options as ``sync``
(``--database``, ``--config``, ``--account``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from mappings.documents import load_followups_json
from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.moments import Moment
from sync.cli.options import (
    account_option,
    config_option,
    database_option,
    open_database,
    open_settings,
)
from sync.cli.sync import print_report
from sync.config import DEFAULT_MAX_BODY_BYTES, DEFAULT_READ_TIMEOUT, Settings
from sync.dialog import DateInfo, DialogService, OperationResult, account_for, calculate_dates
from sync.errors import ConfigError
from sync.extras import MissingExtra
from sync.run import run_pass
from sync.state.db import Database

DEFAULT_TOKEN_ENV = "FOLLOWUP_SYNC_API_TOKEN"
MODES = ("only-this", "this-and-following")


def register(group: click.Group) -> None:
    for command in (
        dates_command,
        edit_command,
        update_command,
        stop_command,
        delete_command,
        api_command,
    ):
        group.add_command(command)


# --- option types -----------------------------------------------------------------------------


class MomentType(click.ParamType):  # type: ignore[type-arg]
    """``2026-03-16`` or ``2026-03-16T10:00`` (a space instead of T works too)."""

    name = "DATE[THH:MM]"

    def __init__(self, *, date_only: bool = False) -> None:
        self.date_only = date_only
        if date_only:
            self.name = "DATE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Moment:
        if isinstance(value, dt.date):
            return value
        text = str(value).strip().replace(" ", "T")
        try:
            if len(text) == 10:
                return dt.date.fromisoformat(text)
            if self.date_only:
                raise ValueError
            return dt.datetime.fromisoformat(text)
        except ValueError:
            expected = "YYYY-MM-DD" if self.date_only else "YYYY-MM-DD or YYYY-MM-DDTHH:MM"
            self.fail(f"{value!r} is not a date ({expected})", param, ctx)


DATE = MomentType(date_only=True)
MOMENT = MomentType()


#: ``--account`` of the dialog commands: whose calendar conflicts are read in, or synced.
owners_account_option = account_option("Account from the config (default: the owner's).")


def sync_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--sync",
        "run_sync",
        is_flag=True,
        help="Run a sync pass right after, so the calendar shows it now.",
    )(func)


# --- dates --------------------------------------------------------------------------------------


@click.command(
    "dates",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync dates 1001\n"
        "  followup-sync dates 1001 --conflicts --config config/followup-sync.toml\n"
        "  followup-sync dates examples/followups.json --id 1001 --json"
    ),
)
@click.argument("target", metavar="ID|FILE")
@click.option("--id", "pick", metavar="ID", help="Which follow-up of FILE (when it holds several).")
@click.option(
    "--conflicts", is_flag=True, help="Flag dates that clash with the calendar or other follow-ups."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (RecurrenceDate fields)."
)
@owners_account_option
@database_option
@config_option
def dates_command(
    target: str,
    pick: str | None,
    conflicts: bool,
    as_json: bool,
    account_name: str | None,
    database: str | None,
    config_path: str | None,
) -> None:
    """List the dates a follow-up occurs on, as the CRM's recurrence dialog does.

    ID is a stored follow-up; FILE a follow-up JSON document (not stored). With
    --conflicts each date is checked against the owner's calendar (free-busy, or the
    events themselves where the server has no free-busy) and the owner's other
    follow-ups; the Tooltip column says what a date clashes with. Conflicts are
    warnings, as in the CRM.
    """
    settings = open_settings(config_path)
    db = (
        open_database(settings, database, create=False)
        if (conflicts or not Path(target).is_file())
        else None
    )
    followup = _target_followup(target, pick, db)
    account = None
    if conflicts and settings is not None and settings.accounts:
        account = account_for(settings, followup, account_name)
    infos = calculate_dates(followup, db=db, account=account, conflicts=conflicts)
    if as_json:
        click.echo(
            json.dumps([i.model_dump(mode="json") for i in infos], indent=2, ensure_ascii=False)
        )
        return
    _print_dates(followup, infos, conflicts=conflicts, calendar_checked=account is not None)


def _target_followup(target: str, pick: str | None, db: Database | None) -> FollowUp:
    path = Path(target)
    if target == "-" or path.is_file():
        data = sys.stdin.buffer.read() if target == "-" else path.read_bytes()
        followups = load_followups_json(data)
        if pick is not None:
            followups = [f for f in followups if f.id == pick]
            if not followups:
                raise MappingError(f"{target} has no follow-up {pick!r}", field="id")
        if len(followups) != 1:
            raise MappingError(
                f"{target} holds {len(followups)} follow-ups; choose one with --id", field="id"
            )
        return followups[0]
    assert db is not None
    return DialogService(db).get(target)


def _print_dates(
    followup: FollowUp, infos: list[DateInfo], *, conflicts: bool, calendar_checked: bool
) -> None:
    table = Table("date", "day", "time", *(["conflict", "with"] if conflicts else []))
    for info in infos:
        start, end = info.Start, info.End
        when = f"{start:%H:%M}–{end:%H:%M}" if isinstance(start, dt.datetime) else "all day"
        row = [info.Date.isoformat(), info.Description, when]
        if conflicts:
            row += ["CONFLICT" if info.IsConflict else "", info.Tooltip or ""]
        table.add_row(*row)
    console = Console()
    console.print(f"{followup.id}: {followup.title}  ({len(infos)} date(s))")
    console.print(table)
    if conflicts:
        clashes = sum(1 for i in infos if i.IsConflict)
        where = (
            "calendar and other follow-ups"
            if calendar_checked
            else "other follow-ups only (no account)"
        )
        console.print(f"{clashes} conflict(s); checked against the {where}")


# --- editing -----------------------------------------------------------------------------------


@click.command(
    "edit",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync edit 1001 --move 2026-03-09 --later\n"
        "  followup-sync edit 1001 --move 2026-03-09 --earlier\n"
        "  followup-sync edit 1001 --add 2026-03-11\n"
        "  followup-sync edit 1001 --delete 2026-03-16 --sync --config config/followup-sync.toml"
    ),
)
@click.argument("followup_id", metavar="ID")
@click.option(
    "--move", "move", type=DATE, help="Move the occurrence on this date (with --later/--earlier)."
)
@click.option("--later", "direction", flag_value=1, help="With --move: one day later.")
@click.option("--earlier", "direction", flag_value=-1, help="With --move: one day earlier.")
@click.option(
    "--add", "add", type=DATE, help="Add a date at the series' time (bounded series only)."
)
@click.option("--delete", "delete", type=DATE, help="Delete the occurrence on this date.")
@sync_option
@owners_account_option
@database_option
@config_option
def edit_command(
    followup_id: str,
    move: dt.date | None,
    direction: int | None,
    add: dt.date | None,
    delete: dt.date | None,
    run_sync: bool,
    account_name: str | None,
    database: str | None,
    config_path: str | None,
) -> None:
    """Edit the date list of a stored follow-up, like the dialog's arrows, Add and Delete.

    A moved date becomes an exception at the same time on the next or previous day
    (moving it back undoes it); an added date is an extra occurrence (RDATE); a deleted
    one is left out (EXDATE). Give exactly one of --move, --add, --delete.
    """
    chosen = [
        name for name, value in (("--move", move), ("--add", add), ("--delete", delete)) if value
    ]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --move, --add, --delete")
    settings, db = _open(config_path, database)
    dialog = DialogService(db)
    if move is not None:
        if direction is None:
            raise click.UsageError("--move needs --later or --earlier")
        outcome = dialog.move(followup_id, move, direction)
    elif add is not None:
        outcome = dialog.add_date(followup_id, add)
    else:
        assert delete is not None
        outcome = dialog.delete_date(followup_id, delete)
    _done(outcome, settings, db, account_name, run_sync)


@click.command(
    "update",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync update 1001 --occurrence 2026-03-16T10:00 --mode only-this \\\n"
        "      --start 2026-03-16T14:00 --end 2026-03-16T15:00\n"
        "  followup-sync update 1001 --occurrence 2026-03-16T10:00 --mode this-and-following \\\n"
        "      --start 2026-03-16T09:00 --title 'Status (new time)'"
    ),
)
@click.argument("followup_id", metavar="ID")
@click.option(
    "--occurrence", type=MOMENT, required=True, help="The occurrence's start (original or current)."
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    required=True,
    help="Only this one, or it and every later one.",
)
@click.option("--start", type=MOMENT, help="New start (this-and-following: same date, new time).")
@click.option("--end", type=MOMENT, help="New end.")
@click.option("--title", help="New title.")
@click.option("--description", help="New description.")
@click.option("--location", help="New location.")
@sync_option
@owners_account_option
@database_option
@config_option
def update_command(
    followup_id: str,
    occurrence: Moment,
    mode: str,
    start: Moment | None,
    end: Moment | None,
    title: str | None,
    description: str | None,
    location: str | None,
    run_sync: bool,
    account_name: str | None,
    database: str | None,
    config_path: str | None,
) -> None:
    """Change one occurrence, or it and every later one (UpdateMode OnlyThis/ThisAndForward).

    only-this makes an exception (putting it back as the series has it removes the
    exception); this-and-following splits the series: it ends the day before, and a new
    follow-up ID-YYYYMMDD carries on from the occurrence with the new values. On the
    first occurrence the whole series changes instead.
    """
    settings, db = _open(config_path, database)
    outcome = DialogService(db).change(
        followup_id, occurrence, mode=mode, start=start, end=end, title=title,
        description=description, location=location,
    )  # fmt: skip
    _done(outcome, settings, db, account_name, run_sync)


@click.command(
    "stop",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync stop 1001 --from 2026-03-16\n"
        "  followup-sync stop 1001 --from 2026-03-02 --sync --config config/followup-sync.toml"
    ),
)
@click.argument("followup_id", metavar="ID")
@click.option("--from", "from_", type=MOMENT, required=True, help="The last occurrence to keep.")
@sync_option
@owners_account_option
@database_option
@config_option
def stop_command(
    followup_id: str,
    from_: Moment,
    run_sync: bool,
    account_name: str | None,
    database: str | None,
    config_path: str | None,
) -> None:
    """Stop repeating: occurrences after --from go.

    From the first occurrence the follow-up becomes a single one (recurrence removed).
    """
    settings, db = _open(config_path, database)
    _done(DialogService(db).stop(followup_id, from_), settings, db, account_name, run_sync)


@click.command(
    "delete",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync delete 1001\n"
        "  followup-sync delete 1001 --occurrence 2026-03-16T10:00 --mode only-this\n"
        "  followup-sync delete 1001 --occurrence 2026-03-16T10:00 --mode this-and-following"
    ),
)
@click.argument("followup_id", metavar="ID")
@click.option(
    "--occurrence", type=MOMENT, help="Delete only this occurrence (or from it on, see --mode)."
)
@click.option("--mode", type=click.Choice(MODES), default="only-this", show_default=True)
@sync_option
@owners_account_option
@database_option
@config_option
def delete_command(
    followup_id: str,
    occurrence: Moment | None,
    mode: str,
    run_sync: bool,
    account_name: str | None,
    database: str | None,
    config_path: str | None,
) -> None:
    """Delete a follow-up, or one occurrence, or an occurrence and every later one.

    Without --occurrence the whole follow-up goes (the calendar copy on the next sync).
    """
    settings, db = _open(config_path, database)
    _done(
        DialogService(db).delete(followup_id, occurrence, mode),
        settings,
        db,
        account_name,
        run_sync,
    )


def _open(config_path: str | None, database: str | None) -> tuple[Settings | None, Database]:
    settings = open_settings(config_path)
    return settings, open_database(settings, database)


def _done(
    outcome: OperationResult,
    settings: Settings | None,
    db: Database,
    account_name: str | None,
    run_sync: bool,
) -> None:
    click.echo(outcome.summary)
    if not run_sync:
        return
    if settings is None:
        raise ConfigError("--sync needs --config (or FOLLOWUP_SYNC_CONFIG) to know the calendar")
    reference = outcome.saved[0] if outcome.saved else None
    account = (
        account_for(settings, reference, account_name)
        if reference is not None
        else settings.account(account_name)
    )
    if account is None:
        raise ConfigError("no account selects this follow-up's owner; choose one with --account")
    report = run_pass(account, db)
    print_report(report)
    if not report.ok:
        sys.exit(1)


# --- the HTTP API ------------------------------------------------------------------------------


@click.command(
    "api",
    epilog=(
        "\b\nExample:\n"
        "  export FOLLOWUP_SYNC_API_TOKEN=$(openssl rand -hex 16)\n"
        "  followup-sync api --port 8080 --config config/followup-sync.toml\n"
        '  curl -H "Authorization: Bearer $FOLLOWUP_SYNC_API_TOKEN" http://127.0.0.1:8080/followups'
    ),
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@click.option(
    "--token-env", default=DEFAULT_TOKEN_ENV, show_default=True, metavar="VAR",
    help="Environment variable holding the bearer token clients must send.",
)  # fmt: skip
@click.option(
    "--max-body-bytes", default=DEFAULT_MAX_BODY_BYTES, show_default=True,
    type=click.IntRange(min=1), help="Larger request bodies are refused with 413.",
)  # fmt: skip
@click.option(
    "--read-timeout", default=DEFAULT_READ_TIMEOUT, show_default=True,
    type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
    help="A client must send a whole request (headers and body) within this time.",
)  # fmt: skip
@database_option
@config_option
def api_command(
    host: str,
    port: int,
    token_env: str,
    max_body_bytes: int,
    read_timeout: float,
    database: str | None,
    config_path: str | None,
) -> None:
    """Serve the HTTP API (follow-ups and the dialog operations) with uvicorn.

    The OpenAPI document is at /openapi.json and browsable at /docs; every other route
    needs 'Authorization: Bearer <token>'. The token comes from an environment variable,
    never from the command line, where other users could read it.
    """
    try:  # optional extra: api
        import uvicorn

        from sync.api.app import create_app
        from sync.api.limits import server_config
    except ImportError as exc:
        raise MissingExtra("api", "the HTTP API", exc) from None

    token = os.environ.get(token_env)
    if not token:
        raise ConfigError(f"environment variable {token_env} (--token-env) is not set or empty")
    settings = open_settings(config_path)
    db = open_database(settings, database)
    app = create_app(db, token=token, settings=settings, max_body_bytes=max_body_bytes)
    config = server_config(app, host=host, port=port, read_timeout=read_timeout, log_level="info")
    uvicorn.Server(config).run()
