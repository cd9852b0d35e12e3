"""The recurrence dialog's date list: every date a follow-up occurs on, with conflicts.

SuperOffice's ``CalculateDays`` / ``ValidateDays``
(``shared/reference/superoffice-recurrence.md`` §1.4, §2.5): every date a follow-up will
occur on, each with ``IsConflict``, a ``Tooltip`` saying what it clashes with, and the
weekday as ``Description``. A conflict is an overlap with

* the owner's calendars on the CalDAV server — ``DavCalendar.query_busy``, one REPORT
  per calendar for the whole series: free-busy-query where the server supports it, else
  a time-range calendar-query expanded here. Through an account, that is the synced
  calendar and every other calendar in the owner's calendar home that holds busy time
  (events, not marked transparent), or the ones ``busy_calendars`` names
  (docs/how-to/invitations.md); with a calendar passed in, that calendar alone. The
  follow-up's own resource is ignored (by UID; on a free-busy answer, which has no
  UIDs, a busy period wholly covered by the follow-up's own synced occurrences is taken
  to be them), and so are the calendar copies of the owner's other follow-ups, which
  the store reports with better names;
* the owner's other follow-ups in the store (same ``owner``), expanded over the same
  window — the CRM side may be ahead of the calendar, and these have titles.

As in the CRM a conflict is a warning: nothing here refuses a date. The calendar is
opened through ``sync.stores.connect.open_calendar``, like every other connection.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.moments import Moment
from mappings.occurrences import Occurrence, occurrences
from sync.config import Account, Settings
from sync.errors import FollowupSyncError
from sync.state import followups as crm_store
from sync.state import repo
from sync.state.db import Database
from sync.stores import connect
from sync.stores.caldav import BusyPeriod, DavCalendar

log = logging.getLogger(__name__)

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class DateInfo(BaseModel):
    """SuperOffice's ``RecurrenceDate`` plus the occurrence's local start and end."""

    Date: dt.date
    IsConflict: bool = False
    Description: str = Field(description="The weekday, as the CRM's dialog shows it.")
    Tooltip: str | None = Field(default=None, description="What the date clashes with.")
    Start: dt.datetime | dt.date = Field(description="Local start (a date for all-day).")
    End: dt.datetime | dt.date = Field(description="Local end (exclusive date for all-day).")


@dataclass(frozen=True)
class _Busy:
    start: dt.datetime  # aware UTC
    end: dt.datetime
    name: str | None  # None: a free-busy period, which has no name
    times: str | None = None  # how to show when; computed in the follow-up's zone if None
    calendar: str | None = None  # which other calendar of the owner, None: the synced one


# --- dates and conflicts --------------------------------------------------------------------


def calculate_dates(
    followup: FollowUp,
    *,
    db: Database | None,
    account: Account | None = None,
    calendar: DavCalendar | None = None,
    conflicts: bool = True,
) -> list[DateInfo]:
    """Every date the follow-up occurs on (moved ones where they are now), with conflicts.

    Without ``db`` there are no store conflicts; without ``account`` or ``calendar``
    none from the server. Open-ended series stop at the mapper's default horizon.
    """
    live = occurrences(followup, include_cancelled=False)
    spans = [(o.start, o.end) for o in live]
    return _date_infos(
        followup, spans, db=db, account=account, calendar=calendar, conflicts=conflicts
    )


def validate_dates(
    followup: FollowUp,
    dates: Sequence[dt.date],
    *,
    db: Database | None,
    account: Account | None = None,
    calendar: DavCalendar | None = None,
    conflicts: bool = True,
) -> list[DateInfo]:
    """A hand-edited date list, each date at the follow-up's time and length, with conflicts."""
    zone = followup.zone
    spans: list[tuple[Moment, Moment]] = []
    for index, day in enumerate(dates):
        try:
            if followup.all_day:
                spans.append((day, day + followup.duration))
            else:
                assert isinstance(followup.start, dt.datetime)
                start = dt.datetime.combine(day, followup.start.time(), tzinfo=zone)
                spans.append((start, start + followup.duration))
                utc_moment(start + followup.duration, zone)
        except OverflowError:
            raise MappingError(
                f"{day} is out of the range of dates the calendar can hold",
                item=followup.id,
                field=f"dates.{index}",
            ) from None
    return _date_infos(
        followup, spans, db=db, account=account, calendar=calendar, conflicts=conflicts
    )


def _date_infos(
    followup: FollowUp,
    spans: list[tuple[Moment, Moment]],
    *,
    db: Database | None,
    account: Account | None,
    calendar: DavCalendar | None,
    conflicts: bool,
) -> list[DateInfo]:
    zone = followup.zone
    utc_spans = [(utc_moment(s, zone), utc_moment(e, zone)) for s, e in spans]
    clashes: list[list[str]] = [[] for _ in spans]
    if conflicts and spans:
        lo = min(s for s, _ in utc_spans)
        hi = max(max(e for _, e in utc_spans), lo + dt.timedelta(minutes=1))
        others = _other_followups(db, followup) if db is not None else []
        busy = _store_busy(others, lo, hi)
        own_calendar = calendar
        opened = None
        if own_calendar is None and account is not None and db is not None:
            opened = own_calendar = open_calendar(account, db)
        try:
            if own_calendar is not None:
                busy += _calendar_busy(
                    followup, others, own_calendar, lo, hi, db=db, account=account
                )
                if account is not None:
                    for title, sibling in _other_calendars(own_calendar, account):
                        found = _calendar_busy(
                            followup, others, sibling, lo, hi, db=db, account=None
                        )
                        busy += [replace(b, calendar=title) for b in found]
        finally:
            if opened is not None:
                opened.close()
        for index, (utc_start, utc_end) in enumerate(utc_spans):
            for period in busy:
                if _overlaps(utc_start, utc_end, period.start, period.end):
                    clashes[index].append(_label(period, zone))
    result = []
    for (start, end), labels in zip(spans, clashes, strict=True):
        local_start = local_moment(start, zone)
        day = local_start if not isinstance(local_start, dt.datetime) else local_start.date()
        unique = list(dict.fromkeys(labels))
        result.append(
            DateInfo(
                Date=day,
                IsConflict=bool(unique),
                Description=WEEKDAYS[day.weekday()],
                Tooltip="; ".join(unique) if unique else None,
                Start=local_start,
                End=local_moment(end, zone),
            )
        )
    return result


def _other_followups(db: Database, followup: FollowUp) -> list[FollowUp]:
    """The owner's other live follow-ups; without an owner we cannot know whose they are."""
    if followup.owner is None:
        return []
    with db.session() as session:
        return crm_store.owner_documents(session, followup.owner, except_id=followup.id)


def _store_busy(others: Iterable[FollowUp], lo: dt.datetime, hi: dt.datetime) -> list[_Busy]:
    busy = []
    for other in others:
        for o in _live_between(other, lo, hi):
            start, end = utc_moment(o.start, other.zone), utc_moment(o.end, other.zone)
            busy.append(_Busy(start, end, o.title, _span_text(o, other)))
    return busy


def _calendar_busy(
    followup: FollowUp,
    others: list[FollowUp],
    calendar: DavCalendar,
    lo: dt.datetime,
    hi: dt.datetime,
    *,
    db: Database | None,
    account: Account | None,
) -> list[_Busy]:
    periods = calendar.query_busy(lo, hi, zone=followup.zone)
    skip_uids = {followup.effective_uid} | {o.effective_uid for o in others}
    # What free-busy periods may be explained by: our own synced copy and the others.
    known: list[tuple[dt.datetime, dt.datetime]] = []
    synced = _synced_copy(db, followup.id, account, calendar) if db is not None else None
    for item in [*([synced] if synced is not None else []), *others]:
        known += [
            (utc_moment(o.start, item.zone), utc_moment(o.end, item.zone))
            for o in _live_between(item, lo, hi)
        ]
    busy = []
    for period in periods:
        if period.uid is not None:
            if period.uid in skip_uids:
                continue
        elif _covered(period, known):
            continue
        name = (period.summary or "") if period.uid is not None else None
        busy.append(_Busy(period.start, period.end, name))
    return busy


def _other_calendars(calendar: DavCalendar, account: Account) -> list[tuple[str, DavCalendar]]:
    """The owner's other calendars that count for conflicts: (name shown, calendar).

    ``busy_calendars`` unset: every calendar of the home that holds busy time; a list:
    those it names (by id, display name or URL); empty: none. A home that cannot be
    listed is logged and the synced calendar alone counts: conflicts are a warning, and
    the date list must still come.
    """
    wanted = account.busy_calendars
    if wanted == []:
        return []
    try:
        listed = calendar.home_calendars()
    except FollowupSyncError as exc:
        log.warning(
            "%s: the calendar home cannot be listed, conflicts from %s only: %s",
            account.name,
            calendar.url,
            exc,
        )
        return []
    own = _path_of(calendar.url)
    chosen = []
    for home in listed:
        if _path_of(home.url) == own:
            continue
        if wanted is None:
            if not home.holds_busy_time:
                continue
        elif not (
            {home.name, home.display_name, _path_of(home.url)} & {*wanted, *map(_path_of, wanted)}
        ):
            continue
        # A calendar-query, not a free-busy-query: its events have UIDs, so a copy of this
        # follow-up (or of another one) that some other sync keeps there is recognised
        # exactly instead of by the "wholly covered" guess, which there would also hide
        # a real appointment at the same hour.
        sibling = calendar.sibling(home.url, capability_overrides={"free_busy_query": False})
        chosen.append((home.display_name or home.name, sibling))
    return chosen


def _path_of(url: str) -> str:
    return unquote(urlsplit(url).path).rstrip("/")


def _synced_copy(
    db: Database, followup_id: str, account: Account | None, calendar: DavCalendar
) -> FollowUp | None:
    """The version of the follow-up the calendar holds now (the last one synced to it)."""
    with db.session() as session:
        names: list[str] = []
        if account is not None:
            names.append(account.name)
        names += repo.accounts_syncing_to(session, calendar.url)
        for name in names:
            document = repo.synced_document(session, name, followup_id)
            if document is not None:
                return load_followup(document)
    return None


def _covered(period: BusyPeriod, known: list[tuple[dt.datetime, dt.datetime]]) -> bool:
    """True when ``period`` lies wholly inside the union of ``known`` intervals."""
    cursor = period.start
    for start, end in sorted(known):
        if start > cursor:
            break
        cursor = max(cursor, end)
        if cursor >= period.end:
            return True
    return cursor >= period.end


def _live_between(followup: FollowUp, lo: dt.datetime, hi: dt.datetime) -> list[Occurrence]:
    # Start the window a little early: an occurrence starting before ``lo`` may still overlap.
    return [
        o
        for o in occurrences(
            followup, window_start=lo - dt.timedelta(days=2), window_end=hi, include_cancelled=False
        )
        if _overlaps(utc_moment(o.start, followup.zone), utc_moment(o.end, followup.zone), lo, hi)
    ]


def _overlaps(
    a_start: dt.datetime, a_end: dt.datetime, b_start: dt.datetime, b_end: dt.datetime
) -> bool:
    """Half-open overlap; a zero-length item (a task's deadline) clashes with what spans it."""
    if a_start == a_end:
        return b_start <= a_start < b_end
    if b_start == b_end:
        return a_start <= b_start < a_end
    return a_start < b_end and b_start < a_end


def _label(period: _Busy, zone: dt.tzinfo) -> str:
    times = period.times or _times_text(period.start.astimezone(zone), period.end.astimezone(zone))
    if period.calendar is not None:
        if period.name is None:
            return f"busy in the calendar {period.calendar} ({times})"
        return f"{period.name or '(no title)'} ({times}, in {period.calendar})"
    if period.name is None:
        return f"busy in the calendar ({times})"
    return f"{period.name or '(no title)'} ({times})"


def _span_text(occurrence: Occurrence, followup: FollowUp) -> str:
    if followup.all_day:
        return "all day"
    start, end = occurrence.start, occurrence.end
    assert isinstance(start, dt.datetime) and isinstance(end, dt.datetime)
    return _times_text(start, end)


def _times_text(start: dt.datetime, end: dt.datetime) -> str:
    if start.date() == end.date() or end == dt.datetime.combine(
        start.date() + dt.timedelta(days=1), dt.time(), start.tzinfo
    ):
        if start.time() == dt.time() and end - start == dt.timedelta(days=1):
            return "all day"
        return f"{start:%H:%M}–{end:%H:%M}"
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M}"


def utc_moment(value: Moment, zone: dt.tzinfo) -> dt.datetime:
    """A follow-up's moment in UTC (a date is its midnight, a naive time is in ``zone``).

    Overlaps are compared in UTC: busy periods from the server come as UTC.
    """
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(dt.UTC)


def local_moment(value: Moment, zone: dt.tzinfo) -> Moment:
    """An aware moment as the follow-up's wall-clock time in ``zone``, as the dialog shows it."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(zone).replace(tzinfo=None)
    return value


# --- which calendar ------------------------------------------------------------------------


def account_for(settings: Settings, followup: FollowUp, name: str | None = None) -> Account | None:
    """The account whose calendar is the follow-up owner's: named, or the one that selects it."""
    if name is not None or len(settings.accounts) == 1:
        return settings.account(name)
    for account in settings.accounts.values():
        if account.selects(followup_id=followup.id, owner=followup.owner, kind=followup.kind.value):
            return account
    return None


def open_calendar(account: Account, db: Database) -> DavCalendar:
    """The account's calendar: its configured URL, the one a sync pass found, or discovery."""
    with db.session() as session:
        known_url = repo.known_calendar_url(session, account.name)
    return connect.open_calendar(account, known_url=known_url, create=False)
