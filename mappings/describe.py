"""Human-readable text for a follow-up's recurrence, in English and Norwegian.

Two forms, because the CRM shows two:

* ``summary`` is the short line next to "Recurrence/Gjentas" in the follow-up dialog,
  ``Monthly (23.09.2016 - 23.09.2017)``: the pattern's name and the first and last date
  a user will actually meet (hand-deleted and cancelled dates do not count, added and
  moved ones do). An open-ended series, which SuperOffice itself cannot make, reads
  ``Weekly (from 06.01.2025)``.
* ``sentence`` spells the rule out the way the recurrence dialog's options read
  ("Every 2nd week on Tuesday and Thursday, 6 times") and then counts the hand edits
  (", 1 date moved, 2 deleted, 1 added"), so a user can tell at a glance that the
  calendar will not show the bare rule.

``status_text`` is the follow-up's status as the CRM names it ("Completed" /
"Fullført"), with the occurrences whose own status differs counted after it.

Dates are ``dd.mm.yyyy`` in both languages, as SuperOffice writes them. The module is
pure: it reads no clock and no locale settings, so the text is the same on every machine.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Literal

from icalendar import vRecur

from mappings.model import FollowUp, FollowUpStatus, OccurrenceException
from mappings.moments import date_of
from mappings.occurrences import is_recurring, occurrences, series_dates
from mappings.patterns import effective_end_type, is_bounded
from mappings.superoffice import (
    RecurrenceDailyPattern,
    RecurrenceEndType,
    RecurrenceInfo,
    RecurrenceMonthlyPattern,
    RecurrencePattern,
    RecurrenceYearlyPattern,
    Weekday,
    WeekOfMonth,
    weekday_indexes,
)

Lang = Literal["en", "nb"]
LANGUAGES: tuple[Lang, ...] = ("en", "nb")

_PATTERN_NAMES: dict[Lang, dict[RecurrencePattern, str]] = {
    "en": {
        RecurrencePattern.Daily: "Daily",
        RecurrencePattern.Weekly: "Weekly",
        RecurrencePattern.Monthly: "Monthly",
        RecurrencePattern.Yearly: "Yearly",
        RecurrencePattern.Custom: "Custom",
    },
    "nb": {
        RecurrencePattern.Daily: "Daglig",
        RecurrencePattern.Weekly: "Ukentlig",
        RecurrencePattern.Monthly: "Månedlig",
        RecurrencePattern.Yearly: "Årlig",
        RecurrencePattern.Custom: "Egendefinert",
    },
}
_CUSTOM_RULE = {"en": "Custom rule", "nb": "Egendefinert regel"}
_NEVER = {"en": "Never", "nb": "Aldri"}

_WEEKDAYS: dict[Lang, tuple[str, ...]] = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "nb": ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag"),
}
#: Norwegian uses the definite form after an ordinal: "den 4. torsdagen".
_WEEKDAYS_DEFINITE_NB = (
    "mandagen",
    "tirsdagen",
    "onsdagen",
    "torsdagen",
    "fredagen",
    "lørdagen",
    "søndagen",
)
_MONTHS: dict[Lang, tuple[str, ...]] = {
    # Spelled out rather than taken from ``calendar.month_name``, which follows the locale.
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    "nb": (
        "januar",
        "februar",
        "mars",
        "april",
        "mai",
        "juni",
        "juli",
        "august",
        "september",
        "oktober",
        "november",
        "desember",
    ),
}


def summary(followup: FollowUp, lang: Lang = "en") -> str:
    """The CRM's one-line recurrence text: ``Monthly (23.09.2016 - 23.09.2017)``.

    The range is the first and last occurrence the user will meet, so it agrees with the
    calendar rather than with the bare rule.
    """
    _check_lang(lang)
    if not is_recurring(followup):
        return _NEVER[lang]
    name = _pattern_name(followup, lang)
    dates = _occurrence_dates(followup)
    if not dates:
        return f"{name} ({'no dates left' if lang == 'en' else 'ingen datoer igjen'})"
    if is_open_ended(followup):
        return f"{name} ({'from' if lang == 'en' else 'fra'} {_dmy(dates[0])})"
    return f"{name} ({_dmy(dates[0])} - {_dmy(dates[-1])})"


def sentence(followup: FollowUp, lang: Lang = "en") -> str:
    """The rule in words, its end, and a count of the hand edits.

    ``Every 2nd week on Tuesday and Thursday, 6 times, 1 date moved`` /
    ``Hver 2. uke på tirsdag og torsdag, 6 ganger, 1 dato flyttet``.
    """
    _check_lang(lang)
    if not is_recurring(followup):
        return "Does not repeat" if lang == "en" else "Gjentas ikke"
    if followup.ical_recurrence is not None:
        text = _kept_rule_text(followup, lang)
    else:
        info = followup.recurrence
        assert info is not None  # is_recurring said so
        text = _rule_text(info, lang) + _end_text(info, lang)
    return text + _edits_text(followup, lang)


_STATUS_NAMES: dict[Lang, dict[FollowUpStatus, str]] = {
    "en": {
        FollowUpStatus.not_started: "Not started",
        FollowUpStatus.started: "Started",
        FollowUpStatus.completed: "Completed",
    },
    "nb": {
        FollowUpStatus.not_started: "Ikke startet",
        FollowUpStatus.started: "Startet",
        FollowUpStatus.completed: "Fullført",
    },
}
_OCCURRENCE_WORDS = {"en": ("occurrence", "occurrences"), "nb": ("forekomst", "forekomster")}


def status_text(followup: FollowUp, lang: Lang = "en") -> str:
    """``Started, 2 occurrences completed``; empty when no status is known at all."""
    _check_lang(lang)
    names = _STATUS_NAMES[lang]
    own: dict[FollowUpStatus, int] = {}
    for exception in followup.exceptions:
        if exception.status is not None and not exception.cancelled:
            own[exception.status] = own.get(exception.status, 0) + 1
    if followup.status is None and not own:
        return ""
    pieces = [names[followup.status or FollowUpStatus.not_started]]
    singular, plural = _OCCURRENCE_WORDS[lang]
    for status in FollowUpStatus:
        if own.get(status):
            n = own[status]
            pieces.append(f"{n} {singular if n == 1 else plural} {names[status].lower()}")
    return ", ".join(pieces)


def is_open_ended(followup: FollowUp) -> bool:
    """True for a series without COUNT or end date (our extension; the CRM cannot make one)."""
    if followup.ical_recurrence is not None:
        rules = followup.ical_recurrence.rrule
        parsed = [vRecur.from_ical(rule) for rule in rules]
        return any("COUNT" not in recur and "UNTIL" not in recur for recur in parsed)
    info = followup.recurrence
    return info is not None and info.repeats and not is_bounded(info)


# --- the rule ------------------------------------------------------------------------


def _rule_text(info: RecurrenceInfo, lang: Lang) -> str:
    pattern = info.Pattern
    en = lang == "en"
    if pattern == RecurrencePattern.Daily:
        assert info.DayPattern is not None
        sub = info.DayPattern.Pattern
        if sub == RecurrenceDailyPattern.EveryWorkday:
            return "Every workday (Mon–Fri)" if en else "Alle arbeidsdager (man–fre)"
        if sub == RecurrenceDailyPattern.EveryWeekday:
            return "Every day (Mon–Sun)" if en else "Alle ukedager (man–søn)"
        return _every(info.DayPattern.Cycle, "day", "dag", lang)
    if pattern == RecurrencePattern.Weekly:
        assert info.WeekPattern is not None
        days = _weekday_list(info.WeekPattern.Weekdays, lang)
        every = _every(info.WeekPattern.Cycle, "week", "uke", lang)
        return f"{every} on {days}" if en else f"{every} på {days}"
    if pattern == RecurrencePattern.Monthly:
        month = info.MonthPattern
        assert month is not None
        every = _every(month.Cycle, "month", "måned", lang).lower()
        if month.Pattern == RecurrenceMonthlyPattern.DayOfMonth:
            text = f"Day {month.Day} of {every}" if en else f"Dag {month.Day} {every}"
            if month.Day > 28:
                text += (
                    " (the last day in shorter months)" if en else " (siste dag i kortere måneder)"
                )
            return text
        nth = _nth_weekdays(month.Weekday, month.WeekOfMonth, lang)
        return f"{nth} of {every}" if en else f"{nth} {every}"
    if pattern == RecurrencePattern.Yearly:
        year = info.YearPattern
        assert year is not None
        month_name = _MONTHS[lang][year.Cycle - 1]
        prefix = "Every year on" if en else "Hvert år"
        if year.Pattern == RecurrenceYearlyPattern.DayOfMonth:
            return f"{prefix} {_yearly_day(year.Day, year.Cycle, lang)}"
        nth = _nth_weekdays(year.Weekday, year.WeekOfMonth, lang)
        nth = nth[0].lower() + nth[1:]
        return f"{prefix} {nth} of {month_name}" if en else f"{prefix} {nth} i {month_name}"
    if pattern == RecurrencePattern.Custom:
        count = len({d.Date for d in info.Dates or [] if d.Date is not None})
        if en:
            return f"On {count} chosen date{'' if count == 1 else 's'}"
        return f"På {count} {'valgt dato' if count == 1 else 'valgte datoer'}"
    raise ValueError(f"pattern {pattern.name} has no description")  # pragma: no cover


def _every(cycle: int, unit_en: str, unit_nb: str, lang: Lang) -> str:
    """``Every week`` / ``Every 2nd week``; ``Hver uke`` / ``Hver 2. uke``."""
    if lang == "en":
        return f"Every {unit_en}" if cycle <= 1 else f"Every {ordinal_en(cycle)} {unit_en}"
    return f"Hver {unit_nb}" if cycle <= 1 else f"Hver {cycle}. {unit_nb}"


def _nth_weekdays(weekdays: Weekday, week: WeekOfMonth, lang: Lang) -> str:
    """``The 4th Thursday`` / ``Den 4. torsdagen``; ``The last Friday`` / ``Den siste fredagen``."""
    indexes = weekday_indexes(weekdays)
    if lang == "en":
        which = "last" if week == WeekOfMonth.Last else ordinal_en(int(week))
        return f"The {which} {_join([_WEEKDAYS['en'][i] for i in indexes], 'and')}"
    which = "siste" if week == WeekOfMonth.Last else f"{int(week)}."
    return f"Den {which} {_join([_WEEKDAYS_DEFINITE_NB[i] for i in indexes], 'og')}"


def _yearly_day(day: int, month: int, lang: Lang) -> str:
    """``23 September`` / ``den 23. september``, saying what happens when the month is short."""
    names = _MONTHS[lang]
    length = calendar.monthrange(2001, month)[1]  # a common year
    longest = 29 if month == 2 else length
    name = names[month - 1]
    if day > longest:
        return f"the last day of {name}" if lang == "en" else f"den siste dagen i {name}"
    text = f"{day} {name}" if lang == "en" else f"den {day}. {name}"
    if day > length:  # 29 February
        other = f"{length} {name} in other years" if lang == "en" else f"{length}. {name} andre år"
        text += f" ({other})"
    return text


def _end_text(info: RecurrenceInfo, lang: Lang) -> str:
    if info.Pattern == RecurrencePattern.Custom:
        return ""
    end_type = effective_end_type(info)
    if end_type == RecurrenceEndType.Counter and info.RecurrenceCounter:
        n = info.RecurrenceCounter
        if lang == "en":
            return ", once" if n == 1 else f", {n} times"
        return f", {n} gang" if n == 1 else f", {n} ganger"
    if end_type == RecurrenceEndType.EndDate and info.EndDate is not None:
        return f", {'until' if lang == 'en' else 'til og med'} {_dmy(info.EndDate)}"
    return ""


def _kept_rule_text(followup: FollowUp, lang: Lang) -> str:
    """A rule the CRM cannot show: name it and give the iCalendar text, which is exact."""
    kept = followup.ical_recurrence
    assert kept is not None
    parts = list(kept.rrule)
    text = "Custom iCalendar rule" if lang == "en" else "Egendefinert iCalendar-regel"
    if parts:
        text += " " + " + ".join(parts)
    if kept.exrule:
        text += (" except " if lang == "en" else " unntatt ") + " + ".join(kept.exrule)
    if kept.rdate:
        n = len(kept.rdate)
        if lang == "en":
            text += f", plus {n} extra date{'' if n == 1 else 's'}"
        else:
            text += f", pluss {n} {'ekstra dato' if n == 1 else 'ekstra datoer'}"
    return text


# --- hand edits ----------------------------------------------------------------------


def edit_counts(followup: FollowUp) -> dict[str, int]:
    """How many occurrences were moved, deleted, added or only changed (text) by hand.

    Deleted counts both pattern dates missing from a hand-edited ``Dates`` list and
    cancelled exceptions; a Custom pattern's dates are its definition, not additions.
    """
    moved = changed = deleted = added = 0
    for exception in followup.exceptions:
        if exception.cancelled:
            deleted += 1
        elif _is_moved(exception, followup):
            moved += 1
        else:
            changed += 1
    info = followup.recurrence
    if info is not None and info.repeats and info.Pattern != RecurrencePattern.Custom:
        dates = series_dates(followup)
        deleted += len(dates.deleted)
        added += len(dates.added)
    return {"moved": moved, "deleted": deleted, "added": added, "changed": changed}


def _is_moved(exception: OccurrenceException, followup: FollowUp) -> bool:
    original = exception.original_start
    start = exception.start if exception.start is not None else original
    end = exception.end if exception.end is not None else start + followup.duration
    return bool(start != original or end != original + followup.duration)


_EDIT_WORDS: dict[Lang, dict[str, str]] = {
    "en": {"moved": "moved", "deleted": "deleted", "added": "added", "changed": "changed"},
    "nb": {"moved": "flyttet", "deleted": "slettet", "added": "lagt til", "changed": "endret"},
}


def _edits_text(followup: FollowUp, lang: Lang) -> str:
    """``, 1 date moved, 2 deleted, 1 added``: the noun goes with the first count only."""
    counts = edit_counts(followup)
    items = [(key, n) for key, n in counts.items() if n]
    if not items:
        return ""
    pieces = []
    for position, (key, n) in enumerate(items):
        word = _EDIT_WORDS[lang][key]
        if position == 0:
            if lang == "en":
                noun = "date" if n == 1 else "dates"
            else:
                noun = "dato" if n == 1 else "datoer"
            pieces.append(f"{n} {noun} {word}")
        else:
            pieces.append(f"{n} {word}")
    return ", " + ", ".join(pieces)


# --- small helpers -------------------------------------------------------------------


def ordinal_en(n: int) -> str:
    """1st, 2nd, 3rd, 4th … 11th, 12th, 13th … 21st, 22nd."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _weekday_list(weekdays: Weekday, lang: Lang) -> str:
    names = [_WEEKDAYS[lang][i] for i in weekday_indexes(weekdays)]
    return _join(names, "and" if lang == "en" else "og")


def _join(items: list[str], conjunction: str) -> str:
    """``a``, ``a and b``, ``a, b and c`` (no serial comma, which Norwegian does not use)."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def _pattern_name(followup: FollowUp, lang: Lang) -> str:
    if followup.ical_recurrence is not None:
        return _CUSTOM_RULE[lang]
    assert followup.recurrence is not None
    return _PATTERN_NAMES[lang][followup.recurrence.Pattern]


def _occurrence_dates(followup: FollowUp) -> list[dt.date]:
    """Local dates of the occurrences that will happen (cancelled ones left out), in order."""
    dates = [date_of(o.start) for o in occurrences(followup, include_cancelled=False)]
    return sorted(dates)


def _dmy(day: dt.date) -> str:
    return day.strftime("%d.%m.%Y")


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r} (use one of {', '.join(LANGUAGES)})")
