"""The cluster lock keeps idle connections: one that goes back holds no lock.

Opening a lock connection per pass (a PostgreSQL backend and its authentication) was the
largest single cost of an idle pass with many accounts, so ``PgAdvisoryLock`` keeps the
connections that provably hold nothing. These tests check, on a real PostgreSQL, that
reuse never leaves an account locked, never lets two holders in, and survives a
connection the server dropped meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from sync.state.locks import PgAdvisoryLock
from tests.pg import RunningPostgres, find_bin_dir, running_postgres

pytestmark = pytest.mark.skipif(find_bin_dir() is None, reason="no PostgreSQL binaries")


@pytest.fixture(scope="module")
def postgres() -> Iterator[RunningPostgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def url(postgres: RunningPostgres) -> str:
    return postgres.create_database(f"locks_{uuid.uuid4().hex[:8]}")


def test_a_released_account_is_free_for_another_process_while_the_connection_is_kept(
    url: str,
) -> None:
    ours, theirs = PgAdvisoryLock(url), PgAdvisoryLock(url)
    try:
        with ours.hold("alice") as held:
            assert held is not None
            with theirs.hold("alice") as other:
                assert other is None  # held by us: nobody else gets in
        assert len(ours._idle) == 1  # the connection was kept ...
        with theirs.hold("alice") as other:
            assert other is not None  # ... and holds nothing
            with ours.hold("alice") as again:  # our kept connection cannot take it now
                assert again is None
    finally:
        ours.close()
        theirs.close()


def test_a_kept_connection_the_server_dropped_is_replaced(url: str) -> None:
    ours, admin = PgAdvisoryLock(url), PgAdvisoryLock(url)
    try:
        with ours.hold("bob") as held:
            assert held is not None
        with admin.engine.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'followup-sync lock' AND pid <> pg_backend_pid()"
                )
            )
        with ours.hold("bob") as held:
            assert held is not None and held.still_held()
    finally:
        ours.close()
        admin.close()
