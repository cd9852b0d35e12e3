"""Errors raised by the mapper.

The mapper is pure, so its only errors are about the data it was given. Each one
names the follow-up (``item``) and the field so that a CLI or a sync run can
report exactly what to fix without a traceback.
"""

from __future__ import annotations


class FollowupSyncError(Exception):
    """Root of every error this project raises on purpose."""


class MappingError(FollowupSyncError):
    """A follow-up or a calendar object cannot be mapped.

    ``item`` is the follow-up id or the iCalendar UID, ``field`` the document
    field or iCalendar property at fault. ``str()`` gives one line for the user.
    """

    def __init__(self, message: str, *, item: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.item = item
        self.field = field

    def __str__(self) -> str:
        where = []
        if self.item is not None:
            where.append(f"follow-up {self.item!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message
