"""Planning one pass in chunks, and the spill file that lets a pass be planned twice.

A pass never holds every series at once: ``Chunker`` cuts it into chunks planned (and
applied) one after another, each with its documents loaded (``plan_chunk``); ``Spill``
keeps what a counting sweep fetched for the sweep that applies, in a temporary file
instead of in memory.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import replace

from mappings.model import FollowUp
from sync.engine.actions import Plan
from sync.engine.inputs import Inputs
from sync.engine.plan import PlanOptions, plan_items
from sync.engine.views import CrmView, ServerDoc, ServerView, StateEntry, listed_as_deleted
from sync.stores.base import FetchError, Resource

log = logging.getLogger(__name__)


class Chunker:
    """Splits one pass into chunks planned (and applied) one after another.

    Built from the lightweight data of the whole pass: the listing (``server`` without
    docs), the state entries (without documents) and the CRM entries and UIDs (without
    documents), plus ``fetch``, the hrefs the pass fetches, in fetch order. Then:

    1. ``slices()``: ``fetch`` in slices of ``size`` (a multiple of the multiget batch, so
       the requests stay what they were). For each slice, ``claim(docs, failed)`` names
       the follow-ups to decide with those resources: the owner of each recorded href,
       and the new follow-up that adopts an unrecorded resource by UID. A resource
       nobody claims is decided with its slice by ``plan_items``'s second loop.
    2. ``rest()``: every other follow-up that has something to decide without a fetched
       resource (a CRM edit, create or delete; a deletion in the listing), sorted, in
       chunks of ``size``.

    Decided with ``plan_items`` one after another, the chunks give exactly the actions
    ``plan()`` gives for the whole pass (in another order): a follow-up is decided in one
    chunk only, with the resources ``plan()`` would pair it with, and CRM entries, UIDs,
    the listing and the state's hrefs stay global. The whole-pass safety rails are
    ``check_sides_not_empty`` on the same data, and ``check_deletions`` on the sum of the
    chunks' deletions; ``possible_deletions()`` tells when that sum cannot trip them.

    One difference, by construction: follow-ups sharing one UID are not all routed to the
    resource with that UID (``crm.uids`` names one of them); two such follow-ups could
    not both be recorded for one href anyway.
    """

    def __init__(
        self,
        crm: CrmView,
        server: ServerView,
        state: Mapping[str, StateEntry],
        fetch: Sequence[str],
        *,
        size: int,
        batch: int = 1,
        by_href: Mapping[str, StateEntry] | None = None,
    ) -> None:
        if size < 1 or batch < 1:
            raise ValueError("chunk and batch sizes must be at least 1")
        self.crm = crm
        self.server = server
        self.state = state
        self.fetch = fetch
        self.size = size
        #: Slices of ``fetch`` are whole multiget batches.
        self.slice_size = -(-size // batch) * batch
        #: href -> state entry, for every recorded follow-up (``by_href``, if the caller has it).
        self.by_href: Mapping[str, StateEntry] = (
            by_href if by_href is not None else {entry.href: entry for entry in state.values()}
        )
        self.handled: set[str] = set()
        self._undecided = [i for i in sorted(set(state) | set(crm.entries)) if self._to_decide(i)]
        self._undecided_set = set(self._undecided)
        self._fetch_left = len(fetch)
        self._undecided_left = len(self._undecided)

    def _to_decide(self, followup_id: str) -> bool:
        """Whether a follow-up has anything to decide when the server sent nothing for it."""
        entry = self.crm.entries.get(followup_id)
        known = self.state.get(followup_id)
        if known is None:
            return entry is not None and not entry.deleted
        return (
            entry is None
            or entry.deleted
            or entry.content_hash != known.synced_hash
            or listed_as_deleted(self.server, known.href)
        )

    def slices(self) -> Iterator[Sequence[str]]:
        for start in range(0, len(self.fetch), self.slice_size):
            hrefs = self.fetch[start : start + self.slice_size]
            self._fetch_left -= len(hrefs)
            yield hrefs

    def claim(self, docs: Mapping[str, ServerDoc], failed: Collection[str]) -> list[str]:
        """The follow-ups to decide with one slice's resources (each only once a pass)."""
        ids: set[str] = set()
        for href in [*docs, *failed]:
            known = self.by_href.get(href)
            if known is not None:
                ids.add(known.followup_id)
        for href, doc in docs.items():
            if href in self.by_href:
                continue
            owner = self.crm.uids.get(doc.uid)
            entry = self.crm.entries.get(owner) if owner is not None else None
            if owner is not None and owner not in self.state and entry and not entry.deleted:
                ids.add(owner)
        claimed = sorted(ids - self.handled)
        self.handled.update(claimed)
        self._undecided_left -= sum(1 for i in claimed if i in self._undecided_set)
        return claimed

    def rest(self) -> Iterator[list[str]]:
        """What is left after the slices, in chunks; call after every slice was claimed."""
        chunk: list[str] = []
        for followup_id in self._undecided:
            if followup_id in self.handled:
                continue
            chunk.append(followup_id)
            if len(chunk) == self.size:
                self._undecided_left -= len(chunk)
                yield chunk
                chunk = []
        if chunk:
            self._undecided_left -= len(chunk)
            yield chunk

    def left(self) -> int:
        """Items not yet handed out: hrefs still to fetch plus follow-ups still undecided."""
        return self._fetch_left + self._undecided_left

    def possible_deletions(self) -> int:
        """At least as many as the deletions the whole pass can plan (no document needed).

        Only a recorded follow-up deleted in the CRM, one the listing reports deleted, or
        an unrecorded resource whose UID belongs to a deleted follow-up plans a deletion,
        and each at most one.
        """
        count = 0
        for followup_id, known in self.state.items():
            entry = self.crm.entries.get(followup_id)
            if entry is None or entry.deleted or listed_as_deleted(self.server, known.href):
                count += 1
        if any(entry.deleted for entry in self.crm.entries.values()):
            count += sum(1 for href in self.fetch if href not in self.by_href)
        return count


def plan_chunk(
    chunks: Chunker,
    inputs: Inputs,
    options: PlanOptions,
    ids: list[str],
    docs: dict[str, ServerDoc],
    failed: dict[str, str],
    synced_docs: dict[str, FollowUp],
    adjust: Callable[[Plan, Mapping[str, ServerDoc]], Plan],
) -> Plan:
    """``plan_items`` for one chunk, with its documents loaded from the database.

    ``adjust`` rewrites the decided plan with the chunk's fetched resources (the account's
    one-way mode, ``sync.engine.direction``).
    """
    state = chunks.state
    entries = chunks.crm.entries
    chunk_state: dict[str, StateEntry] = {}
    for followup_id in ids:
        known = state.get(followup_id)
        if known is not None:
            base = synced_docs.get(followup_id)
            chunk_state[followup_id] = (
                known if base is None else replace(known, synced_document=base)
            )
    needed = [
        followup_id
        for followup_id in ids
        if (entry := entries.get(followup_id)) is not None
        and not entry.deleted
        and (followup_id not in state or state[followup_id].synced_hash != entry.content_hash)
    ]
    unreadable: dict[str, str] = {}
    documents, intents = inputs.chunk_documents(needed, ids, unreadable)
    ids = [followup_id for followup_id in ids if followup_id not in unreadable]
    missing = {
        followup_id
        for followup_id in needed
        if followup_id not in documents and followup_id not in unreadable
    }
    if missing:
        # Purged since the pass listed the CRM (another account's pass finished its
        # delete): nothing to decide now; the next pass sees what is left.
        log.info("%s: %d follow-up(s) vanished during the pass", inputs.account.name, len(missing))
        ids = [followup_id for followup_id in ids if followup_id not in missing]
    crm = CrmView(entries, documents, chunks.crm.uids)
    server = ServerView(
        chunks.server.complete, chunks.server.etags, chunks.server.deleted, docs, failed
    )
    decided = plan_items(
        crm,
        server,
        chunk_state,
        options,
        ids=ids,
        synced_hrefs=chunks.by_href,
        pending=intents,
    )
    decided = adjust(decided, docs)
    return replace(decided, failed=decided.failed + tuple(sorted(unreadable.items())))


class Spill:
    """Fetched resources kept in an anonymous temporary file, slice by slice.

    Used when a pass is planned twice (a possible mass deletion is counted before the
    first write): the second sweep reads what the first fetched, without a request and
    without holding every resource in memory. The file is private to this process
    (mode 0600, unlinked at once) and gone when closed.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - open across sweeps; close()
        self._slices: list[list[tuple[str, str, int, int] | FetchError]] = []

    def put(self, results: Sequence[Resource | FetchError]) -> None:
        entries: list[tuple[str, str, int, int] | FetchError] = []
        for result in results:
            if isinstance(result, FetchError):
                entries.append(result)
                continue
            offset = self._file.seek(0, 2)
            self._file.write(result.data)
            entries.append((result.href, result.etag, offset, len(result.data)))
        self._slices.append(entries)

    def take(self, index: int) -> list[Resource | FetchError]:
        entries, self._slices[index] = self._slices[index], []
        results: list[Resource | FetchError] = []
        for entry in entries:
            if isinstance(entry, FetchError):
                results.append(entry)
                continue
            href, etag, offset, length = entry
            self._file.seek(offset)
            results.append(Resource(href, etag, self._file.read(length)))
        return results

    def close(self) -> None:
        self._file.close()
