"""Where the CRM connector stands with each account's CRM: its cursors and the rows it knows.

The connector (``sync.crm.reconcile``) is a second sync, between the CRM and the follow-up
store. It needs three things to survive a restart and to make loops impossible:

- the CRM's ``updated`` watermark it has read up to, so a pass lists only rows changed since;
- the change feed entry it has written back up to (``sync.state.changes``), so each calendar
  edit reaches the CRM once;
- every CRM row it has seen, with the ``updated`` stamp it last read or wrote and the
  occurrence of its series the row stands for. A listed row whose stamp equals the known one is
  the connector's own write coming back, not a CRM change; a row missing from a listing was
  deleted in the CRM; and a row moved by hand keeps its occurrence key, which no documented
  SuperOffice carrier exposes (docs/superoffice-standin.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sync.state.rows import Base


class CrmCursor(Base):
    """One account's position in its CRM and in the change feed."""

    __tablename__ = "crm_cursors"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: The highest CRM ``updated`` stamp read (the CRM's own text, compared by the CRM).
    watermark: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The last change feed entry handled (written back, or skipped as the CRM's own).
    feed_seq: Mapped[int] = mapped_column(Integer, default=0)


class CrmRow(Base):
    """One CRM row the connector has seen: whose occurrence it is and how it last looked."""

    __tablename__ = "crm_rows"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    row_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    followup_id: Mapped[str] = mapped_column(String(255), index=True)
    #: The occurrence key (ISO local time where the rule put it).
    original_start: Mapped[str] = mapped_column(String(32))
    updated: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class KnownRow:
    row_id: str
    followup_id: str
    original_start: str
    updated: str


@dataclass(frozen=True, slots=True)
class Cursor:
    watermark: str | None
    feed_seq: int


def cursor(session: Session, account: str) -> Cursor:
    """The account's cursors; a first pass starts from nothing (every row, every entry)."""
    row = session.get(CrmCursor, account)
    if row is None:
        return Cursor(None, 0)
    return Cursor(row.watermark, row.feed_seq)


def save_cursor(
    session: Session, account: str, *, watermark: str | None = None, feed_seq: int | None = None
) -> None:
    """Move the cursors forward (never back: a late, older stamp must not re-read everything)."""
    row = session.get(CrmCursor, account)
    if row is None:
        row = CrmCursor(account=account, watermark=None, feed_seq=0)
        session.add(row)
    if watermark is not None and (row.watermark is None or watermark > row.watermark):
        row.watermark = watermark
    if feed_seq is not None and feed_seq > (row.feed_seq or 0):
        row.feed_seq = feed_seq


def known_rows(session: Session, account: str, followup_id: str | None = None) -> list[KnownRow]:
    """The rows seen for the account (or for one follow-up of it)."""
    query = select(CrmRow).where(CrmRow.account == account)
    if followup_id is not None:
        query = query.where(CrmRow.followup_id == followup_id)
    return [
        KnownRow(row.row_id, row.followup_id, row.original_start, row.updated)
        for row in session.scalars(query)
    ]


def remember_series(
    session: Session, account: str, followup_id: str, rows: Iterable[KnownRow]
) -> None:
    """Replace what is known of one follow-up's rows with what was just read or written."""
    forget_series(session, account, followup_id)
    for row in rows:
        session.add(
            CrmRow(
                account=account,
                row_id=row.row_id,
                followup_id=followup_id,
                original_start=row.original_start,
                updated=row.updated,
            )
        )
    session.flush()


def forget_series(session: Session, account: str, followup_id: str) -> None:
    """The follow-up is gone from the CRM: none of its rows is expected any more."""
    session.execute(
        delete(CrmRow).where(CrmRow.account == account, CrmRow.followup_id == followup_id)
    )
