"""What the planner decides from: the two sides and the agreed state, as plain data.

The runner builds these from the database and the server (``sync.engine.runner``); the
planner (``sync.engine.plan``) reads them and nothing else, so a plan is a pure function of
them and can be tested without a server or a database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from mappings.model import FollowUp
from sync.state.followups import CrmEntry


@dataclass(frozen=True, slots=True)
class StateEntry:
    """What both sides agreed on for one follow-up at the end of the last pass."""

    followup_id: str
    uid: str
    href: str
    etag: str
    synced_hash: str
    #: Loaded only for items the server changed (the merge base); None otherwise.
    synced_document: FollowUp | None


@dataclass(frozen=True, slots=True)
class WriteIntent:
    """A server write recorded before its PUT and not recorded as done (see the docstring)."""

    followup_id: str
    href: str
    if_match: str | None  # None: a create
    document: FollowUp
    content_hash: str


@dataclass(frozen=True)
class ServerDoc:
    """A resource fetched this pass and read by the mapper."""

    href: str
    etag: str
    uid: str
    followups: tuple[
        FollowUp, ...
    ]  # the series itself first, then tails split off by THISANDFUTURE
    data: bytes
    modified: dt.datetime | None = None


@dataclass(frozen=True)
class ServerView:
    complete: bool  # True: ``etags`` holds every resource; False: only what changed since the token
    etags: Mapping[str, str]
    deleted: frozenset[str] = frozenset()
    docs: Mapping[str, ServerDoc] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)  # href -> why it could not be read


@dataclass(frozen=True)
class CrmView:
    entries: Mapping[
        str, CrmEntry
    ]  # every follow-up that belongs in this calendar (tombstones too)
    documents: Mapping[str, FollowUp]  # loaded for the entries that changed or are new
    uids: Mapping[str, str]  # uid -> follow-up id, for recognising our own resources


def listed_as_deleted(server: ServerView, href: str) -> bool:
    """Whether the listing says ``href`` is gone: absent from a full one, named by a delta."""
    if server.complete:
        return href not in server.etags
    return href in server.deleted
