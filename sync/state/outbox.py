"""The webhook outbox's table, ``webhook_subscriptions``, and every query on it.

The outbox is the change feed itself (:mod:`sync.state.changes`) plus one position per
subscription (``delivered_through``); :mod:`sync.webhooks` explains the delivery (signing,
order, back-off, pauses) and decides, this module reads and writes the rows. Changing the
table touches this module and its migration only. Functions take the caller's ``Session``:
the caller owns the transaction, so a position moves in the commit that follows the
receiver's 2xx and never before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sync.state import changes
from sync.state.rows import Base, as_utc, utcnow


class Subscription(Base):
    """One receiver and how far it has got in the feed."""

    __tablename__ = "webhook_subscriptions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    #: API subscriptions keep their key here (needed to sign); config ones name an
    #: environment variable instead and leave this empty.
    secret: Mapped[str | None] = mapped_column(String(512), nullable=True)
    events: Mapped[list[str]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16))  # config | api
    delivered_through: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_delivery_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- subscriptions -------------------------------------------------------------------------------


def subscription(session: Session, subscription_id: str) -> Subscription | None:
    return session.get(Subscription, subscription_id)


def subscriptions(
    session: Session, *, after: str | None = None, limit: int | None = None
) -> list[Subscription]:
    """Subscriptions by id (those after ``after``, at most ``limit``): the listings page on it."""
    query = select(Subscription).order_by(Subscription.id)
    if after is not None:
        query = query.where(Subscription.id > after)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def match_configured(session: Session, configured: Mapping[str, tuple[str, Sequence[str]]]) -> None:
    """Make the config subscriptions match ``[webhooks.*]`` (name -> URL, events): new ones
    start at the feed's head, changed ones take the new URL and events, removed ones go."""
    head = changes.head(session).last_seq
    rows = {
        row.id: row
        for row in session.scalars(select(Subscription).where(Subscription.source == "config"))
    }
    for name, (url, events) in configured.items():
        row = rows.pop(name, None)
        if row is None:
            session.add(
                Subscription(
                    id=name, url=url, secret=None, events=list(events),
                    source="config", delivered_through=head, failures=0, paused=False,
                    created_at=utcnow(),
                )
            )  # fmt: skip
        else:
            row.url, row.events = url, list(events)
    for gone in rows.values():
        session.delete(gone)


def add_api_subscription(
    session: Session, *, subscription_id: str, url: str, secret: str, events: list[str]
) -> Subscription:
    """A subscription made over the API; it is owed the changes committed after this one."""
    row = Subscription(
        id=subscription_id, url=url, secret=secret, events=events, source="api",
        delivered_through=changes.head(session).last_seq, failures=0, paused=False,
        created_at=utcnow(),
    )  # fmt: skip
    session.add(row)
    return row


def delete(session: Session, row: Subscription) -> None:
    session.delete(row)


# --- what is owed --------------------------------------------------------------------------------


def backlog(session: Session, row: Subscription) -> int:
    """How many feed entries lie after the subscription's position."""
    count = session.scalar(
        select(func.count())
        .select_from(changes.ChangeRow)
        .where(changes.ChangeRow.seq > row.delivered_through)
    )
    return int(count or 0)


def oldest_owed(session: Session) -> int | None:
    """The lowest position of an active subscription: retention keeps what is after it."""
    value = session.scalar(
        select(func.min(Subscription.delivered_through)).where(Subscription.paused.is_(False))
    )
    return int(value) if value is not None else None


def due(session: Session, now: dt.datetime) -> list[str]:
    """Active subscriptions owed something whose back-off (if any) is over, by id order of
    the query; the cluster lock per subscription costs a connection, so only these are tried."""
    last = changes.head(session).last_seq
    return [
        row.id
        for row in session.scalars(
            select(Subscription).where(
                Subscription.paused.is_(False), Subscription.delivered_through < last
            )
        )
        if row.next_attempt_at is None or as_utc(row.next_attempt_at) <= now
    ]


def owed_entries(session: Session, row: Subscription, limit: int) -> list[changes.ChangeRow]:
    """The next ``limit`` feed entries after the subscription's position, in feed order."""
    return list(
        session.scalars(
            select(changes.ChangeRow)
            .where(changes.ChangeRow.seq > row.delivered_through)
            .order_by(changes.ChangeRow.seq)
            .limit(limit)
        )
    )


# --- delivery outcomes ---------------------------------------------------------------------------


def mark_delivered(session: Session, subscription_id: str, seq: int) -> None:
    """The receiver took entry ``seq``: move the position there and forget past failures."""
    row = session.get(Subscription, subscription_id)
    if row is None:
        return
    if seq > row.delivered_through:
        row.delivered_through = seq
    row.failures = 0
    row.next_attempt_at = None
    row.last_error = None
    row.last_delivery_at = utcnow()


def note_failure(session: Session, subscription_id: str, error: str) -> int | None:
    """Count one more failure in a row; returns the count (None: the subscription is gone)."""
    row = session.get(Subscription, subscription_id)
    if row is None:
        return None
    row.failures += 1
    row.last_error = error
    return row.failures


def pause(session: Session, subscription_id: str) -> None:
    """Stop delivering until someone resumes it (``resume``)."""
    row = session.get(Subscription, subscription_id)
    if row is not None:
        row.paused = True
        row.next_attempt_at = None


def retry_at(session: Session, subscription_id: str, when: dt.datetime) -> None:
    row = session.get(Subscription, subscription_id)
    if row is not None:
        row.next_attempt_at = when


def resume(session: Session, subscription_id: str) -> bool:
    """Deliver again from where it stopped; False if there is no such subscription."""
    row = session.get(Subscription, subscription_id)
    if row is None:
        return False
    row.paused, row.failures, row.next_attempt_at = False, 0, None
    return True
