"""MemoryCalendar: a CalendarStore in a dict, with the ETag and precondition rules of a good server.

For engine tests and anything else that needs a calendar without a server (vdirsyncer's
``storage/memory.py``). It keeps the contract of ``sync.stores.base.CalendarStore`` as a
well-behaved CalDAV server does through ``DavCalendar``:

* ``create`` is ``If-None-Match: *``: AlreadyExists when something is at the href, or
  when a UID of the data lives under another href (as a 409 no-uid-conflict);
* ``update`` and ``delete`` are ``If-Match``: NotFound when the resource is gone,
  WrongEtag when its ETag is not the one given (compared exactly, as strong ETags);
* every write gives a new ETag, even for the same bytes;
* sync tokens are ``memory:<n>``, n counting writes; a token this store did not hand
  out raises InvalidSyncToken, and a delta lists exactly what changed and what went.

A test plays "another client" with ``put`` and ``remove``, which skip the preconditions,
and reads the whole collection with ``contents``. Each operation counts as the one
request DavCalendar would send, in ``stats``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from sync.errors import AlreadyExists, InvalidSyncToken, NotFound, WrongEtag
from sync.stores.base import (
    CalendarStore,
    Delta,
    FetchError,
    LastModified,
    RequestStats,
    Resource,
    resource_name,
)
from sync.stores.caldav.reading import unfold_uids
from sync.stores.capabilities import Capabilities

__all__ = ["MEMORY_CAPABILITIES", "MemoryCalendar"]

#: A server that keeps every rule: the engine takes no quirk's detour against it.
MEMORY_CAPABILITIES = Capabilities(
    kind="memory",
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
    etag_is_content_hash=False,
    lastmodified_covers_members=False,
)

_TOKEN_PREFIX = "memory:"


@dataclass(frozen=True)
class _Item:
    etag: str
    data: bytes
    change: int  # the write that made this version


class MemoryCalendar:
    """One calendar collection held in memory; see the module docstring for its rules."""

    def __init__(
        self,
        url: str = "memory://calendar/alice/calendar/",
        *,
        capabilities: Capabilities = MEMORY_CAPABILITIES,
    ) -> None:
        if not url.endswith("/"):
            url += "/"
        self.url = url
        self.path = unquote(urlsplit(url).path)
        self.stats = RequestStats()
        self.capabilities = capabilities
        self._items: dict[str, _Item] = {}
        self._gone: dict[str, int] = {}  # href -> the change that removed it
        self._change = 0
        self._etags = itertools.count(1)
        self.closed = False

    # ----------------------------------------------------------------- another client

    def put(self, href: str, data: bytes) -> str:
        """Store ``data`` at ``href`` whatever is there, as another client would; the new ETag."""
        return self._write(self.normalise_href(href), data)

    def remove(self, href: str) -> bool:
        """Delete ``href`` whatever its ETag, as another client would; False if nothing was."""
        key = self.normalise_href(href)
        if key not in self._items:
            return False
        self._remove(key)
        return True

    def contents(self) -> dict[str, bytes]:
        """href -> data of every resource (no request counted)."""
        return {href: item.data for href, item in self._items.items()}

    # ----------------------------------------------------------------- the contract

    def close(self) -> None:
        self.closed = True

    def normalise_href(self, href: str) -> str:
        if href.startswith("/"):
            return href
        return unquote(urlsplit(urljoin(self.url, href)).path)

    def href_for_uid(self, uid: str) -> str:
        return f"{self.path}{resource_name(uid)}"

    def sync_token(self) -> str | None:
        self._count("PROPFIND")
        return self._token()

    def last_modified(self) -> LastModified | None:
        """None: this store keeps no clock (``lastmodified_covers_members`` is False)."""
        self._count("PROPFIND")
        return None

    def changes_since(self, token: str | None) -> Delta:
        self._count("REPORT")
        if token is None:
            changed = {href: item.etag for href, item in self._items.items()}
            return Delta(changed=changed, deleted=frozenset(), token=self._token())
        since = self._parse_token(token)
        changed = {href: item.etag for href, item in self._items.items() if item.change > since}
        deleted = frozenset(
            href for href, change in self._gone.items() if change > since and href not in changed
        )
        return Delta(changed=changed, deleted=deleted, token=self._token())

    def list_etags(self) -> dict[str, str]:
        self._count("PROPFIND")
        return {href: item.etag for href, item in self._items.items()}

    def get_multi(
        self, hrefs: Iterable[str], batch_size: int = 50
    ) -> Iterator[Resource | FetchError]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        wanted = list(dict.fromkeys(self.normalise_href(h) for h in hrefs))
        for start in range(0, len(wanted), batch_size):
            self._count("REPORT")
            for href in wanted[start : start + batch_size]:
                item = self._items.get(href)
                if item is None:
                    yield FetchError(href, 404, f"calendar-multiget: {href} not found")
                else:
                    yield Resource(href=href, etag=item.etag, data=item.data)

    def find_by_uid(
        self, uid: str, components: tuple[str, ...] = ("VEVENT", "VTODO")
    ) -> Resource | None:
        for component in components:
            self._count("REPORT")
            marker = b"BEGIN:" + component.encode()
            for href, item in self._items.items():
                if marker in item.data.upper() and uid in unfold_uids(item.data):
                    return Resource(href=href, etag=item.etag, data=item.data)
        return None

    def create(self, href: str, data: bytes) -> str:
        self._count("PUT")
        key = self.normalise_href(href)
        if key in self._items:
            raise AlreadyExists(
                f"create {key}: something already exists there", href=key, status=412
            )
        self._check_uid_free(key, data, "create")
        return self._write(key, data)

    def update(self, href: str, data: bytes, etag: str) -> str:
        self._count("PUT")
        key = self.normalise_href(href)
        item = self._items.get(key)
        if item is None:
            raise NotFound(f"update {key}: gone", href=key, status=412)
        if item.etag != etag:
            raise WrongEtag(f"update {key}: changed on the server", href=key, status=412)
        self._check_uid_free(key, data, "update")
        return self._write(key, data)

    def delete(self, href: str, etag: str) -> None:
        self._count("DELETE")
        key = self.normalise_href(href)
        item = self._items.get(key)
        if item is None:
            raise NotFound(f"delete {key}: already gone", href=key, status=404)
        if item.etag != etag:
            raise WrongEtag(f"delete {key}: changed on the server", href=key, status=412)
        self._remove(key)

    # ----------------------------------------------------------------- inside

    def _write(self, key: str, data: bytes) -> str:
        self._change += 1
        etag = f'"m{next(self._etags)}"'
        self._items[key] = _Item(etag=etag, data=data, change=self._change)
        self._gone.pop(key, None)
        return etag

    def _remove(self, key: str) -> None:
        self._change += 1
        del self._items[key]
        self._gone[key] = self._change

    def _check_uid_free(self, key: str, data: bytes, action: str) -> None:
        """AlreadyExists when a UID of ``data`` lives under another href (409 no-uid-conflict)."""
        uids = unfold_uids(data)
        for href, item in self._items.items():
            if href != key and uids & unfold_uids(item.data):
                raise AlreadyExists(
                    f"{action} {key}: a resource with the same UID exists under another href",
                    href=key,
                    status=409,
                )

    def _token(self) -> str:
        return f"{_TOKEN_PREFIX}{self._change}"

    def _parse_token(self, token: str) -> int:
        number = token.removeprefix(_TOKEN_PREFIX)
        if (
            not token.startswith(_TOKEN_PREFIX)
            or not number.isdigit()
            or int(number) > self._change
        ):
            raise InvalidSyncToken(
                f"{self.path}: server rejected sync token {token!r}", href=self.path, status=403
            )
        return int(number)

    def _count(self, method: str) -> None:
        self.stats.requests += 1
        self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1


def _keeps_the_contract(store: MemoryCalendar) -> CalendarStore:
    """Never called: mypy checks here that MemoryCalendar is a CalendarStore."""
    return store
