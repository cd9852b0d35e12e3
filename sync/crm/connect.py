"""The connector an account's ``[accounts.NAME.crm]`` table names, signed in and ready."""

from __future__ import annotations

from sync.config import Account
from sync.crm.base import CrmConnector
from sync.crm.superoffice.connector import open_connector
from sync.errors import ConfigError


def connector_for(account: Account) -> CrmConnector:
    """The account's CRM (``kind``); ConfigError when the account has no ``crm`` table."""
    if account.crm is None:
        raise ConfigError(f"account {account.name!r} has no [accounts.{account.name}.crm] table")
    # One kind today; another CRM adds its branch here and a module beside ``superoffice``.
    return open_connector(account.crm, f"account {account.name!r}")
