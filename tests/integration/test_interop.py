# ruff: noqa: F811  (pytest fixtures imported from test_sync are parameters here)
"""The quirk workarounds of sync/stores/capabilities.py, each against the server that has the quirk.

Interop tier: these need DAViCal, SOGo, Cyrus or SabreDAV (``make test-interop``, or
``FOLLOWUP_SYNC_SERVERS=...,davical,sogo,cyrus,sabredav``); elsewhere they are skipped,
except one that makes Radicale answer like DAViCal and so runs in ``make test`` as well.
Every test shows the workaround working AND, with the capability flag switched to what
the server does not do (the workaround off), the bad outcome it prevents, so a test that
passes cannot be one that would pass without the workaround.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from mappings.model import uid_for_id
from sync.errors import (
    AlreadyExists,
    NotFound,
    StoreError,
    SyncCollectionUnsupported,
    WrongEtag,
)
from sync.run import PassReport, run_pass
from sync.state.db import CollectionState, SyncItem
from sync.stores.caldav import DavCalendar, DavRequest, Delta, FetchError, Reply, Resource, Sender
from tests.dav_signin import dav_transport
from tests.integration import client_edits as ce
from tests.integration.test_sync import (  # noqa: F401  (env and synced are fixtures)
    CALL,
    WEEKLY,
    Env,
    env,
    followup_set,
    synced,
)
from tests.servers import RunningServer, ServerInfo, _http

pytestmark = pytest.mark.server

davical_only = pytest.mark.parametrize("dav_server", ["davical"], indirect=True)
sogo_only = pytest.mark.parametrize("dav_server", ["sogo"], indirect=True)
untrusted_token_servers = pytest.mark.parametrize("dav_server", ["davical", "sogo"], indirect=True)
cyrus_only = pytest.mark.parametrize("dav_server", ["cyrus"], indirect=True)
sabredav_only = pytest.mark.parametrize("dav_server", ["sabredav"], indirect=True)


def connect(env: Env, **overrides: Any) -> DavCalendar:
    """Our calendar client on the env's calendar, with capability flags overridden."""
    return DavCalendar.connect(
        env.calendar_url,
        username=env.server.username,
        password=env.server.password,
        transport=dav_transport(env.server),
        server_kind=env.server.kind,
        capability_overrides=overrides,
    )


def sync_with(env: Env, **overrides: Any) -> PassReport:
    with connect(env, **overrides) as calendar:
        return run_pass(env.account, env.db, calendar=calendar)


def vevent(uid: str, summary: str) -> bytes:
    return ce.new_event(uid, summary, ce.oslo(2026, 2, 10, 12), ce.oslo(2026, 2, 10, 13))


@pytest.fixture
def cal(dav_server: ServerInfo, calendar_url: str) -> Iterator[DavCalendar]:
    with DavCalendar.connect(
        calendar_url,
        username=dav_server.username,
        password=dav_server.password,
        transport=dav_transport(dav_server),
        server_kind=dav_server.kind,
    ) as calendar:
        yield calendar


def uids_at(client: ce.PlainClient) -> list[str]:
    return sorted(ce.uid_of(f.data) for f in client.all())


# ================================================================ stale tokens -> full listing


@untrusted_token_servers
def test_stale_token_full_listing_still_reveals_a_deletion(synced: Env) -> None:
    """DAViCal/SOGo answer an unknown token with a plain 207 listing (no 403/412).

    Read as a delta, the listing simply lacks the deleted resource. The workaround
    (capabilities.sync_token_trustworthy False) notices unchanged items in the "delta"
    and compares the full href/ETag listing, where the missing href is a deletion.
    """
    resource = synced.resource(CALL)
    synced.client.delete(resource.url, resource.etag)
    if synced.server.kind == "sogo":
        # SOGo keeps tombstones and lists them for a token it cannot parse (it reads it as
        # second 0); a token it never issued is one from before its tombstones were purged.
        purge_sogo_tombstones(synced)
    set_token(synced, stale_token(synced.server.kind))

    report = synced.sync()
    assert report.mode == "full"
    assert report.applied.done == {"crm delete": 1}
    assert synced.store.get(CALL) is None
    assert synced.sync().plan.actions == ()


@untrusted_token_servers
def test_stale_token_without_the_workaround_misses_the_deletion(synced: Env) -> None:
    """The same situation with the flag claiming trustworthy tokens: the deletion is lost."""
    resource = synced.resource(CALL)
    synced.client.delete(resource.url, resource.etag)
    if synced.server.kind == "sogo":
        purge_sogo_tombstones(synced)
    set_token(synced, stale_token(synced.server.kind))

    report = sync_with(synced, sync_token_trustworthy=True)
    assert report.ok
    assert report.mode == "incremental"
    assert "crm delete" not in report.applied.done
    assert synced.store.get(CALL) is not None, "the deletion went unnoticed"


@pytest.mark.parametrize("dav_server", ["radicale"], indirect=True)
@pytest.mark.parametrize("trustworthy", [False, True], ids=["workaround", "without"])
def test_full_listing_for_a_stale_token_simulated_on_radicale(
    synced: Env, monkeypatch: pytest.MonkeyPatch, trustworthy: bool
) -> None:
    """The same quirk with Radicale made to answer like DAViCal: runs in ``make test`` too."""
    resource = synced.resource(CALL)
    synced.client.delete(resource.url, resource.etag)
    original = DavCalendar.changes_since

    def full_listing_for_any_token(self: DavCalendar, token: str | None) -> Delta:
        fresh = original(self, None)  # what DAViCal sends for a token it does not know
        return Delta(self.list_etags(), frozenset(), fresh.token) if token else fresh

    monkeypatch.setattr(DavCalendar, "changes_since", full_listing_for_any_token)
    report = sync_with(synced, sync_token_trustworthy=trustworthy)
    if trustworthy:
        assert "crm delete" not in report.applied.done
        assert synced.store.get(CALL) is not None, "the deletion went unnoticed"
    else:
        assert report.mode == "full"
        assert report.applied.done == {"crm delete": 1}


def stale_token(kind: str) -> str:
    # DAViCal: a token of another collection/lifetime; SOGo: a time before anything existed.
    return "data:,999999" if kind == "davical" else "1"


def set_token(env: Env, token: str) -> None:
    with env.db.sessions.begin() as session:
        state = session.get(CollectionState, env.account.name)
        assert state is not None and state.sync_token
        state.sync_token = token


def purge_sogo_tombstones(env: Env) -> None:
    """What SOGo's periodic clean-up does: forget deleted rows (c_deleted = 1)."""
    import subprocess

    from tests.servers import HOST
    from tests.servers_debian import pg_port

    # SOGo's combined store (OCSStoreURL): every calendar's rows live in sogo_store.
    sql = "DELETE FROM sogo_store WHERE c_deleted = 1"
    subprocess.run(  # fixed argv, no shell
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST,
         "-p", str(pg_port(env.server.url)), "-U", "sogo", "-d", "sogo", "-c", sql],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )  # fmt: skip


# ================================================================ SOGo: If-None-Match ignored


@sogo_only
def test_create_does_not_overwrite_a_resource_where_if_none_match_is_ignored(
    cal: DavCalendar, dav_server: ServerInfo, calendar_url: str
) -> None:
    client = ce.PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)
    href = cal.href_for_uid("followup-9001@followup-sync")
    client.create(href.rsplit("/", 1)[1], vevent("followup-9001@followup-sync", "Client's copy"))

    with pytest.raises(AlreadyExists):
        cal.create(href, vevent("followup-9001@followup-sync", "Ours"))
    assert "Client's copy" in client.by_uid("followup-9001@followup-sync").text

    # Without the workaround the server silently replaces the client's resource.
    with connect_to(dav_server, calendar_url, if_none_match_honoured=True) as trusting:
        trusting.create(href, vevent("followup-9001@followup-sync", "Ours"))
    assert "SUMMARY:Ours" in client.by_uid("followup-9001@followup-sync").text


class _FirstLookupMisses:
    """A Sender that answers the first PROPFIND of ``href`` 404: a check made too early."""

    def __init__(self, inner: Sender, href: str) -> None:
        self.inner = inner
        self.href = href
        self.missed = False

    def send(self, request: DavRequest) -> Reply:
        if not self.missed and request.method == "PROPFIND" and request.href == self.href:
            self.missed = True
            return Reply(404, {}, b"", request.url)
        return self.inner.send(request)


@sogo_only
def test_create_that_replaced_a_resource_created_meanwhile_is_reported(
    cal: DavCalendar, dav_server: ServerInfo, calendar_url: str
) -> None:
    """The window between our existence check and the PUT: SOGo answers 204, not 201."""
    client = ce.PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)
    uid = "followup-9002@followup-sync"
    href = cal.href_for_uid(uid)
    client.create(href.rsplit("/", 1)[1], vevent(uid, "Created meanwhile"))
    # Our existence check ran just before the client's PUT: it saw nothing.
    cal.sender = _FirstLookupMisses(cal.sender, href)

    with pytest.raises(AlreadyExists, match="replaced"):
        cal.create(href, vevent(uid, "Ours"))

    assert "Created meanwhile" not in client.by_uid(uid).text  # replaced, but reported
    with connect_to(dav_server, calendar_url, if_none_match_honoured=True) as trusting:
        trusting.create(href, vevent(uid, "Ours again"))  # no error: taken for a create


# ================================================================ SOGo: If-Match on DELETE, missing


@sogo_only
def test_delete_with_a_stale_etag_is_refused_where_delete_ignores_if_match(
    cal: DavCalendar, dav_server: ServerInfo, calendar_url: str
) -> None:
    """SOGo 5.8.0 deletes whatever If-Match says; a client's newer edit must survive."""
    client = ce.PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)
    uid = "followup-9004@followup-sync"
    href = cal.href_for_uid(uid)
    stale = cal.create(href, vevent(uid, "Ours"))
    client.replace(client.by_uid(uid), vevent(uid, "Client's newer edit"))

    with pytest.raises(WrongEtag):
        cal.delete(href, stale)
    assert "Client's newer edit" in client.by_uid(uid).text

    with connect_to(dav_server, calendar_url, if_match_honoured_on_delete=True) as trusting:
        trusting.delete(href, stale)  # no error: the client's edit is gone
    assert uids_at(client) == []


@sogo_only
def test_update_of_a_resource_deleted_meanwhile_does_not_bring_it_back(
    cal: DavCalendar, dav_server: ServerInfo, calendar_url: str
) -> None:
    """SOGo answers If-Match on a missing href by creating it (201)."""
    client = ce.PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)
    uid = "followup-9005@followup-sync"
    href = cal.href_for_uid(uid)
    etag = cal.create(href, vevent(uid, "Ours"))
    fetched = client.by_uid(uid)
    client.delete(fetched.url, fetched.etag)

    with pytest.raises(NotFound):
        cal.update(href, vevent(uid, "Ours, changed"), etag)
    assert uids_at(client) == [], "the client's deletion stands"

    with connect_to(dav_server, calendar_url, if_match_missing_refused=True) as trusting:
        trusting.update(href, vevent(uid, "Ours, changed"), etag)  # "succeeds"
    assert uids_at(client) == [uid], "without the workaround the deleted event is back"


@sogo_only
@pytest.mark.parametrize("workaround", [True, False])
def test_sync_sees_a_deletion_that_raced_its_update(
    synced: Env, monkeypatch: pytest.MonkeyPatch, workaround: bool
) -> None:
    """End to end: a CRM edit pushed while a client deletes the event.

    With the workaround the pass learns the event is gone (and plans again: the CRM edit
    against a server deletion); without it SOGo's 201 is taken for a successful update.
    """
    synced.edit_in_crm(CALL, title="Call (CRM edit)")
    original_update = DavCalendar.update

    def client_deletes_first(self: DavCalendar, href: str, data: bytes, etag: str) -> str:
        current = synced.resource(CALL)
        synced.client.delete(current.url, current.etag)
        monkeypatch.setattr(DavCalendar, "update", original_update)
        return original_update(self, href, data, etag)

    monkeypatch.setattr(DavCalendar, "update", client_deletes_first)
    overrides = {} if workaround else {"if_match_missing_refused": True}
    report = sync_with(synced, **overrides)
    if workaround:
        assert "server update" not in report.applied.done
    else:
        assert report.applied.done == {"server update": 1}, "the deletion went unnoticed"


def forget_state(env: Env, followup_id: str) -> None:
    from sqlalchemy import delete

    with env.db.sessions.begin() as session:
        session.execute(delete(SyncItem).where(SyncItem.followup_id == followup_id))


# ================================================================ DAViCal: same UID, other href


@davical_only
def test_create_finds_the_uid_under_another_href_instead_of_duplicating(
    cal: DavCalendar, dav_server: ServerInfo, calendar_url: str
) -> None:
    """DAViCal stores a second resource with a UID that already lives elsewhere (201).

    A client (or a restore from backup) holds our follow-up's event under its own file
    name: the create looks the UID up first and says where it is, so the sync re-plans
    against that resource instead of writing a duplicate series.
    """
    client = ce.PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)
    uid = uid_for_id("9003")
    other = client.create("restored-from-backup.ics", vevent(uid, "Restored"))

    with pytest.raises(AlreadyExists) as refused:
        cal.create(cal.href_for_uid(uid), vevent(uid, "Ours"))
    assert refused.value.href == ce_path(other)
    assert uids_at(client) == [uid]

    # Without the UID look-up DAViCal accepts the PUT: two series with one UID.
    with connect_to(dav_server, calendar_url, same_uid_other_href="409") as trusting:
        trusting.create(trusting.href_for_uid(uid), vevent(uid, "Ours"))
    assert uids_at(client) == [uid, uid]


@pytest.mark.parametrize("dav_server", ["davical", "cyrus"], indirect=True)
def test_sync_links_a_series_found_under_another_href(synced: Env) -> None:
    """End to end: a lost state row and the event under another name -> no duplicate."""
    move_to_other_href(synced, CALL)
    synced.sync(full=True)
    assert synced.uids_on_server().count(uid_for_id(CALL)) == 1
    assert synced.sync().plan.actions == ()


def move_to_other_href(env: Env, followup_id: str) -> None:
    resource = env.resource(followup_id)
    env.client.delete(resource.url, resource.etag)
    env.client.create("restored-from-backup.ics", resource.data)
    forget_state(env, followup_id)


def ce_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path)


# ================================================================ Cyrus: one UID per user, 403


@cyrus_only
def test_create_finds_the_uid_the_server_refuses_with_403(
    cal: DavCalendar, dav_server: ServerInfo, calendar_url: str
) -> None:
    """Cyrus refuses a second resource with a UID it has (403 unique-scheduling-object-resource).

    The refusal names the href holding the UID; read as AlreadyExists the sync re-plans
    against that resource. Read as any other 403 the item fails on every pass.
    """
    client = ce.PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)
    uid = uid_for_id("9006")
    other = client.create("restored-from-backup.ics", vevent(uid, "Restored"))

    with pytest.raises(AlreadyExists) as refused:
        cal.create(cal.href_for_uid(uid), vevent(uid, "Ours"))
    assert refused.value.href == ce_path(other)

    with (
        connect_to(dav_server, calendar_url, same_uid_other_href="409") as unaware,
        pytest.raises(StoreError, match="unexpected answer 403") as bare,
    ):
        unaware.create(unaware.href_for_uid(uid), vevent(uid, "Ours"))
    assert not isinstance(bare.value, AlreadyExists)
    assert uids_at(client) == [uid]


@cyrus_only
@pytest.mark.parametrize("workaround", [True, False])
def test_series_a_client_stored_meanwhile_under_another_name_is_linked(
    synced: Env, monkeypatch: pytest.MonkeyPatch, workaround: bool
) -> None:
    """Between our plan and our create, another device stores the series under its own name.

    Cyrus refuses our create with 403 naming that href: read as "already exists" the item
    is re-planned against it in the same pass; read as any 403 the item fails (and only
    the next pass's listing links it).
    """
    resource = synced.resource(CALL)
    synced.client.delete(resource.url, resource.etag)
    forget_state(synced, CALL)  # so the pass creates it again
    original = DavCalendar.create

    def another_device_first(self: DavCalendar, href: str, data: bytes) -> str:
        synced.client.create("from-another-device.ics", resource.data)
        monkeypatch.setattr(DavCalendar, "create", original)
        return original(self, href, data)

    monkeypatch.setattr(DavCalendar, "create", another_device_first)
    overrides = {} if workaround else {"same_uid_other_href": "409"}
    report = sync_with(synced, **overrides)
    if workaround:
        assert report.ok, report.errors
    else:
        assert [fid for fid, _ in report.applied.errors] == [CALL]
        assert "unexpected answer 403" in report.applied.errors[0][1]
        synced.sync()  # the next pass finds it in its listing
    assert synced.uids_on_server().count(uid_for_id(CALL)) == 1
    assert synced.sync().plan.actions == ()


@cyrus_only
@pytest.mark.parametrize("workaround", [True, False])
def test_uid_held_by_another_calendar_of_the_user_is_named_and_written_once_gone(
    synced: Env, cyrus_server: RunningServer, workaround: bool
) -> None:
    """Two accounts of one Cyrus user select the same follow-ups (say, one just moved).

    The second calendar cannot hold a UID while the first does. The pass says where each
    lives, with one PUT per item (re-reading this calendar cannot help, so no re-plans),
    and writes the item once the first calendar lets go of it.
    """
    other_url = cyrus_server.make_calendar(f"other-{uuid.uuid4().hex[:8]}")
    try:
        other = dataclasses.replace(
            synced,
            calendar_url=other_url,
            account=synced.account.model_copy(update={"name": "other", "calendar_url": other_url}),
            client=ce.PlainClient(
                other_url, synced.server.username, synced.server.password, synced.server.auth
            ),
        )
        overrides = {} if workaround else {"same_uid_other_href": "409"}
        with connect(other, **overrides) as calendar:
            report = run_pass(other.account, other.db, calendar=calendar)
            puts = calendar.stats.by_method.get("PUT", 0)
        assert sorted(fid for fid, _ in report.applied.errors) == sorted(
            f.id for f in synced.store.all()
        )
        assert puts == len(report.applied.errors)
        message = dict(report.applied.errors)[CALL]
        if workaround:
            assert "another calendar" in message
            assert ce_path(synced.resource(CALL).url) in message
        else:
            assert "unexpected answer 403" in message

        call = synced.resource(CALL)
        synced.client.delete(call.url, call.etag)  # the first calendar lets go of it
        report = sync_with(other, **overrides)
        assert report.applied.done.get("server create") == 1
        assert ce.uid_of(other.resource(CALL).data) == uid_for_id(CALL)
    finally:
        _http(cyrus_server, "DELETE", other_url, None, {})


# ================================================================ Cyrus: no zero-length events


@cyrus_only
@pytest.mark.parametrize("workaround", [True, False])
def test_call_without_a_length_is_stored_and_keeps_none(synced: Env, workaround: bool) -> None:
    """A CRM call whose end is its start: Cyrus refuses DTEND = DTSTART (403).

    Written one second long instead, it shows in a client as a point in time, and comes
    back to the CRM without a length, through a client's edit as well.
    """
    start = synced.followup(CALL).start
    synced.edit_in_crm(CALL, end=start.isoformat())
    overrides = {} if workaround else {"zero_length_events": True}
    report = sync_with(synced, **overrides)
    if not workaround:
        assert [fid for fid, _ in report.applied.errors] == [CALL]
        assert "403" in report.applied.errors[0][1]
        return
    assert report.ok, report.errors
    (event,) = ce.components(synced.resource(CALL).data)
    assert event["DURATION"].dt == dt.timedelta(seconds=1)
    assert sync_with(synced).plan.actions == ()

    resource = synced.resource(CALL)
    synced.client.replace(resource, ce.edit_series(resource.data, summary="Call (renamed)"))
    assert sync_with(synced).applied.done == {"crm update": 1}
    call = synced.followup(CALL)
    assert (call.title, call.end) == ("Call (renamed)", start)
    assert sync_with(synced).plan.actions == ()


# ================================================================ SabreDAV 1.8: no sync-collection


@sabredav_only
def test_changes_since_is_refused_where_there_is_no_sync_collection(cal: DavCalendar) -> None:
    """No silent fallback: the caller must list ETags, and is told so."""
    created = {}
    for i in range(2):
        href = cal.href_for_uid(f"listed-{i}")
        created[href] = cal.create(href, vevent(f"listed-{i}", f"event {i}"))
    with pytest.raises(StoreError, match="no sync-collection"):
        cal.changes_since(None)
    cal.capabilities = cal.capabilities.replace(sync_token=True)
    with pytest.raises(SyncCollectionUnsupported):
        cal.changes_since(None)  # what the server answers when asked anyway
    assert cal.capabilities.sync_token is False, "learnt from the answer"
    assert cal.list_etags() == created
    assert cal.sync_token() is None


@sabredav_only
def test_sync_lists_etags_where_there_is_no_sync_collection(synced: Env) -> None:
    """SabreDAV 1.8 has no sync-collection: every pass compares the href/ETag listing.

    A client's edit and deletion are both seen; an idle pass is one PROPFIND.
    """
    resource = synced.resource(CALL)
    synced.client.replace(resource, ce.edit_series(resource.data, summary="Call (moved)"))
    other = synced.resource(WEEKLY)
    synced.client.delete(other.url, other.etag)

    report = synced.sync()
    assert report.mode == "full"
    assert report.applied.done == {"crm update": 1, "crm delete": 1}
    assert synced.followup(CALL).title == "Call (moved)"
    assert idle_requests(synced) == {"PROPFIND": 1}

    # Claimed sync-collection (or an unconfigured kind): the REPORT is refused, and the
    # pass falls back to the same listing, one wasted request later, every pass.
    assert idle_requests(synced, sync_token=True) == {"REPORT": 1, "PROPFIND": 1}


# ================================================================ SabreDAV 1.8: multiget 404


@sabredav_only
def test_multiget_naming_a_gone_href_still_returns_the_others(
    cal: DavCalendar, dav_server: ServerInfo, calendar_url: str
) -> None:
    """SabreDAV 1.8 answers a calendar-multiget with one missing href 404 as a whole."""
    hrefs = [cal.href_for_uid(f"multi-{i}") for i in range(3)]
    for i, href in enumerate(hrefs):
        cal.create(href, vevent(f"multi-{i}", f"event {i}"))
    gone = f"{cal.path}deleted-by-a-client.ics"

    got = list(cal.get_multi([hrefs[0], gone, hrefs[1], hrefs[2]]))
    assert sorted(r.href for r in got if isinstance(r, Resource)) == sorted(hrefs)
    assert [(r.href, r.status) for r in got if isinstance(r, FetchError)] == [(gone, 404)]

    with (
        connect_to(dav_server, calendar_url, multiget_reports_missing_href=True) as trusting,
        pytest.raises(NotFound, match="does not exist"),
    ):
        list(trusting.get_multi([hrefs[0], gone]))  # "the calendar does not exist"


@sabredav_only
@pytest.mark.parametrize("workaround", [True, False])
def test_edit_is_pulled_although_another_resource_went_during_the_pass(
    synced: Env, monkeypatch: pytest.MonkeyPatch, workaround: bool
) -> None:
    """A client deletes a resource between our listing and the fetch of the changed ones."""
    for followup_id in (CALL, WEEKLY):
        resource = synced.resource(followup_id)
        synced.client.replace(resource, ce.edit_series(resource.data, summary="Edited"))
    original = DavCalendar.list_etags

    def client_deletes_after_listing(self: DavCalendar) -> dict[str, str]:
        listing = original(self)
        weekly = synced.resource(WEEKLY)
        synced.client.delete(weekly.url, weekly.etag)
        monkeypatch.setattr(DavCalendar, "list_etags", original)
        return listing

    monkeypatch.setattr(DavCalendar, "list_etags", client_deletes_after_listing)
    overrides = {} if workaround else {"multiget_reports_missing_href": True}
    if workaround:
        sync_with(synced, **overrides)
        assert synced.followup(CALL).title == "Edited"
        synced.sync()
        assert synced.store.get(WEEKLY) is None
    else:
        with pytest.raises(NotFound):
            sync_with(synced, **overrides)
        assert synced.followup(CALL).title != "Edited"


# ================================================================ detection


@pytest.mark.parametrize("dav_server", ["cyrus", "sabredav"], indirect=True)
def test_unconfigured_kind_is_recognised_during_the_first_pass(synced: Env) -> None:
    """No server_kind: Cyrus by its token (data:,<uidvalidity>-<modseq>), SabreDAV 1.x by
    its refusal of sync-collection, after which the same pass lists ETags instead."""
    synced.configure(server_kind=None)
    resource = synced.resource(CALL)
    synced.client.replace(resource, ce.edit_series(resource.data, summary="Call (moved)"))
    with DavCalendar.connect(
        synced.calendar_url,
        username=synced.server.username,
        password=synced.server.password,
        transport=dav_transport(synced.server),
    ) as guessing:
        assert guessing.capabilities.kind == "generic"
        report = run_pass(synced.account, synced.db, calendar=guessing)
        assert report.ok, report.errors
        assert guessing.capabilities.kind == synced.server.kind
    assert synced.followup(CALL).title == "Call (moved)"


# ================================================================ SOGo: free-busy-query 501


@sogo_only
def test_busy_time_uses_a_calendar_query_where_free_busy_query_fails(
    cal: DavCalendar, dav_server: ServerInfo, calendar_url: str
) -> None:
    cal.create(cal.href_for_uid("busy-1"), vevent("busy-1", "Busy"))
    lo = dt.datetime(2026, 2, 10, tzinfo=dt.UTC)
    hi = lo + dt.timedelta(days=1)

    periods = cal.query_busy(lo, hi)
    assert [(p.start, p.end) for p in periods] == [
        (ce.oslo(2026, 2, 10, 12).astimezone(dt.UTC), ce.oslo(2026, 2, 10, 13).astimezone(dt.UTC))
    ]
    with (
        connect_to(dav_server, calendar_url, free_busy_query=True) as trusting,
        pytest.raises(StoreError),
    ):
        trusting.query_busy(lo, hi)  # SOGo: 501 Not Implemented


# ================================================================ SOGo: tokens in seconds


@sogo_only
def test_client_change_in_the_same_second_as_the_token_is_not_lost(synced: Env) -> None:
    """SOGo's token is the current unix second and does not move within it.

    SOGo lists changes made *at or after* the token's second, so an edit in the token's
    own second comes back next pass (with everything else changed in that second, which
    the ETag comparison then skips: no extra fetch for those).
    """
    whole_second_start()
    synced.sync()
    token_second = int(time.time())
    resource = synced.resource(CALL)
    synced.client.replace(resource, ce.edit_series(resource.data, summary="Call (same second)"))
    if int(time.time()) != token_second:
        pytest.skip("the edit did not land in the token's second (slow machine)")

    synced.sync()
    assert synced.followup(CALL).title == "Call (same second)"
    report = synced.sync()
    assert report.fetched == 0 and report.plan.actions == ()


# ================================================================ Radicale: getlastmodified

radicale_only = pytest.mark.parametrize("dav_server", ["radicale"], indirect=True)


def radicale_folder(server: RunningServer, calendar_url: str) -> Path:
    """Where Radicale keeps one calendar's files (tests.servers.start_radicale's storage)."""
    path = unquote(urlsplit(calendar_url).path).strip("/")
    folder = server.log_path.parent / "collections" / "collection-root" / path
    assert folder.is_dir(), folder
    return folder


def age_files(folder: Path, seconds: float = 3600) -> None:
    """Date a calendar folder and its files back, as after a quiet hour."""
    stamp = time.time() - seconds
    for path in [folder, *folder.iterdir()]:
        os.utime(path, (stamp, stamp))


@pytest.fixture
def quiet(synced: Env, radicale_server: RunningServer) -> Env:
    """The synced calendar after a quiet hour, and one pass since (it keeps getlastmodified).

    A getlastmodified is kept only when read two seconds after its own time; dating the
    files back stands in for waiting, since a test runs within a second of its push.
    """
    age_files(radicale_folder(radicale_server, synced.calendar_url))
    synced.sync()
    return synced


def idle_requests(env: Env, **overrides: Any) -> dict[str, int]:
    with connect(env, **overrides) as calendar:
        before = calendar.stats.copy()
        report = run_pass(env.account, env.db, calendar=calendar)
        assert report.ok and report.plan.actions == ()
        return calendar.stats.since(before).by_method


@radicale_only
def test_idle_pass_asks_radicale_only_for_getlastmodified(quiet: Env) -> None:
    """An idle pass costs one PROPFIND Depth 0, not Radicale's read-every-item REPORT."""
    assert idle_requests(quiet) == {"PROPFIND": 1}
    assert idle_requests(quiet, lastmodified_covers_members=False) == {"REPORT": 1}


@radicale_only
def test_client_edit_and_deletion_after_a_quiet_hour_are_pulled(quiet: Env) -> None:
    resource = quiet.resource(CALL)
    quiet.client.replace(resource, ce.edit_series(resource.data, summary="Call (moved)"))
    report = quiet.sync()
    assert report.applied.done == {"crm update": 1}
    assert quiet.followup(CALL).title == "Call (moved)"

    other = quiet.client.all()[0]
    quiet.client.delete(other.url, other.etag)
    report = quiet.sync()
    assert report.applied.done == {"crm delete": 1}
    assert len(quiet.store.all()) == 4


@radicale_only
def test_crm_edit_after_a_quiet_hour_is_pushed_with_one_put(quiet: Env) -> None:
    quiet.edit_in_crm(CALL, title="Call (renamed in the CRM)")
    with connect(quiet) as calendar:
        before = calendar.stats.copy()
        run_pass(quiet.account, quiet.db, calendar=calendar)
        # getlastmodified, the PUT, and the token after our own write (Runner docstring).
        assert calendar.stats.since(before).by_method == {"PROPFIND": 1, "PUT": 1, "REPORT": 1}
    assert "Call (renamed in the CRM)" in quiet.resource(CALL).text


@radicale_only
def test_client_edit_in_the_second_of_the_last_change_is_not_lost(synced: Env) -> None:
    """getlastmodified has whole seconds: a value read within two seconds of itself is not kept.

    The push just wrote every file; the pass right after it reads a getlastmodified of
    this very second, and a client edit in the same second leaves it unchanged. Kept, it
    would make the next pass skip the edit; it is not, so the pass asks with the token.
    """
    whole_second_start()
    first = synced.resource(CALL)
    synced.client.replace(first, ce.edit_series(first.data, summary="Call (first edit)"))
    synced.sync()
    second = synced.resource(CALL)
    synced.client.replace(second, ce.edit_series(second.data, summary="Call (second edit)"))

    synced.sync()
    assert synced.followup(CALL).title == "Call (second edit)"


def whole_second_start() -> None:
    time.sleep(1 - (time.time() % 1) + 0.01)


def connect_to(server: ServerInfo, calendar_url: str, **overrides: Any) -> DavCalendar:
    return DavCalendar.connect(
        calendar_url,
        username=server.username,
        password=server.password,
        transport=dav_transport(server),
        server_kind=server.kind,
        capability_overrides=overrides,
    )


__all__ = ["followup_set"]
