"""What calendar clients do to our resources, done the way they do it: plain HTTP.

Nothing here goes through ``sync.stores.caldav`` or the mapper's writer. ``PlainClient`` speaks
PROPFIND/GET/PUT/DELETE with httpx (Basic, or Digest where the server asks for it, as
SabreDAV does) and sends the ETag it read, like
Thunderbird, Apple Calendar or DAVx5 do; the edit functions take the server's bytes and
return new bytes, changing only what the client's user changed and adding the
client's own noise (X-MOZ-*, X-APPLE-*, VALARM, SEQUENCE, LAST-MODIFIED).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit
from zoneinfo import ZoneInfo

import httpx
from icalendar import Alarm, Calendar, Component, Event, Todo, vCalAddress, vRecur
from lxml import etree

from tests.servers import ServerAuth, http_auth

OSLO = ZoneInfo("Europe/Oslo")
DAV = "{DAV:}"


class ClientHTTPError(Exception):
    def __init__(self, method: str, url: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {url} -> {status}: {body[:300]!r}")
        self.status = status


@dataclass(frozen=True)
class Fetched:
    url: str
    etag: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode()

    @property
    def calendar(self) -> Calendar:
        return Calendar.from_ical(self.data)


class PlainClient:
    """A minimal CalDAV client with no knowledge of this project."""

    def __init__(
        self,
        calendar_url: str,
        username: str | None,
        password: str | None,
        auth: ServerAuth = "basic",
    ) -> None:
        self.calendar_url = calendar_url
        self._auth = http_auth(auth, username, password)

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        resp = httpx.request(
            method,
            url,
            content=body,
            # As urllib did: no compression. Cyrus answers a gzip-encoded GET with a weak
            # ETag (W/"…") for that representation, which If-Match may not use.
            headers={"Accept-Encoding": "identity", **(headers or {})},
            auth=self._auth,
            timeout=10,
            follow_redirects=method in ("GET", "HEAD"),  # as urllib did
        )
        if resp.status_code >= 400:
            raise ClientHTTPError(method, url, resp.status_code, resp.content)
        return resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content

    def url_for(self, href: str) -> str:
        return urljoin(self.calendar_url, href)

    def list(self) -> dict[str, str]:
        """Full URL -> ETag of every resource in the calendar (PROPFIND Depth 1)."""
        body = (
            b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/>'
            b"</D:prop></D:propfind>"
        )
        _, _, answer = self._send(
            "PROPFIND", self.calendar_url, body, {"Depth": "1", "Content-Type": "application/xml"}
        )
        root = etree.fromstring(answer)
        own = unquote(urlsplit(self.calendar_url).path).rstrip("/")
        result: dict[str, str] = {}
        for resp in root.iter(f"{DAV}response"):
            href = (resp.findtext(f"{DAV}href") or "").strip()
            if unquote(urlsplit(urljoin(self.calendar_url, href)).path).rstrip("/") == own:
                continue
            etag = resp.findtext(f".//{DAV}getetag")
            if etag:
                result[self.url_for(href)] = etag.strip()
        return result

    def get(self, url: str) -> Fetched:
        _, headers, data = self._send("GET", url)
        return Fetched(url, headers.get("etag", ""), data)

    def all(self) -> list[Fetched]:
        return [self.get(url) for url in sorted(self.list())]

    def by_uid(self, uid: str) -> Fetched:
        found = [f for f in self.all() if uid_of(f.data) == uid]
        assert len(found) == 1, f"{len(found)} resources hold UID {uid}"
        return found[0]

    def put(self, url: str, data: bytes, etag: str | None) -> None:
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        headers["If-Match" if etag else "If-None-Match"] = etag or "*"
        self._send("PUT", url, data, headers)

    def replace(self, fetched: Fetched, data: bytes) -> None:
        """Write an edited version back with the ETag it was read with."""
        self.put(fetched.url, data, fetched.etag)

    def delete(self, url: str, etag: str) -> None:
        self._send("DELETE", url, None, {"If-Match": etag})

    def create(self, name: str, data: bytes) -> str:
        url = self.url_for(name)
        self.put(url, data, None)
        return url


# --- reading ------------------------------------------------------------------------------


def uid_of(data: bytes) -> str:
    cal = Calendar.from_ical(data)
    return next(str(c["UID"]) for c in cal.walk() if c.name in ("VEVENT", "VTODO"))


def components(data: bytes) -> list[Component]:
    return [c for c in Calendar.from_ical(data).walk() if c.name in ("VEVENT", "VTODO")]


def master_of(cal: Calendar) -> Component:
    return next(c for c in cal.walk() if c.name in ("VEVENT", "VTODO") and "RECURRENCE-ID" not in c)


def override_of(cal: Calendar, original: dt.datetime) -> Component | None:
    for c in cal.walk():
        if (
            c.name in ("VEVENT", "VTODO")
            and "RECURRENCE-ID" in c
            and c["RECURRENCE-ID"].dt.astimezone(dt.UTC) == original.astimezone(dt.UTC)
        ):
            return c
    return None


def exdates_of(component: Component) -> set[dt.datetime]:
    lines = component.get("EXDATE")
    if lines is None:
        return set()
    lines = lines if isinstance(lines, list) else [lines]
    return {item.dt.astimezone(dt.UTC) for line in lines for item in line.dts}


def oslo(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=OSLO)


# --- edits, client by client ---------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _touch(component: Component, *, modified: dt.datetime | None = None) -> None:
    """What every client does on save: LAST-MODIFIED, DTSTAMP, SEQUENCE + 1."""
    stamp = modified or _now()
    for name in ("LAST-MODIFIED", "DTSTAMP"):
        component.pop(name, None)
        component.add(name.lower(), stamp)
    sequence = int(component.get("SEQUENCE", 0))
    component.pop("SEQUENCE", None)
    component.add("sequence", sequence + 1)


def _alarm(minutes: int) -> Alarm:
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", "Reminder")
    alarm.add("trigger", dt.timedelta(minutes=-minutes))
    return alarm


def _client_noise(component: Component, style: str) -> None:
    if style == "thunderbird":
        component.add("x-moz-generation", "3")
        component.add("x-moz-lastack", _now())
        component.add_component(_alarm(15))
    elif style == "apple":
        component.add("x-apple-travel-advisory-behavior", "AUTOMATIC")
        component.add("x-apple-structured-location", "geo:59.91,10.75", parameters={"VALUE": "URI"})
        component.add_component(_alarm(10))
    else:
        raise ValueError(style)


def move_occurrence(
    data: bytes,
    original: dt.datetime,
    new_start: dt.datetime,
    new_end: dt.datetime,
    *,
    style: str = "thunderbird",
    summary: str | None = None,
) -> bytes:
    """Drag one occurrence to another time: a RECURRENCE-ID override next to the master."""
    cal = Calendar.from_ical(data)
    master = master_of(cal)
    existing = override_of(cal, original)
    if existing is not None:
        override = existing
        for name in ("DTSTART", "DTEND"):
            override.pop(name, None)
    else:
        override = Event()
        override.add("uid", str(master["UID"]))
        override.add("recurrence-id", original)
        override.add("summary", summary or str(master.get("SUMMARY", "")))
        for name in ("DESCRIPTION", "LOCATION", "CATEGORIES", "X-FOLLOWUP-KIND"):
            if name in master:
                override.add(name, master[name], encode=False)
        cal.add_component(override)
    override.add("dtstart", new_start)
    override.add("dtend", new_end)
    _touch(override)
    _client_noise(override, style)
    _touch(master)
    return bytes(cal.to_ical())


def exdate_occurrence(data: bytes, original: dt.datetime) -> bytes:
    """'Delete only this occurrence' as most clients write it: EXDATE on the master."""
    cal = Calendar.from_ical(data)
    master = master_of(cal)
    master.add("exdate", [original])
    _touch(master)
    return bytes(cal.to_ical())


def cancel_occurrence(data: bytes, original: dt.datetime, *, duration: dt.timedelta) -> bytes:
    """'Cancel this occurrence' as an organizer's client writes it: a STATUS:CANCELLED override."""
    cal = Calendar.from_ical(data)
    master = master_of(cal)
    override = Event()
    override.add("uid", str(master["UID"]))
    override.add("recurrence-id", original)
    override.add("summary", str(master.get("SUMMARY", "")))
    override.add("dtstart", original)
    override.add("dtend", original + duration)
    override.add("status", "CANCELLED")
    _touch(override)
    cal.add_component(override)
    return bytes(cal.to_ical())


def edit_series(
    data: bytes,
    *,
    summary: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    rrule: str | None = None,
    modified: dt.datetime | None = None,
) -> bytes:
    """Edit 'all occurrences' in a client: the master's properties change."""
    cal = Calendar.from_ical(data)
    master = master_of(cal)
    if summary is not None:
        master.pop("SUMMARY", None)
        master.add("summary", summary)
    if start is not None:
        master.pop("DTSTART", None)
        master.add("dtstart", start)
    if end is not None:
        master.pop("DTEND", None)
        master.pop("DURATION", None)  # a client setting an end drops a DURATION
        master.add("dtend", end)
    if rrule is not None:
        master.pop("RRULE", None)
        master.add("rrule", vRecur.from_ical(rrule))
    _touch(master, modified=modified)
    return bytes(cal.to_ical())


def add_attendee_and_alarm(data: bytes) -> bytes:
    """An organizer invites a colleague and sets a reminder (on every component)."""
    cal = Calendar.from_ical(data)
    for component in cal.walk():
        if component.name not in ("VEVENT", "VTODO"):
            continue
        attendee = vCalAddress("mailto:bob@example.com")
        attendee.params["CN"] = "Bob Example"
        attendee.params["ROLE"] = "REQ-PARTICIPANT"
        attendee.params["PARTSTAT"] = "NEEDS-ACTION"
        attendee.params["RSVP"] = "TRUE"
        component.add("attendee", attendee, encode=False)
        component.add("x-apple-travel-advisory-behavior", "AUTOMATIC")
        component.add_component(_alarm(30))
        _touch(component)
    return bytes(cal.to_ical())


def this_and_future_override(
    data: bytes, original: dt.datetime, new_start: dt.datetime, new_end: dt.datetime
) -> bytes:
    """'This and following' as RFC 5545 RANGE=THISANDFUTURE (Thunderbird/Evolution style)."""
    cal = Calendar.from_ical(data)
    master = master_of(cal)
    override = Event()
    override.add("uid", str(master["UID"]))
    override.add("recurrence-id", original, parameters={"RANGE": "THISANDFUTURE"})
    override.add("summary", str(master.get("SUMMARY", "")))
    for name in ("LOCATION", "DESCRIPTION", "X-FOLLOWUP-KIND"):
        if name in master:
            override.add(name, master[name], encode=False)
    override.add("dtstart", new_start)
    override.add("dtend", new_end)
    _touch(override)
    cal.add_component(override)
    return bytes(cal.to_ical())


def google_split(
    data: bytes,
    original: dt.datetime,
    new_uid: str,
    new_start: dt.datetime,
    new_end: dt.datetime,
    *,
    related_to: str | None = None,
) -> tuple[bytes, bytes]:
    """'This and following' as Google writes it: the old series gets an UNTIL, a new
    series (new UID) starts at the chosen occurrence. Returns (old, new).

    Google names the tail ``<old UID>_R<start>``; Apple gives it a fresh UID; some
    clients add RELATED-TO naming the old series (``related_to``)."""
    cal = Calendar.from_ical(data)
    master = master_of(cal)
    rule = vRecur.from_ical(master["RRULE"].to_ical().decode())
    tail = Calendar.from_ical(data)
    tail_master = master_of(tail)
    tail_rule = vRecur.from_ical(master["RRULE"].to_ical().decode())
    if "COUNT" in rule:
        # Google keeps COUNT on neither part: the old one ends by date, the new one open or by date.
        tail_rule.pop("COUNT")
        rule.pop("COUNT")
        starts = _rule_starts(master)
        tail_rule["UNTIL"] = [(starts[-1] + (new_start - original)).astimezone(dt.UTC)]
    rule["UNTIL"] = [(original - dt.timedelta(seconds=1)).astimezone(dt.UTC)]
    master.pop("RRULE")
    master.add("rrule", rule)
    _touch(master)

    new = Calendar()
    new.add("prodid", "-//Google Inc//Google Calendar 70.9054//EN")
    new.add("version", "2.0")
    for tz in tail.walk("VTIMEZONE"):
        new.add_component(tz)
    event = Event()
    event.add("uid", new_uid)
    event.add("summary", str(tail_master.get("SUMMARY", "")))
    for name in ("LOCATION", "DESCRIPTION"):
        if name in tail_master:
            event.add(name, tail_master[name], encode=False)
    event.add("dtstart", new_start)
    event.add("dtend", new_end)
    event.add("rrule", tail_rule)
    event.add("x-google-split-from", str(master["UID"]))
    if related_to is not None:
        event.add("related-to", related_to)
    _touch(event)
    new.add_component(event)
    # Overrides after the split point move with the tail in Google; ours has none there.
    return bytes(cal.to_ical()), bytes(new.to_ical())


def end_series(data: bytes, before: dt.datetime) -> bytes:
    """'Delete this and all following' in a client: the rule gets an UNTIL, nothing else."""
    cal = Calendar.from_ical(data)
    master = master_of(cal)
    rule = vRecur.from_ical(master["RRULE"].to_ical().decode())
    rule.pop("COUNT", None)
    rule["UNTIL"] = [(before - dt.timedelta(seconds=1)).astimezone(dt.UTC)]
    master.pop("RRULE")
    master.add("rrule", rule)
    _touch(master)
    return bytes(cal.to_ical())


def complete_task(
    data: bytes,
    original: dt.datetime | None = None,
    *,
    style: str = "thunderbird",
    when: dt.datetime | None = None,
) -> bytes:
    """Tick a task off: the whole task, or (``original``) one occurrence of a recurring one.

    Thunderbird writes STATUS:COMPLETED, COMPLETED and PERCENT-COMPLETE:100; Apple
    Reminders STATUS and COMPLETED only. One occurrence becomes a VTODO override with the
    occurrence's DTSTART and DUE, as both write it.
    """
    cal = Calendar.from_ical(data)
    master = master_of(cal)
    if original is None:
        target = master
    else:
        found = override_of(cal, original)
        if found is None:
            found = Todo()
            found.add("uid", str(master["UID"]))
            found.add("recurrence-id", original)
            found.add("summary", str(master.get("SUMMARY", "")))
            span = master["DUE"].dt - master["DTSTART"].dt
            found.add("dtstart", original)
            found.add("due", original + span)
            cal.add_component(found)
        target = found
    for name in ("STATUS", "COMPLETED", "PERCENT-COMPLETE"):
        target.pop(name, None)
    target.add("status", "COMPLETED")
    target.add("completed", when or _now())
    if style == "thunderbird":
        target.add("percent-complete", 100)
        target.add("x-moz-generation", "4")
    elif style != "apple":
        raise ValueError(style)
    _touch(target)
    return bytes(cal.to_ical())


def _rule_starts(master: Component) -> list[dt.datetime]:
    from dateutil.rrule import rrulestr

    start = master["DTSTART"].dt
    rule = rrulestr(master["RRULE"].to_ical().decode(), dtstart=start)
    return list(rule)


def new_event(
    uid: str, summary: str, start: dt.datetime, end: dt.datetime, *, rrule: str | None = None
) -> bytes:
    """An event made from scratch in a calendar client."""
    cal = Calendar()
    cal.add("prodid", "-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN")
    cal.add("version", "2.0")
    event = Event()
    event.add("uid", uid)
    event.add("summary", summary)
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("created", _now())
    if rrule:
        event.add("rrule", vRecur.from_ical(rrule))
    _touch(event)
    _client_noise(event, "thunderbird")
    cal.add_component(event)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


#: Servers that check calendar data on PUT and refuse an end before the start (403
#: valid-calendar-data): Cyrus. They store a time zone nobody defines, though.
VALIDATING_SERVERS = frozenset({"cyrus"})


def break_resource(data: bytes, *, server_kind: str = "") -> bytes:
    """A buggy client writes something the server stores and we cannot read.

    An end before the start, as a negative DURATION: SOGo "repairs" a DTEND before
    DTSTART on PUT (it stores a sane event), while Radicale, Xandikos, DAViCal and
    SabreDAV store ``DURATION:-PT1H`` as sent. Cyrus refuses both; on it the start and
    end get a TZID that is neither an IANA name nor defined by a VTIMEZONE.
    """
    cal = Calendar.from_ical(data)
    master = master_of(cal)
    if server_kind in VALIDATING_SERVERS:
        for name in ("DTSTART", "DTEND"):
            master[name].params["TZID"] = "Mars/Olympus"
    else:
        master.pop("DTEND", None)
        master.pop("DURATION", None)
        master.add("duration", -dt.timedelta(hours=1))
    _touch(master)
    return bytes(cal.to_ical())


# --- one occurrence's own state, as the clients write it ------------------------------------


def _plain_override(cal: Calendar, original: dt.datetime) -> Component:
    """The override a client adds for "this occurrence only": a copy of the master at that
    occurrence (SUMMARY, LOCATION … as the master has them), or the one already there."""
    existing = override_of(cal, original)
    if existing is not None:
        return existing
    master = master_of(cal)
    override = Todo() if master.name == "VTODO" else Event()
    override.add("uid", str(master["UID"]))
    override.add("recurrence-id", original)
    for name in ("SUMMARY", "DESCRIPTION", "LOCATION", "CATEGORIES", "X-FOLLOWUP-KIND"):
        if name in master:
            override.add(name, master[name], encode=False)
    span = master["DTEND" if "DTEND" in master else "DUE"].dt - master["DTSTART"].dt
    override.add("dtstart", original)
    override.add("due" if master.name == "VTODO" else "dtend", original + span)
    cal.add_component(override)
    return override


def alarm_for_one_occurrence(data: bytes, original: dt.datetime) -> bytes:
    """iOS "this event only": a reminder on one occurrence; iOS adds its alarm UID and
    acknowledgement, and marks the occurrence free (TRANSP) if the user said so."""
    cal = Calendar.from_ical(data)
    override = _plain_override(cal, original)
    alarm = _alarm(45)
    alarm.add("uid", "8C4E2A53-7D39-4F7B-9E42-ONE-OCCURRENCE")
    alarm.add("x-wr-alarmuid", "8C4E2A53-7D39-4F7B-9E42-ONE-OCCURRENCE")
    override.add_component(alarm)
    override.add("transp", "TRANSPARENT")
    override.add("x-apple-travel-advisory-behavior", "AUTOMATIC")
    _touch(override)
    return bytes(cal.to_ical())


def complete_task_occurrence(data: bytes, original: dt.datetime) -> bytes:
    """Thunderbird ticks one occurrence of a recurring task done."""
    cal = Calendar.from_ical(data)
    override = _plain_override(cal, original)
    done = _now()
    override.add("status", "COMPLETED")
    override.add("completed", done)
    override.add("percent-complete", 100)
    override.add("x-moz-generation", "2")
    _touch(override, modified=done)
    return bytes(cal.to_ical())


def answer_and_classify_occurrence(data: bytes, original: dt.datetime) -> bytes:
    """Outlook: one occurrence made private, with the client's own attendee marked as
    tentative for that occurrence only (an ATTENDEE the follow-up does not have)."""
    cal = Calendar.from_ical(data)
    override = _plain_override(cal, original)
    attendee = vCalAddress("mailto:carol@example.com")
    attendee.params["CN"] = "Carol Example"
    attendee.params["PARTSTAT"] = "TENTATIVE"
    override.add("attendee", attendee, encode=False)
    override.add("class", "PRIVATE")
    override.add("x-microsoft-cdo-busystatus", "TENTATIVE")
    _touch(override)
    return bytes(cal.to_ical())


def all_day_occurrence(
    data: bytes, original: dt.datetime, day: dt.date, *, style: str = "thunderbird"
) -> bytes:
    """Thunderbird/Outlook tick "all day" on one occurrence of a timed series: the override's
    DTSTART/DTEND become DATEs (the end exclusive) while the master keeps its DATE-TIMEs."""
    cal = Calendar.from_ical(data)
    override = _plain_override(cal, original)
    for name in ("DTSTART", "DTEND", "DUE", "DURATION"):
        override.pop(name, None)
    override.add("dtstart", day)
    override.add("dtend", day + dt.timedelta(days=1))
    if style == "outlook":
        override.add("x-microsoft-cdo-alldayevent", "TRUE")
        override.add("transp", "TRANSPARENT")
    else:
        override.add("x-moz-generation", "4")
    _touch(override)
    _touch(master_of(cal))
    return bytes(cal.to_ical())


def all_day_single(data: bytes, day: dt.date) -> bytes:
    """A client ticks "all day" on a timed event that does not repeat: DATEs, the end exclusive."""
    cal = Calendar.from_ical(data)
    event = master_of(cal)
    for name in ("DTSTART", "DTEND", "DUE", "DURATION"):
        event.pop(name, None)
    event.add("dtstart", day)
    event.add("dtend", day + dt.timedelta(days=1))
    event.add("x-moz-generation", "4")
    _touch(event)
    return bytes(cal.to_ical())


# --- files some tools write and some servers keep ------------------------------------------


def without_uid(summary: str, start: dt.datetime, end: dt.datetime) -> bytes:
    """An event exported without UID (RFC 5545 requires one; some exporters leave it out)."""
    cal = Calendar()
    cal.add("prodid", "-//Example Corp.//Legacy Exporter 2.1//EN")
    cal.add("version", "2.0")
    event = Event()
    event.add("dtstamp", _now())
    event.add("summary", summary)
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("rrule", vRecur.from_ical("FREQ=WEEKLY;COUNT=4"))
    cal.add_component(event)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


def second_master_copy(
    data: bytes, *, summary: str, old_copy_exdate: dt.datetime | None = None
) -> bytes:
    """A client that appends an edited master instead of replacing it: two masters of one
    UID, the new one with a higher SEQUENCE; the old copy may carry an EXDATE of its own."""
    cal = Calendar.from_ical(data)
    old = master_of(cal)
    new = old.copy()
    for sub in old.subcomponents:
        new.add_component(sub)
    new.pop("SUMMARY", None)
    new.add("summary", summary)
    _touch(new)
    new.pop("SEQUENCE", None)
    new.add("sequence", int(old.get("SEQUENCE", 0)) + 2)
    if old_copy_exdate is not None:
        old.add("exdate", [old_copy_exdate])
    cal.add_component(new)
    return bytes(cal.to_ical())
