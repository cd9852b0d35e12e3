"""The one door to the sync tables: what the service knows of each calendar item and collection.

Every query on ``sync_items``, ``collections``, ``pending_hrefs`` and the conflict log is written
here, once, and called by the engine, the daemon, the dialog, the API and the CLI. Changing one of
those tables touches this module and its migration, nothing else. The follow-ups themselves (the CRM
side) are behind :mod:`sync.state.followups`; the change feed behind :mod:`sync.state.changes`.

Functions take the caller's ``Session``: the caller owns the transaction, so a pass can record an
item and its feed entry in one commit.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.state.db import SyncItem

#: Rows read per round trip when a query covers many follow-ups.
_ROWS = 500

# --- what one sync pass reads and records (the engine) -------------------------------------------


# (end of the engine's section)


# --- what the shells read and change (daemon, dialog, API, CLI) ----------------------------------


def agreed_versions(
    session: Session, account: str, followup_ids: Collection[str]
) -> dict[str, tuple[dict[str, Any], bytes]]:
    """What both sides agreed on for some follow-ups: the document and the calendar's bytes.

    In one-way mode to the CRM (``sync.engine.direction``) a CRM edit of an item the
    calendar did not change is undone with this: it is the calendar's current version.
    """
    found: dict[str, tuple[dict[str, Any], bytes]] = {}
    wanted = sorted(followup_ids)
    for start in range(0, len(wanted), _ROWS):
        rows = session.execute(
            select(SyncItem.followup_id, SyncItem.synced_document, SyncItem.server_data).where(
                SyncItem.account == account,
                SyncItem.detached.is_(False),
                SyncItem.followup_id.in_(wanted[start : start + _ROWS]),
            )
        )
        for row in rows:
            found[row.followup_id] = (dict(row.synced_document), bytes(row.server_data))
    return found
