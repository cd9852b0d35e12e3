"""The service's database: where it is, how it is opened, and the sessions it hands out.

SQLAlchemy 2, a SQLite file by default and PostgreSQL by URL. The tables are defined in
:mod:`sync.state.rows` (the sync's own) and the modules :mod:`sync.state.tables` lists;
their names are imported here too, so ``from sync.state.db import SyncItem`` keeps working
for the callers written before the split (new code imports them from ``sync.state.rows``).
``Database.open`` checks the schema with :mod:`sync.state.schema`, which sits below this
module and knows a database only as a URL and an engine: no cycle.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from sync.errors import ConfigError
from sync.extras import MissingExtra
from sync.state.rows import (
    SCHEMA_VERSION,
    Base,
    ChangeCounter,
    CollectionState,
    ConflictRecord,
    DaemonRun,
    FollowUpRow,
    Meta,
    PendingHref,
    PendingWrite,
    SyncItem,
    as_utc,
    bump_revision,
    revision_of,
    utcnow,
)
from sync.state.schema import create_tables, require_current

__all__ = [
    "DEFAULT_DATABASE",
    "SCHEMA_VERSION",
    "Base",
    "ChangeCounter",
    "CollectionState",
    "ConflictRecord",
    "DaemonRun",
    "Database",
    "DatabaseMissing",
    "FollowUpRow",
    "Meta",
    "PendingHref",
    "PendingWrite",
    "SyncItem",
    "as_utc",
    "bump_revision",
    "database_url",
    "revision_of",
    "utcnow",
]

DEFAULT_DATABASE = "followup-sync.sqlite"


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, url: str, *, create: bool = True, engine: Engine | None = None) -> None:
        """``create=False``: a SQLite file that does not exist is an error, not a new file.

        ``engine``: one made elsewhere (sync.state.rehearsal's in-memory copy for dry runs).
        """
        self.url = url
        self.engine: Engine = (
            engine if engine is not None else _make_engine(url, create_file=create)
        )
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True) -> Database:
        """Open the database of a one-shot command; a bare path means a SQLite file.

        Never migrates: an older schema is an error naming ``followup-sync db upgrade``,
        a newer one an error too (sync.state.schema.require_current). ``create``: a missing or
        empty database gets the tables (the one-command quick start of ``import`` and
        ``sync``); without it, the commands that only read refuse it, so a mistyped
        ``--database`` never leaves an empty file behind.
        """
        db = cls(database_url(url), create=create)
        try:
            require_current(db, create=create)
        except BaseException:
            db.close()
            raise
        return db

    def create_tables(self) -> None:
        """The tables as the models say, plus the schema_version row (no migration bookkeeping)."""
        create_tables(self)

    def ping(self) -> None:
        """One round trip (the readiness probe); raises whatever the driver raises if it fails."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def session(self) -> Session:
        return self.sessions()

    def schema_version(self) -> int:
        with self.sessions() as session:
            value = session.scalar(select(Meta.value).where(Meta.key == "schema_version"))
        return int(value) if value else 0

    def close(self) -> None:
        self.engine.dispose()


def database_url(value: str | None) -> str:
    if not value:
        value = os.environ.get("FOLLOWUP_SYNC_DATABASE", DEFAULT_DATABASE)
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser()}"


class DatabaseMissing(ConfigError):
    """A command that only reads was pointed at a SQLite file that does not exist."""


def _make_engine(url: str, *, create_file: bool = True) -> Engine:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:" and not Path(path).exists() and not create_file:
            raise DatabaseMissing(
                f"no database at {path}: check --database, $FOLLOWUP_SYNC_DATABASE or the "
                "config's 'database' (to start one: 'followup-sync db upgrade', or 'import'"
                " or 'sync')"
            )
        if path and path != ":memory:" and not Path(path).exists():
            # The store holds calendar data and server ETags: readable by the owner only.
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, stat.S_IRUSR | stat.S_IWUSR)
            os.close(fd)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # type: ignore[no-untyped-def]
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        if url.startswith("postgresql"):
            raise MissingExtra("postgresql", "a PostgreSQL database", exc) from None
        raise
