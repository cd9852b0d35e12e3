"""Service commands: ``daemon``, ``status``, ``db upgrade``/``db current``, ``config check``.

They take the same ``--config`` and ``--database`` as the sync commands (cli_sync). The
daemon never migrates the database itself: ``db upgrade`` does, once, and the daemon
refuses to start on an older schema, so several daemons sharing one PostgreSQL database
never race to migrate it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from importlib import resources
from types import FrameType

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from sync import webhooks
from sync.cli.options import config_option, database_option
from sync.config import SYSTEM_CONFIG, Account, Settings, load_settings, user_config
from sync.errors import ConfigError, FollowupSyncError, NotFound, network_failure
from sync.extras import MissingExtra
from sync.logs import configure_logging
from sync.service.daemon import Daemon
from sync.state import repo
from sync.state.db import Database, as_utc, database_url, utcnow
from sync.state.schema import check_current, current_revision, head_revision, upgrade
from sync.stores.connect import check_sign_in, open_calendar

log = logging.getLogger(__name__)


def register(group: click.Group) -> None:
    for command in (daemon_command, health_command, status_command, db_group, config_group):
        group.add_command(command)


def _settings(config_path: str | None, *, required: bool = False) -> Settings:
    """The settings of a service command, from the file or from the environment alone.

    Unlike ``open_settings``, without a file the ``FOLLOWUP_SYNC_…`` environment still
    configures it (a container needs no file); with ``required`` a file must be found.
    """
    if config_path is None:
        if required:
            raise ConfigError(
                "no config file found: give --config FILE, set FOLLOWUP_SYNC_CONFIG, or "
                f"create {user_config()} or {SYSTEM_CONFIG}"
            )
        return load_settings(None)
    return load_settings(config_path)


def _database(settings: Settings, database: str | None, *, create: bool = False) -> Database:
    """Open without migrating: these commands must see the schema as it is.

    Only ``db upgrade`` may ``create`` a SQLite file that does not exist yet.
    """
    return Database(database_url(settings.database_location(database)), create=create)


# --- daemon -------------------------------------------------------------------------------------


@click.command(
    "daemon",
    epilog=(
        "\b\nExamples:\n"
        "  followup-sync db upgrade --config /etc/followup-sync/config.toml\n"
        "  followup-sync daemon --config /etc/followup-sync/config.toml\n"
        "  curl http://127.0.0.1:8484/metrics"
    ),
)
@config_option
@database_option
@click.option("--http-port", type=int, help="Override [daemon] http_port (0 turns HTTP off).")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), help="Override [daemon] log_format."
)
def daemon_command(
    config_path: str | None, database: str | None, http_port: int | None, log_format: str | None
) -> None:
    """Run every configured account on its schedule until SIGTERM or SIGINT.

    Each account is reconciled every interval_seconds (plus jitter), fully every
    full_every intervals, and within seconds of a CRM change. Health, readiness and
    Prometheus metrics are served on [daemon] http_host:http_port. On SIGTERM passes
    in flight finish their current item and the process exits 0. With [mail], the
    invitations a pass recorded are sent right after it; with [mail.imap], replies are
    read every poll_seconds.
    """
    settings = _settings(config_path, required=True)
    overrides: dict[str, object] = {}
    if http_port is not None:
        overrides["http_port"] = http_port
    if log_format is not None:
        overrides["log_format"] = log_format
    if overrides:
        settings = settings.model_copy(
            update={"daemon": settings.daemon.model_copy(update=overrides)}
        )
    ds = settings.daemon
    if ds.http_port:
        try:  # optional extra: api
            from sync.service.http import HttpServer, create_service_app
        except ImportError as exc:
            raise MissingExtra(
                "api", "the daemon's health, readiness and metrics endpoints "
                "([daemon] http_port = 0 runs it without them)", exc,
            ) from None  # fmt: skip
    configure_logging(ds.log_format.value, ds.log_level)
    if not any(a.enabled for a in settings.accounts.values()):
        raise ConfigError("no enabled account in the config: nothing to run")
    for account in settings.accounts.values():
        if account.enabled:
            check_sign_in(account)  # a missing secret is a start-up error, not one every interval
    db = _database(settings, database)
    check_current(db)
    daemon = Daemon(settings, db)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if received:
            # A second signal: the operator does not want to wait for the items in flight.
            os._exit(128 + signum)
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    http: HttpServer | None = None
    daemon.start()
    try:
        if ds.http_port:
            http = HttpServer(
                create_service_app(daemon),
                ds.http_host,
                ds.http_port,
                read_timeout=ds.http_read_timeout_seconds,
            )
            try:
                http.start()
            except RuntimeError as exc:
                raise ConfigError(f"[daemon] http {ds.http_host}:{ds.http_port}: {exc}") from None
            log.info("HTTP on http://%s:%d (/healthz /readyz /metrics)", ds.http_host, ds.http_port)
        while not stop.wait(1.0):
            pass
        log.info(
            "signal %s received: finishing the items in flight", signal.Signals(received[0]).name
        )
    finally:
        finished = daemon.stop()
        if http is not None:
            http.stop()
        db.close()
    if not finished:
        # A pass stuck in a network call past shutdown_timeout_seconds: its worker thread
        # would keep the interpreter alive. Every item is committed on its own, so leaving
        # now loses at most the record of the write in flight, which the next pass adopts.
        logging.shutdown()
        os._exit(0)


# --- status ------------------------------------------------------------------------------------


@dataclass
class AccountStatus:
    account: str
    last_run: dt.datetime | None
    last_success: dt.datetime | None
    result: str | None
    next_run: dt.datetime | None
    conflicts: int
    failures: int


def collect_status(settings: Settings, db: Database) -> list[AccountStatus]:
    with db.session() as session:
        states = repo.collection_states(session)
        conflicts = repo.conflict_counts(session)
    names = list(settings.accounts) or sorted(states)
    rows = []
    for name in names:
        state = states.get(name)
        rows.append(
            AccountStatus(
                account=name,
                last_run=as_utc(state.last_run_at) if state and state.last_run_at else None,
                last_success=as_utc(state.last_success_at)
                if state and state.last_success_at
                else None,
                result=state.last_result if state else "never run",
                next_run=as_utc(state.next_run_at) if state and state.next_run_at else None,
                conflicts=int(conflicts.get(name, 0)),
                failures=(state.consecutive_failures or 0) if state else 0,
            )
        )
    return rows


def _when(value: dt.datetime | None, now: dt.datetime) -> str:
    if value is None:
        return "-"
    seconds = (value - now).total_seconds()
    local = value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    span = abs(seconds)
    ago = (
        f"{span:.0f} s"
        if span < 120
        else (f"{span / 60:.0f} min" if span < 7200 else f"{span / 3600:.1f} h")
    )
    return f"{local} ({'in ' + ago if seconds > 0 else ago + ' ago'})"


@click.command("status")
@config_option
@database_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_command(config_path: str | None, database: str | None, as_json: bool) -> None:
    """Per account: last run, its result, next run, and recorded conflicts.

    Reads the state database the daemon writes, so it works from any machine that can
    reach the database. Exit status 1 when an account's last pass failed.
    """
    settings = _settings(config_path)
    db = Database.open(settings.database_location(database), create=False)
    rows = collect_status(settings, db)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "account": r.account,
                        "last_run": r.last_run.isoformat() if r.last_run else None,
                        "last_success": r.last_success.isoformat() if r.last_success else None,
                        "result": r.result,
                        "next_run": r.next_run.isoformat() if r.next_run else None,
                        "conflicts": r.conflicts,
                        "consecutive_failures": r.failures,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
    else:
        now = utcnow()
        table = Table("account", "last run", "result", "next run", "conflicts")
        for r in rows:
            style = "red" if r.failures else None
            table.add_row(
                r.account,
                _when(r.last_run, now),
                r.result or "-",
                _when(r.next_run, now),
                str(r.conflicts),
                style=style,
            )
        Console(width=160).print(table)
        _print_webhooks(db)
    if any(r.failures for r in rows):
        sys.exit(1)


# --- health ---------------------------------------------------------------------------------------

#: Where to reach a daemon listening on every address of a family.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}


@click.command(
    "health",
    epilog=(
        "\b\nExamples:\n  followup-sync health\n"
        "  followup-sync health --ready --config /etc/followup-sync/config.toml"
    ),
)
@config_option
@click.option("--ready", is_flag=True, help="Ask /readyz (database, schema, scheduler) instead.")
@click.option("--timeout", type=float, default=4.0, show_default=True, help="Seconds to wait.")
def health_command(config_path: str | None, ready: bool, timeout: float) -> None:
    """Ask the running daemon whether it is alive (/healthz) or ready (/readyz).

    For container health checks and monitors: the address comes from the config's
    [daemon] http_host and http_port (and their FOLLOWUP_SYNC_DAEMON__… overrides), so a
    health check never repeats the port. Exit 0 when the daemon answers 200, else 1.
    """
    daemon = _settings(config_path, required=True).daemon
    if not daemon.http_port:
        raise ConfigError("[daemon] http_port is 0: the daemon serves no HTTP to ask")
    host = _LOOPBACK.get(daemon.http_host, daemon.http_host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    url = f"http://{host}:{daemon.http_port}/{'readyz' if ready else 'healthz'}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            status = int(reply.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        click.echo(f"{url}: {network_failure(exc)}", err=True)
        sys.exit(1)
    click.echo(f"{url}: {status}")
    if status != 200:
        sys.exit(1)


def _print_webhooks(db: Database) -> None:
    """One line per webhook subscription that is paused or failing (sync.webhooks)."""
    try:
        with db.session() as session:
            rows = webhooks.subscriptions(session)
    except SQLAlchemyError:  # a database from before webhooks existed: nothing to show
        return
    for row in rows:
        if row.paused:
            click.echo(
                f"webhook {row.id}: PAUSED after {row.failures} failures ({row.last_error}); "
                f"POST /v1/webhooks/{row.id}/resume when {row.url} works again"
            )
        elif row.failures:
            click.echo(f"webhook {row.id}: failing ({row.failures}x: {row.last_error})")


# --- db ------------------------------------------------------------------------------------------


@click.group("db")
def db_group() -> None:
    """The state database's schema (Alembic migrations shipped in the package)."""


@db_group.command(
    "upgrade", epilog="\b\nExample:\n  followup-sync db upgrade --database postgresql+psycopg://…"
)
@config_option
@database_option
def db_upgrade_command(config_path: str | None, database: str | None) -> None:
    """Create the tables or apply pending migrations. Safe to run again."""
    settings = _settings(config_path)
    db = _database(settings, database, create=True)
    before, after = upgrade(db)
    if before == after:
        click.echo(f"database is current (revision {after})")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to revision {after}")


@db_group.command("current")
@config_option
@database_option
def db_current_command(config_path: str | None, database: str | None) -> None:
    """Show the schema revision; exit 1 when it is not the one this version needs."""
    settings = _settings(config_path)
    db = _database(settings, database)
    current = current_revision(db)
    head = head_revision()
    click.echo(f"database revision: {current or 'none'}; this version needs: {head}")
    if current != head:
        sys.exit(1)


# --- config check ------------------------------------------------------------------------------


@click.group("config")
def config_group() -> None:
    """Check a configuration file, or print the example one."""


@dataclass
class CheckResult:
    account: str
    login: str
    calendar: str
    sync_token: str
    scheduling: str
    ok: bool


def check_account(account: Account) -> CheckResult:
    """Log in, find the calendar (never create it), read what the server supports."""
    name = account.name
    try:
        calendar = open_calendar(account, create=False)
    except ConfigError as exc:
        return CheckResult(name, f"not configured: {exc}", "-", "-", "-", False)
    except NotFound:
        # Discovery got as far as the calendar home, so the login works; the first sync
        # creates a missing calendar (make_calendar), which is what a new account needs.
        return CheckResult(
            name, "ok", f"{account.calendar!r} not there yet: the first sync creates it",
            "-", "-", True,
        )  # fmt: skip
    except FollowupSyncError as exc:
        text = str(exc)
        login = "refused" if "401" in text or "Unauthorized" in text or "403" in text else "?"
        return CheckResult(name, login, f"failed: {text}"[:120], "-", "-", False)
    with calendar:
        try:
            token = calendar.sync_token()
        except FollowupSyncError as exc:
            return CheckResult(name, "ok", f"failed: {exc}"[:120], "-", "-", False)
        caps = calendar.capabilities
        sync_token = (
            ("yes" if caps.sync_token_trustworthy else "yes (unreliable: full passes heal)")
            if token
            else "no (ETag listing)"
        )
        try:
            scheduling = "yes (server)" if calendar._client.check_scheduling_support() else "no"
        except Exception as exc:
            scheduling = f"unknown ({exc.__class__.__name__})"
        return CheckResult(name, "ok", calendar.url, sync_token, scheduling, True)


@config_group.command(
    "example",
    epilog="\b\nExample:\n  followup-sync config example > ~/.config/followup-sync/config.toml",
)
def config_example_command() -> None:
    """Print the example config: every key, with what it does and its default.

    Copy it to one of the places 'sync' looks (see 'sync --help', --config), fill in
    the accounts, and run 'followup-sync config check'.
    """
    example = resources.files("sync").joinpath("examples", "config.example.toml")
    click.echo(example.read_text(encoding="utf-8"), nl=False)


@config_group.command(
    "check",
    epilog="\b\nExample:\n  followup-sync config check --config /etc/followup-sync/config.toml",
)
@config_option
@click.option("--offline", is_flag=True, help="Validate the file only; contact no server.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_check_command(config_path: str | None, offline: bool, as_json: bool) -> None:
    """Validate the config, then try each account: login, calendar, capabilities.

    The calendar is looked up, never created. Exit status 2 for an invalid file, 1 when
    an account cannot be reached or its calendar is missing.
    """
    settings = _settings(config_path, required=True)
    checked = not offline and bool(settings.accounts)
    results = [check_account(a) for a in settings.accounts.values()] if checked else []
    if as_json:
        summary = {
            "config": config_path,
            "valid": True,
            "accounts": list(settings.accounts),
            "checked": [asdict(r) for r in results],
            "ok": all(r.ok for r in results),
        }
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        if not summary["ok"]:
            sys.exit(1)
        return
    click.echo(f"{config_path}: valid, {len(settings.accounts)} account(s)")
    if not checked:
        return
    table = Table("account", "login", "calendar", "sync-token", "scheduling", "result")
    for r in results:
        table.add_row(
            r.account,
            r.login,
            r.calendar,
            r.sync_token,
            r.scheduling,
            "[green]ok[/green]" if r.ok else "[red]FAILED[/red]",
        )
    Console(width=200).print(table)
    if not all(r.ok for r in results):
        sys.exit(1)
