"""The daemon's mail and webhook jobs: what goes out after a pass, and what comes back.

* invitations (``sync.invitations.send``): right after an account's pass, still under its locks,
  the messages that pass recorded are sent when ``[mail]`` is configured;
* replies (``sync.invitations.replies``): with ``[mail.imap]``, new iTIP replies are read
  by one daemon at a time;
* webhooks (``sync.webhooks``): the change feed's entries owed to each subscription are
  POSTed every tick, and the feed is pruned to ``[feed] retention_days`` now and then.

None of them ever fails a pass or stops the daemon: a failure is logged and tried again on
the next pass, poll or tick. They log under the daemon's name (``sync.service.daemon``), as
they did when they were its methods, so operators' log filters keep finding them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from sync import webhooks
from sync.config import Account, Settings
from sync.invitations.replies import fetch_replies
from sync.invitations.send import send_pending, unsent
from sync.logs import log_context
from sync.state import changes
from sync.state.db import Database
from sync.state.locks import ClusterLock

log = logging.getLogger("sync.service.daemon")

#: How often the change feed is pruned (the webhook job runs far more often).
FEED_PRUNE_SECONDS = 60.0


class Outboxes:
    """Invitations, invitation replies and webhooks, for one daemon process."""

    def __init__(
        self, settings: Settings, db: Database, cluster_lock: ClusterLock, stopping: threading.Event
    ) -> None:
        self.settings = settings
        self.db = db
        self.cluster_lock = cluster_lock
        self.stopping = stopping
        #: Where invitations go out and replies come in; None: the daemon sends no mail.
        self.mail = settings.mail
        self.webhooks = webhooks.Deliverer(db, settings.webhooks, cluster_lock=cluster_lock)
        self._last_feed_prune = 0.0

    @property
    def reads_replies(self) -> bool:
        """``[mail.imap]`` is configured: a job reads the replies."""
        return self.mail is not None and self.mail.imap is not None

    def start(self) -> None:
        """Make the webhook subscriptions match the config (before the first delivery)."""
        webhooks.sync_config(self.db, self.settings.webhooks)

    def close(self) -> None:
        self.webhooks.close()

    # --- invitations ---------------------------------------------------------------------------

    def send_invitations(self, account: Account) -> None:
        """Send what the account's passes recorded; called under the account's locks.

        Only when mail is configured and the account does not say ``scheduling = "none"``;
        what is in the outbox was recorded because email is the way for it (the account's
        mode is email, or the server cannot schedule that follow-up), and a message no
        pass recorded is never sent. Failing to reach SMTP is logged and left for the next
        pass: the messages stay pending (or failed) and are sent then, each once.
        """
        if self.mail is None or account.scheduling == "none" or self.stopping.is_set():
            return
        name = account.name
        with log_context(account=name):
            try:
                if not unsent(self.db, name):
                    return
                report = send_pending(self.mail, self.db, account=name)
            except Exception as exc:  # SMTP down, bad credentials, database hiccup
                log.warning("invitations not sent, trying again after the next pass: %s", exc)
                return
            if report.sent or report.failed or report.uncertain:
                log.info(
                    "invitations: %d sent, %d failed (tried again after the next pass), "
                    "%d uncertain (not sent again by itself; see 'invitations outbox')",
                    len(report.sent),
                    len(report.failed),
                    len(report.uncertain),
                )

    # --- webhooks and the change feed ----------------------------------------------------------

    def deliver_webhooks(self) -> None:
        """Send what the feed owes each subscription; prune the feed now and then."""
        if self.stopping.is_set():
            return
        try:
            self.webhooks.run_once()
            self._prune_feed()
        except Exception:
            log.exception("webhook delivery failed; trying again next tick")

    def _prune_feed(self) -> None:
        now = time.monotonic()
        if now - self._last_feed_prune < FEED_PRUNE_SECONDS:
            return
        self._last_feed_prune = now
        retention = dt.timedelta(days=self.settings.feed.retention_days)
        with self.db.sessions.begin() as session:
            dropped = changes.prune(session, retention, keep_after=webhooks.oldest_owed(session))
        if dropped:
            log.info("change feed: %d entries older than %s dropped", dropped, retention)

    def fetch_replies(self) -> None:
        """Job body: read new iTIP replies; one daemon at a time, failures logged and retried."""
        if self.stopping.is_set() or self.mail is None:
            return
        try:
            with self.cluster_lock.hold("followup-sync:mail-replies") as held:
                if held is None:
                    return  # another daemon is reading the mailbox right now
                outcomes = fetch_replies(self.mail, self.db)
        except Exception as exc:
            log.warning("reading invitation replies failed, trying again next poll: %s", exc)
            return
        applied = sum(1 for o in outcomes if o.outcome == "applied")
        if outcomes:
            log.info("invitation replies: %d applied, %d ignored", applied, len(outcomes) - applied)
