"""How the tests' own ``DavCalendar`` clients sign in to a fixture server: as an account would.

A server that wants Digest (SabreDAV) refuses the Basic login ``DavCalendar.connect`` sends
by default, so tests that open a calendar directly take their transport from here. It is
built by ``sync.stores.signin.transport_for`` from an account with the server's ``auth``, the same
path a configured account takes.
"""

from __future__ import annotations

from typing import Protocol

from sync.config import Account
from sync.stores.caldav import Transport
from sync.stores.signin import transport_for
from tests.servers import ServerAuth


class SignsIn(Protocol):
    """A fixture server's login (ServerInfo and RunningServer both have one)."""

    @property
    def kind(self) -> str: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def auth(self) -> ServerAuth: ...


def dav_transport(server: SignsIn) -> Transport:
    """The transport an account with ``auth = server.auth`` would get for this server."""
    account = Account(
        name=f"{server.kind}-fixture", url="http://127.0.0.1/", username=server.username,
        auth=server.auth,
    )  # fmt: skip
    return transport_for(account, username=server.username, password=server.password)
