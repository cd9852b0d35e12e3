"""Cyrus IMAP's CalDAV and SabreDAV for the interoperability tier, from Debian packages.

Both run on 127.0.0.1 with free ports and throw-away storage, users alice/secret and
bob/secret, and are stopped (whole process group) at the end of the session; they reuse
the DAViCal/SOGo machinery of tests/servers_debian.py. Recipes:
shared/reference/server-cyrus.md and libraries-and-servers.md §2.

* **Cyrus IMAP 3.6.1** (``cyrus-imapd cyrus-caldav sasl2-bin``; the engine behind
  Fastmail): ``cyrmaster`` with an ``imapd.conf``/``cyrus.conf`` of its own in the temp
  dir (it drops to user ``cyrus``), plain logins against a private sasldb whose realm
  equals ``servername``. Each user's mailbox is created over IMAP as the admin first
  (CalDAV answers 500 without one); the calendar home appears on the first request.
  ``defaultdomain`` and ``calendar_user_address_set`` give the principal
  ``mailto:alice@example.com`` instead of ``@internal``. Cyrus logs to syslog only.
* **SabreDAV 1.8.12** (``php-sabre-dav``, the engine of Baikal and Nextcloud, in a
  version without sync-collection): the package's example CalDAV server (principals +
  calendars + ACL + CalDAV plugins, PDO backends on SQLite), under ``php -S``. Its schema
  comes from the package's ``examples/sql/sqlite.*.sql``. Users live in its ``users``
  table as Digest hashes (md5 of ``user:SabreDAV:password``), and the example's own
  Digest auth (RFC 2617, qop=auth) is the only sign-in it accepts: Basic is refused with
  401. Its ``RunningServer.auth`` is "digest", so the fixtures' own requests and the
  accounts the tests build for it sign in with Digest (``auth = "digest"``).
"""

from __future__ import annotations

import hashlib
import imaplib
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.servers import HOST, USERNAME, free_port
from tests.servers_debian import (
    USERS,
    DebianServer,
    _brought_up,
    _launch_daemon,
    _start_with_cleanup,
    _with_port_retry,
)

CYRUS_BIN = Path("/usr/lib/cyrus/bin")
CYRMASTER = Path("/usr/sbin/cyrmaster")
SASLPASSWD2 = Path("/usr/sbin/saslpasswd2")
CYRUS_ADMIN = "admin"
CYRUS_ADMIN_PASSWORD = "adminpw"
CYRUS_DOMAIN = "example.com"

SABRE_LIB = Path("/usr/share/php/Sabre")
SABRE_SQL = Path("/usr/share/doc/php-sabre-dav/examples/sql")
SABRE_REALM = "SabreDAV"


def missing(kind: str) -> list[str]:
    """What this machine lacks to start ``kind`` (empty when it can be started)."""
    needed: dict[str, list[Path | str]] = {
        "cyrus": [CYRMASTER, CYRUS_BIN / "httpd", CYRUS_BIN / "imapd", SASLPASSWD2],
        "sabredav": [SABRE_LIB / "autoload.php", SABRE_SQL / "sqlite.calendars.sql", "php"],
    }
    return [
        str(item)
        for item in needed[kind]
        if not (item.exists() if isinstance(item, Path) else shutil.which(item))
    ]


# --------------------------------------------------------------------------- Cyrus


def _cyrus_config(work: Path) -> Path:
    """imapd.conf: every path inside ``work``; CalDAV on; plain logins against sasldb."""
    for sub in ("config", "spool", "sieve", "run/socket", "run/proc", "run/lock"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    conf = work / "imapd.conf"
    settings = {
        "configdirectory": work / "config",
        "defaultpartition": "default",
        "partition-default": work / "spool",
        "proc_path": work / "run/proc",
        "mboxname_lockpath": work / "run/lock",
        "sievedir": work / "sieve",
        "lmtpsocket": work / "run/socket/lmtp",
        "idlesocket": work / "run/socket/idle",
        "notifysocket": work / "run/socket/notify",
        # The SASL realm of the users below must equal servername.
        "servername": "localhost",
        "admins": CYRUS_ADMIN,
        "allowplaintext": "yes",
        "altnamespace": "no",
        "unixhierarchysep": "no",
        "virtdomains": "off",
        # Without these two the principal's address is mailto:alice@internal.
        "defaultdomain": CYRUS_DOMAIN,
        "calendar_user_address_set": CYRUS_DOMAIN,
        "httpmodules": "caldav",
        "caldav_realm": "followup-sync",
        "sasl_mech_list": "PLAIN LOGIN",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": work / "sasldb2",
    }
    conf.write_text("".join(f"{key}: {value}\n" for key, value in settings.items()))
    return conf


def _cyrus_services(work: Path, conf: Path, imap_port: int, http_port: int) -> Path:
    """cyrus.conf: IMAP (to create mailboxes) and HTTP on loopback, absolute binary paths."""
    services = work / "cyrus.conf"
    bin_ = CYRUS_BIN
    services.write_text(
        f'START {{ recover cmd="{bin_}/ctl_cyrusdb -C {conf} -r" }}\n'
        "SERVICES {\n"
        f'  imap cmd="{bin_}/imapd -C {conf}" listen="{HOST}:{imap_port}" prefork=0 maxchild=10\n'
        f'  http cmd="{bin_}/httpd -C {conf}" listen="{HOST}:{http_port}" prefork=1 maxchild=10\n'
        "}\n"
        f'EVENTS {{ checkpoint cmd="{bin_}/ctl_cyrusdb -C {conf} -c" period=30 }}\n'
    )
    return services


def _cyrus_users(work: Path) -> None:
    passwords = {CYRUS_ADMIN: CYRUS_ADMIN_PASSWORD, **USERS}
    for name, password in passwords.items():
        subprocess.run(  # fixed argv, no shell; the password goes in on stdin
            [str(SASLPASSWD2), "-f", str(work / "sasldb2"), "-u", "localhost", "-p", "-c", name],
            input=password.encode(), check=True, capture_output=True, timeout=30,
        )  # fmt: skip


def _create_mailboxes(imap_port: int, timeout: float = 20.0) -> None:
    """``CREATE user.<name>`` as the admin: CalDAV answers 500 for a user without one."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with imaplib.IMAP4(HOST, imap_port, timeout=10) as imap:
                imap.login(CYRUS_ADMIN, CYRUS_ADMIN_PASSWORD)
                for name in USERS:
                    status, detail = imap.create(f"user.{name}")
                    if status != "OK":
                        raise RuntimeError(f"cyrus: CREATE user.{name} answered {detail!r}")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_cyrus(tmp: Path) -> DebianServer:
    """Cyrus IMAP 3.6.1's CalDAV (httpd) under its own cyrmaster, storage in a temp dir."""

    def body(work: Path, cleanups: list[Callable[[], None]]) -> DebianServer:
        conf = _cyrus_config(work)
        _cyrus_users(work)

        def launch(http_port: int) -> DebianServer:
            imap_port = free_port()
            services = _cyrus_services(work, conf, imap_port, http_port)
            shutil.chown(work, "cyrus", "mail")
            for path in work.rglob("*"):
                shutil.chown(path, "cyrus", "mail")
            (work / "sasldb2").chmod(0o640)
            server = _launch_daemon(
                "cyrus",
                # Foreground (no -d); cyrmaster drops to user cyrus itself.
                [str(CYRMASTER), "-C", str(conf), "-M", str(services),
                 "-p", str(work / "master.pid")],
                http_port, work, f"/dav/calendars/user/{USERNAME}/",
                env={}, dav_root="/dav/",
            )  # fmt: skip
            return _brought_up(server, before_home=lambda: _create_mailboxes(imap_port))

        return _with_port_retry(launch)

    return _start_with_cleanup("cyrus", tmp, body)


# --------------------------------------------------------------------------- SabreDAV

# The package's examples/calendarserver.php, with the database in the temp dir, PHP 8.2's
# deprecation notices (SabreDAV 1.8 is from 2014) kept out of the answers instead of
# turned into 500s, and the example's Digest auth on its users table.
_SABRE_SERVER_PHP = r"""<?php
// Written by followup-sync tests/servers_cyrus_sabredav.py for the interoperability tier.
date_default_timezone_set('UTC');
error_reporting(E_ALL & ~E_DEPRECATED & ~E_STRICT);
ini_set('display_errors', '0');
require_once 'Sabre/autoload.php';

$pdo = new \PDO('sqlite:' . __DIR__ . '/db.sqlite');
$pdo->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);

$authBackend = new \Sabre\DAV\Auth\Backend\PDO($pdo);

$principalBackend = new \Sabre\DAVACL\PrincipalBackend\PDO($pdo);
$calendarBackend = new \Sabre\CalDAV\Backend\PDO($pdo);
$server = new \Sabre\DAV\Server(array(
    new \Sabre\CalDAV\Principal\Collection($principalBackend),
    new \Sabre\CalDAV\CalendarRootNode($principalBackend, $calendarBackend),
));
$server->setBaseUri('/');
$server->addPlugin(new \Sabre\DAV\Auth\Plugin($authBackend, '%(realm)s'));
$server->addPlugin(new \Sabre\DAVACL\Plugin());
$server->addPlugin(new \Sabre\CalDAV\Plugin());
$server->exec();
"""


def _sabre_database(path: Path) -> None:
    """The example schema, and a user plus its three principals for each test user."""
    with sqlite3.connect(path) as db:
        for part in ("users", "principals", "calendars", "locks"):
            db.executescript((SABRE_SQL / f"sqlite.{part}.sql").read_text())
        for name, password in USERS.items():
            digest = hashlib.md5(f"{name}:{SABRE_REALM}:{password}".encode()).hexdigest()
            db.execute("INSERT INTO users (username, digesta1) VALUES (?, ?)", (name, digest))
            db.execute(
                "INSERT INTO principals (uri, email, displayname) VALUES (?, ?, ?)",
                (f"principals/{name}", f"{name}@{CYRUS_DOMAIN}", f"{name.title()} Example"),
            )
            for proxy in ("calendar-proxy-read", "calendar-proxy-write"):
                db.execute(
                    "INSERT INTO principals (uri) VALUES (?)", (f"principals/{name}/{proxy}",)
                )
    db.close()


def start_sabredav(tmp: Path) -> DebianServer:
    """SabreDAV 1.8.12's example CalDAV server on SQLite, served by ``php -S``."""

    def body(work: Path, cleanups: list[Callable[[], None]]) -> DebianServer:
        _sabre_database(work / "db.sqlite")
        router = work / "server.php"
        router.write_text(_SABRE_SERVER_PHP % {"realm": SABRE_REALM})

        def launch(port: int) -> DebianServer:
            server = _launch_daemon(
                "sabredav",
                ["php", "-S", f"{HOST}:{port}", str(router)],
                port, work, f"/calendars/{USERNAME}/",
                env={}, dav_root="/",
            )  # fmt: skip
            server.auth = "digest"
            return _brought_up(server)

        return _with_port_retry(launch)

    return _start_with_cleanup("sabredav", tmp, body)


STARTERS: dict[str, Callable[[Path], DebianServer]] = {
    "cyrus": start_cyrus,
    "sabredav": start_sabredav,
}
