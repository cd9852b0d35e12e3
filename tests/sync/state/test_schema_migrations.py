"""Alembic migrations build exactly the models' schema; quick starts and old files keep working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

from mappings.documents import load_followup
from sync.state import schema
from sync.state.db import CollectionState, Database, FollowUpRow
from sync.state.followups import FollowUpStore
from sync.state.tables import METADATA
from tests.factories import appointment


def test_head_constant_is_the_newest_revision() -> None:
    assert schema.head_revision() == schema.HEAD_REVISION


def test_upgrade_from_empty_matches_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    with pytest.raises(schema.SchemaNotCurrent, match="db upgrade"):
        schema.check_current(db)
    assert schema.upgrade(db) == (None, schema.HEAD_REVISION)
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), METADATA)
    # Every table of every model module (state, daemon, invitations) comes from a revision.
    assert diff == []
    assert schema.check_current(db) == schema.HEAD_REVISION
    assert schema.upgrade(db) == (schema.HEAD_REVISION, schema.HEAD_REVISION)  # idempotent


def test_a_fresh_process_knows_every_table_from_the_state_package_alone(tmp_path: Path) -> None:
    """``sync.state.tables`` lists every table module: a process that imports none of the
    wings (invitations, webhooks, API) still creates every table on a quick start."""
    url = f"sqlite:///{tmp_path / 'alone.sqlite'}"
    code = (
        "import sys\n"
        "from alembic.autogenerate import compare_metadata\n"
        "from alembic.runtime.migration import MigrationContext\n"
        "from sync.state import schema\n"
        "from sync.state.db import Database\n"
        "migrated = Database(sys.argv[1] + '.m')\n"
        "schema.upgrade(migrated)\n"
        "from sync.state.tables import METADATA\n"
        "with migrated.engine.connect() as connection:\n"
        "    assert compare_metadata(MigrationContext.configure(connection), METADATA) == []\n"
        "quick = Database.open(sys.argv[1])\n"
        "from sqlalchemy import inspect\n"
        "print(sorted(inspect(quick.engine).get_table_names()))\n"
        "wings = ('sync.invitations', 'sync.webhooks', 'sync.api')\n"
        "print(sorted(m for m in sys.modules if m.startswith(wings)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, check=True
    )
    tables, wings = done.stdout.splitlines()
    assert wings == "[]"
    for name in ("invitations", "webhook_subscriptions", "account_controls", "change_feed"):
        assert f"'{name}'" in tables


def test_database_open_quick_start_is_stamped_current(tmp_path: Path) -> None:
    db = Database.open(str(tmp_path / "quick.sqlite"))
    assert schema.check_current(db) == schema.HEAD_REVISION
    assert db.schema_version() == 1


def test_a_database_from_before_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    """Tables as the first release created them (revision 0001): ``db upgrade`` keeps the data
    and adds the new columns; ``Database.open`` refuses until then."""
    db = Database(f"sqlite:///{tmp_path / 'old.sqlite'}")
    schema.upgrade(db, "0001")
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")  # as made by create_all, no stamp
        connection.exec_driver_sql(
            "INSERT INTO collections (account, calendar_url, last_result) "
            "VALUES ('alice', 'http://x/', 'ok')"
        )
    assert schema.current_revision(db) is None
    with pytest.raises(schema.SchemaNotCurrent, match="db upgrade"):
        Database.open(str(tmp_path / "old.sqlite"))  # opening never migrates (issue #15.7)
    assert schema.upgrade(db) == (schema.BASE_REVISION, schema.HEAD_REVISION)
    reopened = Database.open(str(tmp_path / "old.sqlite"))
    assert schema.check_current(reopened) == schema.HEAD_REVISION
    with reopened.session() as session:
        row = session.get(CollectionState, "alice")
        assert row is not None and row.last_result == "ok" and row.next_run_at is None
    columns = {c["name"] for c in inspect(reopened.engine).get_columns("collections")}
    assert {"next_run_at", "consecutive_failures"} <= columns


def _doc(fid: str, participants: list[dict[str, str]] | None = None) -> dict[str, object]:
    doc: dict[str, object] = appointment(fid, title=fid)
    if participants is not None:
        doc["organizer"] = {"email": "alice@crm.example"}
        doc["participants"] = participants
    return doc


def test_0004_fills_has_participants_from_the_documents(tmp_path: Path) -> None:
    """A store from before 0004: the flag is computed from each document, nothing else changes."""
    db = Database(f"sqlite:///{tmp_path / 'old.sqlite'}")
    schema.upgrade(db, "0003")
    rows = [
        ("with", _doc("with", [{"email": "bob@partner.example"}])),
        ("empty", _doc("empty", [])),
        ("none", _doc("none")),
    ]
    with db.engine.begin() as connection:
        for fid, doc in rows:
            connection.execute(
                text(
                    "INSERT INTO followups (id, uid, kind, document, content_hash, deleted,"
                    " updated_at) VALUES (:id, :uid, 'appointment', :doc, 'h', 0, :now)"
                ),
                {"id": fid, "uid": f"u-{fid}", "doc": json.dumps(doc), "now": "2026-01-01"},
            )
    assert schema.upgrade(db) == ("0003", schema.HEAD_REVISION)
    with db.session() as session:
        flags = dict(session.execute(select(FollowUpRow.id, FollowUpRow.has_participants)).all())
        assert flags == {"with": True, "empty": False, "none": False}
        assert session.get(FollowUpRow, "with").document == rows[0][1]  # type: ignore[union-attr]


def test_has_participants_follows_every_write_of_the_document(tmp_path: Path) -> None:
    db = Database.open(str(tmp_path / "flag.sqlite"))
    store = FollowUpStore(db)

    def flag() -> bool:
        with db.session() as session:
            row = session.get(FollowUpRow, "f1")
            assert row is not None
            return row.has_participants

    store.put(load_followup(_doc("f1")))
    assert flag() is False
    store.put(load_followup(_doc("f1", [{"email": "bob@partner.example"}])))
    assert flag() is True
    store.put(load_followup(_doc("f1", [])))
    assert flag() is False
