"""Shared pieces of the reliability tests: sizes, seeds, the server's truth, comparisons.

``FOLLOWUP_SYNC_STRESS=full`` gives the documented figures (1,000 series, more crash points,
more fuzzed inputs); the default is a quicker run of the same code paths.
``FOLLOWUP_SYNC_SEED=N`` replays a run; every test prints the seed it used.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections import Counter
from dataclasses import dataclass

from icalendar import Calendar, Event

from mappings.from_ical import parse_components
from mappings.model import FollowUp
from mappings.occurrences import occurrences
from mappings.resource import read
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar, Resource

FULL = os.environ.get("FOLLOWUP_SYNC_STRESS", "").lower() == "full"


def series_count() -> int:
    return 1000 if FULL else 200


def seed_for(test: str) -> int:
    """The run's seed: $FOLLOWUP_SYNC_SEED, else a fresh one; printed so a failure replays."""
    value = os.environ.get("FOLLOWUP_SYNC_SEED")
    seed = int(value) if value else random.SystemRandom().randrange(1, 2**31)
    print(
        f"\n[{test}] seed={seed} (replay: FOLLOWUP_SYNC_SEED={seed}) "
        f"stress={'full' if FULL else 'quick'}"
    )
    return seed


def direct(url: str, username: str | None, password: str | None) -> DavCalendar:
    """A connection straight to the server, past any proxy: what is really stored there."""
    return DavCalendar.connect(url, username=username, password=password, timeout=60)


def server_resources(calendar: DavCalendar) -> dict[str, list[Resource]]:
    """UID -> every resource holding it (more than one would be a duplicate)."""
    hrefs = sorted(calendar.list_etags())
    by_uid: dict[str, list[Resource]] = {}
    for result in calendar.get_multi(hrefs, batch_size=100):
        assert isinstance(result, Resource), f"cannot read back {result}"
        by_uid.setdefault(read(result.data).uid, []).append(result)
    return by_uid


def server_followup(resource: Resource, known: FollowUp | None) -> FollowUp:
    return parse_components(read(resource.data).components, known=known)[0]


def occurrence_view(followup: FollowUp) -> list[tuple[object, ...]]:
    """What a user sees of a series: every occurrence with its times, title and state."""
    return [
        (
            o.original_start,
            o.start,
            o.end,
            o.title,
            o.description or None,
            o.location or None,
            o.cancelled,
        )
        for o in occurrences(followup)
    ]


@dataclass
class Agreement:
    followups: int
    resources: int
    duplicated: list[str]
    missing_on_server: list[str]
    extra_on_server: list[str]
    differing: list[str]

    @property
    def ok(self) -> bool:
        return not (
            self.duplicated or self.missing_on_server or self.extra_on_server or self.differing
        )

    def explain(self) -> str:
        return (
            f"{self.followups} follow-ups, {self.resources} resources; "
            f"duplicated {self.duplicated[:5]}, "
            f"missing on server {self.missing_on_server[:5]}, "
            f"extra on server {self.extra_on_server[:5]}, "
            f"content differs {self.differing[:5]}"
        )


def agreement(db: Database, calendar: DavCalendar) -> Agreement:
    """Store and server, item for item: one resource per follow-up, same occurrences."""
    store = {f.effective_uid: f for f in FollowUpStore(db).all()}
    by_uid = server_resources(calendar)
    duplicated = sorted(uid for uid, found in by_uid.items() if len(found) > 1)
    missing = sorted(set(store) - set(by_uid))
    extra = sorted(set(by_uid) - set(store))
    differing = []
    for uid in sorted(set(store) & set(by_uid)):
        ours = store[uid]
        theirs = server_followup(by_uid[uid][0], ours)
        if occurrence_view(theirs) != occurrence_view(ours):
            differing.append(uid)
    return Agreement(
        len(store), sum(len(v) for v in by_uid.values()), duplicated, missing, extra, differing
    )


def uid_counts(calendar: DavCalendar) -> Counter[str]:
    return Counter({uid: len(found) for uid, found in server_resources(calendar).items()})


# --- what a calendar client does ---------------------------------------------------------


def client_retitle(calendar: DavCalendar, resource: Resource, title: str) -> None:
    """A client renames a whole series: SUMMARY of the master and of every override, If-Match."""
    cal = Calendar.from_ical(resource.data)
    for component in cal.walk("VEVENT") + cal.walk("VTODO"):
        component.pop("SUMMARY", None)
        component.add("summary", title)
        component.pop("X-MOZ-GENERATION", None)
        component.add("x-moz-generation", "2")
    calendar.update(resource.href, cal.to_ical(), resource.etag)


def client_create(calendar: DavCalendar, uid: str, title: str, start: dt.datetime) -> None:
    """A new weekly event made in a calendar client (If-None-Match: *)."""
    cal = Calendar()
    cal.add("prodid", "-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN")
    cal.add("version", "2.0")
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    event.add("dtstart", start)
    event.add("dtend", start + dt.timedelta(minutes=30))
    event.add("summary", title)
    event.add("rrule", {"FREQ": "WEEKLY", "COUNT": 6})
    cal.add_component(event)
    calendar.create(calendar.href_for_uid(uid), cal.to_ical())


def fetch(calendar: DavCalendar, uid: str) -> Resource:
    found = calendar.find_by_uid(uid)
    assert found is not None, f"{uid} is not on the server"
    return found
