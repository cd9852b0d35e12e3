"""The planner's inputs as the database holds them, read a chunk at a time.

What a whole pass keeps is one small record per item (``StateEntry`` without its
document, ``CrmEntry`` by content hash); the documents a chunk decides with (the CRM's,
the agreed merge bases, the write intents a crashed pass left) are read when that chunk
is planned and released with it. Every query goes through ``sync.state.repo`` and
``sync.state.followups``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.config import Account
from sync.engine.views import CrmView, StateEntry, WriteIntent
from sync.state import followups as crm_store
from sync.state import intents, repo
from sync.state.db import Database, as_utc
from sync.state.followups import CrmEntry


class Inputs:
    """Reads what the planner needs for one account's pass."""

    def __init__(self, account: Account, db: Database) -> None:
        self.account = account
        self.db = db

    def state_entries(self) -> dict[str, StateEntry]:
        """Every recorded follow-up of the account, without the documents (read per chunk)."""
        with self.db.session() as session:
            return {
                row.followup_id: StateEntry(
                    row.followup_id, row.uid, row.href, row.etag, row.synced_hash, None
                )
                for row in repo.state_rows(session, self.account.name)
            }

    def state_entry(self, followup_id: str) -> StateEntry | None:
        with self.db.session() as session:
            row = repo.state_row(session, self.account.name, followup_id)
        if row is None:
            return None
        return StateEntry(row.followup_id, row.uid, row.href, row.etag, row.synced_hash, None)

    def synced_documents(self, ids: Collection[str]) -> dict[str, FollowUp]:
        """The agreed documents (merge bases) of some follow-ups: one chunk's at a time."""
        if not ids:
            return {}
        with self.db.session() as session:
            return repo.synced_documents(session, self.account.name, ids)

    def crm_view(self, state: Mapping[str, StateEntry]) -> CrmView:
        """Every follow-up that belongs in this calendar, by content hash: no documents.

        The documents of the follow-ups a chunk decides are loaded with that chunk.
        """
        account = self.account
        entries: dict[str, CrmEntry] = {}
        uids: dict[str, str] = {}
        with self.db.session() as session:
            detached = repo.detached_ids(session, account.name)
            for row in repo.followup_rows(session):
                if row.id in detached:
                    continue
                belongs = (
                    row.id in state
                    or row.origin_account == account.name
                    or (
                        row.origin_account is None
                        and account.selects(followup_id=row.id, owner=row.owner, kind=row.kind)
                    )
                )
                if not belongs:
                    continue
                entries[row.id] = CrmEntry(
                    row.id, row.content_hash, row.deleted, as_utc(row.updated_at), row.owner
                )
                uids[row.uid] = row.id
        return CrmView(entries, {}, uids)

    def chunk_documents(
        self, needed: Sequence[str], ids: Sequence[str], unreadable: dict[str, str]
    ) -> tuple[dict[str, FollowUp], dict[str, WriteIntent]]:
        """The CRM documents ``needed`` and the write intents of ``ids``, in one session.

        A document that no longer validates is reported in ``unreadable`` by id.
        """
        with self.db.session() as session:
            documents = crm_store.load_documents(session, needed, errors=unreadable)
            pending: dict[str, WriteIntent] = {}
            for row in intents.intents(session, self.account.name, ids):
                document = load_followup(row.document)
                pending[row.followup_id] = WriteIntent(
                    row.followup_id,
                    row.href,
                    row.if_match,
                    document,
                    crm_store.content_hash(document),
                )
        return documents, pending

    def current_documents(self, ids: Collection[str]) -> dict[str, FollowUp]:
        """The CRM's documents of some follow-ups, as they are now (a dry run's changes)."""
        with self.db.session() as session:
            return crm_store.load_documents(session, sorted(ids))

    def one_followup(self, followup_id: str) -> CrmView:
        """The CRM side of one follow-up, documents loaded: re-planning it after a 412."""
        with self.db.session() as session:
            entries = crm_store.crm_entries(session, [followup_id])
            documents = crm_store.load_documents(
                session, [i for i, e in entries.items() if not e.deleted]
            )
            uids = repo.followup_uids(session, followup_id)
        return CrmView(entries, documents, uids)
