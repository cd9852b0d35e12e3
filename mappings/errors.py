"""Errors raised by the mapper.

The mapper is pure, so its only errors are about the data it was given. Each one
names the follow-up (``item``) and the field so that a CLI or a sync run can
report exactly what to fix without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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


#: What the standard library raises on data no validator foresaw: a date pushed past year
#: 9999 (OverflowError), a number too large for a C integer, a string that cannot be
#: encoded (UnicodeError is a ValueError), a structure nested too deep. Inside the mapper
#: these are always about the one item being read or rendered.
DATA_ERRORS: tuple[type[Exception], ...] = (
    OverflowError,
    ArithmeticError,
    ValueError,
    TypeError,
    RecursionError,
)


@contextmanager
def item_errors(item: str | None, *, doing: str, field: str | None = "document") -> Iterator[None]:
    """Turn a ``DATA_ERRORS`` exception raised inside into a MappingError naming ``item``.

    ``doing`` says what failed ("cannot be rendered"); a MappingError raised inside gets
    ``item`` filled in when it has none, and passes through otherwise.
    """
    try:
        yield
    except MappingError as exc:
        if exc.item is None:
            exc.item = item
        raise
    except DATA_ERRORS as exc:
        detail = str(exc) or type(exc).__name__
        raise MappingError(
            f"{doing}: {type(exc).__name__}: {detail}", item=item, field=field
        ) from exc
