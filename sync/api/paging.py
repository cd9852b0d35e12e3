"""v1's page cursors: opaque to clients, a keyset position inside.

A list cursor is base64 of ``f1:<last id>``, so no page skips or repeats an item when
others are written in between; a feed cursor is the change feed's own
(``sync.state.changes``). A cursor this service did not hand out is ``BadCursor``, a 400
naming the parameter.
"""

from __future__ import annotations

import base64
import binascii

from sync.state import changes

MAX_PAGE = 1000
DEFAULT_PAGE = 100
_LIST_CURSOR = "f1:"


class BadCursor(Exception):
    """A cursor this service did not hand out (``field``: the parameter)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def list_cursor(last_id: str) -> str:
    """The cursor of the page after the item ``last_id``."""
    raw = (_LIST_CURSOR + last_id).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def after_id(cursor: str | None) -> str | None:
    """The last item of the previous page (None: the first page); BadCursor if not ours."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(f"{cursor!r} is not a cursor of this list", "cursor") from None
    if not text.startswith(_LIST_CURSOR):
        raise BadCursor(f"{cursor!r} is not a cursor of this list", "cursor")
    return text[len(_LIST_CURSOR) :]


def feed_position(value: str | None) -> int | None:
    """The change feed's position a ``since`` cursor names (None: from the start)."""
    if value is None:
        return None
    try:
        return changes.decode_cursor(value)
    except changes.CursorInvalid as exc:
        raise BadCursor(str(exc), "since") from None
