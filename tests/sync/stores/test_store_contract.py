"""The CalendarStore contract (sync/stores/base.py), one suite for every implementation.

``StoreContract`` holds the tests; each subclass gives its ``store`` fixture, as
vdirsyncer's ``StorageTests``: ``TestMemoryCalendar`` (sync.stores.memory) and
``TestDavCalendar`` (sync.stores.caldav) on every server of ``FOLLOWUP_SYNC_SERVERS``
(Radicale and Xandikos in ``make test``; DAViCal, SOGo, Cyrus, SabreDAV in the interop
tier). Where a server may answer within the contract's latitude (a delta re-listing
unchanged items, a token it cannot refuse), the test says so and reads the capabilities.

Events are plain text here, so the suite depends on nothing but the store and sync.errors.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator

import pytest

from sync.errors import AlreadyExists, InvalidSyncToken, NotFound, WrongEtag
from sync.stores.base import CalendarStore, FetchError, Resource
from sync.stores.caldav import DavCalendar, RetryPolicy
from sync.stores.memory import MemoryCalendar
from tests.dav_signin import dav_transport
from tests.servers import ServerInfo

FAST_RETRY = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.05, retry_after_max=0.1)


def calendar_text(uid: str, summary: str = "Call Bob", component: str = "VEVENT") -> bytes:
    timing = (
        ["DTSTART:20250115T090000Z", "DTEND:20250115T093000Z"]
        if component == "VEVENT"
        else ["DUE:20250115T090000Z"]
    )
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//followup-sync//contract tests//EN",
        f"BEGIN:{component}",
        f"UID:{uid}",
        "DTSTAMP:20250101T000000Z",
        *timing,
        f"SUMMARY:{summary}",
        f"END:{component}",
        "END:VCALENDAR",
        "",
    ]
    return "\r\n".join(lines).encode()


def field_of(data: bytes, name: str) -> str:
    """One property's value, whatever line ends the store gives back (CRLF or LF)."""
    text = re.sub(r"\r?\n[ \t]", "", data.decode())
    match = re.search(rf"^{name}[;:](?:[^:\r\n]*:)?(.*?)\r?$", text, re.MULTILINE)
    assert match, f"{name} not in {text!r}"
    return match.group(1)


def new_item(store: CalendarStore, summary: str = "Call Bob") -> tuple[str, str, str]:
    """A fresh event at its usual href: (uid, href, etag)."""
    uid = f"contract-{uuid.uuid4()}"
    href = store.href_for_uid(uid)
    return uid, href, store.create(href, calendar_text(uid, summary))


def needs_change_tracking(store: CalendarStore) -> None:
    if not store.capabilities.sync_token:
        pytest.skip(f"{store.capabilities.kind} has no sync-collection: list_etags only")


class StoreContract:
    """What every CalendarStore does; subclasses provide the ``store`` fixture."""

    # ------------------------------------------------------------------ hrefs

    def test_hrefs_for_uids_are_safe_names_under_the_collection(self, store: CalendarStore) -> None:
        assert store.href_for_uid("followup-42") == f"{store.path}followup-42.ics"
        assert store.href_for_uid("followup-42@crm") == f"{store.path}followup-42@crm.ics"
        for odd in ("odd uid/with späces", ".hidden", "@crm", "x" * 200):
            name = hashlib.sha1(odd.encode()).hexdigest()
            assert store.href_for_uid(odd) == f"{store.path}{name}.ics"

    def test_a_uid_with_an_at_sign_is_stored_and_listed_at_its_own_name(
        self, store: CalendarStore
    ) -> None:
        uid = f"contract-{uuid.uuid4()}@crm.example"
        href = store.href_for_uid(uid)
        assert href.endswith(f"/{uid}.ics")
        etag = store.create(href, calendar_text(uid, "Call Bob"))
        assert store.list_etags() == {href: etag}
        found = store.find_by_uid(uid)
        assert found is not None and found.href == href and found.etag == etag

    def test_normalise_href_gives_the_unquoted_path(self, store: CalendarStore) -> None:
        assert store.normalise_href(store.url + "a%20b.ics") == f"{store.path}a b.ics"
        assert store.normalise_href("a%20b.ics") == f"{store.path}a b.ics"
        assert store.normalise_href(f"{store.path}100%.ics") == f"{store.path}100%.ics"

    # ------------------------------------------------------------------ listing

    def test_an_empty_collection_lists_nothing(self, store: CalendarStore) -> None:
        assert store.list_etags() == {}
        if store.capabilities.sync_token:
            delta = store.changes_since(None)
            assert delta.changed == {} and delta.deleted == frozenset()
            assert delta.token

    def test_every_operation_is_counted(self, store: CalendarStore) -> None:
        before = store.stats.copy()
        store.list_etags()
        assert store.stats.since(before).requests >= 1

    # ------------------------------------------------------------------ create

    def test_create_returns_the_etag_the_listing_shows(self, store: CalendarStore) -> None:
        _, href, etag = new_item(store)
        assert etag
        assert store.list_etags() == {href: etag}

    def test_what_was_created_reads_back(self, store: CalendarStore) -> None:
        uid, href, etag = new_item(store, "Read me back")
        (got,) = list(store.get_multi([href]))
        assert isinstance(got, Resource)
        assert got.href == href and got.etag == etag
        assert field_of(got.data, "UID") == uid
        assert field_of(got.data, "SUMMARY") == "Read me back"

    def test_create_where_something_is_raises_already_exists(self, store: CalendarStore) -> None:
        uid, href, etag = new_item(store, "First")
        with pytest.raises(AlreadyExists):
            store.create(href, calendar_text(uid, "Second"))
        assert store.list_etags() == {href: etag}

    def test_create_of_a_uid_living_elsewhere_raises_already_exists(
        self, store: CalendarStore
    ) -> None:
        uid, href, etag = new_item(store)
        elsewhere = f"{store.path}another-name-{uuid.uuid4().hex[:8]}.ics"
        with pytest.raises(AlreadyExists):
            store.create(elsewhere, calendar_text(uid, "A second copy"))
        assert store.list_etags() == {href: etag}

    # ------------------------------------------------------------------ update

    def test_update_returns_a_new_etag_the_listing_shows(self, store: CalendarStore) -> None:
        uid, href, etag = new_item(store, "Before")
        new_etag = store.update(href, calendar_text(uid, "After"), etag)
        assert new_etag and new_etag != etag
        assert store.list_etags() == {href: new_etag}
        (got,) = list(store.get_multi([href]))
        assert isinstance(got, Resource) and field_of(got.data, "SUMMARY") == "After"

    def test_update_with_a_stale_etag_raises_wrong_etag(self, store: CalendarStore) -> None:
        uid, href, stale = new_item(store, "Before")
        current = store.update(href, calendar_text(uid, "Someone else's edit"), stale)
        with pytest.raises(WrongEtag):
            store.update(href, calendar_text(uid, "Ours, on the old version"), stale)
        (got,) = list(store.get_multi([href]))
        assert isinstance(got, Resource) and got.etag == current
        assert field_of(got.data, "SUMMARY") == "Someone else's edit"

    def test_update_of_a_gone_resource_raises_not_found(self, store: CalendarStore) -> None:
        uid, href, etag = new_item(store)
        store.delete(href, etag)
        with pytest.raises(NotFound):
            store.update(href, calendar_text(uid, "Too late"), etag)
        assert store.list_etags() == {}

    # ------------------------------------------------------------------ delete

    def test_delete_removes_and_a_second_delete_raises_not_found(
        self, store: CalendarStore
    ) -> None:
        _, href, etag = new_item(store)
        store.delete(href, etag)
        assert store.list_etags() == {}
        with pytest.raises(NotFound):
            store.delete(href, etag)

    def test_delete_with_a_stale_etag_raises_wrong_etag(self, store: CalendarStore) -> None:
        uid, href, stale = new_item(store)
        current = store.update(href, calendar_text(uid, "A newer edit"), stale)
        with pytest.raises(WrongEtag):
            store.delete(href, stale)
        assert store.list_etags() == {href: current}

    # ------------------------------------------------------------------ reading

    def test_get_multi_reads_each_href_once_and_reports_the_missing(
        self, store: CalendarStore
    ) -> None:
        made = {href: etag for _, href, etag in (new_item(store, f"n{i}") for i in range(5))}
        missing = f"{store.path}missing-{uuid.uuid4().hex}.ics"
        asked = [*made, missing, *made]
        got = list(store.get_multi(asked, batch_size=2))
        resources = {r.href: r.etag for r in got if isinstance(r, Resource)}
        errors = [r for r in got if isinstance(r, FetchError)]
        assert len(got) == len(made) + 1
        assert resources == made
        # A server may leave a missing href out of its answer (status 0) instead of a 404.
        assert [e.href for e in errors] == [missing] and errors[0].status in (0, 404)

    def test_get_multi_refuses_a_batch_size_below_one(self, store: CalendarStore) -> None:
        with pytest.raises(ValueError):
            list(store.get_multi([store.href_for_uid("x")], batch_size=0))

    def test_find_by_uid_finds_exactly_that_uid_under_any_href(self, store: CalendarStore) -> None:
        uid = f"contract-{uuid.uuid4()}"
        foreign = f"{store.path}written-by-someone-else.ics"
        etag = store.create(foreign, calendar_text(uid, "Under a foreign name"))
        # A UID that contains ours must not match (a CalDAV text-match is a substring match).
        store.create(store.href_for_uid(uid + "-x"), calendar_text(uid + "-x"))
        found = store.find_by_uid(uid)
        assert found is not None and found.href == foreign and found.etag == etag
        assert field_of(found.data, "SUMMARY") == "Under a foreign name"
        assert store.find_by_uid(f"never-{uuid.uuid4()}") is None

    def test_find_by_uid_finds_a_task(self, store: CalendarStore) -> None:
        uid = f"task-{uuid.uuid4()}"
        href = store.href_for_uid(uid)
        etag = store.create(href, calendar_text(uid, "A task", component="VTODO"))
        found = store.find_by_uid(uid)
        assert found is not None and (found.href, found.etag) == (href, etag)
        assert store.find_by_uid(uid, ("VEVENT",)) is None

    # ------------------------------------------------------------------ change tracking

    def test_a_delta_lists_the_change_and_the_delete(self, store: CalendarStore) -> None:
        needs_change_tracking(store)
        uid_a, href_a, etag_a = new_item(store, "a")
        _, href_b, etag_b = new_item(store, "b")
        new_item(store, "untouched")
        token = store.changes_since(None).token

        new_etag_a = store.update(href_a, calendar_text(uid_a, "a changed"), etag_a)
        store.delete(href_b, etag_b)
        _, href_c, etag_c = new_item(store, "c")

        delta = store.changes_since(token)
        expected = {href_a: new_etag_a, href_c: etag_c}
        if store.capabilities.sync_delta_minimal:
            assert delta.changed == expected
        else:  # DAViCal/SOGo re-list some unchanged items too (capabilities.py)
            assert delta.changed.items() >= expected.items()
            assert href_b not in delta.changed
        assert delta.deleted == frozenset({href_b})
        assert delta.token

    def test_an_idle_delta_is_empty(self, store: CalendarStore) -> None:
        needs_change_tracking(store)
        if store.capabilities.sync_token_seconds:
            pytest.skip("a seconds token re-lists the last second's changes once")
        new_item(store)
        token = store.changes_since(None).token
        delta = store.changes_since(token)
        assert delta.changed == {} and delta.deleted == frozenset()

    def test_the_current_token_is_the_one_a_full_listing_gives(self, store: CalendarStore) -> None:
        needs_change_tracking(store)
        if store.capabilities.sync_token_seconds:
            pytest.skip("SOGo: the REPORT's token may be a second behind")
        new_item(store)
        assert store.sync_token() == store.changes_since(None).token

    def test_a_token_the_store_never_gave_raises_invalid_sync_token(
        self, store: CalendarStore
    ) -> None:
        needs_change_tracking(store)
        if not store.capabilities.sync_token_trustworthy:
            pytest.skip("answers an unknown token with a full listing (test_interop.py)")
        new_item(store)
        with pytest.raises(InvalidSyncToken):
            store.changes_since("bogus-token")


class TestMemoryCalendar(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[CalendarStore]:
        calendar = MemoryCalendar("http://calendar.invalid/alice/contract/")
        yield calendar
        calendar.close()

    def test_every_write_gives_a_new_etag_even_for_the_same_bytes(self) -> None:
        store = MemoryCalendar()
        uid = "same-bytes"
        data = calendar_text(uid)
        first = store.create(store.href_for_uid(uid), data)
        assert store.update(store.href_for_uid(uid), data, first) != first

    def test_another_client_writes_without_preconditions(self) -> None:
        store = MemoryCalendar()
        href = store.href_for_uid("theirs")
        etag = store.put(href, calendar_text("theirs"))
        assert store.list_etags() == {href: etag}
        assert store.remove(href) and not store.remove(href)
        assert store.contents() == {}


@pytest.mark.server
class TestDavCalendar(StoreContract):
    @pytest.fixture
    def store(self, dav_server: ServerInfo, calendar_url: str) -> Iterator[CalendarStore]:
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
