"""iCalendar → follow-ups: the reverse of ``mappings.to_ical``.

Whatever a calendar client wrote must come back so that ``parse`` then ``map`` keeps
the set of occurrences (start, end, summary) exactly, as recurring-ical-events expands
both. The strategy is "propose, then prove":

1. Per UID, pick the master (no RECURRENCE-ID) and the overrides; of duplicates the
   newest wins (highest SEQUENCE, then DTSTAMP/LAST-MODIFIED). Of several master copies,
   the newest is kept with the others' EXDATEs where they do not contradict it, and only
   the overrides that fit it. A VEVENT/VTODO without UID gets one derived from its
   content (``mappings.uids``), with a warning naming it.
2. Propose representations of the rule, best first: the CRM pattern the follow-up we
   last synced used (``known``), the pattern read structurally from the RRULE and its
   equivalents (Daily every workday = Weekly Mon–Fri …), the same with the complete
   ``Dates`` list (bounded series), a Custom date list, and finally the rule kept
   verbatim in ``ical_recurrence``.
3. Prove each proposal: map it forward with ``mappings.to_ical`` and expand both the
   original and the result with recurring-ical-events over the same window (the whole
   series when it is bounded, a horizon for open-ended rules). The first proposal whose
   occurrences are identical wins. If even the verbatim rule does not reproduce the
   original, a ``MappingError`` is raised: never a silent change of occurrences.

The module is pure: no I/O, no clock; every expansion is bounded by a window and by
``MAX_OCCURRENCES``.

The package, one module per step (each imports only those below it, .importlinter):

* ``parse``: the public face, grouping by UID, one bad UID never hiding the rest;
* ``represent``: propose, then prove; ``participants``: ORGANIZER/ATTENDEE afterwards;
* ``proposals``: rule → candidate representations; ``splits``: RANGE=THISANDFUTURE;
* ``build``: exceptions from EXDATEs and overrides, the validated follow-up;
* ``series``: one UID's components read into a ``Series``;
* ``expand``: windows and expansion; ``zones``: TZID and custom VTIMEZONE matching;
* ``components``: constants, ``Series`` and the property readers (the floor).
"""

from mappings.from_ical.parse import ParseResult, parse_calendar, parse_components

__all__ = ["ParseResult", "parse_calendar", "parse_components"]
