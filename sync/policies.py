"""How an account settles what both sides did: the choices its config names.

``ConflictPolicy`` decides a part both sides changed; ``OnServerDelete`` what a calendar
deletion does to its follow-up; ``SyncDirection`` which sides a pass writes to (one-way
mode, ``sync.engine.direction``). They are the values of ``conflict_policy``,
``on_server_delete`` and ``direction`` in an account's table, so the config validates them,
and the engine (``sync.engine.merge``, ``sync.engine.plan``, ``sync.engine.direction``)
acts on them. They live on this floor, below
both, so the config can name them without importing the engine.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

__all__ = ["ConflictPolicy", "OnServerDelete", "SyncDirection"]

#: Which way an account syncs: both ways, or one way with the other side as the master.
SyncDirection = Literal["both", "to-calendar", "to-crm"]


class ConflictPolicy(StrEnum):
    crm_wins = "crm-wins"
    server_wins = "server-wins"
    newest_wins = "newest-wins"


class OnServerDelete(StrEnum):
    delete = "delete"  # the follow-up is deleted in the CRM too
    detach = "detach"  # the follow-up stays in the CRM, no longer linked to the calendar
