"""Who tells a follow-up's participants: the CalDAV server (RFC 6638), us by email, or nobody.

``Account.scheduling`` says so, or ``auto`` asks the server once per calendar URL
(``sync.stores.scheduling``). ``channel`` refines it per follow-up, and
``schedule_agent_for`` turns it into the SCHEDULE-AGENT mark the sync pass writes on
every ATTENDEE (see the package docstring).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mappings.model import FollowUp
from sync.config import Account
from sync.stores import scheduling as store_scheduling

Mode = Literal["server", "email", "none"]

#: Servers whose implicit scheduling carries only the series itself to an attendee who
#: already has the event. DAViCal 1.1.12 copies DTSTART, DTEND, DURATION, SUMMARY,
#: LOCATION, DESCRIPTION, STATUS, SEQUENCE and the ATTENDEEs of the first component into
#: the attendee's copy, and nothing of RRULE, EXDATE or the overrides; and a resource
#: whose override lists an attendee of the server that the master lists too is answered
#: with 500 (DAViCal inserts that attendee's inbox copy twice), pass after pass.
#: tests/integration/test_server_scheduling.py shows both.
SERIES_ONLY_SCHEDULING = frozenset({"davical"})


@dataclass(frozen=True)
class _ProbeTarget:
    """The probe cache's key: the calendar URL alone; the calendar rides along to be asked.

    Held weakly, so the cache never keeps a closed calendar (and its connection) alive.
    """

    url: str
    calendar: weakref.ref[Any] = field(compare=False)


# Why a process-wide cache: whether a server schedules does not change while the process
# runs, and every pass opens a new DavCalendar, so a memo on the calendar would probe (a
# few PROPFINDs) again on each pass, also on idle passes that otherwise cost one request.
# Bounded: one entry per calendar URL the process syncs.
@functools.lru_cache(maxsize=256)
def _server_schedules_at(target: _ProbeTarget) -> bool:
    calendar = target.calendar()
    return calendar is not None and store_scheduling.server_schedules(calendar)


def server_schedules(calendar: Any) -> bool:
    """Whether the CalDAV server delivers invitations itself (RFC 6638), asked once per URL."""
    url = str(getattr(calendar, "url", ""))
    return _server_schedules_at(_ProbeTarget(url, weakref.ref(calendar)))


def forget_probes() -> None:
    """Forget every server's answer, so the next question probes again (tests)."""
    _server_schedules_at.cache_clear()


def scheduling_mode(account: Account, calendar: Any | None) -> Mode:
    """Who sends this account's invitations; ``auto`` probes the server (once)."""
    configured = account.scheduling
    if configured == "auto":
        return "server" if calendar is not None and server_schedules(calendar) else "email"
    return configured


def _series_only(calendar: Any | None) -> bool:
    kind = getattr(getattr(calendar, "capabilities", None), "kind", None)
    return kind in SERIES_ONLY_SCHEDULING


def _per_occurrence(followup: FollowUp) -> bool:
    """Something about single occurrences: one moved, changed or cancelled, or answered alone."""
    return bool(followup.exceptions) or any(p.occurrence_status for p in followup.participants)


def channel(account: Account, calendar: Any | None, followup: FollowUp) -> Mode:
    """Who tells this follow-up's participants: the account's mode, with one exception.

    On a server that schedules only whole series (``SERIES_ONLY_SCHEDULING``), a series
    with something per occurrence goes by email: the server would not deliver it (or
    would refuse the write), so its ATTENDEEs are marked SCHEDULE-AGENT=CLIENT and we
    send. Each message still goes one way only: the server stays silent for a resource
    whose attendees say CLIENT, updates and its deletion included.
    """
    mode = scheduling_mode(account, calendar)
    if mode == "server" and _series_only(calendar) and _per_occurrence(followup):
        return "email"
    return mode


def schedule_agent_for(account: Account, calendar: Any | None) -> Callable[[FollowUp], str | None]:
    """What ``mappings.resource.render`` marks ATTENDEEs with for this account.

    Evaluated per document and only for follow-ups with participants, so an account
    without invitations never pays for the probe.
    """

    def agent(followup: FollowUp) -> str | None:
        if not followup.participants:
            return None
        return None if channel(account, calendar, followup) == "server" else "CLIENT"

    return agent
