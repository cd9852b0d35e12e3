"""Resources that cannot be read: when to try again, and what a vanished one means.

An item that fails to fetch or to map is reported by href and remembered in
``pending_hrefs`` (``sync.state.db.PendingHref``); its follow-up is left alone, never
deleted. Two rules keep that both safe and cheap:

* **Back-off.** The first ``EVERY_PASS`` failures are retried on the next pass (a
  server hiccup heals at once). After that an item is fetched again only when its
  back-off is over: ``FIRST_BACKOFF`` after the next failure, doubling with each
  failure after it, at most ``MAX_BACKOFF``; so 10 min, 20 min, 40 min … 24 h. A new
  ETag in the listing (a client rewrote it) is fetched on the next pass whatever the
  back-off says. Until then the item is reported as unreadable without a request.
* **Vanished right after it failed.** Radicale hides a resource it cannot load
  (``skip_broken_item``, the default): it drops out of the listing and a sync
  REPORT names it deleted. A pending item that disappears is therefore not taken as
  deleted: it is fetched by href like any pending item and, while the server answers
  404, reported as unreadable. Its follow-up stays until the item is readable again
  (then it syncs as usual) or someone deletes the follow-up in the CRM.
"""

from __future__ import annotations

import datetime as dt

from sync.state.db import as_utc

#: Failures retried on the very next pass.
EVERY_PASS = 3
FIRST_BACKOFF = dt.timedelta(minutes=10)
MAX_BACKOFF = dt.timedelta(hours=24)


def retry_at(attempts: int, now: dt.datetime) -> dt.datetime | None:
    """When an item that has failed ``attempts`` times is next fetched (None: next pass)."""
    if attempts <= EVERY_PASS:
        return None
    doublings = min(attempts - EVERY_PASS - 1, 16)
    delay: dt.timedelta = min(FIRST_BACKOFF * 2**doublings, MAX_BACKOFF)
    return now + delay


def backed_off(
    retry: dt.datetime | None, failed_etag: str | None, listed_etag: str | None, now: dt.datetime
) -> bool:
    """True when an unreadable item is not fetched this pass (its back-off is not over)."""
    if retry is None or now >= as_utc(retry):
        return False
    # Listed with another ETag than when it failed (or listed again after it vanished).
    moved = listed_etag is not None and listed_etag != failed_etag
    return not moved


#: How ``sync.engine.fetch`` words a failure to fetch (not to read) an item.
FETCH_FAILURE = "could not be fetched"


def was_unreadable(reason: str) -> bool:
    """Whether a pending item failed because we could not read it (not because of a fetch)."""
    return not reason.startswith(FETCH_FAILURE)


def vanished_reason(last_reason: str) -> str:
    return (
        "vanished from the listing right after it could not be read "
        f"({last_reason}); kept as unreadable, not taken as deleted"
    )
