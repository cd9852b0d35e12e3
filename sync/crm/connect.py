"""The connector an account's ``[accounts.NAME.crm]`` table names, signed in and ready."""

from __future__ import annotations

import logging

from mappings.errors import FollowupSyncError
from sync.config import Account
from sync.crm.base import CrmConnector
from sync.crm.reconcile import ReconcileReport, reconcile
from sync.crm.superoffice.connector import open_connector
from sync.errors import ConfigError
from sync.state.db import Database

log = logging.getLogger(__name__)


def connector_for(account: Account) -> CrmConnector:
    """The account's CRM (``kind``); ConfigError when the account has no ``crm`` table."""
    if account.crm is None:
        raise ConfigError(f"account {account.name!r} has no [accounts.{account.name}.crm] table")
    # One kind today; another CRM adds its branch here and a module beside ``superoffice``.
    return open_connector(account.crm, f"account {account.name!r}")


def reconcile_account(account: Account, db: Database) -> ReconcileReport | None:
    """One reconcile pass for an account with a ``crm`` table (None without one).

    The daemon's scheduled reconciliation: it calls this before the engine's pass (CRM changes
    reach the calendars in the same round) and after it (calendar edits reach the CRM without
    waiting for the next interval). A failure is logged and in the report; it never stops the
    engine's pass.
    """
    if account.crm is None:
        return None
    try:
        connector = connector_for(account)
    except FollowupSyncError as exc:
        log.warning("account %s: CRM connector not available: %s", account.name, exc)
        return ReconcileReport(errors=[str(exc)])
    try:
        return reconcile(account, db, connector)
    finally:
        connector.close()
