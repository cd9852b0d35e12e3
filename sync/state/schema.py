"""Schema migrations: Alembic revisions in ``sync/state/migrations``, applied in code.

Only ``followup-sync db upgrade`` (``upgrade``) migrates. Every other command opens the
database as it is, so a newer command-line tool on a laptop pointed at a shared
PostgreSQL never changes the schema under the daemons still running the old code:

* the daemon refuses to start until the schema is current (``check_current``);
* ``Database.open`` (every one-shot command) calls ``require_current``: an older schema
  is an error naming ``db upgrade``, a newer one (a revision this code does not know)
  an error asking for a newer followup-sync. A missing or empty database gets the tables
  straight from the models, stamped at the head revision, only for the commands that
  write (``import``, ``sync``: the one-command quick start); the commands that only read
  refuse it instead of creating state.

A database made before migrations existed (tables, no ``alembic_version``) is taken to
be at the first revision, which matches the tables of that time exactly.

No ``alembic.ini`` is needed: the Alembic config is built here, so the migrations ship
inside the package and work from any working directory.

**A module that adds tables or columns to ``sync.state.rows.Base`` must add a revision** in
``sync/state/migrations/versions`` (``alembic revision --autogenerate``; list the module in
``sync.state.tables``). Until it does, ``Database.open`` still creates its missing tables
with ``create_all`` (as before migrations existed), but a database migrated only by
``db upgrade`` lacks them.

This module knows a database only as a URL and an engine (``rows.DatabaseLike``):
``sync.state.db.Database`` is one, and calls this module from above when it opens.

Alembic is imported inside the functions that use it (each import says ``lazy: start-up``):
importing it costs about 0.27 s of the command line's 0.9 s start on the reference machine,
and only the schema checks and ``db`` commands need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import sessionmaker

from sync.errors import ConfigError
from sync.state.rows import SCHEMA_VERSION, DatabaseLike, Meta
from sync.state.tables import METADATA

if TYPE_CHECKING:
    from alembic.config import Config  # lazy: start-up

# Alembic is imported inside the functions that migrate: every one-shot command opens the
# database, and reading the current revision needs one SELECT, not Alembic's import time.

MIGRATIONS = Path(__file__).with_name("migrations")
#: The revision this code needs; tests check it is the script directory's head.
HEAD_REVISION = "0013"
#: The revision whose tables a pre-Alembic database already has.
BASE_REVISION = "0001"


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer version of followup-sync than this one."""


class DatabaseEmpty(ConfigError):
    """A command that only reads found no followup-sync tables in the database."""


class SchemaNotCurrent(ConfigError):
    """The database is older (or newer) than this version of the code expects."""


def alembic_config(db: DatabaseLike | None, connection: Connection | None = None) -> Config:
    from alembic.config import Config  # lazy: start-up

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if db is not None:
        config.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision in ``sync/state/migrations/versions`` (reads the scripts)."""
    from alembic.script import ScriptDirectory  # lazy: start-up

    script = ScriptDirectory.from_config(alembic_config(None))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(db: DatabaseLike) -> str | None:
    """The revision stamped in the database, None for an empty or pre-Alembic one."""
    with db.engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return str(value) if value is not None else None


def _has_tables(connection: Connection) -> bool:
    return inspect(connection).has_table("collections")


def upgrade(db: DatabaseLike, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply pending revisions; returns (before, after)."""
    from alembic import command  # lazy: start-up
    from alembic.runtime.migration import MigrationContext  # lazy: start-up

    with db.engine.begin() as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        if before is not None and not _known_revision(before):
            raise _not_current(db, before)
        if before is None and _has_tables(connection):
            # Created by create_all before migrations existed: those are revision 0001's tables.
            command.stamp(alembic_config(db, connection), BASE_REVISION)
            before = BASE_REVISION
        command.upgrade(alembic_config(db, connection), revision)
    after = current_revision(db)
    _write_meta(db)
    return before, after


def require_current(db: DatabaseLike, *, create: bool) -> None:
    """``Database.open``: the schema as this code needs it, or an error; never a migration.

    ``create``: a database without our tables (a new SQLite file, an empty PostgreSQL
    database) gets them from the models, stamped at the head revision.
    """
    current = current_revision(db)
    if current == HEAD_REVISION:
        if create:
            # Tables of models that have no revision yet (see the module docstring).
            create_tables(db)
        return
    if current is None and not _table_exists(db):
        if not create:
            raise DatabaseEmpty(
                f"database {_safe_url(db.url)} holds no followup-sync data yet: check "
                "--database (to start one: 'followup-sync db upgrade', or 'import' or 'sync')"
            )
        _create_at_head(db)
        return
    raise _not_current(db, current)


def _create_at_head(db: DatabaseLike) -> None:
    from alembic import command  # lazy: start-up

    create_tables(db)
    with db.engine.begin() as connection:
        command.stamp(alembic_config(db, connection), "head")
    _write_meta(db)


def check_current(db: DatabaseLike) -> str:
    """Raise SchemaNotCurrent unless the database is at HEAD_REVISION; returns the revision."""
    current = current_revision(db)
    if current != HEAD_REVISION:
        raise _not_current(db, current)
    return current


def _not_current(db: DatabaseLike, current: str | None) -> ConfigError:
    """The error for a schema other than HEAD_REVISION: older (upgrade it) or newer."""
    where = f"database {_safe_url(db.url)}"
    if current is not None and not _known_revision(current):
        return SchemaTooNew(
            f"{where} has schema revision {current}, newer than this version of "
            f"followup-sync knows (it needs {HEAD_REVISION}): use a newer followup-sync; "
            "nothing was changed"
        )
    shown = current or ("empty" if not _table_exists(db) else "from before migrations")
    return SchemaNotCurrent(
        f"database schema is {shown}, this version needs revision {HEAD_REVISION}: "
        f"run 'followup-sync db upgrade' first ({where})"
    )


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory  # lazy: start-up
    from alembic.util import CommandError  # lazy: start-up

    script = ScriptDirectory.from_config(alembic_config(None))
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _table_exists(db: DatabaseLike) -> bool:
    with db.engine.connect() as connection:
        return _has_tables(connection)


def create_tables(db: DatabaseLike) -> None:
    """The tables as the models say, plus the schema_version row (no migration bookkeeping)."""
    METADATA.create_all(db.engine)
    _write_meta(db)


def _write_meta(db: DatabaseLike) -> None:
    with sessionmaker(db.engine, expire_on_commit=False).begin() as session:
        row = session.get(Meta, "schema_version")
        if row is None:
            session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))


def _safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database>"
