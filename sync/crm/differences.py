"""What the store has that the CRM has not: the writes that bring a CRM series in line.

Series-aware: the series' own fields as this-and-following from its first row, each
occurrence moved, changed, cancelled or completed as that occurrence only, a series cut short
as the CRM's stop-repeating (``sync.crm.reconcile`` decides when to call it).
"""

from __future__ import annotations

import datetime as dt

from mappings.documents import load_followup
from mappings.model import FollowUp, FollowUpStatus
from mappings.occurrences import Occurrence, occurrences
from mappings.superoffice import RecurrenceInfo
from sync.crm.base import CrmConflict, CrmConnector, CrmSeries, OccurrenceEdit


def _key(moment: dt.datetime | dt.date) -> str:
    """An occurrence's key in the CRM rows' form (``RowStamp.original_start``): naive local ISO."""
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.combine(moment, dt.time())
    return moment.replace(tzinfo=None, microsecond=0).isoformat()


def _by_key(followup: FollowUp) -> dict[str, Occurrence]:
    return {_key(o.original_start): o for o in occurrences(followup)}


def _completed_keys(followup: FollowUp) -> set[str]:
    return {
        _key(e.original_start) for e in followup.exceptions if e.status == FollowUpStatus.completed
    }


def write_differences(crm: CrmConnector, current: CrmSeries, wanted: FollowUp) -> None:
    """Write what ``wanted`` (the store) has that ``current`` (the CRM) has not, series-aware."""
    have = current.followup
    series_edit = OccurrenceEdit(
        title=wanted.title if wanted.title != have.title else None,
        description=(wanted.description or "") if wanted.description != have.description else None,
        location=(wanted.location or "") if wanted.location != have.location else None,
    )
    if (wanted.start, wanted.end) != (have.start, have.end) and wanted.recurrence is None:
        series_edit = OccurrenceEdit(
            start=wanted.start,
            end=wanted.end,
            title=series_edit.title,
            description=series_edit.description,
            location=series_edit.location,
        )
    if series_edit != OccurrenceEdit():
        crm.edit_this_and_following(current.first_row, series_edit)
        current = _reread(crm, current)
        have = current.followup
    old, new = _by_key(have), _by_key(wanted)
    for key, occurrence in new.items():
        row = current.row_for(key)
        before = old.get(key)
        if row is None or before is None or before.cancelled:
            continue  # an occurrence the CRM no longer has cannot be edited back in
        if occurrence.cancelled:
            crm.cancel_occurrence(row)
            continue
        edit = OccurrenceEdit(
            start=occurrence.start if occurrence.start != before.start else None,
            end=occurrence.end if occurrence.end != before.end else None,
            title=occurrence.title if occurrence.title != before.title else None,
            description=(occurrence.description or "")
            if occurrence.description != before.description
            else None,
            location=(occurrence.location or "")
            if occurrence.location != before.location
            else None,
        )
        if edit.start is not None or edit.end is not None:
            edit = OccurrenceEdit(
                naive(occurrence.start),
                naive(occurrence.end),
                edit.title,
                edit.description,
                edit.location,
            )
        if edit != OccurrenceEdit():
            crm.edit_occurrence(row, edit)
            current = _reread(crm, current)
            row = current.row_for(key) or row
    done = _completed_keys(wanted) - _completed_keys(have)
    if wanted.status == FollowUpStatus.completed and have.status != FollowUpStatus.completed:
        done |= {r.original_start for r in current.rows}
    for key in sorted(done):
        row = current.row_for(key)
        if row is not None:
            crm.complete_occurrence(row)
    last_wanted = max((k for k, o in new.items() if not o.cancelled), default=None)
    later = [r for r in current.rows if last_wanted is not None and r.original_start > last_wanted]
    if later and len(new) < len(old):
        kept = current.row_for(last_wanted) if last_wanted else None
        if kept is not None:
            crm.stop_repeating(kept)


def _reread(crm: CrmConnector, series: CrmSeries) -> CrmSeries:
    again = crm.read_series(series.crm_id or series.followup.id, series.rows)
    if again is None:
        raise CrmConflict(series.followup.id)
    return rename(again, series.followup.id)


def with_completion_times(series: CrmSeries, stored: FollowUp | None) -> CrmSeries:
    """The CRM's version with the completion times the store has for what it completed.

    A CRM row keeps only a status, not when a calendar user ticked the occurrence off; without
    this the document read back would differ from the one just written, for nothing.
    """
    if stored is None:
        return series
    when = {
        _key(e.original_start): e.completed_at
        for e in stored.exceptions
        if e.status == FollowUpStatus.completed and e.completed_at is not None
    }
    document = series.followup.to_json_dict()
    for exception in document.get("exceptions", []):
        key = _key(dt.datetime.fromisoformat(exception["original_start"]))
        if exception.get("status") == FollowUpStatus.completed.value and key in when:
            exception["completed_at"] = when[key].isoformat()
    if stored.completed_at is not None and document.get("status") == FollowUpStatus.completed:
        document["completed_at"] = stored.completed_at.isoformat()
    return CrmSeries(load_followup(document), series.rows)


def pattern(rule: RecurrenceInfo) -> tuple[object, ...]:
    """What makes two rules the same pattern (their end is not part of it)."""
    return (rule.Pattern, rule.DayPattern, rule.WeekPattern, rule.MonthPattern, rule.YearPattern)


def naive(moment: dt.datetime | dt.date) -> dt.datetime | dt.date:
    return moment.replace(tzinfo=None) if isinstance(moment, dt.datetime) else moment


def rename(series: CrmSeries, followup_id: str) -> CrmSeries:
    """The CRM's series under the id the store keeps it by (its CRM id kept alongside)."""
    if series.followup.id == followup_id:
        return series
    document = series.followup.to_json_dict() | {"id": followup_id}
    return CrmSeries(load_followup(document), series.rows, series.crm_id or series.followup.id)
