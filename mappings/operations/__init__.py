"""The CRM's recurrence dialog as operations on a follow-up document.

Pure functions: a ``FollowUp`` in, a new ``FollowUp`` out (two for a split, ``None``
when nothing is left), no I/O and no clock. Every bad input raises ``MappingError``
naming the follow-up and the argument at fault, so the CLI and the HTTP API can report
it as "field X: why" without knowing the rules themselves.

Why these semantics (``shared/reference/superoffice-recurrence.md`` §1.4, §3.11–12, §4):

**The date list** (§1.4: the dialog lists every date; Later/Earlier, Add, Delete).

* ``move_date(f, day, days=+1|-1)`` — the occurrence shown on ``day`` moves one day
  later or earlier at the same time of day. It becomes an override exception (RECURRENCE-ID
  = where the series put it), because that is what the CRM stores: a row whose start
  differs from its ``original_start_date``. Moving it back to where the series had it
  removes the exception. The list holds each date once, so moving onto a date that
  already has an occurrence is refused. A single follow-up simply moves.
* ``add_date(f, day)`` — an extra occurrence at the series' time of day (RDATE). A bounded
  CRM pattern gets it in ``Dates``, the complete list (built from the pattern the first
  time); a Custom pattern likewise; a rule kept as iCalendar gets an RDATE. An open-ended
  CRM series has no complete list to add to (``Dates`` there would say "and nothing
  else"), so it is refused with the way out. A date that was deleted by a cancelled
  exception is simply restored. A single follow-up becomes a Custom series of two dates,
  which is what the CRM's Custom frequency is.
* ``delete_date(f, day)`` — a bounded CRM pattern loses the date from ``Dates`` (EXDATE);
  otherwise the occurrence becomes a cancelled exception. The last date cannot be
  deleted: that is deleting the follow-up.

  When ``Dates`` ends up equal to what the pattern makes, it is dropped again, so
  deleting and re-adding a date gives back the document one started with.

**One occurrence, or this and all following** (§4: UpdateMode OnlyThis/ThisAndForward).
Occurrences are named by their start: the original start (the RECURRENCE-ID) or, for a
moved one, where it is now. Dates without a time work too where unambiguous.

* ``change_occurrence(..., mode="only-this")`` — an override exception with the new
  values. Values equal to the series' are not kept, and an edit that puts the
  occurrence back exactly as the series had it removes the exception (§3.12:
  "un-exceptional").
* ``change_occurrence(..., mode="this-and-following")`` — the series splits (§3.11: the
  old rule "is stopped at the point where the break occurs"): the old follow-up ends the
  day before the chosen occurrence (``EndDate``; a Counter series is turned into an
  EndDate one, as UNTIL is the only end every client writes back), and a new follow-up
  ``<id>-<yyyymmdd>`` starts at the chosen occurrence with the new values, the same
  pattern, the remaining count and the exceptions that fall from the split on. This id is
  the one ``mappings.from_ical`` gives the tail of a RANGE=THISANDFUTURE split, so the
  same edit made in a calendar client arrives as the same follow-up. On the first
  occurrence there is nothing before to keep: the whole series changes, no split.
  The new values may change the time of day and the length, not the date: shifting every
  later date would move the pattern itself (§3.10 discourages date changes; edit the
  pattern instead). Occurrences edited one by one keep their own values.
* ``stop_repeating(f, from_occurrence)`` — occurrences after the chosen one go (§4 "Stop
  repeating"); on the first occurrence the follow-up becomes a single one at that
  occurrence's time, recurrence removed.
* ``delete_occurrence(f, occurrence, mode)`` — only-this cancels the occurrence;
  this-and-following stops the series before it (the chosen one goes too). When nothing
  is left — the first occurrence with this-and-following, the last live one with
  only-this, or a single follow-up — the result is ``None``: delete the follow-up.

A rule kept verbatim as iCalendar (``ical_recurrence``) supports the per-occurrence
operations and ``add_date``; truncating or splitting it would mean rewriting a rule the
CRM cannot show, so those are refused with a pointer to the calendar client.

The package: ``date_list`` and ``occurrence_edits`` hold the operations above;
``rewrite`` builds the new documents; ``slots`` finds the occurrence a caller names.
"""

from mappings.operations.date_list import add_date, delete_date, move_date
from mappings.operations.occurrence_edits import (
    change_occurrence,
    delete_occurrence,
    stop_repeating,
)
from mappings.operations.slots import MODES, Mode, Slot, find_occurrence, split_id

__all__ = [
    "MODES",
    "Mode",
    "Slot",
    "add_date",
    "change_occurrence",
    "delete_date",
    "delete_occurrence",
    "find_occurrence",
    "move_date",
    "split_id",
    "stop_repeating",
]
