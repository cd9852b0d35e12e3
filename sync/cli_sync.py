"""Store and sync commands: ``import``, ``export``, ``sync``, ``conflicts``.

They share where the state lives (``--database``, default ``followup-sync.sqlite`` or
``$FOLLOWUP_SYNC_DATABASE``) and which account to use: from ``--config FILE`` (TOML,
see ``config/followup-sync.example.toml``) with ``--account NAME``, or given directly
with ``--url`` and friends for a one-off run (``sync.cli_signin`` adds the sign-in and TLS
flags). Passwords come from an environment variable, a file or a command, never from the
command line, where ``ps`` would show them.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from mappings.model import dump_followups_json, load_followups_json
from sync.cli_signin import apply_sign_in, sign_in_options
from sync.config import Account, Settings, load_settings
from sync.errors import AccountBusy
from sync.followups import FollowUpStore
from sync.locks import SqliteFileLock, cluster_lock_for
from sync.plan import describe
from sync.runner import PassReport, run_pass
from sync.state import ConflictRecord, Database

#: Show a progress bar only when a pass has this many actions; small runs stay quiet.
PROGRESS_THRESHOLD = 20


def register(group: click.Group) -> None:
    for command in (import_command, export_command, sync_command, conflicts_command):
        group.add_command(command)


def database_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--database",
        "database",
        metavar="URL|PATH",
        envvar="FOLLOWUP_SYNC_DATABASE",
        help="State database: a SQLite file path or a SQLAlchemy URL "
        "(postgresql+psycopg://…). Default: followup-sync.sqlite, or the config's 'database'.",
    )(func)


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        envvar="FOLLOWUP_SYNC_CONFIG",
        help="TOML config file with [accounts.NAME] tables.",
    )(func)


def open_database(
    settings: Settings | None, database: str | None, *, create: bool = True
) -> Database:
    """The state database, never migrated (``db upgrade`` does that).

    ``create=False`` for commands that only read: a missing or empty database is an
    error (exit 2) instead of a new empty file and an empty answer.
    """
    return Database.open(database or (settings.database if settings else None), create=create)


@click.command(
    "import",
    epilog="\b\nExample:\n  followup-sync import examples/followups.json",
)
@click.argument("file", type=click.File("rb"), metavar="FILE|-")
@database_option
@config_option
def import_command(file: IO[bytes], database: str | None, config_path: str | None) -> None:
    """Store the follow-ups of FILE (the mapper's JSON document) in the database.

    New ids are created, known ones replaced; the next 'sync' takes the changes to the
    calendar. The whole file is checked first: one invalid follow-up stores nothing.
    """
    followups = load_followups_json(file.read())
    settings = load_settings(config_path) if config_path else None
    db = open_database(settings, database)
    result = FollowUpStore(db).import_followups(followups)
    click.echo(
        f"imported {len(followups)} follow-up(s): {len(result.created)} new, "
        f"{len(result.updated)} changed, {len(result.unchanged)} unchanged"
    )


@click.command("export", epilog="\b\nExample:\n  followup-sync export > followups.json")
@click.option("--id", "ids", multiple=True, help="Only these follow-ups (repeatable).")
@database_option
@config_option
def export_command(ids: tuple[str, ...], database: str | None, config_path: str | None) -> None:
    """Print the stored follow-ups as a JSON array (the document 'import' and 'map' take)."""
    settings = load_settings(config_path) if config_path else None
    db = open_database(settings, database, create=False)
    followups = FollowUpStore(db).all()
    if ids:
        followups = [f for f in followups if f.id in set(ids)]
    click.echo(dump_followups_json(followups))


@click.command(
    "sync",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync sync --config config/followup-sync.toml --account alice\n"
        "  followup-sync sync --config config/followup-sync.toml --dry-run\n"
        "  ALICE_PW=secret followup-sync sync --url http://127.0.0.1:5232/ \\\n"
        "      --username alice --password-env ALICE_PW --calendar followups"
    ),
)
@config_option
@click.option(
    "--account",
    "account_name",
    metavar="NAME",
    help="Account from the config (default: the only one).",
)
@click.option("--url", help="CalDAV server URL (instead of a config file).")
@click.option("--username", help="CalDAV user name.")
@click.option("--password-env", metavar="VAR", help="Environment variable holding the password.")
@click.option("--password-file", metavar="PATH", help="File holding the password.")
@sign_in_options
@click.option(
    "--calendar",
    default="followups",
    show_default=True,
    help="Calendar name or id; created if missing.",
)
@click.option("--calendar-url", help="Full calendar collection URL (skips discovery).")
@click.option("--server-kind", help="radicale, xandikos, davical, sogo or generic (quirk table).")
@click.option(
    "--import-new/--no-import-new",
    default=None,
    help="Import events created in the calendar as follow-ups.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option(
    "--full",
    is_flag=True,
    help="List the whole calendar instead of asking for changes since the last run.",
)
@click.option(
    "--force-delete", is_flag=True, help="Allow a pass that deletes many items or empties a side."
)
@database_option
def sync_command(
    config_path: str | None,
    account_name: str | None,
    url: str | None,
    username: str | None,
    password_env: str | None,
    password_file: str | None,
    calendar: str,
    calendar_url: str | None,
    server_kind: str | None,
    import_new: bool | None,
    dry_run: bool,
    full: bool,
    force_delete: bool,
    database: str | None,
    **sign_in: Any,
) -> None:
    """Reconcile the follow-ups with a CalDAV calendar, both ways.

    CRM changes are written to the calendar with conditional requests, so nothing a
    calendar user did in the meantime is overwritten blindly; what users did in their
    calendar clients (moved or cancelled occurrences, edits, deletions) comes back into
    the follow-ups. Conflicts follow the account's conflict_policy and are listed by
    'followup-sync conflicts'. With --dry-run nothing changes: the plan is printed.
    Exit status 1 when an item failed (it is retried next run) or the pass was stopped.
    """
    settings = load_settings(config_path) if config_path else Settings()
    if url:
        account = Account(
            name=account_name or "default",
            url=url,
            username=username,
            password_env=password_env,
            password_file=password_file,
            calendar=calendar,
            calendar_url=calendar_url,
            server_kind=server_kind,
        )
    else:
        account = settings.account(account_name)
    account = apply_sign_in(account, sign_in)
    if import_new is not None:
        account = account.model_copy(update={"import_new": import_new})
    db = open_database(settings, database)
    console = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if total < PROGRESS_THRESHOLD:
                return
            if task is None:
                task = bar.add_task(f"syncing {account.name}", total=total)
            bar.update(task, completed=done)

        with account_lock(db, account.name, dry_run=dry_run):
            report = run_pass(
                account,
                db,
                dry_run=dry_run,
                full=full,
                force_delete=force_delete,
                progress=progress,
            )
    print_report(report)
    if not report.ok:
        sys.exit(1)


@contextlib.contextmanager
def account_lock(db: Database, account: str, *, dry_run: bool) -> Iterator[None]:
    """Hold the account's cross-process lock for a pass (``sync.locks``); refuse if taken.

    Two passes on one account would each take the other's fresh writes for calendar
    edits. A dry run changes nothing and takes no lock.
    """
    if dry_run:
        yield
        return
    lock = cluster_lock_for(db.url)
    try:
        with lock.hold(account) as held:
            if held is None:
                holder = lock.holder(account) if isinstance(lock, SqliteFileLock) else None
                who = f" (pid {holder})" if holder else ""
                raise AccountBusy(
                    f"account {account!r} is being synced by another process{who}; "
                    "nothing was done: run again when that pass has finished"
                )
            yield
    finally:
        lock.close()


def print_report(report: PassReport) -> None:
    plan = report.plan
    if report.dry_run:
        click.echo(f"plan for {report.account} ({report.mode} listing, dry run: nothing changed)")
        for action in plan.actions:
            click.echo(f"  {describe(action)}")
        if not plan.actions:
            click.echo("  nothing to do")
    else:
        done = report.applied.done
        click.echo(
            f"{report.account}: {report.mode} sync, {report.requests} request(s); "
            f"calendar: {done.get('server create', 0)} created, "
            f"{done.get('server update', 0)} updated, "
            f"{done.get('server delete', 0)} deleted; "
            f"follow-ups: {done.get('crm create', 0)} created, "
            f"{done.get('crm update', 0)} updated, "
            f"{done.get('crm delete', 0) + done.get('crm detach', 0)} deleted/detached; "
            f"{report.applied.conflicts} conflict(s), {len(report.errors)} error(s)"
        )
    for item, reason in plan.skipped:
        click.echo(f"  skipped {item}: {reason}", err=True)
    for item, text in plan.notices:
        click.echo(f"  note {item}: {text}", err=True)
    for item, message in report.applied.notes:
        click.echo(f"  note {item}: {message}", err=True)
    for item, message in report.errors:
        click.echo(f"  error {item}: {message}", err=True)


@click.command("conflicts")
@click.option("--account", "account_name", metavar="NAME", help="Only this account.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_option
@config_option
def conflicts_command(
    account_name: str | None, as_json: bool, database: str | None, config_path: str | None
) -> None:
    """List conflicts: both sides changed the same part; the losing value is kept here."""
    settings = load_settings(config_path) if config_path else None
    db = open_database(settings, database, create=False)
    with db.session() as session:
        query = select(ConflictRecord).order_by(ConflictRecord.occurred_at)
        if account_name:
            query = query.where(ConflictRecord.account == account_name)
        rows = list(session.scalars(query))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "account": r.account,
                        "followup_id": r.followup_id,
                        "when": r.occurred_at.isoformat(),
                        "part": r.part,
                        "policy": r.policy,
                        "winner": r.winner,
                        "kept": r.kept_value,
                        "lost": r.lost_value,
                    }
                    for r in rows
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if not rows:
        click.echo("no conflicts")
        return
    table = Table("when", "account", "follow-up", "part", "winner", "lost value")
    for r in rows:
        table.add_row(
            r.occurred_at.strftime("%Y-%m-%d %H:%M"),
            r.account,
            r.followup_id,
            r.part,
            r.winner,
            json.dumps(r.lost_value, ensure_ascii=False)[:60],
        )
    Console().print(table)
