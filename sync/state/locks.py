"""Who may sync an account right now: a lock per account, in this process and across processes.

In one process a ``threading.Lock`` per account is enough. Several daemon processes on
one PostgreSQL database additionally take a PostgreSQL *session advisory lock* per
account, ``pg_try_advisory_lock(key)``, on a dedicated connection held for the whole
pass. Why this and not a lease table or APScheduler's shared store:

* PostgreSQL releases a session lock the moment the session ends, so a process that
  dies (SIGKILL, OOM, power loss once TCP keepalive notices) frees its accounts without
  any expiry to tune, heartbeats to write or clocks to trust: the next process whose
  timer fires takes the account over.
* ``try`` never waits: a process that finds an account busy skips it and goes on with
  the others; nobody queues behind a slow server.
* It is PostgreSQL's own, well-tested machinery; the only thing we add is a stable key.
  APScheduler 3.x cannot share a job store between processes at all (its FAQ, and our
  measurement: duplicate runs), and 4.x is an alpha.

The lock connection uses AUTOCOMMIT, so it is never "idle in transaction", and TCP
keepalives, so a vanished peer is detected within about a minute. If that connection
breaks during a pass, the lock may already be someone else's: ``still_held`` lets the
pass stop after its current item.

SQLite (one machine) gets ``SqliteFileLock``: an exclusive ``flock`` on one small file
per account in a directory beside the database file (``<database>.locks/``). The kernel
drops such a lock when its holder exits, however it exits, so it needs no expiry
either; ``try`` never waits, like the PostgreSQL lock. A second ``sync`` on the same
account is refused with a message naming the process that holds it, and a daemon skips
the account until the holder has finished. Without it, two passes on one account each
took the other's writes for calendar edits (issue #15). An in-memory database is one
process's alone: ``LocalOnly``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

#: Namespace for our keys, so another application's advisory locks on the same database
#: do not collide with ours.
KEY_PREFIX = b"followup-sync:account:"
#: How often (at most) a running pass checks that its lock connection is still alive.
LIVENESS_CHECK_SECONDS = 5.0
#: Lock connections kept open while holding no lock (about one per concurrent pass).
MAX_IDLE_CONNECTIONS = 8


def advisory_key(account: str) -> int:
    """A stable signed 64-bit key: the same in every process and every Python version."""
    digest = hashlib.sha256(KEY_PREFIX + account.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Held(Protocol):
    def still_held(self) -> bool: ...


class _Always:
    def still_held(self) -> bool:
        return True


class ClusterLock(Protocol):
    """Exclusive right to sync one account across processes."""

    def hold(self, account: str) -> contextlib.AbstractContextManager[Held | None]: ...

    def close(self) -> None: ...


class LocalOnly:
    """No cross-process exclusion (an in-memory database): every try succeeds."""

    @contextlib.contextmanager
    def hold(self, account: str) -> Iterator[Held | None]:
        yield _Always()

    def close(self) -> None:
        pass


class _PgHeld:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._checked = time.monotonic()
        self._alive = True

    def still_held(self) -> bool:
        if not self._alive:
            return False
        now = time.monotonic()
        if now - self._checked < LIVENESS_CHECK_SECONDS:
            return True
        self._checked = now
        try:
            self.connection.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("lost the advisory lock connection: %s", exc)
            self._alive = False
        return self._alive


class PgAdvisoryLock:
    """Session advisory locks on dedicated connections (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(
            url,
            poolclass=NullPool,  # a lock lives as long as its connection: idle ones kept by hand
            isolation_level="AUTOCOMMIT",
            connect_args={
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "application_name": "followup-sync lock",
            },
        )
        #: Lock connections holding no lock, kept for the next ``hold``.
        self._idle: list[Connection] = []
        self._idle_lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, account: str) -> Iterator[Held | None]:
        key = advisory_key(account)
        connection, got = self._try_lock(key)
        reusable = True
        try:
            if not got:
                yield None
                return
            held = _PgHeld(connection)
            try:
                yield held
            finally:
                reusable = held._alive
                if held._alive:
                    try:
                        unlocked = connection.execute(
                            text("SELECT pg_advisory_unlock(:k)"), {"k": key}
                        ).scalar()
                        reusable = bool(unlocked)
                    except Exception as exc:
                        log.warning("could not unlock %s: %s", account, exc)
                        reusable = False
        except BaseException:
            reusable = False
            raise
        finally:
            self._give_back(connection, reusable)

    def _try_lock(self, key: int) -> tuple[Connection, bool]:
        """``pg_try_advisory_lock`` on an idle lock connection, or on a new one.

        Why keep idle connections: opening one (a backend process, authentication) was
        the largest single cost of an idle pass with many accounts. A connection goes
        back to the idle list only when it provably holds no lock (unlock answered true,
        or the try failed); otherwise it is closed, which releases whatever it held. An
        idle connection that broke meanwhile is closed and replaced once.
        """
        with self._idle_lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                return connection, bool(got.scalar())
            except Exception as exc:
                log.info("an idle lock connection broke (%s); opening a new one", exc)
                with contextlib.suppress(Exception):
                    connection.close()
        connection = self.engine.connect()
        try:
            got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            return connection, bool(got.scalar())
        except BaseException:
            connection.close()
            raise

    def _give_back(self, connection: Connection, reusable: bool) -> None:
        if reusable:
            with self._idle_lock:
                if len(self._idle) < MAX_IDLE_CONNECTIONS:
                    self._idle.append(connection)
                    return
        with contextlib.suppress(Exception):
            connection.close()

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.close()
        self.engine.dispose()


class SqliteFileLock:
    """An exclusive ``flock`` per account beside a SQLite database (module docstring)."""

    def __init__(self, database: Path) -> None:
        self.directory = database.with_name(database.name + ".locks")

    def path_for(self, account: str) -> Path:
        return self.directory / f"{advisory_key(account) & 0xFFFFFFFFFFFFFFFF:016x}.lock"

    @contextlib.contextmanager
    def hold(self, account: str) -> Iterator[Held | None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.path_for(account)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, stat.S_IRUSR | stat.S_IWUSR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            # Who holds it, for the message the next process gives (read by ``holder``).
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield _Always()
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self, account: str) -> str | None:
        """The process id written by the current holder, if it could be read."""
        try:
            return self.path_for(account).read_text().strip() or None
        except OSError:
            return None

    def close(self) -> None:
        pass


def cluster_lock_for(url: str) -> ClusterLock:
    if url.startswith("postgresql"):
        return PgAdvisoryLock(url)
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and path and path != ":memory:":
        return SqliteFileLock(Path(path))
    return LocalOnly()
