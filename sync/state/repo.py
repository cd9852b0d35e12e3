"""The one door to the sync tables: what the service knows of each calendar item and collection.

Every query on ``sync_items``, ``collections``, ``pending_hrefs`` and the conflict log is written
here, once, and called by the engine, the daemon, the dialog, the API and the CLI. Changing one of
those tables touches this module and its migration, nothing else. The follow-ups themselves (the CRM
side) are behind :mod:`sync.state.followups`; the change feed behind :mod:`sync.state.changes`.

Functions take the caller's ``Session``: the caller owns the transaction, so a pass can record an
item and its feed entry in one commit.
"""

from __future__ import annotations

# --- what one sync pass reads and records (the engine) -------------------------------------------


# (end of the engine's section)


# --- what the shells read and change (daemon, dialog, API, CLI) ----------------------------------
