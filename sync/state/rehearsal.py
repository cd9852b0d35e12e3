"""A database a dry run may write to without changing the real one.

A dry run plans exactly as a real pass does, and planning records small things as it
goes (the collection row, the calendar URL found by discovery). Rather than thread a
"do not write" flag through every step, a dry run gets a database whose writes go
nowhere:

* SQLite: an in-memory copy of the file (``sqlite3``'s online backup), brought to the
  current schema there. A missing file is an empty in-memory database: the dry run
  creates no file; an older schema is refused as a real sync refuses it. The file is
  read without leaving ``-wal``/``-shm`` files behind
  (``immutable``) unless another process has it open in WAL mode already, in which case
  the ordinary read-only mode reads what that process committed.
* Any other database (PostgreSQL): one connection with a transaction that is rolled
  back at the end; the sessions' commits become savepoints inside it. The schema must be
  current already (``followup-sync db upgrade``): a dry run does not migrate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from sync.state.db import Database, database_url
from sync.state.schema import check_current, require_current

SQLITE_PREFIX = "sqlite:///"


@contextmanager
def rehearsal_database(value: str | None) -> Iterator[Database]:
    """The database ``value`` names (as ``Database.open`` reads it), for a dry run."""
    url = database_url(value)
    if url.startswith(SQLITE_PREFIX):
        with _sqlite_copy(url) as db:
            yield db
    else:
        with _rolled_back(url) as db:
            yield db


@contextmanager
def _sqlite_copy(url: str) -> Iterator[Database]:
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    path = Path(url.removeprefix(SQLITE_PREFIX))
    if path.exists():
        in_use = Path(f"{path}-wal").exists()
        mode = "ro" if in_use else "ro&immutable=1"
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True)
        try:
            source.backup(memory)
        finally:
            source.close()
    engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
    db = Database(url, engine=engine)
    try:
        require_current(db, create=True)  # as a real sync: an old schema is an error
        yield db
    finally:
        db.close()
        memory.close()


@contextmanager
def _rolled_back(url: str) -> Iterator[Database]:
    db = Database(url)
    try:
        check_current(db)
        with db.engine.connect() as connection:
            outer = connection.begin()
            db.sessions = sessionmaker(
                bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
            )
            try:
                yield db
            finally:
                outer.rollback()
    finally:
        db.close()
