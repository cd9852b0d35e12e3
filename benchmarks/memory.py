"""Peak memory (RSS) of our client for a very large CRM, without a real server.

A 50,000-series initial push takes hours on Radicale or Xandikos (their per-PUT cost
grows with the calendar), so this measures *our* side only: the same ``run_pass`` with
the same ``DavCalendar`` (XML built and parsed, bodies rendered, state written to
SQLite), but its HTTP replaced by an in-process store that answers PUT, PROPFIND
getetag, sync-collection and calendar-multiget like a well-behaved server. The store
keeps its resources in a SQLite file, as a server keeps them outside our process, so
the figure is our client's (the store used to be a dict in this process, which added
about 70 MB at 50,000 series). Phases:

1. generate and import N series into the CRM store, in chunks of 5,000;
2. initial push pass (N creates);
3. a full pass (``--full``: an href/ETag listing of all N, compared with the state);
4. an idle pass (sync token, nothing changed).

Run as its own process (``python -m benchmarks.memory --n 50000``) so that ru_maxrss
is this measurement's peak and nothing else's.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from lxml import etree

from sync.config import Account
from sync.run import run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar, _Reply

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
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

    def handle(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> _Reply:
        href = unquote(urlsplit(url).path)
        if method == "PUT":
            assert body is not None
            existing = self.get(href)
            if headers.get("If-None-Match") == "*" and existing is not None:
                return _Reply(412, {}, b"", url)
            if "If-Match" in headers and (existing is None or existing[0] != headers["If-Match"]):
                return _Reply(412, {}, b"", url)
            etag = self.put(href, body)
            return _Reply(204 if existing else 201, {"etag": etag}, b"", url)
        if method == "DELETE":
            existing = self.get(href)
            if existing is None:
                return _Reply(404, {}, b"", url)
            if "If-Match" in headers and existing[0] != headers["If-Match"]:
                return _Reply(412, {}, b"", url)
            self.remove(href)
            return _Reply(204, {}, b"", url)
        if method == "PROPFIND":
            if headers.get("Depth") == "0":
                if href.rstrip("/") == self.path.rstrip("/"):
                    return self._multistatus(url, [], token=True)
                item = self.get(href)
                if item is None:
                    return _Reply(404, {}, b"", url)
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
        return _Reply(405, {}, b"", url)

    def _multistatus(
        self,
        url: str,
        rows: Iterable[tuple[str, str, bytes | None]],
        *,
        gone: list[str] | None = None,
        sync_token: str | None = None,
        token: bool = False,
    ) -> _Reply:
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
        return _Reply(207, {}, out.getvalue().encode(), url)


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

    def send(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> _Reply:
        stats = calendar.stats
        stats.requests += 1
        stats.bytes_sent += len(body or b"")
        stats.by_method[method] = stats.by_method.get(method, 0) + 1
        reply = store.handle(method, url, body, headers)
        stats.bytes_received += len(reply.body)
        return reply

    calendar._send_once = send  # type: ignore[method-assign]
    return calendar


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Start a new peak, so that each phase reports its own (Linux: /proc/self/clear_refs).

    The phase's peak still includes what earlier phases left in the process (RSS that
    was freed but not returned), as a daemon's next pass would. Where this is not
    supported, every phase reports the process's peak so far.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def measure(n: int, tmp: Path, chunk: int = 5000) -> dict[str, Any]:
    from benchmarks.bench_sync import iter_followups

    result: dict[str, Any] = {"n": n, "phases": [], "per_phase_peaks": reset_peak()}
    overall = 0.0

    def phase(name: str, started: float, **extra: Any) -> None:
        nonlocal overall
        gc.collect()
        peak = peak_mb()
        overall = max(overall, peak)
        result["phases"].append(
            {"phase": name, "seconds": round(time.perf_counter() - started, 2),
             "peak_rss_mb": round(peak, 1), **extra}
        )  # fmt: skip
        print(f"   {name}: {time.perf_counter() - started:.1f} s, peak RSS {peak:.0f} MB",
              file=sys.stderr, flush=True)  # fmt: skip
        reset_peak()

    os.environ["BENCH_PW"] = "secret"
    db = Database.open(str(tmp / "memory.sqlite"))
    store = FollowUpStore(db)
    started = time.perf_counter()
    batch = []
    for followup in iter_followups(n):
        batch.append(followup)
        if len(batch) == chunk:
            store.import_followups(batch)
            batch = []
    if batch:
        store.import_followups(batch)
    del batch
    phase(f"generate + import {n} series (chunks of {chunk})", started)

    server = InProcessDav("/alice/big/", tmp / "server.sqlite")
    account = Account(name="big", url=BASE, username="alice", password_env="BENCH_PW",
                      calendar_url=BASE, server_kind="radicale")  # fmt: skip
    for name, full in ((f"initial push pass ({n} creates)", False),
                       (f"full pass (listing of {n})", True),
                       ("idle pass (sync token)", False)):  # fmt: skip
        calendar = in_process_calendar(server)
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar, full=full)
        assert report.ok, report.errors[:3]
        del report  # as a daemon drops it: the next pass does not hold this one's report
        phase(name, started, requests=calendar.stats.requests,
              writes=calendar.stats.by_method.get("PUT", 0))  # fmt: skip
    db.close()
    server.close()
    result["peak_rss_mb"] = round(overall, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="followup-memory-") as tmp:
        result = measure(args.n, Path(tmp))
    print(json.dumps(result) if args.json else result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
