"""The one table of CalDAV server quirks the sync worker plans around.

Modelled on python-caldav's ``compatibility_hints``, but only with what our sync
path branches on, and each entry says which server version it was observed on
and what was seen (facts from shared/reference/libraries-and-servers.md §2 and
our own integration tests). When a server is upgraded, re-check its row rather
than trusting it: caldav's own radicale profile went stale this way.

Code elsewhere must ask this table ("does a 207 to a stale token prove anything?")
instead of testing ``kind == "sogo"``, so a new server is one new row.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from sync.errors import ConfigError

__all__ = [
    "KNOWN_KINDS",
    "Capabilities",
    "SameUidOtherHref",
    "ServerKind",
    "capabilities_for",
    "detect_kind_from_token",
    "detect_server_kind",
]

ServerKind = Literal["radicale", "xandikos", "davical", "sogo", "cyrus", "sabredav", "generic"]
SameUidOtherHref = Literal["409", "412", "403", "accepted"]


@dataclass(frozen=True)
class Capabilities:
    """What one server kind does; the sync engine branches on these, never on the kind name."""

    kind: str
    #: sync-collection REPORT (RFC 6578) is implemented at all.
    sync_token: bool
    #: A stale or unknown token is refused (403/412 valid-sync-token). When False the server
    #: answers it with a full listing that looks like a delta, so deletions can be missed and
    #: the caller must schedule periodic full reconciliation (list_etags vs local state).
    sync_token_trustworthy: bool
    #: The token is a unix second (SOGo): a delta since T lists what changed after second T,
    #: and while the newest change is in the current second the answer carries the second
    #: before as token, so what we saw or wrote in that second is listed once more. The
    #: runner tolerates those re-listed items when judging whether a delta is really a full
    #: listing, and waits out the second before taking a token past client items it skipped.
    sync_token_seconds: bool
    #: A delta lists only what changed. When False (DAViCal, SOGo) unchanged items come back too;
    #: harmless for correctness because etags are compared, but it costs bandwidth.
    sync_delta_minimal: bool
    #: ``If-None-Match: *`` on an existing href is refused with 412. When False a create can
    #: silently overwrite, so DavCalendar.create checks the href first.
    if_none_match_honoured: bool
    #: ``If-Match: *`` on a missing href is refused with 412 (SOGo creates it instead).
    if_match_star_honoured: bool
    #: A PUT with ``If-Match: "<etag>"`` to a missing href is refused (412/404). SOGo creates
    #: it (201) instead; DavCalendar.update then deletes it again and raises NotFound.
    if_match_missing_refused: bool
    #: DELETE honours If-Match. SOGo 5.8.0 deletes whatever the If-Match says (a stale or
    #: garbage etag -> 204); DavCalendar.delete then compares the etag (PROPFIND) first.
    if_match_honoured_on_delete: bool
    #: free-busy-query REPORT works; when False use a time-range calendar-query.
    free_busy_query: bool
    #: What a PUT of a UID that already lives under another href gets: "409"
    #: (no-uid-conflict), "412", "accepted" (a duplicate is created!), or "403" with
    #: CALDAV:unique-scheduling-object-resource naming where the UID lives (Cyrus), which a
    #: server also answers when that href is in ANOTHER calendar of the same user (a UID
    #: lives once per user). DavCalendar.create reads the href from the answer: in this
    #: calendar it is AlreadyExists (re-planned against it), elsewhere UidInOtherCalendar.
    same_uid_other_href: SameUidOtherHref
    #: A strong ETag header on a PUT answer can be trusted as the stored version's etag.
    #: When False, DavCalendar re-reads the etag with a PROPFIND Depth 0 after every write.
    etag_on_put: bool
    #: The server sends Schedule-Tag; our writes must still use If-Match (caldav would switch
    #: to If-Schedule-Tag-Match, which lets the server merge instead of refusing).
    sends_schedule_tag: bool
    #: ETags are hashes of the stored content: re-PUTting identical bytes keeps the ETag.
    etag_is_content_hash: bool
    #: The collection's DAV:getlastmodified is the newest modification time of the
    #: collection folder and every member file (Radicale: an mtime per file, no file read),
    #: so an unchanged value proves that nothing was added, changed or deleted, provided the
    #: value it is compared with was read at least a second after it (whole seconds). A
    #: pass then asks only for it (``sync.engine.listing``) instead of the sync-collection REPORT,
    #: which Radicale answers by reading every item (0.5 s at 5,000; getlastmodified 0.04 s).
    lastmodified_covers_members: bool = False
    #: A calendar-multiget naming an href that does not exist answers the others and
    #: reports that one (404 in the multistatus, or leaves it out). SabreDAV 1.8 answers the
    #: whole REPORT 404 instead; DavCalendar.get_multi then asks for each href alone.
    multiget_reports_missing_href: bool = True
    #: A timed VEVENT that ends when it starts (DTEND = DTSTART, DURATION:PT0S or no end,
    #: all allowed by RFC 5545) is stored. Cyrus refuses all three with 403; DavCalendar
    #: then writes such events one second long and reads them back (sync.stores.zero_length).
    zero_length_events: bool = True
    #: A PUT of one VCALENDAR to the collection URL replaces the whole collection, with
    #: If-Match on the collection's ETag honoured under the server's write lock (Radicale:
    #: app/put.py, the ETag hashes every member and the properties). The first push into
    #: an empty calendar then costs one request instead of one per series
    #: (``sync.engine.bulk``); the server names the resources itself.
    bulk_upload_into_empty: bool = False

    def replace(self, **changes: object) -> Capabilities:
        """A copy with some fields overridden (config, or a probe result)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_TABLE: dict[str, Capabilities] = {
    # Radicale 3.9.0 (pip), checked by the reference smoke test and tests/integration/test_dav.py:
    # token http://radicale.org/ns/sync/<sha256>; bogus token -> 403 valid-sync-token; delta
    # lists only the changed href, deleted href with 404; If-None-Match on existing -> 412;
    # same UID under another href -> 409 no-uid-conflict; PUT answers 201 with ETag
    # (sha256 of the content); no Schedule-Tag. The collection's getlastmodified is the
    # newest mtime of its folder and files (storage/multifilesystem last_modified), so a
    # write or a deletion moves it. free-busy-query answers, but places the
    # occurrences of a recurring event one hour off after a DST change (seen in
    # tests/integration/test_dialog.py), so conflicts use a time-range calendar-query.
    # A PUT of one VCALENDAR to the collection URL replaces the collection (create_collection,
    # rename_exchange) after checking If-Match against the collection's ETag (a hash of every
    # member's href and ETag and of the properties) under the write lock; it keeps only
    # displayname and description (from X-WR-CALNAME / X-WR-CALDESC) of the properties,
    # names each resource <UID>.ics (when a safe file name), and forgets the sync-token
    # history (tests/integration/test_bulk_upload.py).
    "radicale": Capabilities(
        kind="radicale",
        sync_token=True,
        sync_token_trustworthy=True,
        sync_token_seconds=False,
        sync_delta_minimal=True,
        if_none_match_honoured=True,
        if_match_star_honoured=True,
        if_match_missing_refused=True,
        if_match_honoured_on_delete=True,
        free_busy_query=False,
        same_uid_other_href="409",
        etag_on_put=True,
        sends_schedule_tag=False,
        etag_is_content_hash=True,
        lastmodified_covers_members=True,
        # Safe against a concurrent write (If-Match on the collection's ETag, checked under
        # Radicale's write lock). Radicale writes each uploaded VTIMEZONE anew (vobject)
        # with the autumn change an hour late (Europe/Oslo 04:00 instead of 03:00); the
        # events are kept as sent. The upload is read back and a resource with a date-time
        # in such an hour is written again as rendered (sync.engine.bulk,
        # mappings.zone_fidelity), so no occurrence moves
        # (tests/integration/test_bulk_upload.py).
        bulk_upload_into_empty=True,
    ),
    # Xandikos 0.4.10 (pip): token = git sha; bogus token -> 412 valid-sync-token; minimal delta;
    # If-None-Match -> 412; same UID elsewhere -> 412 no-uid-conflict; PUT answers 201 with
    # ETag (git blob sha) AND Schedule-Tag; free-busy-query ok.
    "xandikos": Capabilities(
        kind="xandikos",
        sync_token=True,
        sync_token_trustworthy=True,
        sync_token_seconds=False,
        sync_delta_minimal=True,
        if_none_match_honoured=True,
        if_match_star_honoured=True,
        if_match_missing_refused=True,
        if_match_honoured_on_delete=True,
        free_busy_query=True,
        same_uid_other_href="412",
        etag_on_put=True,
        sends_schedule_tag=True,
        etag_is_content_hash=True,
    ),
    # DAViCal 1.1.12 (Debian bookworm), measured by tests/integration/test_interop.py and the
    # sync suite (make test-interop): token data:,N; a bogus/stale token -> 207 FULL listing
    # without error (deletions then simply absent; the runner compares the full listing when
    # a delta re-lists unchanged items); deltas re-list a few unchanged items at token
    # boundaries; If-None-Match -> 412; same UID under another href -> 201, a duplicate (the
    # create looks the UID up first); multiget leaves a missing href out instead of a 404;
    # ETag md5. ETag on PUT not verified by us -> PROPFIND after.
    "davical": Capabilities(
        kind="davical",
        sync_token=True,
        sync_token_trustworthy=False,
        sync_token_seconds=False,
        sync_delta_minimal=False,
        if_none_match_honoured=True,
        if_match_star_honoured=True,
        if_match_missing_refused=True,
        if_match_honoured_on_delete=True,
        free_busy_query=True,
        same_uid_other_href="accepted",
        etag_on_put=False,
        sends_schedule_tag=False,
        etag_is_content_hash=True,
    ),
    # SOGo 5.8.0 (Debian bookworm), measured the same way: token = unix second, a delta lists
    # changes after it, and while the newest change is in the current second the answer's
    # token is the second before (changes come back once more); an unparsable token is read
    # as 0 (full listing with tombstones); once tombstones are purged a stale token's answer
    # misses deletions. If-None-Match: * IGNORED (204, overwritten); If-Match: "<etag>" (or
    # *) on a missing href CREATES it (201); DELETE ignores If-Match altogether; same UID
    # elsewhere -> 409; free-busy-query -> 501; CALDAV:expand ignored (we do not use it);
    # a DTEND before DTSTART is "repaired" on PUT; ETag is a counter "gcs0000000N", sent on
    # PUT but not verified by us -> PROPFIND after.
    "sogo": Capabilities(
        kind="sogo",
        sync_token=True,
        sync_token_trustworthy=False,
        sync_token_seconds=True,
        sync_delta_minimal=False,
        if_none_match_honoured=False,
        if_match_star_honoured=False,
        if_match_missing_refused=False,
        if_match_honoured_on_delete=False,
        free_busy_query=False,
        same_uid_other_href="409",
        etag_on_put=False,
        sends_schedule_tag=False,
        etag_is_content_hash=False,
    ),
    # Cyrus IMAP 3.6.1's CalDAV (Debian bookworm), measured by tests/integration/test_interop.py,
    # the sync suite (make test-interop) and shared/reference/server-cyrus.md: token
    # data:,<uidvalidity>-<modseq>; a bogus token -> 403 valid-sync-token; deltas list only
    # the changed href, a deletion as 404; If-None-Match on existing, stale If-Match,
    # If-Match on a missing href -> 412; DELETE with a stale If-Match -> 412; a UID lives once
    # PER USER: a second one, in this calendar or another, -> 403
    # unique-scheduling-object-resource with the existing href; a VEVENT whose end is not
    # after its start (DTEND = DTSTART, DURATION:PT0S, or neither; an all-day one without
    # DTEND and a VTODO with DUE = DTSTART are fine) -> 403 valid-calendar-data "DTEND must
    # occur after DTSTART", as is an end before the start, a bad RRULE, a property twice
    # (but an undefined TZID is stored); PUT answers 201 with a strong ETag
    # (sha1 of the content); free-busy-query answers; Schedule-Tag on organizer events.
    "cyrus": Capabilities(
        kind="cyrus",
        sync_token=True,
        sync_token_trustworthy=True,
        sync_token_seconds=False,
        sync_delta_minimal=True,
        if_none_match_honoured=True,
        if_match_star_honoured=True,
        if_match_missing_refused=True,
        if_match_honoured_on_delete=True,
        free_busy_query=True,
        same_uid_other_href="403",
        etag_on_put=True,
        sends_schedule_tag=True,
        etag_is_content_hash=True,
        zero_length_events=False,
    ),
    # SabreDAV 1.8.12 (Debian bookworm php-sabre-dav; the example CalDAV server on SQLite),
    # measured the same way: NO sync-collection (REPORT -> 403 supported-report, naming
    # <s:sabredav-version>1.8.12; X-Sabre-Version only on OPTIONS) and no DAV:sync-token
    # or getlastmodified on the collection, so every pass lists href/ETag
    # with one PROPFIND Depth 1; If-None-Match on existing, stale If-Match, If-Match on a
    # missing href, DELETE with a stale If-Match -> 412; same UID under another href ->
    # 201, a duplicate; PUT answers 201 with ETag (md5 of the content); free-busy-query ok;
    # a calendar-multiget naming one missing href -> 404 for the whole REPORT.
    # SabreDAV 2+ (Baikal, Nextcloud) has sync-collection: this row is the 1.x line only
    # (recognised by its refusal of sync-collection); use "generic" for the newer ones.
    "sabredav": Capabilities(
        kind="sabredav",
        sync_token=False,
        sync_token_trustworthy=False,
        sync_token_seconds=False,
        sync_delta_minimal=False,
        if_none_match_honoured=True,
        if_match_star_honoured=True,
        if_match_missing_refused=True,
        if_match_honoured_on_delete=True,
        free_busy_query=True,
        same_uid_other_href="accepted",
        etag_on_put=True,
        sends_schedule_tag=False,
        etag_is_content_hash=True,
        multiget_reports_missing_href=False,
    ),
    # Anything else (Nextcloud/Baikal/... or an undetected Radicale/Xandikos): RFC
    # behaviour for preconditions and PUT ETags (a strong ETag on PUT means "stored as sent",
    # RFC 4791 5.3.4), which every server we measured except SOGo follows. Tokens are used but
    # not trusted to report deletions, so reconciliation stays scheduled; duplicates by UID
    # are assumed possible. Set server_kind in the config to get a verified row instead.
    "generic": Capabilities(
        kind="generic",
        sync_token=True,
        sync_token_trustworthy=False,
        sync_token_seconds=False,
        sync_delta_minimal=False,
        if_none_match_honoured=True,
        if_match_star_honoured=True,
        if_match_missing_refused=True,
        if_match_honoured_on_delete=True,
        free_busy_query=False,
        same_uid_other_href="accepted",
        etag_on_put=True,
        sends_schedule_tag=False,
        etag_is_content_hash=False,
    ),
}

KNOWN_KINDS: frozenset[str] = frozenset(_TABLE)
_CYRUS_TOKEN = re.compile(r"data:,\d+-\d+")

_FIELD_TYPES: dict[str, type] = {
    f.name: (str if f.name in ("kind", "same_uid_other_href") else bool)
    for f in dataclasses.fields(Capabilities)
}


def capabilities_for(
    kind: str | None, overrides: Mapping[str, object] | None = None
) -> Capabilities:
    """The table row for ``kind`` (None -> "generic") with config overrides applied.

    Overrides are validated here, so a typo in the config file fails at start-up with a
    ConfigError instead of being silently ignored.
    """
    name = kind or "generic"
    if name not in _TABLE:
        raise ConfigError(
            f"unknown CalDAV server kind {name!r}; known: {', '.join(sorted(_TABLE))}"
        )
    caps = _TABLE[name]
    if not overrides:
        return caps
    changes: dict[str, object] = {}
    for key, value in overrides.items():
        expected = _FIELD_TYPES.get(key)
        if expected is None or key == "kind":
            raise ConfigError(f"unknown server capability {key!r}")
        if not isinstance(value, expected):
            raise ConfigError(f"server capability {key!r} must be {expected.__name__}")
        if key == "same_uid_other_href" and value not in ("409", "412", "403", "accepted"):
            raise ConfigError("same_uid_other_href must be '409', '412', '403' or 'accepted'")
        changes[key] = value
    return caps.replace(**changes)


def detect_server_kind(headers: Mapping[str, str] | None = None, url: str | None = None) -> str:
    """Guess the server kind from response headers and/or the URL; "generic" when unsure.

    Only passive evidence: the sync path must not spend requests on probing. Radicale
    (WSGIServer) and Xandikos (aiohttp) say nothing in ``Server``; Radicale is recognised
    by its token instead (``detect_kind_from_token``), Xandikos only by configuration.
    """
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    server = lowered.get("server", "").lower()
    if "x-davical-version" in lowered or "davical" in server:
        return "davical"
    if "sogo" in server:
        return "sogo"
    if "cyrus-http" in server:
        return "cyrus"
    if lowered.get("x-sabre-version", "").startswith("1."):
        return "sabredav"
    if "xandikos" in server:
        return "xandikos"
    if "radicale" in server:
        return "radicale"
    if url:
        path = urlsplit(url).path.lower()
        if "/sogo/dav/" in path:
            return "sogo"
        if "/caldav.php/" in path:
            return "davical"
    return "generic"


def detect_kind_from_token(token: str) -> str | None:
    """Some servers are recognisable by their sync-token format alone."""
    if token.startswith("http://radicale.org/ns/sync/"):
        return "radicale"
    if _CYRUS_TOKEN.fullmatch(token):  # data:,<uidvalidity>-<modseq>
        return "cyrus"
    if token.startswith("data:,"):
        return "davical"
    return None
