"""sync.stores.caldav against real Radicale and Xandikos servers (started by tests/conftest.py).

The events are built here as plain text so that these tests depend on nothing but
sync.stores.caldav and sync.errors.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sync.errors import (
    AlreadyExists,
    InvalidSyncToken,
    NotFound,
    TransportError,
    WrongEtag,
)
from sync.stores.caldav import DavCalendar, FetchError, Resource, RetryPolicy
from tests.dav_signin import dav_transport
from tests.servers import ServerInfo

pytestmark = pytest.mark.server

FAST_RETRY = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.05, retry_after_max=0.1)


def vevent(uid: str, summary: str = "Call Bob") -> bytes:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//followup-sync//tests//EN",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20250101T000000Z",
        "DTSTART:20250115T090000Z",
        "DTEND:20250115T093000Z",
        f"SUMMARY:{summary}",
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ]
    return "\r\n".join(lines).encode()


def field_of(data: bytes, name: str) -> str:
    text = re.sub(r"\r?\n[ \t]", "", data.decode())
    match = re.search(rf"^{name}[;:](?:[^:\r\n]*:)?(.*?)\r?$", text, re.MULTILINE)
    assert match, f"{name} not in {text!r}"
    return match.group(1)


@pytest.fixture
def cal(dav_server: ServerInfo, calendar_url: str) -> Iterator[DavCalendar]:
    with DavCalendar.connect(
        calendar_url,
        username=dav_server.username,
        password=dav_server.password,
        transport=dav_transport(dav_server),
        server_kind=dav_server.kind,
        timeout=10,
        retry=FAST_RETRY,
    ) as calendar:
        yield calendar


def new_event(cal: DavCalendar, summary: str = "Call Bob") -> tuple[str, str, str]:
    uid = f"followup-{uuid.uuid4()}"
    href = cal.href_for_uid(uid)
    return uid, href, cal.create(href, vevent(uid, summary))


# ---------------------------------------------------------------------- connecting


def test_connect_sends_no_request(dav_server: ServerInfo, calendar_url: str) -> None:
    with DavCalendar.connect(
        calendar_url,
        username=dav_server.username,
        password=dav_server.password,
        transport=dav_transport(dav_server),
    ) as calendar:
        assert calendar.stats.requests == 0
        assert calendar.url == calendar_url


def test_discover_finds_and_creates(dav_server: ServerInfo) -> None:
    name = f"disc-{uuid.uuid4().hex[:8]}"
    first = DavCalendar.discover(
        dav_server.url,
        username=dav_server.username,
        password=dav_server.password,
        transport=dav_transport(dav_server),
        calendar=name,
        server_kind=dav_server.kind,
    )
    with first:
        assert first.path.rstrip("/").endswith(name)
        assert first.list_etags() == {}
        # principal, home, listing, PROPFIND+MKCALENDAR+PROPPATCH, list_etags; a 401-then-retry
        # round trip (missing auth_type) would add one per request.
        assert first.stats.requests <= 7
    with DavCalendar.discover(
        dav_server.url,
        username=dav_server.username,
        password=dav_server.password,
        transport=dav_transport(dav_server),
        calendar=name,
        create=False,
    ) as again:
        assert again.url == first.url
        assert "MKCALENDAR" not in again.stats.by_method
    with pytest.raises(NotFound):
        DavCalendar.discover(
            dav_server.url,
            username=dav_server.username,
            password=dav_server.password,
            transport=dav_transport(dav_server),
            calendar=f"absent-{uuid.uuid4().hex[:8]}",
            create=False,
        )


# ---------------------------------------------------------------------- writes


def test_create_twice_raises_already_exists(cal: DavCalendar) -> None:
    uid, href, etag = new_event(cal)
    assert etag
    with pytest.raises(AlreadyExists) as info:
        cal.create(href, vevent(uid, "something else"))
    assert info.value.href == href


def test_create_same_uid_other_href_raises_already_exists(cal: DavCalendar) -> None:
    uid, _, _ = new_event(cal)
    with pytest.raises(AlreadyExists):
        cal.create(f"{cal.path}elsewhere-{uuid.uuid4().hex}.ics", vevent(uid))


def test_create_returns_the_etag_the_server_lists(cal: DavCalendar) -> None:
    _, href, etag = new_event(cal)
    assert cal.list_etags() == {href: etag}


def test_update_with_stale_etag_raises_wrong_etag(cal: DavCalendar) -> None:
    uid, href, etag1 = new_event(cal, "v1")
    etag2 = cal.update(href, vevent(uid, "v2"), etag1)
    assert etag2 != etag1
    with pytest.raises(WrongEtag):
        cal.update(href, vevent(uid, "v3"), etag1)  # content differs: etags are content hashes
    assert cal.update(href, vevent(uid, "v3"), etag2) not in (etag1, etag2)


def test_update_uses_if_match_even_with_schedule_tag(cal: DavCalendar) -> None:
    """Xandikos sends Schedule-Tag; a stale If-Match must still be refused, not merged."""
    uid, href, etag1 = new_event(cal, "v1")
    cal.update(href, vevent(uid, "v2"), etag1)
    with pytest.raises(WrongEtag):
        cal.update(href, vevent(uid, "attendee-style change"), etag1)
    (res,) = list(cal.get_multi([href]))
    assert isinstance(res, Resource)
    assert field_of(res.data, "SUMMARY") == "v2"


def test_update_missing_raises_not_found(cal: DavCalendar) -> None:
    uid = f"gone-{uuid.uuid4()}"
    with pytest.raises(NotFound):
        cal.update(cal.href_for_uid(uid), vevent(uid), '"no-such-etag"')


def test_delete_with_stale_etag_raises_wrong_etag(cal: DavCalendar) -> None:
    uid, href, etag1 = new_event(cal, "v1")
    etag2 = cal.update(href, vevent(uid, "v2"), etag1)
    with pytest.raises(WrongEtag):
        cal.delete(href, etag1)
    cal.delete(href, etag2)
    assert cal.list_etags() == {}


def test_delete_missing_raises_not_found(cal: DavCalendar) -> None:
    _, href, etag = new_event(cal)
    cal.delete(href, etag)
    with pytest.raises(NotFound):
        cal.delete(href, etag)


# ---------------------------------------------------------------------- sync


def needs_sync_collection(cal: DavCalendar) -> None:
    """Skip a sync-collection test where the server has none (capabilities.sync_token False).

    Those servers are synced through list_etags (tested above and by test_sync.py on them);
    test_interop.py covers the refusal.
    """
    if not cal.capabilities.sync_token:
        pytest.skip(f"{cal.capabilities.kind} has no sync-collection (REPORT answers 403)")


def test_changes_since_none_lists_everything(cal: DavCalendar) -> None:
    needs_sync_collection(cal)
    created = dict(new_event(cal)[1:] for _ in range(3))
    delta = cal.changes_since(None)
    assert delta.changed == created
    assert delta.deleted == frozenset()
    assert delta.token
    if not cal.capabilities.sync_token_seconds:  # SOGo: the REPORT's token may be 1 s behind
        assert cal.sync_token() == delta.token


def test_changes_since_token_shows_exactly_the_change_and_the_delete(cal: DavCalendar) -> None:
    needs_sync_collection(cal)
    uid_a, href_a, etag_a = new_event(cal, "a")
    _, href_b, etag_b = new_event(cal, "b")
    _, _, _ = new_event(cal, "untouched")
    token = cal.changes_since(None).token

    new_etag_a = cal.update(href_a, vevent(uid_a, "a changed"), etag_a)
    cal.delete(href_b, etag_b)

    delta = cal.changes_since(token)
    if cal.capabilities.sync_delta_minimal:
        assert delta.changed == {href_a: new_etag_a}
    else:  # DAViCal/SOGo re-list some unchanged items too (capabilities.py)
        assert delta.changed.items() >= {href_a: new_etag_a}.items()
        assert href_b not in delta.changed
    assert delta.deleted == frozenset({href_b})
    if not cal.capabilities.sync_token_seconds:  # SOGo: same second, same token
        assert delta.token != token


def test_idle_changes_since_is_one_small_request(cal: DavCalendar) -> None:
    needs_sync_collection(cal)
    for _ in range(5):
        new_event(cal)
    token = cal.changes_since(None).token
    if cal.capabilities.sync_token_seconds:  # SOGo re-lists the last second's changes once
        time.sleep(1.1)
        token = cal.changes_since(token).token
    before = cal.stats.copy()
    delta = cal.changes_since(token)
    spent = cal.stats.since(before)
    assert delta.changed == {} and delta.deleted == frozenset()
    assert spent.requests == 1
    assert spent.by_method == {"REPORT": 1}
    assert spent.bytes_received < 2048


def test_bogus_token_raises_invalid_sync_token(cal: DavCalendar) -> None:
    needs_sync_collection(cal)
    if not cal.capabilities.sync_token_trustworthy:
        pytest.skip("answers a bogus token with a full listing; see tests/integration/test_interop")
    new_event(cal)
    with pytest.raises(InvalidSyncToken):
        cal.changes_since("http://radicale.org/ns/sync/" + "0" * 64)
    with pytest.raises(InvalidSyncToken):
        cal.changes_since("bogus-token")


# ---------------------------------------------------------------------- reads


def test_get_multi_batches_and_returns_the_data(cal: DavCalendar) -> None:
    count, batch = 120, 50
    sent = {}
    for i in range(count):
        uid = f"multi-{i:03d}-{uuid.uuid4().hex[:6]}"
        href = cal.href_for_uid(uid)
        cal.create(href, vevent(uid, f"event {i}"))
        sent[href] = (uid, f"event {i}")
    before = cal.stats.copy()
    got = list(cal.get_multi(sent, batch_size=batch))
    spent = cal.stats.since(before)
    assert spent.requests == math.ceil(count / batch)
    assert spent.by_method == {"REPORT": math.ceil(count / batch)}
    assert all(isinstance(r, Resource) for r in got)
    by_href = {r.href: r for r in got if isinstance(r, Resource)}
    assert set(by_href) == set(sent)
    for href, (uid, summary) in sent.items():
        assert field_of(by_href[href].data, "UID") == uid
        assert field_of(by_href[href].data, "SUMMARY") == summary
        assert by_href[href].etag


def test_get_multi_missing_href_yields_fetch_error(cal: DavCalendar) -> None:
    _, href_a, etag_a = new_event(cal)
    _, href_b, _ = new_event(cal)
    missing = f"{cal.path}missing-{uuid.uuid4().hex}.ics"
    got = list(cal.get_multi([href_a, missing, href_b]))
    resources = {r.href: r for r in got if isinstance(r, Resource)}
    errors = [r for r in got if isinstance(r, FetchError)]
    assert set(resources) == {href_a, href_b}
    assert resources[href_a].etag == etag_a
    # DAViCal leaves a missing href out of its answer (status 0) instead of a 404.
    allowed = {404} if cal.capabilities.kind in ("radicale", "xandikos") else {0, 404}
    assert [e.href for e in errors] == [missing] and errors[0].status in allowed


def test_hrefs_with_odd_characters_round_trip(cal: DavCalendar) -> None:
    """Servers quote hrefs; every method must hand back and accept the same unquoted key."""
    uid = "odd uid/with späces@crm"
    href = cal.href_for_uid(uid)
    assert re.fullmatch(re.escape(cal.path) + r"[0-9a-f]{40}\.ics", href)
    spaced = f"{cal.path}with space {uuid.uuid4().hex[:6]}.ics"
    etag = cal.create(spaced, vevent(uid))
    assert cal.list_etags() == {spaced: etag}
    if cal.capabilities.sync_token:
        assert cal.changes_since(None).changed == {spaced: etag}
    (res,) = list(cal.get_multi([spaced]))
    assert isinstance(res, Resource) and res.href == spaced
    found = cal.find_by_uid(uid)
    assert found is not None and found.href == spaced
    cal.delete(spaced, etag)


def test_find_by_uid_finds_a_resource_under_a_foreign_href(cal: DavCalendar) -> None:
    uid = f"crash-{uuid.uuid4()}"
    foreign = f"{cal.path}written-by-someone-else.ics"
    etag = cal.create(foreign, vevent(uid, "before the crash"))
    new_event(cal)  # noise
    # A UID that contains ours as a substring must not match (text-match is a substring match).
    cal.create(cal.href_for_uid(uid + "-x"), vevent(uid + "-x"))
    found = cal.find_by_uid(uid)
    assert found is not None
    assert found.href == foreign
    assert found.etag == etag
    assert field_of(found.data, "SUMMARY") == "before the crash"
    assert cal.find_by_uid(f"never-{uuid.uuid4()}") is None


def test_find_by_uid_finds_a_vtodo(cal: DavCalendar) -> None:
    uid = f"task-{uuid.uuid4()}"
    todo = "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//followup-sync//tests//EN",
            "BEGIN:VTODO",
            f"UID:{uid}",
            "DTSTAMP:20250101T000000Z",
            "DUE:20250120T170000Z",
            "SUMMARY:Send offer",
            "END:VTODO",
            "END:VCALENDAR",
            "",
        ]
    ).encode()
    href = cal.href_for_uid(uid)
    cal.create(href, todo)
    found = cal.find_by_uid(uid)
    assert found is not None and found.href == href


# ---------------------------------------------------------------------- failures


class _FlakyHandler(BaseHTTPRequestHandler):
    """A scripted server: 503 for the first ``failures_left`` requests, then ``answers`` in order.

    The last answer repeats. Request bodies are kept in ``bodies`` for assertions.
    """

    failures_left = 0
    retry_after = "0"
    answers: list[bytes]
    bodies: list[bytes]

    def do_REPORT(self) -> None:
        cls = type(self)
        cls.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if cls.failures_left > 0:
            cls.failures_left -= 1
            self.send_response(503)
            self.send_header("Retry-After", cls.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = cls.answers.pop(0) if len(cls.answers) > 1 else cls.answers[0]
        self.send_response(207)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[type[_FlakyHandler], str]]:
    handler = type("Handler", (_FlakyHandler,), {"answers": [b""], "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}/alice/cal/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_503_is_retried_then_succeeds(flaky: tuple[type[_FlakyHandler], str]) -> None:
    handler, url = flaky
    handler.failures_left = 2
    handler.answers = [b'<multistatus xmlns="DAV:"><sync-token>t2</sync-token></multistatus>']
    with DavCalendar.connect(url, username=None, password=None, retry=FAST_RETRY) as c:
        delta = c.changes_since("t1")
        assert delta.token == "t2" and delta.changed == {}
        assert c.stats.requests == 3


def test_persistent_503_raises_transport_error(flaky: tuple[type[_FlakyHandler], str]) -> None:
    handler, url = flaky
    handler.failures_left = 10
    with DavCalendar.connect(url, username=None, password=None, retry=FAST_RETRY) as c:
        with pytest.raises(TransportError) as info:
            c.changes_since("t1")
        assert info.value.status == 503
        assert c.stats.requests == FAST_RETRY.attempts


def test_malformed_multiget_raises_transport_error_naming_the_batch(
    flaky: tuple[type[_FlakyHandler], str],
) -> None:
    handler, url = flaky
    handler.answers = [b"<multistatus xmlns='DAV:'><response><href>/alice/cal/a.ics</hr"]
    with (
        DavCalendar.connect(url, username=None, password=None, retry=FAST_RETRY) as c,
        pytest.raises(TransportError, match="batch 1"),
    ):
        list(c.get_multi(["/alice/cal/a.ics"]))


def test_retry_after_is_honoured_but_capped(flaky: tuple[type[_FlakyHandler], str]) -> None:
    handler, url = flaky
    handler.failures_left = 1
    handler.retry_after = "3600"
    handler.answers = [b'<multistatus xmlns="DAV:"><sync-token>t2</sync-token></multistatus>']
    started = time.monotonic()
    with DavCalendar.connect(url, username=None, password=None, retry=FAST_RETRY) as c:
        assert c.changes_since("t1").token == "t2"
    assert time.monotonic() - started < 2  # capped at retry_after_max=0.1 s, not an hour


def test_truncated_sync_is_followed_and_merged(flaky: tuple[type[_FlakyHandler], str]) -> None:
    """A 507 on the collection means 'more to come': ask again with the intermediate token."""
    handler, url = flaky

    def page(token: str, body: str, truncated: bool) -> bytes:
        more = (
            "<response><href>/alice/cal/</href>"
            "<status>HTTP/1.1 507 Insufficient Storage</status></response>"
            if truncated
            else ""
        )
        return (
            f'<multistatus xmlns="DAV:">{body}{more}<sync-token>{token}</sync-token></multistatus>'
        ).encode()

    def changed(href: str, etag: str) -> str:
        return (
            f"<response><href>{href}</href><propstat><prop><getetag>{etag}</getetag></prop>"
            "<status>HTTP/1.1 200 OK</status></propstat></response>"
        )

    gone = (
        "<response><href>/alice/cal/b.ics</href><status>HTTP/1.1 404 Not Found</status></response>"
    )
    handler.answers = [
        page("p1", changed("/alice/cal/a.ics", '"1"') + changed("/alice/cal/b.ics", '"1"'), True),
        page("p2", gone + changed("/alice/cal/c%20d.ics", '"1"'), True),
        page("final", changed("/alice/cal/a.ics", '"2"'), False),
    ]
    with DavCalendar.connect(url, username=None, password=None, retry=FAST_RETRY) as c:
        delta = c.changes_since("t0")
        assert delta.token == "final"
        assert delta.changed == {"/alice/cal/a.ics": '"2"', "/alice/cal/c d.ics": '"1"'}
        assert delta.deleted == frozenset({"/alice/cal/b.ics"})
        assert c.stats.requests == 3
    assert [b"<D:sync-token>p1</D:sync-token>" in body for body in handler.bodies] == [
        False,
        True,
        False,
    ]
    assert b"<D:sync-token>p2</D:sync-token>" in handler.bodies[2]


def test_connection_refused_raises_transport_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/alice/cal/"
    with DavCalendar.connect(url, username=None, password=None, retry=FAST_RETRY) as c:
        with pytest.raises(TransportError) as info:
            c.list_etags()
        assert info.value.href == "/alice/cal/"


# ---------------------------------------------------------------------- capabilities


def test_capability_overrides_are_validated() -> None:
    from sync.errors import ConfigError
    from sync.stores.capabilities import (
        capabilities_for,
        detect_kind_from_token,
        detect_server_kind,
    )

    assert capabilities_for("sogo").if_none_match_honoured is False
    assert capabilities_for(None).kind == "generic"
    assert capabilities_for("radicale", {"sync_token_trustworthy": False}).sync_token is True
    with pytest.raises(ConfigError):
        capabilities_for("radicale", {"sync_tokn": True})
    with pytest.raises(ConfigError):
        capabilities_for("radicale", {"sync_token": "yes"})
    with pytest.raises(ConfigError):
        capabilities_for("exchange")
    assert detect_server_kind({"Server": "SOGo/5.8.0"}) == "sogo"
    assert detect_server_kind(url="http://h/davical/caldav.php/alice/cal/") == "davical"
    assert detect_server_kind({"Server": "WSGIServer/0.2"}) == "generic"
    assert detect_server_kind({"Server": "Cyrus-HTTP/3.6.1-Debian-3.6.1-4"}) == "cyrus"
    # SabreDAV 1.x has no sync-collection; 2 and later (Baikal, Nextcloud) do.
    assert detect_server_kind({"X-Sabre-Version": "1.8.12"}) == "sabredav"
    assert detect_server_kind({"X-Sabre-Version": "4.6.0"}) == "generic"
    assert detect_kind_from_token("data:,1796419088-4") == "cyrus"
    assert detect_kind_from_token("data:,17") == "davical"
    assert capabilities_for("cyrus", {"same_uid_other_href": "403"}).same_uid_other_href == "403"


def test_untrusted_if_none_match_is_checked_before_the_put(
    dav_server: ServerInfo, calendar_url: str
) -> None:
    """The SOGo path: the server might overwrite, so create() looks first."""
    with DavCalendar.connect(
        calendar_url,
        username=dav_server.username,
        password=dav_server.password,
        transport=dav_transport(dav_server),
        server_kind=dav_server.kind,
        capability_overrides={"if_none_match_honoured": False, "etag_on_put": False},
        retry=FAST_RETRY,
    ) as cal:
        uid, href, etag = new_event(cal)
        assert cal.list_etags() == {href: etag}  # the etag came from a PROPFIND after the PUT
        before = cal.stats.copy()
        with pytest.raises(AlreadyExists):
            cal.create(href, vevent(uid, "overwrite?"))
        assert cal.stats.since(before).by_method == {"PROPFIND": 1}
