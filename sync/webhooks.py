"""Outgoing webhooks: every change of the feed POSTed, signed, to each subscription.

The outbox is the change feed itself (``sync.state.changes``) plus one position per
subscription (``webhook_subscriptions.delivered_through``). A change is in the feed
from the moment it is committed, in the same transaction, so there is nothing to copy
and nothing that can be lost between "applied" and "queued". The daemon's
``webhooks`` job (next to the invitation outbox) sends what lies after each position,
in feed order (so in order per follow-up), and moves the position only after the
receiver answered 2xx:

* at least once: a crash or SIGKILL after the POST but before the position is stored
  sends that change again, with the **same delivery id** (``<subscription>:<entry>``),
  which is what a receiver deduplicates on;
* retried with back-off: a failed POST stops that subscription (later changes wait
  behind it, to keep the order) until ``BACKOFF_BASE × 2^(failures-1)`` has passed, at
  most ``BACKOFF_CAP``;
* paused after ``MAX_FAILURES`` failures in a row: shown in ``GET /v1/webhooks`` and
  ``followup-sync status``, resumed with ``POST /v1/webhooks/{id}/resume``, from where
  it stopped. Retention (``[feed] retention_days``) does not drop entries an active
  subscription still owes; a paused one may fall behind it (``gap`` in its status).

The body is JSON; ``X-Followup-Sync-Signature: sha256=<hex>`` is HMAC-SHA256 of the raw
body with the subscription's secret. The body carries the delivery id and the
timestamp of this attempt (also in ``X-Followup-Sync-Delivery`` and
``-Timestamp``), so they are signed too: a receiver can reject replays by timestamp
and duplicates by delivery id. The signing is six lines of ``hmac``; no library does
this particular scheme better.

Several daemons on one PostgreSQL database: each subscription is delivered under the
cluster lock ``webhook:<id>`` (a session advisory lock, ``sync.state.locks``), so only one
process sends its changes at a time, and each one reads the position its predecessor
stored; a sender whose lock connection broke stops before its next POST.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sync.config import WebhookSettings
from sync.errors import ConfigError
from sync.state import changes, outbox
from sync.state.db import Database, as_utc, utcnow
from sync.state.locks import ClusterLock, Held, LocalOnly
from sync.state.outbox import Subscription as Subscription  # the API and tests name it here

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Followup-Sync-Signature"
DELIVERY_HEADER = "X-Followup-Sync-Delivery"
TIMESTAMP_HEADER = "X-Followup-Sync-Timestamp"
EVENT_TYPES = ("followup.created", "followup.updated", "followup.deleted")

MAX_FAILURES = 8
BACKOFF_BASE = 2.0
BACKOFF_CAP = 600.0
#: Changes sent per subscription per round, so one busy receiver does not hold the job.
BATCH = 100
TIMEOUT = 10.0


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does (tests and docs use it): constant-time compare."""
    return hmac.compare_digest(sign(secret, body), signature)


def backoff(failures: int) -> float:
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, failures - 1)))


def event_type(entry: changes.ChangeRow) -> str:
    return f"followup.{entry.action}"


def wants(subscription: Subscription, entry: changes.ChangeRow) -> bool:
    return "*" in subscription.events or event_type(entry) in subscription.events


def delivery_id(subscription_id: str, seq: int) -> str:
    return f"{subscription_id}:{seq}"


def body_for(subscription_id: str, entry: changes.ChangeRow, timestamp: int) -> bytes:
    payload = {
        "delivery_id": delivery_id(subscription_id, entry.seq),
        "timestamp": timestamp,
        "subscription": subscription_id,
        "event": event_type(entry),
        "change": changes.entry_json(entry),
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# --- subscriptions ------------------------------------------------------------------------------


def sync_config(db: Database, configured: Mapping[str, WebhookSettings]) -> None:
    """Make the table match ``[webhooks.*]``: new ones start at the feed's head.

    Several daemons starting at once on one database may both insert a new one: the
    loser's insert fails, and its second look finds the winner's row.
    """
    try:
        _sync_config(db, configured)
    except IntegrityError:
        _sync_config(db, configured)


def _sync_config(db: Database, configured: Mapping[str, WebhookSettings]) -> None:
    wanted = {name: (settings.url, settings.events) for name, settings in configured.items()}
    with db.sessions.begin() as session:
        outbox.match_configured(session, wanted)


def create(db: Database, *, url: str, secret: str | None, events: list[str]) -> Subscription:
    """An API subscription; it receives the changes committed after this call."""
    with db.sessions.begin() as session:
        return outbox.add_api_subscription(
            session, subscription_id="wh-" + secrets.token_hex(8), url=url,
            secret=secret or secrets.token_urlsafe(32), events=events,
        )  # fmt: skip


@dataclass(frozen=True)
class SubscriptionStatus:
    id: str
    url: str
    events: list[str]
    source: str
    paused: bool
    failures: int
    last_error: str | None
    next_attempt_at: dt.datetime | None
    last_delivery_at: dt.datetime | None
    delivered_through: str
    backlog: int
    #: Entries retention dropped before this subscription got them.
    gap: bool


def status(session: Session, row: Subscription) -> SubscriptionStatus:
    head = changes.head(session)
    backlog = outbox.backlog(session, row)
    return SubscriptionStatus(
        id=row.id, url=row.url, events=list(row.events), source=row.source, paused=row.paused,
        failures=row.failures, last_error=row.last_error,
        next_attempt_at=as_utc(row.next_attempt_at) if row.next_attempt_at else None,
        last_delivery_at=as_utc(row.last_delivery_at) if row.last_delivery_at else None,
        delivered_through=changes.encode_cursor(row.delivered_through),
        backlog=backlog, gap=row.delivered_through < head.pruned_through,
    )  # fmt: skip


def oldest_owed(session: Session) -> int | None:
    """The lowest position of an active subscription: retention keeps what is after it."""
    return outbox.oldest_owed(session)


# --- delivery -----------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    paused: list[str] | None = None


class Deliverer:
    """Sends owed changes; one ``run_once`` per daemon tick."""

    def __init__(
        self,
        db: Database,
        configured: Mapping[str, WebhookSettings],
        *,
        cluster_lock: ClusterLock | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.db = db
        self.configured = dict(configured)
        self.cluster_lock = cluster_lock or LocalOnly()
        self.client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)

    def run_once(self) -> DeliveryReport:
        report = DeliveryReport(paused=[])
        now = utcnow()
        with self.db.session() as session:
            # Only subscriptions that are owed something: the cluster lock costs a
            # connection on PostgreSQL, not worth taking twice a second for nothing.
            due = outbox.due(session, now)
        for subscription_id in due:
            with self.cluster_lock.hold(f"webhook:{subscription_id}") as held:
                if held is None:
                    continue  # another daemon delivers this one right now
                self._deliver(subscription_id, report, held)
        return report

    def _secret(self, row: Subscription) -> str:
        if row.source == "config":
            settings = self.configured.get(row.id)
            if settings is None:
                raise LookupError(f"webhook {row.id!r} is no longer configured")
            return settings.secret()
        return row.secret or ""

    def _deliver(self, subscription_id: str, report: DeliveryReport, held: Held) -> None:
        with self.db.session() as session:
            row = outbox.subscription(session, subscription_id)
            if row is None or row.paused:
                return
            entries = outbox.owed_entries(session, row, BATCH)
            session.expunge_all()
        for entry in entries:
            if not held.still_held():
                # The lock's connection broke: another daemon may hold the subscription
                # now, and two senders would race each other's order. It resumes here.
                log.warning("webhook %s: lost its cluster lock; stopping", subscription_id)
                return
            if wants(row, entry):
                error = self._post(row, entry)
                if error is not None:
                    self._failed(subscription_id, error, report)
                    return
                report.sent += 1
            self._advance(subscription_id, entry.seq)

    def _post(self, row: Subscription, entry: changes.ChangeRow) -> str | None:
        """None when the receiver took it (2xx), else why not."""
        try:
            secret = self._secret(row)
        except (LookupError, ConfigError) as exc:  # not configured, or its env var is gone
            return str(exc)
        timestamp = int(time.time())
        body = body_for(row.id, entry, timestamp)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "followup-sync-webhooks",
            SIGNATURE_HEADER: sign(secret, body),
            DELIVERY_HEADER: delivery_id(row.id, entry.seq),
            TIMESTAMP_HEADER: str(timestamp),
        }
        try:
            response = self.client.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    def _advance(self, subscription_id: str, seq: int) -> None:
        with self.db.sessions.begin() as session:
            outbox.mark_delivered(session, subscription_id, seq)

    def _failed(self, subscription_id: str, error: str, report: DeliveryReport) -> None:
        report.failed += 1
        with self.db.sessions.begin() as session:
            failures = outbox.note_failure(session, subscription_id, error)
            if failures is None:
                return
            if failures >= MAX_FAILURES:
                outbox.pause(session, subscription_id)
                assert report.paused is not None
                report.paused.append(subscription_id)
                log.warning(
                    "webhook %s paused after %d failures in a row: %s",
                    subscription_id, failures, error,
                )  # fmt: skip
            else:
                wait = backoff(failures)
                outbox.retry_at(session, subscription_id, utcnow() + dt.timedelta(seconds=wait))
                log.info("webhook %s: %s; trying again in %.0f s", subscription_id, error, wait)

    def close(self) -> None:
        self.client.close()


def resume(db: Database, subscription_id: str) -> bool:
    with db.sessions.begin() as session:
        return outbox.resume(session, subscription_id)


def as_json(value: SubscriptionStatus) -> dict[str, Any]:
    return {
        "id": value.id,
        "url": value.url,
        "events": value.events,
        "source": value.source,
        "paused": value.paused,
        "failures": value.failures,
        "last_error": value.last_error,
        "next_attempt_at": value.next_attempt_at.isoformat() if value.next_attempt_at else None,
        "last_delivery_at": value.last_delivery_at.isoformat() if value.last_delivery_at else None,
        "delivered_through": value.delivered_through,
        "backlog": value.backlog,
        "gap": value.gap,
    }


# --- reads and removal for the API and the CLI --------------------------------------------------


def subscriptions(
    session: Session, *, after: str | None = None, limit: int | None = None
) -> list[Subscription]:
    """Subscriptions by id after ``after``, at most ``limit`` (the API pages, the CLI lists)."""
    return outbox.subscriptions(session, after=after, limit=limit)


def subscription(session: Session, subscription_id: str) -> Subscription | None:
    return outbox.subscription(session, subscription_id)


def remove(session: Session, subscription_id: str) -> Literal["removed", "missing", "config"]:
    """Delete an API subscription; one from the config file stays (``config``): remove it there."""
    row = outbox.subscription(session, subscription_id)
    if row is None:
        return "missing"
    if row.source == "config":
        return "config"
    outbox.delete(session, row)
    return "removed"
