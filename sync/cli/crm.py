"""``followup-sync crm reconcile``: one pass between each account's CRM and the store.

Accounts with an ``[accounts.NAME.crm]`` table only. The pass reads the CRM's changes into the
store and writes calendar edits (the feed's ``calendar`` entries) back to the CRM; the
``sync`` command then carries the store's changes to the calendars (docs/how-to/superoffice.md).

``followup-sync crm webhook register``: SuperOffice posts ``activity.*`` events to the daemon
(``sync.service.http``), so a CRM change reaches the calendars within seconds, not at the next
scheduled reconcile. SuperOffice calls the receiver once while registering: the daemon must run.
"""

from __future__ import annotations

import json

import click

from sync.cli.options import (
    account_option,
    config_option,
    database_option,
    open_database,
    settings_or_defaults,
)
from sync.crm.connect import connector_for
from sync.crm.reconcile import reconcile
from sync.crm.superoffice import webhooks
from sync.crm.superoffice.connector import client_for
from sync.errors import ConfigError


def register(group: click.Group) -> None:
    group.add_command(crm_group)


@click.group("crm")
def crm_group() -> None:
    """The CRM connector: follow-ups read from the CRM itself, calendar edits written back."""


@crm_group.command("reconcile")
@config_option
@account_option("Every enabled account with a crm table when left out.")
@database_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per account.")
def reconcile_command(
    config_path: str | None, account_name: str | None, database: str | None, as_json: bool
) -> None:
    """Run one reconcile pass per account between its CRM and the follow-up store."""
    settings = settings_or_defaults(config_path)
    accounts = [a for a in settings.accounts_to_sync(account_name) if a.crm is not None]
    if not accounts:
        raise ConfigError("no account has an [accounts.NAME.crm] table")
    db = open_database(settings, database)
    failed = False
    try:
        for account in accounts:
            connector = connector_for(account)
            try:
                report = reconcile(account, db, connector)
            finally:
                connector.close()
            failed = failed or not report.ok
            summary = {
                "account": account.name,
                "imported": report.imported,
                "deleted": report.deleted,
                "written": report.written,
                "conflicts": report.conflicts,
                "errors": report.errors,
            }
            if as_json:
                click.echo(json.dumps(summary))
            else:
                click.echo(
                    f"{account.name}: {len(report.imported)} imported, "
                    f"{len(report.deleted)} deleted, {len(report.written)} written back, "
                    f"{len(report.conflicts)} conflicts"
                    + (f", errors: {'; '.join(report.errors)}" if report.errors else "")
                )
    finally:
        db.close()
    if failed:
        raise SystemExit(1)


@crm_group.group("webhook")
def webhook_group() -> None:
    """SuperOffice webhooks: CRM changes reach the daemon within seconds."""


@webhook_group.command("register")
@config_option
@account_option("The only account with a crm table when left out.")
@click.option(
    "--daemon-url",
    required=True,
    metavar="URL",
    help="Where SuperOffice reaches the daemon's HTTP server (https://sync.example.com).",
)
def webhook_register_command(
    config_path: str | None, account_name: str | None, daemon_url: str
) -> None:
    """Register the daemon as the receiver of the account's activity.* webhooks."""
    settings = settings_or_defaults(config_path)
    accounts = [a for a in settings.accounts_to_sync(account_name) if a.crm is not None]
    if len(accounts) != 1:
        raise ConfigError("name one account with an [accounts.NAME.crm] table (--account)")
    account = accounts[0]
    assert account.crm is not None
    owner = f"account {account.name!r}"
    secret = account.crm.webhook_secret(owner)
    if secret is None:
        raise ConfigError(f"{owner}: set crm.webhook_secret_env or crm.webhook_secret_file first")
    target = daemon_url.rstrip("/") + webhooks.RECEIVER_PATH.format(account=account.name)
    with client_for(account.crm, owner) as client:
        saved = webhooks.register(
            client, name=f"followup-sync {account.name}", target_url=target, secret=secret
        )
    click.echo(f"{account.name}: webhook {saved.get('WebhookId')} registered for {target}")
