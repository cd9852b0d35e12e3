"""``followup-sync crm reconcile``: one pass between each account's CRM and the store.

Accounts with an ``[accounts.NAME.crm]`` table only. The pass reads the CRM's changes into the
store and writes calendar edits (the feed's ``calendar`` entries) back to the CRM; the
``sync`` command then carries the store's changes to the calendars (docs/crm-connector.md).
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
