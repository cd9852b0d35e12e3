"""The change counter moves with every committed write to a watched table, bulk ones too.

An idle pass trusts the counter to say "no follow-up, sync record or write intent was
written since": a bulk ``session.execute(insert/delete …)`` bypasses the ORM's flush, so
it is noted separately (``sync.state.rows._note_bulk_watched_writes``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.state import intents, records, repo
from sync.state.db import Database, revision_of
from sync.state.followups import FollowUpStore
from sync.state.schedule import finish_run, start_run


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield database
    database.close()


def _revision(db: Database) -> int | None:
    with db.session() as session:
        return revision_of(session)


def test_a_bulk_insert_of_write_intents_moves_the_counter(db: Database) -> None:
    before = _revision(db)
    with db.sessions.begin() as session:
        intents.add_intents(
            session,
            [{"account": "a", "followup_id": "f1", "href": "/c/f1.ics", "if_match": None,
              "document": {}}],
        )  # fmt: skip
    assert _revision(db) != before


def test_a_bulk_delete_of_sync_records_moves_the_counter(db: Database) -> None:
    before = _revision(db)
    with db.sessions.begin() as session:
        records.forget(session, "a", "f1")
    assert _revision(db) != before


def test_a_rolled_back_bulk_write_does_not_move_it(db: Database) -> None:
    before = _revision(db)
    with db.sessions() as session:
        records.forget(session, "a", "f1")
        session.rollback()
    assert _revision(db) == before


def test_writes_to_other_tables_do_not_move_it(db: Database) -> None:
    before = _revision(db)
    with db.sessions.begin() as session:
        run_id = start_run(session, "a", worker="here", mode="incremental")
    with db.sessions.begin() as session:
        finish_run(session, run_id, "ok")
    assert _revision(db) == before


def _followup(title: str = "Call back", followup_id: str = "f1") -> FollowUp:
    return load_followup(
        {"id": followup_id, "title": title, "start": "2026-05-04T10:00:00",
         "end": "2026-05-04T11:00:00", "timezone": "Europe/Oslo"}
    )  # fmt: skip


def _put_edit(store: FollowUpStore) -> None:
    store.put(_followup("Moved"))


def _import_new(store: FollowUpStore) -> None:
    store.import_followups([_followup(), _followup("Another", "f2")])


def _tombstone(store: FollowUpStore) -> None:
    assert store.delete("f1")


def _reset(store: FollowUpStore) -> None:
    with store.db.sessions.begin() as session:
        repo.forget_links(session, "a")


@pytest.mark.parametrize(
    "change",
    [_put_edit, _import_new, _tombstone, _reset],
    ids=["put", "import", "tombstone", "reset"],
)
def test_every_crm_change_moves_the_counter(
    db: Database, change: Callable[[FollowUpStore], None]
) -> None:
    """What the idle pass's shortcut relies on: each way the CRM side changes moves it."""
    store = FollowUpStore(db)
    store.import_followups([_followup()])
    before = _revision(db)
    change(store)
    assert _revision(db) != before


def test_an_import_that_changes_nothing_leaves_the_counter(db: Database) -> None:
    """An unchanged import writes nothing, so idle passes stay idle after a nightly import."""
    store = FollowUpStore(db)
    store.import_followups([_followup()])
    before = _revision(db)
    assert store.import_followups([_followup()]).unchanged == ["f1"]
    assert _revision(db) == before
