"""Busy time and the calendar home: what the follow-up dialog asks of the server.

``query_busy`` answers "what makes the owner busy then" in one REPORT (a free-busy-query
where the server has a trustworthy one, else a time-range calendar-query expanded here),
and ``home_calendars`` lists the owner's other calendars, whose events make them busy too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from urllib.parse import quote, unquote, urlsplit

import recurring_ical_events
from icalendar import Calendar as ICalendar

from sync.errors import TransportError
from sync.stores.caldav.collection import PATH_SAFE, Collection
from sync.stores.caldav.multistatus import CALDAV, DAV, tag

# One logger for the whole client, as before the split: log lines keep their "logger" name.
log = logging.getLogger("sync.stores.caldav")


@dataclass(frozen=True)
class BusyPeriod:
    """A stretch of busy time in a calendar, in UTC.

    ``summary`` and ``uid`` are None when the server answered with free-busy only (RFC 4791
    7.10 carries neither), so a caller can still say *that* the time is taken.
    """

    start: datetime
    end: datetime
    summary: str | None = None
    uid: str | None = None


@dataclass(frozen=True)
class HomeCalendar:
    """One calendar collection in the owner's calendar home, as listed for busy time."""

    url: str
    name: str  # the last path segment
    display_name: str | None
    #: Holds events and is not marked transparent (RFC 6638 schedule-calendar-transp):
    #: its events make the owner busy.
    holds_busy_time: bool


def last_segment(url: str) -> str:
    """The calendar id in a collection URL: its last path segment, unquoted."""
    return unquote(urlsplit(url).path).rstrip("/").rsplit("/", 1)[-1]


class BusyTime:
    """Busy periods in this calendar, and the other calendars of its owner."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection

    def query_busy(self, start: datetime, end: datetime, *, zone: tzinfo = UTC) -> list[BusyPeriod]:
        """What makes the calendar's owner busy between ``start`` and ``end``: one REPORT.

        Where ``capabilities.free_busy_query`` holds, a free-busy-query (RFC 4791 7.10): the
        server expands recurrences itself and answers busy periods only, without summaries
        or UIDs. Elsewhere a time-range calendar-query returns the events themselves, which
        are expanded here with recurring-ical-events; transparent and cancelled ones do not
        make anyone busy. All-day and floating times are read in ``zone``. Periods come
        back in UTC, in start order.
        """
        col = self.collection
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("query_busy needs aware start and end times")
        lo, hi = start.astimezone(UTC), end.astimezone(UTC)
        if hi <= lo:
            return []
        stamp = "%Y%m%dT%H%M%SZ"
        time_range = f'<C:time-range start="{lo.strftime(stamp)}" end="{hi.strftime(stamp)}"/>'
        if col.capabilities.free_busy_query:
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                f'<C:free-busy-query xmlns:C="{CALDAV}">{time_range}</C:free-busy-query>'
            )
            reply = col.request("REPORT", col.url, body.encode(), {"Depth": "1"})
            if reply.status != 200:
                raise col.unexpected(reply, "REPORT free-busy-query", col.path)
            return _free_busy_periods(reply.body, lo, hi)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV}">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f"{time_range}</C:comp-filter></C:comp-filter></C:filter>"
            "</C:calendar-query>"
        )
        reply = col.request("REPORT", col.url, body.encode(), {"Depth": "1"})
        periods: list[BusyPeriod] = []
        for resp in col.multistatus(reply, "calendar-query time-range"):
            data_el = resp.props.get(tag(CALDAV, "calendar-data"))
            if data_el is None or not (data_el.text or "").strip():
                continue
            periods.extend(_event_periods(str(data_el.text).encode("utf-8"), lo, hi, zone))
        return sorted(periods, key=lambda p: (p.start, p.end))

    # ----------------------------------------------------------------- the calendar home

    def home_calendars(self) -> list[HomeCalendar]:
        """Every calendar collection in the owner's calendar home (this one included).

        Two PROPFINDs find the home (current-user-principal, then calendar-home-set; the
        parent collection where a server answers neither), one Depth 1 PROPFIND lists it.
        A calendar holds busy time unless its supported components leave out VEVENT or
        it says schedule-calendar-transp = transparent (RFC 6638 §9.1), as a birthdays or
        a subscribed holidays calendar may.
        """
        col = self.collection
        home = self._calendar_home()
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<D:propfind xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop>'
            "<D:resourcetype/><D:displayname/><C:supported-calendar-component-set/>"
            "<C:schedule-calendar-transp/></D:prop></D:propfind>"
        )
        reply = col.request("PROPFIND", home, body.encode(), {"Depth": "1"})
        found = []
        for resp in col.multistatus(reply, "PROPFIND calendar home"):
            kind = resp.props.get(tag(DAV, "resourcetype"))
            if kind is None or kind.find(tag(CALDAV, "calendar")) is None:
                continue
            components = resp.props.get(tag(CALDAV, "supported-calendar-component-set"))
            events = components is None or any(
                str(c.get("name", "")).upper() == "VEVENT" for c in components
            )
            transp = resp.props.get(tag(CALDAV, "schedule-calendar-transp"))
            transparent = transp is not None and transp.find(tag(CALDAV, "transparent")) is not None
            name_el = resp.props.get(tag(DAV, "displayname"))
            path = resp.href if resp.href.endswith("/") else resp.href + "/"
            found.append(
                HomeCalendar(
                    url=col.origin + quote(path, safe=PATH_SAFE),
                    name=last_segment(path),
                    display_name=(name_el.text or "").strip() or None
                    if name_el is not None
                    else None,
                    holds_busy_time=events and not transparent,
                )
            )
        return found

    def _calendar_home(self) -> str:
        col = self.collection
        principal = self._href_property(col.url, DAV, "current-user-principal")
        if principal is not None:
            home = self._href_property(col.url_for(principal), CALDAV, "calendar-home-set")
            if home is not None:
                return col.url_for(home)
        return col.origin + quote(col.path.rstrip("/").rpartition("/")[0] + "/", safe=PATH_SAFE)

    def _href_property(self, url: str, ns: str, name: str) -> str | None:
        """The DAV:href inside one property of ``url`` (PROPFIND Depth 0), or None."""
        col = self.collection
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<D:propfind xmlns:D="DAV:" xmlns:X="{ns}"><D:prop><X:{name}/></D:prop></D:propfind>'
        )
        reply = col.request("PROPFIND", url, body.encode(), {"Depth": "0"})
        if reply.status not in (200, 207):
            return None
        for resp in col.multistatus(reply, f"PROPFIND {name}"):
            el = resp.props.get(tag(ns, name))
            href = el.find(tag(DAV, "href")) if el is not None else None
            if href is not None and (href.text or "").strip():
                return col.from_server(str(href.text).strip())
        return None


def _free_busy_periods(data: bytes, lo: datetime, hi: datetime) -> list[BusyPeriod]:
    """BUSY, BUSY-TENTATIVE and BUSY-UNAVAILABLE periods of a VFREEBUSY answer."""

    try:
        cal = ICalendar.from_ical(data)
    except ValueError as exc:
        raise TransportError(f"unreadable free-busy answer: {exc}") from exc
    periods: list[BusyPeriod] = []
    for component in cal.walk("VFREEBUSY"):
        lines = component.get("FREEBUSY")
        if lines is None:
            continue
        for line in lines if isinstance(lines, list) else [lines]:
            if str(line.params.get("FBTYPE", "BUSY")).upper() == "FREE":
                continue
            values = line.dts if hasattr(line, "dts") else [line]
            for value in values:
                period = value.dt if hasattr(value, "dt") else value
                if not isinstance(period, tuple):
                    continue
                begin, finish = period
                if isinstance(finish, timedelta):
                    finish = begin + finish
                begin, finish = _utc(begin, UTC), _utc(finish, UTC)
                if finish > lo and begin < hi:
                    periods.append(BusyPeriod(begin, finish))
    return sorted(periods, key=lambda p: (p.start, p.end))


def _event_periods(data: bytes, lo: datetime, hi: datetime, zone: tzinfo) -> list[BusyPeriod]:
    """The occurrences of one calendar object inside the window, as busy periods."""
    try:
        cal = ICalendar.from_ical(data)
        events = recurring_ical_events.of(cal).between(lo, hi)
    except Exception as exc:  # a broken object must not hide the rest of the calendar
        log.warning("busy time: skipping an unreadable calendar object: %s", exc)
        return []
    periods: list[BusyPeriod] = []
    for event in events:
        if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
            continue
        if str(event.get("STATUS", "")).upper() == "CANCELLED":
            continue
        begin = event["DTSTART"].dt
        if "DTEND" in event:
            finish = event["DTEND"].dt
        elif "DURATION" in event:
            finish = begin + event["DURATION"].dt
        else:  # RFC 5545: a date lasts a day, a date-time no time at all
            finish = begin + timedelta(days=1) if not isinstance(begin, datetime) else begin
        start_utc, end_utc = _utc(begin, zone), _utc(finish, zone)
        if (end_utc > lo and start_utc < hi) or (start_utc == end_utc and lo <= start_utc < hi):
            summary = event.get("SUMMARY")
            uid = event.get("UID")
            periods.append(
                BusyPeriod(
                    start_utc,
                    end_utc,
                    str(summary) if summary is not None else None,
                    str(uid) if uid is not None else None,
                )
            )
    return periods


def _utc(value: date | datetime, zone: tzinfo) -> datetime:
    """A DATE or DATE-TIME from a calendar as an aware UTC datetime (floating read in ``zone``)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)
