"""An in-process CalDAV collection, for tests and benchmarks that need no server process.

``InProcessDav`` answers PUT, DELETE, PROPFIND getetag, sync-collection,
calendar-multiget and calendar-query by UID like a well-behaved server, as a ``Sender``
(the I/O seam of ``DavCalendar``): the calendar above it is the production one, XML
built and parsed, preconditions and all. ``in_process_calendar`` connects one.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from lxml import etree

from sync.stores.caldav import DavCalendar, DavRequest, Reply, RequestStats

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
#: Where ``in_process_calendar`` puts the calendar when no URL is given (nothing listens there).
BASE = "http://127.0.0.1:9/alice/big/"


class InProcessDav:
    """Just enough of a CalDAV collection: PUT, DELETE, PROPFIND getetag, sync-collection,
    calendar-multiget and calendar-query by UID, answered like a well-behaved server.

    The resources live in SQLite (href, ETag, body, change number): in a file for the
    benchmark, so that the fake server's 50,000 bodies are not counted as *our* memory
    (a real server holds them in its own process), in memory for the tests. Answers are
    written into one buffer, as a server streams them; the client then holds the whole
    body, as it would over HTTP.
    """

    def __init__(self, path: str, database: str | Path = ":memory:") -> None:
        self.path = path
        self.db = sqlite3.connect(str(database), check_same_thread=False, isolation_level=None)
        self.db.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
            "CREATE TABLE IF NOT EXISTS items "
            "(href TEXT PRIMARY KEY, etag TEXT NOT NULL, body BLOB NOT NULL, change INTEGER);"
            "CREATE TABLE IF NOT EXISTS gone (href TEXT PRIMARY KEY, change INTEGER);"
        )
        self.change = 0

    # --- what a calendar client does (tests) ---------------------------------------------

    def put(self, href: str, body: bytes) -> str:
        """Store ``body`` at ``href`` as a client's write would; returns the new ETag."""
        self.change += 1
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self.db.execute(
            "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)", (href, etag, body, self.change)
        )
        self.db.execute("DELETE FROM gone WHERE href = ?", (href,))
        return etag

    def remove(self, href: str) -> bool:
        if self.get(href) is None:
            return False
        self.change += 1
        self.db.execute("DELETE FROM items WHERE href = ?", (href,))
        self.db.execute("INSERT OR REPLACE INTO gone VALUES (?, ?)", (href, self.change))
        return True

    def get(self, href: str) -> tuple[str, bytes] | None:
        row = self.db.execute("SELECT etag, body FROM items WHERE href = ?", (href,)).fetchone()
        return (row[0], bytes(row[1])) if row is not None else None

    def contents(self) -> dict[str, bytes]:
        """href -> body of every resource."""
        return {h: bytes(b) for h, b in self.db.execute("SELECT href, body FROM items")}

    def close(self) -> None:
        self.db.close()

    # --- HTTP --------------------------------------------------------------------------------

    def send(self, request: DavRequest) -> Reply:
        """Answer one request as the server would (the ``Sender`` seam of DavCalendar)."""
        method, url, body, headers = request.method, request.url, request.body, request.headers
        href = unquote(urlsplit(url).path)
        if method == "PUT":
            assert body is not None
            existing = self.get(href)
            if headers.get("If-None-Match") == "*" and existing is not None:
                return Reply(412, {}, b"", url)
            if "If-Match" in headers and (existing is None or existing[0] != headers["If-Match"]):
                return Reply(412, {}, b"", url)
            etag = self.put(href, body)
            return Reply(204 if existing else 201, {"etag": etag}, b"", url)
        if method == "DELETE":
            existing = self.get(href)
            if existing is None:
                return Reply(404, {}, b"", url)
            if "If-Match" in headers and existing[0] != headers["If-Match"]:
                return Reply(412, {}, b"", url)
            self.remove(href)
            return Reply(204, {}, b"", url)
        if method == "PROPFIND":
            if headers.get("Depth") == "0":
                if href.rstrip("/") == self.path.rstrip("/"):
                    return self._multistatus(url, [], token=True)
                item = self.get(href)
                if item is None:
                    return Reply(404, {}, b"", url)
                return self._multistatus(url, [(href, item[0], None)])
            listing = self.db.execute("SELECT href, etag, NULL FROM items ORDER BY href")
            return self._multistatus(url, listing)
        if method == "REPORT":
            assert body is not None
            root = etree.fromstring(body)
            name = etree.QName(root).localname
            if name == "sync-collection":
                token_el = root.find(f"{{{DAV}}}sync-token")
                since = (
                    int((token_el.text or "0").split(":")[-1])
                    if token_el is not None and token_el.text
                    else 0
                )
                changed = self.db.execute(
                    "SELECT href, etag, NULL FROM items WHERE change > ? ORDER BY change", (since,)
                )
                gone_rows = self.db.execute("SELECT href FROM gone WHERE change > ?", (since,))
                gone = [h for (h,) in gone_rows] if since else []
                return self._multistatus(url, changed, gone=gone, sync_token=f"t:{self.change}")
            if name == "calendar-multiget":
                wanted = [unquote(el.text or "") for el in root.iter(f"{{{DAV}}}href")]
                rows = []
                for one in wanted:
                    item = self.get(one)
                    if item is not None:
                        rows.append((one, item[0], item[1]))
                return self._multistatus(url, rows)
            if name == "calendar-query":
                match = root.find(f".//{{{CALDAV}}}text-match")
                uid = (match.text or "") if match is not None else ""
                line = f"UID:{uid}\r\n".encode()
                found = self.db.execute(
                    "SELECT href, etag, body FROM items WHERE instr(body, ?) > 0", (line,)
                )
                return self._multistatus(url, found)
            return self._multistatus(url, [])
        return Reply(405, {}, b"", url)

    def _multistatus(
        self,
        url: str,
        rows: Iterable[tuple[str, str, bytes | None]],
        *,
        gone: list[str] | None = None,
        sync_token: str | None = None,
        token: bool = False,
    ) -> Reply:
        out = io.StringIO()
        out.write('<?xml version="1.0" encoding="utf-8"?>')
        out.write(f'<D:multistatus xmlns:D="{DAV}" xmlns:C="{CALDAV}">')
        if token:
            out.write(
                f"<D:response><D:href>{escape(self.path)}</D:href><D:propstat><D:prop>"
                f"<D:sync-token>t:{self.change}</D:sync-token></D:prop>"
                "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
            )
        for href, etag, data in rows:
            cal = (
                f"<C:calendar-data>{escape(bytes(data).decode())}</C:calendar-data>" if data else ""
            )
            out.write(
                f"<D:response><D:href>{escape(href)}</D:href><D:propstat><D:prop>"
                f"<D:getetag>{escape(etag)}</D:getetag>{cal}</D:prop>"
                "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
            )
        for href in gone or []:
            out.write(
                f"<D:response><D:href>{escape(href)}</D:href>"
                "<D:status>HTTP/1.1 404 Not Found</D:status></D:response>"
            )
        if sync_token:
            out.write(f"<D:sync-token>{sync_token}</D:sync-token>")
        out.write("</D:multistatus>")
        return Reply(207, {}, out.getvalue().encode(), url)


def in_process_calendar(store: InProcessDav, url: str = BASE) -> DavCalendar:
    """Our client on ``store`` (at ``url``), its requests counted as over HTTP."""
    # Radicale's row, less what only its storage folder does (getlastmodified of members).
    calendar = DavCalendar.connect(
        url,
        username="alice",
        password="secret",
        server_kind="radicale",
        capability_overrides={"lastmodified_covers_members": False},
    )

    calendar.sender = _Counted(store, calendar.stats)
    return calendar


class _Counted:
    """``store`` as a Sender whose traffic shows in ``stats``, as if it went over HTTP."""

    def __init__(self, store: InProcessDav, stats: RequestStats) -> None:
        self.store = store
        self.stats = stats

    def send(self, request: DavRequest) -> Reply:
        stats = self.stats
        stats.requests += 1
        stats.bytes_sent += len(request.body or b"")
        stats.by_method[request.method] = stats.by_method.get(request.method, 0) + 1
        reply = self.store.send(request)
        stats.bytes_received += len(reply.body)
        return reply
