"""DAViCal and SOGo for the interoperability tier, started from their Debian packages.

Each server gets its own throw-away PostgreSQL cluster (initdb in a temp dir, a free
port on 127.0.0.1, trust auth, run as the ``postgres`` user because PostgreSQL refuses
root), users alice/secret and bob/secret, and is stopped together with everything it
started. Recipes: shared/reference/libraries-and-servers.md §2.

For RFC 6638 scheduling (tests/integration/test_server_scheduling.py) DAViCal's users
have calendar-user addresses mailto:<name>@example.com (the ``usr.email`` column) and
every user but alice gets DAViCal's default calendar, which the server schedules into.

* **DAViCal 1.1.12**: ``php -S 127.0.0.1:PORT`` in /usr/share/davical/htdocs. DAViCal
  picks its config file by host name (``/etc/davical/<SERVER_NAME>-conf.php``); ours,
  ``127.0.0.1-conf.php``, is the same for every instance and reads the database to use
  from the environment of its ``php -S`` process, so parallel sessions do not collide.
* **SOGo 5.8.0**: ``sogod`` as user ``sogo`` with a private memcached; every setting is
  passed as a command-line default (GNUstep's argument domain wins over
  /etc/sogo/sogo.conf), so the system config file is never edited.

All daemons get their stdio redirected to log files: a postgres that inherits a pipe
keeps it open and hangs whoever waits on it (the ``$(...)`` pitfall of the reference).
Needs root (to switch users) and ``scripts/install-debian-tier.sh``; ``missing()`` says
what is absent so the fixtures can fail with a clear message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import (
    HOST,
    PASSWORD,
    USERNAME,
    RunningServer,
    ServerInfo,
    _http,
    _wait_until_up,
    _with_port_retry,
    free_port,
    stop_process,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DAVICAL_HTDOCS = Path("/usr/share/davical/htdocs")
DAVICAL_DBA = Path("/usr/share/davical/dba")
DAVICAL_CONF = Path(f"/etc/davical/{HOST}-conf.php")
SOGOD = Path("/usr/sbin/sogod")
MEMCACHED = "memcached"
#: Every test user; bob exists for scheduling tests.
USERS: dict[str, str] = {USERNAME: PASSWORD, "bob": "secret"}
_DB_ENV = "FOLLOWUP_SYNC_DAVICAL_PG"

# The one DAViCal config for host 127.0.0.1: the database comes from the php -S process's
# environment (set per instance below); the fallback keeps a hand-started DAViCal working.
_DAVICAL_CONF_TEXT = f"""<?php
// Written by followup-sync tests/servers_debian.py for the interoperability tier.
$c->pg_connect[] = getenv('{_DB_ENV}') ?: 'dbname=davical user=davical_app';
$c->enable_scheduling = true;
$c->admin_email = 'admin@example.com';
$c->system_name = 'followup-sync interop';
"""


def missing(kind: str) -> list[str]:
    """What this machine lacks to start ``kind`` (empty when it can be started)."""
    needed: dict[str, list[Path | str]] = {
        "davical": [PG_BIN / "initdb", DAVICAL_HTDOCS / "caldav.php", "php", "psql"],
        "sogo": [PG_BIN / "initdb", SOGOD, MEMCACHED, "psql"],
    }
    absent = [
        str(item)
        for item in needed[kind]
        if not (item.exists() if isinstance(item, Path) else shutil.which(item))
    ]
    if os.geteuid() != 0:
        absent.append("root (to run postgres/sogod as their own users)")
    return absent


def _run(argv: list[str], log: Path, *, env: dict[str, str] | None = None) -> None:
    """Run a command to completion with stdio on ``log`` (never a pipe); raise on failure."""
    with log.open("ab") as out:
        result = subprocess.run(  # fixed argv built here, no shell
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, timeout=120, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{argv[0]} exited with {result.returncode}:\n{tail}")


def _as_user(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv]


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PgCluster:
    """A throw-away PostgreSQL 15 cluster listening on 127.0.0.1:port only."""

    root: Path
    port: int
    log: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @classmethod
    def start(cls, root: Path) -> PgCluster:
        root.mkdir(parents=True, exist_ok=True)
        shutil.chown(root, "postgres", "postgres")
        log = root / "postgres.log"
        log.touch()
        shutil.chown(log, "postgres", "postgres")
        _run(
            _as_user("postgres", [
                str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
            ]),
            log,
        )  # fmt: skip

        def launch(port: int) -> PgCluster:
            cluster = cls(root, port, log)
            _run(
                _as_user("postgres", [
                    str(PG_BIN / "pg_ctl"), "-D", str(cluster.data), "-l", str(log), "-w",
                    "-t", "30", "-o",
                    f"-h {HOST} -p {cluster.port} -k {root} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off",
                    "start",
                ]),
                log,
            )  # fmt: skip
            return cluster

        return _with_port_retry(launch)

    def psql(self, sql: str, *, database: str = "postgres", user: str = "postgres") -> None:
        _run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(self.port),
             "-U", user, "-d", database, "-c", sql],
            self.log,
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            _run(
                _as_user("postgres", [
                    str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                    "stop",
                ]),
                self.log,
            )  # fmt: skip


# --------------------------------------------------------------------------- servers


@dataclass
class DebianServer(RunningServer):
    """A RunningServer that also owns helper daemons and a temp dir, stopped in reverse."""

    cleanups: list[Callable[[], None]] = field(default_factory=list)
    #: Where CalDAV lives (discovery starts here): "/" on these servers is a web UI.
    dav_root: str = "/"

    def info(self) -> ServerInfo:
        return ServerInfo(
            kind=self.kind,
            url=self.base_url.rstrip("/") + self.dav_root,
            username=self.username,
            password=self.password,
            calendar_url_factory=self.make_calendar,
            auth=self.auth,
        )

    def stop(self) -> None:
        # The daemon runs in its own session (runuser -> sogod master -> worker): signal the
        # whole process group we created, not just its leader.
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        try:
            super().stop()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            for cleanup in reversed(self.cleanups):
                with contextlib.suppress(Exception):
                    cleanup()
            self.cleanups.clear()


#: base_url -> work dir of each server started here (tests reach into its database).
_RUNNING: dict[str, Path] = {}


def _forget(base_url: str) -> None:
    _RUNNING.pop(base_url, None)


def running_workdir(url: str) -> Path:
    """The throw-away directory of a running DAViCal/SOGo (its PostgreSQL is under pg/)."""
    for base_url, work in _RUNNING.items():
        if url.startswith(base_url):
            return work
    raise KeyError(f"no DAViCal/SOGo started here serves {url}")


def pg_port(url: str) -> int:
    """The port of the PostgreSQL cluster behind a running DAViCal/SOGo."""
    pid_file = running_workdir(url) / "pg" / "data" / "postmaster.pid"
    return int(pid_file.read_text().splitlines()[3].strip())


def _private_dir(kind: str) -> Path:
    """A temp dir the service users can enter (pytest's tmp dirs are root-only, 0700)."""
    path = Path(tempfile.mkdtemp(prefix=f"followup-{kind}-"))
    path.chmod(0o755)
    return path


def _launch_daemon(
    kind: str,
    argv: list[str],
    port: int,
    work: Path,
    home_path: str,
    *,
    env: dict[str, str],
    dav_root: str,
) -> DebianServer:
    log_path = work / f"{kind}-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(  # fixed argv built here, no shell
        argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=work,
        env={**os.environ, **env}, start_new_session=True,
    )  # fmt: skip
    return DebianServer(
        kind=kind,
        base_url=f"http://{HOST}:{port}/",
        home_path=home_path,
        username=USERNAME,
        password=PASSWORD,
        process=process,
        log_path=log_path,
        _log_file=log_file,
        dav_root=dav_root,
    )


def _start_with_cleanup(
    kind: str, tmp: Path, body: Callable[[Path, list[Callable[[], None]]], DebianServer]
) -> DebianServer:
    """Run a start recipe; whatever it started is stopped again if it fails half-way."""
    work = _private_dir(kind)
    cleanups: list[Callable[[], None]] = [lambda: shutil.rmtree(work, ignore_errors=True)]
    try:
        server = body(work, cleanups)
    except BaseException:
        for cleanup in reversed(cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        raise
    server.cleanups = cleanups
    _RUNNING[server.base_url] = work
    cleanups.append(lambda: _forget(server.base_url))
    # Leave a pointer in the pytest tmp dir for whoever debugs a failed run.
    with contextlib.suppress(OSError):
        (tmp / f"{kind}-workdir.txt").write_text(f"{work}\n")
    return server


def start_davical(tmp: Path) -> DebianServer:
    """DAViCal 1.1.12 on its own PostgreSQL cluster, served by ``php -S``."""

    def body(work: Path, cleanups: list[Callable[[], None]]) -> DebianServer:
        pg = PgCluster.start(work / "pg")
        cleanups.append(pg.stop)
        pg_env = {"PGHOST": HOST, "PGPORT": str(pg.port), "PGUSER": "postgres"}
        _run([str(DAVICAL_DBA / "create-database.sh"), "davical", "adminpw"], pg.log, env=pg_env)
        for name, password in USERS.items():
            # '**' marks a plaintext password; default_privileges as DAViCal's own admin UI
            # sets them, plus schedule-deliver so iTIP reaches the inbox (reference §2).
            pg.psql(
                "INSERT INTO usr (active, email_ok, updated, username, password, fullname, email)"
                f" VALUES (TRUE, current_date, current_date, '{name}', '**{password}',"
                f" '{name.title()} Example', '{name}@example.com');"
                "INSERT INTO principal (type_id, user_no, displayname, default_privileges)"
                f" SELECT 1, user_no, fullname, privilege_to_bits(ARRAY['read-free-busy',"
                "'schedule-deliver'])"
                f" FROM usr WHERE username = '{name}';",
                database="davical",
            )
        if not DAVICAL_CONF.exists() or DAVICAL_CONF.read_text() != _DAVICAL_CONF_TEXT:
            DAVICAL_CONF.write_text(_DAVICAL_CONF_TEXT)
        connect = f"dbname=davical user=davical_app host={HOST} port={pg.port}"

        def launch(port: int) -> DebianServer:
            server = _launch_daemon(
                "davical",
                ["php", "-d", "error_reporting=E_ALL & ~E_DEPRECATED", "-d", "display_errors=0",
                 "-S", f"{HOST}:{port}", "-t", str(DAVICAL_HTDOCS)],
                port, work, f"/caldav.php/{USERNAME}/",
                env={_DB_ENV: connect}, dav_root="/caldav.php/",
            )  # fmt: skip
            # DAViCal creates the calendar home (and a default calendar) on first login.
            return _brought_up(server, then=lambda: _make_default_calendars(server))

        return _with_port_retry(launch)

    return _start_with_cleanup("davical", tmp, body)


def _make_default_calendars(server: RunningServer) -> None:
    """Give every other user DAViCal's default calendar (``calendar/``), as its login would.

    Users inserted straight into the database get no home collections, and DAViCal's
    implicit scheduling (RFC 6638) delivers an organizer's REQUEST into the attendee's
    schedule-default-calendar: without one bob's SCHEDULE-STATUS is 5.2 (no scheduling
    support for user) and nothing reaches him.
    """
    for name, password in USERS.items():
        if name == USERNAME:
            continue
        as_user = dataclasses.replace(server, username=name, password=password)
        url = f"{server.base_url.rstrip('/')}/caldav.php/{name}/calendar/"
        status = _http(as_user, "MKCALENDAR", url, None, {})
        if status not in (200, 201, 405):  # 405: it exists already
            raise RuntimeError(f"davical: MKCALENDAR {url} as {name} answered {status}")


def _plist(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start_sogo(tmp: Path) -> DebianServer:
    """SOGo 5.8.0 with PostgreSQL (users table + SOGo's own tables) and a private memcached."""

    def body(work: Path, cleanups: list[Callable[[], None]]) -> DebianServer:
        pg = PgCluster.start(work / "pg")
        cleanups.append(pg.stop)
        pg.psql("CREATE USER sogo PASSWORD 'sogo'")
        pg.psql("CREATE DATABASE sogo OWNER sogo")
        values = ", ".join(
            f"('{name}', '{name}', '{password}', '{name.title()} Example', '{name}@example.com')"
            for name, password in USERS.items()
        )
        pg.psql(
            "CREATE TABLE sogo_users (c_uid varchar(255) PRIMARY KEY, c_name varchar(255),"
            " c_password varchar(255), c_cn varchar(255), mail varchar(255));"
            f"INSERT INTO sogo_users VALUES {values};",
            database="sogo",
            user="sogo",
        )
        memcached_port = free_port()
        memcached = subprocess.Popen(  # fixed argv, no shell
            [MEMCACHED, "-u", "memcache" if _user_exists("memcache") else "nobody",
             "-l", HOST, "-p", str(memcached_port), "-U", "0", "-m", "32"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        cleanups.append(lambda: stop_process(memcached))
        db = f"postgresql://sogo:sogo@{HOST}:{pg.port}/sogo"
        defaults = {
            "SOGoProfileURL": _plist(f"{db}/sogo_user_profile"),
            "OCSFolderInfoURL": _plist(f"{db}/sogo_folder_info"),
            "OCSSessionsFolderURL": _plist(f"{db}/sogo_sessions_folder"),
            "OCSEMailAlarmsFolderURL": _plist(f"{db}/sogo_alarms_folder"),
            "OCSStoreURL": _plist(f"{db}/sogo_store"),
            "OCSAclURL": _plist(f"{db}/sogo_acl"),
            "OCSCacheFolderURL": _plist(f"{db}/sogo_cache_folder"),
            "SOGoUserSources": (
                "({type = sql; id = users; canAuthenticate = YES; isAddressBook = NO;"
                f" userPasswordAlgorithm = plain; viewURL = {_plist(db + '/sogo_users')};}})"
            ),
            "SOGoMemcachedHost": _plist(f"{HOST}:{memcached_port}"),
            "SOGoTimeZone": "UTC",
            "SOGoMailDomain": "example.com",
            "SOGoAppointmentSendEMailNotifications": "NO",
            "SOGoEnableEMailAlarms": "NO",
            "WOWorkersCount": "2",
            "WONoDetach": "YES",
            "WOLogFile": "-",
        }
        gnustep = work / "sogo-home"  # sogod runs as sogo: its pid file and GNUstep defaults
        gnustep.mkdir()
        shutil.chown(gnustep, "sogo", "sogo")
        defaults["WOPidFile"] = _plist(str(gnustep / "sogo.pid"))

        def launch(port: int) -> DebianServer:
            argv = [str(SOGOD), "-WOPort", f"{HOST}:{port}"]
            for key, value in defaults.items():
                argv += [f"-{key}", value]
            server = _launch_daemon(
                "sogo",
                _as_user("sogo", argv),
                port,
                work,
                f"/SOGo/dav/{USERNAME}/Calendar/",
                env={"HOME": str(gnustep), "GNUSTEP_USER_ROOT": str(gnustep)},
                dav_root="/SOGo/dav/",
            )
            # The first authenticated request creates the user's profile and Calendar home;
            # sogod answers (503) before its worker is ready: _brought_up waits for a 207.
            return _brought_up(server)

        return _with_port_retry(launch)

    return _start_with_cleanup("sogo", tmp, body)


def _brought_up(
    server: DebianServer,
    *,
    before_home: Callable[[], None] | None = None,
    then: Callable[[], None] | None = None,
) -> DebianServer:
    """Wait until a just launched server answers and alice's calendar home exists, running
    ``before_home`` and ``then`` on the way; stop it if it does not come up, so that
    ``_with_port_retry`` starts the next attempt clean."""
    with _stopped_on_failure(server):
        _wait_until_up(server)
        if before_home is not None:
            before_home()
        _wait_for_home(server)
        if then is not None:
            then()
    return server


@contextlib.contextmanager
def _stopped_on_failure(server: RunningServer) -> Iterator[None]:
    """Stop a server that did not come up, so the next port's attempt starts clean."""
    try:
        yield
    except RuntimeError:
        server.stop()
        raise


def _wait_for_home(server: RunningServer, timeout: float = 30.0) -> None:
    """Until alice's calendar home answers PROPFIND with 207 (created on first login)."""
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        status = _http(server, "PROPFIND", server.home_url, None, {"Depth": "0"})
        if status == 207:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.kind}: PROPFIND {server.home_url} still answers {status}")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


STARTERS: dict[str, Callable[[Path], RunningServer]] = {
    "davical": start_davical,
    "sogo": start_sogo,
}


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (tests on slow daemons)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
