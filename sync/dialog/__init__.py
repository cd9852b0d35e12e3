"""The recurrence dialog against real data: date lists with conflicts, and stored edits.

Two halves, both shared by the CLI (``sync.cli.dialog``) and the HTTP API (``sync.api``):

* ``sync.dialog.dates``: **dates and conflicts**, SuperOffice's ``CalculateDays`` /
  ``ValidateDays``: every date a follow-up occurs on, each with whether and with what it
  clashes in the owner's calendars and the owner's other follow-ups;
* ``sync.dialog.edits``: **stored edits**, ``DialogService``: load a follow-up, apply one
  of ``mappings.operations``, store the result, say what changed in a sentence.

Their public names are imported here; callers import them from ``sync.dialog``.
"""

from __future__ import annotations

from sync.dialog.dates import (
    DateInfo,
    account_for,
    calculate_dates,
    open_calendar,
    validate_dates,
)
from sync.dialog.edits import (
    DialogService,
    FollowUpNotFound,
    OperationResult,
    VersionMoved,
    describe_change,
)

__all__ = [
    "DateInfo",
    "DialogService",
    "FollowUpNotFound",
    "OperationResult",
    "VersionMoved",
    "account_for",
    "calculate_dates",
    "describe_change",
    "open_calendar",
    "validate_dates",
]
