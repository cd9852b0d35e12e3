"""Store and sync commands: ``import``, ``export``, ``sync``, ``conflicts``.

They share where the state lives (``--database``, default ``followup-sync.sqlite`` or
``$FOLLOWUP_SYNC_DATABASE``) and which accounts to use: from a config file (TOML, see
``config/followup-sync.example.toml``; ``--config``, else the first of
``sync.config.config_search_path``), every enabled account unless ``--account NAME``
narrows it, or one given directly with ``--url`` and friends for a one-off run
(``sync.cli.signin`` adds the sign-in and TLS flags). Passwords come from an environment
variable, a file or a command, never from the command line, where ``ps`` would show them.

A dry run works on ``sync.state.rehearsal``'s throw-away copy of the database and never
creates the calendar, so it changes nothing anywhere; it says what it would create.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from typing import IO, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mappings.documents import dump_followups_json, load_followups_json
from mappings.errors import FollowupSyncError
from sync.cli.options import (
    account_option,
    config_option,
    database_option,
    open_database,
    open_settings,
    settings_or_defaults,
)
from sync.cli.signin import apply_sign_in, sign_in_options
from sync.config import DEFAULT_CALENDAR, Account
from sync.engine.actions import describe
from sync.errors import AccountBusy
from sync.policies import ConflictPolicy, OnServerDelete
from sync.run import PassReport, run_pass
from sync.state import repo
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.state.locks import SqliteFileLock, cluster_lock_for
from sync.state.rehearsal import rehearsal_database

log = logging.getLogger(__name__)

#: Show a progress bar only when a pass has this many actions; small runs stay quiet.
PROGRESS_THRESHOLD = 20


def register(group: click.Group) -> None:
    for command in (import_command, export_command, sync_command, conflicts_command):
        group.add_command(command)


@click.command(
    "import",
    epilog="\b\nExample:\n  followup-sync import examples/followups.json",
)
@click.argument("file", type=click.File("rb"), metavar="FILE|-")
@database_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def import_command(
    file: IO[bytes], database: str | None, config_path: str | None, as_json: bool
) -> None:
    """Store the follow-ups of FILE (the mapper's JSON document) in the database.

    New ids are created, known ones replaced; the next 'sync' takes the changes to the
    calendar. The whole file is checked first: one invalid follow-up stores nothing.
    """
    followups = load_followups_json(file.read())
    db = open_database(open_settings(config_path), database)
    result = FollowUpStore(db).import_followups(followups)
    if as_json:
        summary = {
            "imported": len(followups),
            "created": sorted(result.created),
            "updated": sorted(result.updated),
            "unchanged": sorted(result.unchanged),
        }
        click.echo(json.dumps(summary, indent=2))
        return
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
    db = open_database(open_settings(config_path), database, create=False)
    followups = FollowUpStore(db).all()
    if ids:
        followups = [f for f in followups if f.id in set(ids)]
    click.echo(dump_followups_json(followups))


@click.command(
    "sync",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync sync                      # every account of the config found\n"
        "  followup-sync sync --account alice --dry-run\n"
        "  followup-sync sync --config config/followup-sync.toml --json\n"
        "  ALICE_PW=secret followup-sync sync --url http://127.0.0.1:5232/ \\\n"
        "      --username alice --password-env ALICE_PW\n"
        "\b\n"
        "Per account in the config, or these flags for every account synced:\n"
        "  conflict_policy   crm-wins | server-wins | newest-wins (--conflict-policy)\n"
        "  on_server_delete  delete | detach (--on-server-delete)\n"
        "  import_new        true | false (--import-new/--no-import-new)"
    ),
)
@config_option
@account_option("Only this account of the config (default: every enabled one).")
@click.option("--url", help="CalDAV server URL (instead of a config file).")
@click.option("--username", help="CalDAV user name.")
@click.option("--password-env", metavar="VAR", help="Environment variable holding the password.")
@click.option("--password-file", metavar="PATH", help="File holding the password.")
@sign_in_options
@click.option(
    "--calendar",
    help=f"Calendar name or id; created if missing. Default: {DEFAULT_CALENDAR}.",
)
@click.option("--calendar-url", help="Full calendar collection URL (skips discovery).")
@click.option("--server-kind", help="radicale, xandikos, davical, sogo or generic (quirk table).")
@click.option(
    "--import-new/--no-import-new",
    default=None,
    help="Import events created in the calendar as follow-ups.",
)
@click.option(
    "--conflict-policy",
    type=click.Choice([p.value for p in ConflictPolicy]),
    help="Who wins when both sides changed the same part (config: conflict_policy).",
)
@click.option(
    "--on-server-delete",
    type=click.Choice([p.value for p in OnServerDelete]),
    help="A calendar item deleted by a user deletes its follow-up, or only unlinks it "
    "(config: on_server_delete).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan and change nothing: not the calendar, not the database.",
)
@click.option(
    "--full",
    is_flag=True,
    help="List the whole calendar instead of asking for changes since the last run.",
)
@click.option(
    "--force-delete", is_flag=True, help="Allow a pass that deletes many items or empties a side."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, one object.")
@database_option
def sync_command(
    config_path: str | None,
    account_name: str | None,
    url: str | None,
    username: str | None,
    password_env: str | None,
    password_file: str | None,
    calendar: str | None,
    calendar_url: str | None,
    server_kind: str | None,
    import_new: bool | None,
    conflict_policy: str | None,
    on_server_delete: str | None,
    dry_run: bool,
    full: bool,
    force_delete: bool,
    as_json: bool,
    database: str | None,
    **sign_in: Any,
) -> None:
    """Reconcile the follow-ups with CalDAV calendars, both ways.

    CRM changes are written to the calendar with conditional requests, so nothing a
    calendar user did in the meantime is overwritten blindly; what users did in their
    calendar clients (moved or cancelled occurrences, edits, deletions) comes back into
    the follow-ups. Conflicts follow the account's conflict_policy and are listed by
    'followup-sync conflicts'. Every enabled account of the config is synced in turn,
    unless --account names one; an account that fails does not stop the others.

    With --dry-run nothing changes anywhere (no calendar is created, the database is
    not written or created): the plan is printed, action by action. Exit status 1 when
    an account or an item failed (it is retried next run) or a pass was stopped.
    """
    settings = settings_or_defaults(config_path)
    if url:
        accounts = [
            Account(
                name=account_name or "default",
                url=url,
                username=username,
                password_env=password_env,
                password_file=password_file,
                calendar=calendar or DEFAULT_CALENDAR,
                calendar_url=calendar_url,
                server_kind=server_kind,
            )
        ]
    else:
        accounts = settings.accounts_to_sync(account_name)
    accounts = [apply_sign_in(account, sign_in) for account in accounts]
    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("import_new", import_new),
            ("conflict_policy", conflict_policy),
            ("on_server_delete", on_server_delete),
        )
        if value is not None
    }
    if overrides:
        accounts = [Account.model_validate({**a.model_dump(), **overrides}) for a in accounts]
    outcomes: list[PassReport | tuple[str, str]] = []
    if dry_run:
        with rehearsal_database(settings.database_location(database)) as db:
            outcomes = [_run_one(a, db, dry_run=True, full=full, force_delete=force_delete)
                        for a in accounts]  # fmt: skip
    else:
        db = open_database(settings, database)
        outcomes = [
            _run_one(a, db, dry_run=False, full=full, force_delete=force_delete) for a in accounts
        ]
    if as_json:
        click.echo(json.dumps([_outcome_json(o) for o in outcomes], indent=2, ensure_ascii=False))
    else:
        for outcome in outcomes:
            if isinstance(outcome, PassReport):
                print_report(outcome)
            else:
                click.echo(f"error: {outcome[0]}: {outcome[1]}", err=True)
    if not all(isinstance(o, PassReport) and o.ok for o in outcomes):
        sys.exit(1)


def _run_one(
    account: Account, db: Database, *, dry_run: bool, full: bool, force_delete: bool
) -> PassReport | tuple[str, str]:
    """One account's pass; a failure is (account, message), so the next account still runs."""
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

        try:
            with account_lock(db, account.name, dry_run=dry_run):
                return run_pass(
                    account,
                    db,
                    dry_run=dry_run,
                    full=full,
                    force_delete=force_delete,
                    progress=progress,
                )
        except FollowupSyncError as exc:
            log.debug("%s: pass failed", account.name, exc_info=True)
            return (account.name, str(exc))


def _outcome_json(outcome: PassReport | tuple[str, str]) -> dict[str, Any]:
    if not isinstance(outcome, PassReport):
        return {"account": outcome[0], "ok": False, "error": outcome[1]}
    report = outcome
    return {
        "account": report.account,
        "ok": report.ok,
        "dry_run": report.dry_run,
        "mode": report.mode,
        "requests": report.requests,
        "calendar_to_create": report.calendar_to_create,
        "actions": [action.as_json() for action in report.plan.actions],
        "done": dict(report.applied.done),
        "conflicts": report.applied.conflicts,
        "skipped": [{"item": item, "reason": reason} for item, reason in report.plan.skipped],
        "errors": [{"item": item, "message": message} for item, message in report.errors],
    }


@contextlib.contextmanager
def account_lock(db: Database, account: str, *, dry_run: bool) -> Iterator[None]:
    """Hold the account's cross-process lock for a pass (``sync.state.locks``); refuse if taken.

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
        if report.calendar_to_create:
            click.echo(f"  create the calendar {report.calendar_to_create}")
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
@account_option("Only this account.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_option
@config_option
def conflicts_command(
    account_name: str | None, as_json: bool, database: str | None, config_path: str | None
) -> None:
    """List conflicts: both sides changed the same part; the losing value is kept here."""
    db = open_database(open_settings(config_path), database, create=False)
    with db.session() as session:
        rows = repo.conflicts_oldest_first(session, account_name)
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
