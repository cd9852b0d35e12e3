"""Which row tables a stretch of code read: the idle pass must read none of them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from sync.state.db import Database


@contextmanager
def rows_read(db: Database) -> Iterator[set[str]]:
    """The row tables (followups, sync_items) any statement on ``db`` touched meanwhile."""
    touched: set[str] = set()

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        for table in ("followups", "sync_items"):
            if f"FROM {table}" in statement or f"JOIN {table}" in statement:
                touched.add(table)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield touched
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
