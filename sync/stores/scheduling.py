"""Does the CalDAV server deliver invitations itself (RFC 6638 implicit scheduling)?

One question asked of the account's principal, through the calendar's public
``DavCalendar.principal``. The invitations wing decides from the answer who tells the
participants (``sync.invitations.scheduling``) and remembers it per calendar URL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sync.stores.caldav import DavCalendar

log = logging.getLogger(__name__)


def server_schedules(calendar: DavCalendar) -> bool:
    """Whether the server delivers invitations itself; False when it cannot be told.

    The principal must have a schedule-outbox-URL and a calendar-user-address-set with a
    mailto: address: Xandikos advertises an outbox with an empty address set and
    delivers nothing, DAViCal has both and delivers (libraries-and-servers.md §2).
    Every request goes through the caldav library, which logs a failed principal lookup
    as an error: here a failure only means "no", so those records are dropped.
    """
    try:
        with _caldav_quiet():
            principal = calendar.principal()
            principal.schedule_outbox()
            addresses = principal.calendar_user_address_set()
        if not isinstance(addresses, list):  # None, or a coroutine (only from an async client)
            return False
        return any(str(a).lower().startswith("mailto:") for a in addresses)
    except Exception as exc:
        log.debug("scheduling probe of %s: %s", calendar.url, exc)
        return False


class _ThisThreadQuiet(logging.Filter):
    """Drops records up to ERROR logged by one thread (the probing one); others pass."""

    def __init__(self, thread: int) -> None:
        super().__init__()
        self.thread = thread

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread or record.levelno > logging.ERROR


@contextmanager
def _caldav_quiet() -> Iterator[None]:
    """Silence the caldav library's loggers for this thread only, while the block runs.

    A logger's filter sees only the records of that logger, not its children's, so it
    goes on "caldav" and every "caldav.*" logger created so far. The daemon's other
    threads (other accounts' passes, the HTTP server) keep logging as usual.
    """
    quiet = _ThisThreadQuiet(threading.get_ident())
    children = [
        name for name in list(logging.Logger.manager.loggerDict) if name.startswith("caldav.")
    ]
    loggers = [logging.getLogger(name) for name in ["caldav", *children]]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
