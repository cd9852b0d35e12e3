"""Write intents (``pending_writes``): a server write announced before its PUT.

Crash safety: before the first PUT of a chunk, one transaction records, for every server
write the chunk plans, the document it puts on the server and the ETag it is conditional
on; the transaction that records a write removes its intent (``sync.engine.apply``). An
intent a dead pass left tells the next one what the resource holds if the write landed
(``sync.engine.plan``, "Pending writes"). Functions take the caller's ``Session``: an
intent is cleared in the same transaction that records its write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from sync.state.rows import PendingWrite, as_utc

#: Intents read per round trip.
_ROWS = 500


def add_intents(session: Session, rows: Sequence[Mapping[str, object]]) -> None:
    """Record the intents of a chunk's server writes in one statement."""
    session.execute(insert(PendingWrite), list(rows))


def clear_intents(session: Session, account: str, ids: Sequence[str], *, batch: int) -> None:
    """Drop the intents of some follow-ups (their writes are recorded or re-planned)."""
    for start in range(0, len(ids), batch):
        session.execute(
            delete(PendingWrite).where(
                PendingWrite.account == account,
                PendingWrite.followup_id.in_(ids[start : start + batch]),
            )
        )


def intents(session: Session, account: str, ids: Sequence[str]) -> list[PendingWrite]:
    """The intents a pass that died left for some follow-ups, ``_ROWS`` per round trip."""
    found: list[PendingWrite] = []
    wanted = sorted(ids)
    for start in range(0, len(wanted), _ROWS):
        found.extend(
            session.scalars(
                select(PendingWrite).where(
                    PendingWrite.account == account,
                    PendingWrite.followup_id.in_(wanted[start : start + _ROWS]),
                )
            )
        )
    return found


def drop_unlanded_intents(
    session: Session,
    account: str,
    *,
    before: dt.datetime,
    failed: Collection[str],
    fetched: Collection[str],
) -> int:
    """Forget intents from before ``before`` (this pass's start) whose write never landed;
    returns how many intents of the account are left.

    A landed write moves its resource's ETag (or makes it exist), so a whole pass fetches
    it; an intent from an earlier pass whose resource this pass neither read nor failed to
    read was never carried out. Left in place (its follow-up had nothing to do: the CRM
    went back to the agreed version), it would be taken for a landed write the day a
    client edits the resource.

    The count left lets an idle pass vouch that the account has no intent at all: only
    then may the next idle pass skip this query (``sync.engine.runner``).
    """
    rows = session.execute(
        select(PendingWrite.followup_id, PendingWrite.href, PendingWrite.created_at).where(
            PendingWrite.account == account
        )
    ).all()
    stale = [
        row.followup_id
        for row in rows
        if as_utc(row.created_at) < before and row.href not in fetched and row.href not in failed
    ]
    if stale:
        session.execute(
            delete(PendingWrite).where(
                PendingWrite.account == account,
                PendingWrite.followup_id.in_(stale),
            )
        )
    return len(rows) - len(stale)
