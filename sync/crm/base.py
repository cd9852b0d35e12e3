"""What a CRM has to offer the connector: a contract SuperOffice implements, and others could.

The connector (``sync.crm.reconcile``) syncs the CRM with the service's own follow-up store;
the engine syncs that store with the calendars. A CRM is reached through this Protocol only,
so Salesforce or Dynamics (both keep a series as a rule plus one row per occurrence, like
SuperOffice; shared/reference/superoffice-connector.md) would add a module, not change the
reconcile pass.

Every write names the row's ``updated`` stamp the connector last saw (``unmodified_since``):
the CRM refuses it when someone changed the row since (HTTP 412 for SuperOffice), and the
implementation raises ``CrmConflict``. A series write names its first row; an occurrence
write names the occurrence's row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from mappings.model import FollowUp
from mappings.superoffice import RecurrenceInfo


class CrmError(Exception):
    """The CRM refused or failed a request (not a conflict)."""


class CrmConflict(CrmError):
    """The row changed in the CRM after the connector read it: its write was refused."""

    def __init__(self, row_id: str) -> None:
        super().__init__(f"CRM row {row_id} changed since it was read")
        self.row_id = row_id


class CrmCannotExpress(CrmError):
    """The follow-up has something the CRM cannot keep (a rule none of its patterns is)."""


@dataclass(frozen=True, slots=True)
class RowStamp:
    """One CRM row of a follow-up: which occurrence it stands for and its ``updated`` stamp."""

    row_id: str
    #: The occurrence key: where the rule puts it, ISO local time (the store's exception key).
    original_start: str
    updated: str


@dataclass(frozen=True)
class CrmSeries:
    """A follow-up as read from the CRM, with its rows (one per occurrence still there)."""

    followup: FollowUp
    rows: tuple[RowStamp, ...]
    #: The CRM's own id when the store keeps the follow-up under another one (made in a
    #: calendar, or named before ids named the tenant); None: ``followup.id``.
    crm_id: str | None = None

    def row_for(self, original_start: str) -> RowStamp | None:
        return next((row for row in self.rows if row.original_start == original_start), None)

    @property
    def first_row(self) -> RowStamp:
        return min(self.rows, key=lambda row: row.original_start)


@dataclass(frozen=True)
class ChangedRows:
    """A listing since a watermark: the follow-ups touched and the new watermark."""

    #: Follow-up id -> the listed rows (row id -> its ``updated`` stamp).
    followups: dict[str, dict[str, str]] = field(default_factory=dict)
    watermark: str | None = None


@dataclass(frozen=True, slots=True)
class OccurrenceEdit:
    """What a calendar changed in one occurrence (None: unchanged)."""

    start: dt.datetime | dt.date | None = None
    end: dt.datetime | dt.date | None = None
    title: str | None = None
    description: str | None = None
    location: str | None = None
    #: A this-and-following change may give the rest of the series a new pattern.
    recurrence: RecurrenceInfo | None = None


class CrmConnector(Protocol):
    """One CRM tenant, signed in, seen as follow-up documents."""

    def owns(self, followup_id: str) -> bool:
        """Whether the follow-up came from this CRM (others have no row to write back to)."""
        ...

    def changed_since(self, watermark: str | None) -> ChangedRows:
        """Rows of the configured associates changed after ``watermark`` (None: all rows)."""
        ...

    def all_row_ids(self) -> dict[str, str]:
        """Every row of the configured associates -> its follow-up id (to notice deletions)."""
        ...

    def stamp_time(self, updated: str) -> dt.datetime:
        """A row's ``updated`` stamp as an aware UTC time (``newest-wins`` compares it)."""
        ...

    def read_series(self, followup_id: str, known: Iterable[RowStamp]) -> CrmSeries | None:
        """The follow-up as the CRM has it now (None: gone). ``known`` keeps moved rows' keys."""
        ...

    def followup_of_row(self, row_id: str) -> str | None:
        """The CRM's follow-up id for one of its rows (None: the row is gone)."""
        ...

    def create_followup(self, followup: FollowUp) -> str:
        """Book a follow-up made in a calendar; returns the CRM's id for it.

        Raises ``CrmCannotExpress`` when its rule is none of the CRM's patterns.
        """
        ...

    def edit_occurrence(self, row: RowStamp, edit: OccurrenceEdit) -> None:
        """Move or change one occurrence only."""
        ...

    def cancel_occurrence(self, row: RowStamp) -> None:
        """Delete one occurrence only."""
        ...

    def complete_occurrence(self, row: RowStamp) -> None:
        """Mark one occurrence (a task) completed."""
        ...

    def edit_this_and_following(self, row: RowStamp, edit: OccurrenceEdit) -> str:
        """Change this occurrence and every later one (the CRM's this-and-forward).

        Returns the follow-up id the occurrence belongs to afterwards: a new one when the
        CRM made the rest of the series a series of its own (a new pattern).
        """
        ...

    def stop_repeating(self, row: RowStamp) -> None:
        """End the series after this occurrence."""
        ...

    def delete_followup(self, row: RowStamp) -> None:
        """Delete the whole follow-up (every occurrence from its first row)."""
        ...

    def close(self) -> None:
        """Let go of connections."""
        ...
