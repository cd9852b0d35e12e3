"""Peak memory (RSS) of our client for a very large CRM, without a real server.

A 50,000-series initial push takes hours on Radicale or Xandikos (their per-PUT cost
grows with the calendar), so this measures *our* side only: the same ``run_pass`` with
the same ``DavCalendar`` (XML built and parsed, bodies rendered, state written to
SQLite), but its HTTP replaced by an in-process store that answers PUT, PROPFIND
getetag, sync-collection and calendar-multiget like a well-behaved server. Phases:

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
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from lxml import etree

from sync.config import Account
from sync.dav import DavCalendar, _Reply
from sync.followups import FollowUpStore
from sync.runner import run_pass
from sync.state import Database

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
BASE = "http://127.0.0.1:9/alice/big/"


class InProcessDav:
    """Just enough of a CalDAV collection, in a dict: href -> (etag, body, change number)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: dict[str, tuple[str, bytes, int]] = {}
        self.deleted: dict[str, int] = {}
        self.change = 0

    def handle(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> _Reply:
        href = unquote(urlsplit(url).path)
        if method == "PUT":
            assert body is not None
            existing = self.items.get(href)
            if headers.get("If-None-Match") == "*" and existing is not None:
                return _Reply(412, {}, b"", url)
            if "If-Match" in headers and (existing is None or existing[0] != headers["If-Match"]):
                return _Reply(412, {}, b"", url)
            self.change += 1
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            self.items[href] = (etag, body, self.change)
            return _Reply(204 if existing else 201, {"etag": etag}, b"", url)
        if method == "DELETE":
            if href not in self.items:
                return _Reply(404, {}, b"", url)
            self.change += 1
            del self.items[href]
            self.deleted[href] = self.change
            return _Reply(204, {}, b"", url)
        if method == "PROPFIND":
            if headers.get("Depth") == "0":
                if href.rstrip("/") == self.path.rstrip("/"):
                    return self._multistatus(url, [], token=True)
                item = self.items.get(href)
                if item is None:
                    return _Reply(404, {}, b"", url)
                return self._multistatus(url, [(href, item[0], None)])
            return self._multistatus(url, [(h, e, None) for h, (e, _, _) in self.items.items()])
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
                changed: list[tuple[str, str, bytes | None]] = [
                    (h, e, None) for h, (e, _, n) in self.items.items() if n > since
                ]
                gone = [h for h, n in self.deleted.items() if n > since] if since else []
                return self._multistatus(url, changed, gone=gone, sync_token=f"t:{self.change}")
            if name == "calendar-multiget":
                rows: list[tuple[str, str, bytes | None]] = []
                for el in root.iter(f"{{{DAV}}}href"):
                    wanted = unquote(el.text or "")
                    item = self.items.get(wanted)
                    if item is not None:
                        rows.append((wanted, item[0], item[1]))
                return self._multistatus(url, rows)
            return self._multistatus(url, [])  # calendar-query (UID look-ups): nothing there
        return _Reply(405, {}, b"", url)

    def _multistatus(
        self,
        url: str,
        rows: Sequence[tuple[str, str, bytes | None]],
        *,
        gone: list[str] | None = None,
        sync_token: str | None = None,
        token: bool = False,
    ) -> _Reply:
        parts = ['<?xml version="1.0" encoding="utf-8"?>',
                 f'<D:multistatus xmlns:D="{DAV}" xmlns:C="{CALDAV}">']  # fmt: skip
        if token:
            parts.append(
                f"<D:response><D:href>{escape(self.path)}</D:href><D:propstat><D:prop>"
                f"<D:sync-token>t:{self.change}</D:sync-token></D:prop>"
                "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
            )
        for href, etag, data in rows:
            cal = f"<C:calendar-data>{escape(data.decode())}</C:calendar-data>" if data else ""
            parts.append(
                f"<D:response><D:href>{escape(href)}</D:href><D:propstat><D:prop>"
                f"<D:getetag>{escape(etag)}</D:getetag>{cal}</D:prop>"
                "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
            )
        for href in gone or []:
            parts.append(
                f"<D:response><D:href>{escape(href)}</D:href>"
                "<D:status>HTTP/1.1 404 Not Found</D:status></D:response>"
            )
        if sync_token:
            parts.append(f"<D:sync-token>{sync_token}</D:sync-token>")
        parts.append("</D:multistatus>")
        return _Reply(207, {}, "".join(parts).encode(), url)


def in_process_calendar(store: InProcessDav) -> DavCalendar:
    calendar = DavCalendar.connect(
        BASE, username="alice", password="secret", server_kind="radicale"
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


def measure(n: int, tmp: Path, chunk: int = 5000) -> dict[str, Any]:
    from benchmarks.bench_sync import iter_followups

    result: dict[str, Any] = {"n": n, "phases": []}

    def phase(name: str, started: float, **extra: Any) -> None:
        gc.collect()
        result["phases"].append(
            {"phase": name, "seconds": round(time.perf_counter() - started, 2),
             "peak_rss_mb": round(peak_mb(), 1), **extra}
        )  # fmt: skip
        print(f"   {name}: {time.perf_counter() - started:.1f} s, peak RSS {peak_mb():.0f} MB",
              file=sys.stderr, flush=True)  # fmt: skip

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

    server = InProcessDav("/alice/big/")
    account = Account(name="big", url=BASE, username="alice", password_env="BENCH_PW",
                      calendar_url=BASE, server_kind="radicale")  # fmt: skip
    for name, full in ((f"initial push pass ({n} creates)", False),
                       (f"full pass (listing of {n})", True),
                       ("idle pass (sync token)", False)):  # fmt: skip
        calendar = in_process_calendar(server)
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar, full=full)
        assert report.ok, report.errors[:3]
        phase(name, started, requests=calendar.stats.requests,
              writes=calendar.stats.by_method.get("PUT", 0))  # fmt: skip
    db.close()
    result["peak_rss_mb"] = round(peak_mb(), 1)
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
