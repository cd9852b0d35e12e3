"""Sign-in and transport against real components on loopback, in front of a real Radicale.

Each test opens the account's calendar the way every command does (``sync.stores.connect``) and
then writes and lists an event, so "it connected" means the calendar really works through
the TLS front, the client-certificate front, the proxy, the bearer gateway or the Digest
gateway; and each refusal is checked for an error a user can act on.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.config import Account
from sync.errors import ConfigError, StoreError, TransportError
from sync.stores.caldav import DavCalendar
from sync.stores.connect import open_calendar
from tests.reach.fixtures import Front, LoopbackDns, StartFront, TestPki, tls_args
from tests.servers import PASSWORD, USERNAME, RunningServer

pytestmark = pytest.mark.server

CLIENT_ID = "followup-sync-test"
CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "followup-sync"


def _event(uid: str) -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//reach//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T090000Z\r\n"
        "DTEND:20260105T100000Z\r\nSUMMARY:reach\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def _round_trip(calendar: DavCalendar) -> None:
    """Write one event and list it back: the calendar works, not just the login."""
    with calendar:
        uid = f"reach-{uuid.uuid4().hex}"
        href = calendar.href_for_uid(uid)
        calendar.create(href, _event(uid))
        assert calendar.normalise_href(href) in calendar.list_etags()


def _account(url: str, **settings: Any) -> Account:
    settings.setdefault("username", USERNAME)
    settings.setdefault("calendar", f"reach-{uuid.uuid4().hex[:8]}")
    return Account(name="reach", url=url, **settings)


@pytest.fixture
def password_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REACH_PASSWORD", PASSWORD)
    return "REACH_PASSWORD"


@pytest.fixture(autouse=True)
def _no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy variables of the machine running the tests must not decide what is tested."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# --- TLS: a CA bundle, a client certificate, a pinned certificate ------------------------------


def test_a_server_with_its_own_ca_is_reached_with_ca_bundle_and_refused_without(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, password_env: str
) -> None:
    front = start_front("front", "--upstream", radicale_server.base_url, *tls_args(pki), tls=True)
    calendar = open_calendar(
        _account(front.url, password_env=password_env, ca_bundle=str(pki.ca_bundle)),
        create=True,
    )
    # Another calendar over the same connection (the dialog's busy-time look-up) keeps
    # the account's TLS trust too.
    assert calendar.sibling(calendar.url).list_etags() == {}
    _round_trip(calendar)
    # Verification is on by default: the system's CAs do not know the test CA.
    with pytest.raises(TransportError, match="not trusted by the system's certificate"):
        open_calendar(_account(front.url, password_env=password_env), create=True)


def test_a_front_that_demands_a_client_certificate(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, password_env: str
) -> None:
    front = start_front(
        "front",
        "--upstream",
        radicale_server.base_url,
        *tls_args(pki, client_certificates=True),
        tls=True,
    )
    with_cert = _account(
        front.url,
        password_env=password_env,
        ca_bundle=str(pki.ca_bundle),
        client_cert=str(pki.client_cert),
        client_key=str(pki.client_key),
    )
    _round_trip(open_calendar(with_cert, create=True))
    without = _account(front.url, password_env=password_env, ca_bundle=str(pki.ca_bundle))
    with pytest.raises(TransportError) as refused:
        open_calendar(without, create=True)
    assert "set client_cert" in str(refused.value), str(refused.value)


def _serve_then_hang_up(conn: socket.socket, context: ssl.SSLContext) -> None:
    """TLS on one connection, then a hang-up without any answer and without any alert.

    OpenSSL would send the "certificate required" alert itself; driving the handshake
    through memory BIOs lets the front drop it and close after the request arrived, which
    is what a client sees whenever the connection is gone before the alert is read (the
    order uvicorn's front gave a plain GET: "Remote end closed connection without
    response").
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    with conn:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                conn.sendall(outgoing.read())
                data = conn.recv(65536)
                if not data:
                    return
                incoming.write(data)
            except ssl.SSLError:
                # Refused. The alert stays in `outgoing`; the front reads the whole request
                # the client sends right after its half of the TLS 1.3 handshake (headers,
                # then the PROPFIND body) until the client falls quiet awaiting the answer,
                # then closes: the client finds the connection gone without a response.
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    while conn.recv(65536):
                        pass
                return
        conn.sendall(outgoing.read())
        conn.recv(65536)  # the request, left unanswered


@pytest.fixture
def start_hang_up_front(pki: TestPki) -> Iterator[Callable[[bool], str]]:
    """A TLS front that hangs up instead of answering (and instead of any TLS alert)."""
    listeners: list[socket.socket] = []

    def start(demand_certificate: bool) -> str:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        if demand_certificate:
            context.load_verify_locations(pki.ca_bundle)
            context.verify_mode = ssl.CERT_REQUIRED
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def accept() -> None:
            with contextlib.suppress(OSError):  # the listener closed at teardown
                while True:
                    _serve_then_hang_up(listener.accept()[0], context)

        threading.Thread(target=accept, daemon=True).start()
        return f"https://127.0.0.1:{listener.getsockname()[1]}/"

    yield start
    for listener in listeners:
        listener.close()


def test_a_front_that_demands_a_client_certificate_and_hangs_up_without_its_alert(
    start_hang_up_front: Callable[[bool], str], pki: TestPki, password_env: str
) -> None:
    """The other ordering: the connection is gone before the TLS alert is read."""
    url = start_hang_up_front(True)
    without = _account(url, password_env=password_env, ca_bundle=str(pki.ca_bundle))
    with pytest.raises(TransportError) as refused:
        open_calendar(without, create=True)
    assert "set client_cert" in str(refused.value), str(refused.value)


def test_a_hang_up_from_a_front_that_wants_no_certificate_is_not_blamed_on_one(
    start_hang_up_front: Callable[[bool], str], pki: TestPki, password_env: str
) -> None:
    url = start_hang_up_front(False)
    without = _account(url, password_env=password_env, ca_bundle=str(pki.ca_bundle))
    with pytest.raises(TransportError) as refused:
        open_calendar(without, create=True)
    assert "client_cert" not in str(refused.value), str(refused.value)


def test_a_pinned_certificate_is_accepted_and_any_other_is_refused_clearly(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, password_env: str
) -> None:
    front = start_front("front", "--upstream", radicale_server.base_url, *tls_args(pki), tls=True)
    colons = ":".join(re.findall("..", pki.server_fingerprint.upper()))
    # The pin alone is enough: no CA bundle, the system's CAs do not know this one.
    _round_trip(
        open_calendar(
            _account(front.url, password_env=password_env, pin_sha256=colons), create=True
        )
    )
    wrong = "0" * 64
    calendar_url = front.url + f"{USERNAME}/pinned/"
    started = time.monotonic()
    with pytest.raises(TransportError) as refused:
        calendar = open_calendar(
            _account(
                front.url, password_env=password_env, pin_sha256=wrong, calendar_url=calendar_url
            ),
            create=False,
        )
        calendar.sync_token()
    message = str(refused.value)
    assert "does not match pin_sha256" in message and wrong in message, message
    assert time.monotonic() - started < 5, "a certificate mismatch is not worth retrying"
    # Refused during the handshake: nothing (no password) reached the gateway's HTTP side.
    before = front.stats(pki.ca_bundle)["forwarded"]
    with pytest.raises(TransportError, match="pin_sha256"):
        open_calendar(_account(front.url, password_env=password_env, pin_sha256=wrong), create=True)
    assert front.stats(pki.ca_bundle)["forwarded"] == before


# --- proxies ---------------------------------------------------------------------------------


def _proxy_log(proxy: Front) -> list[str]:
    return proxy.log.read_text().splitlines()


def test_an_account_proxy_carries_https_and_http(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, password_env: str
) -> None:
    proxy = start_front("forward")
    front = start_front("front", "--upstream", radicale_server.base_url, *tls_args(pki), tls=True)
    _round_trip(
        open_calendar(
            _account(
                front.url, password_env=password_env, ca_bundle=str(pki.ca_bundle), proxy=proxy.url
            ),
            create=True,
        )
    )
    assert f"CONNECT 127.0.0.1:{front.port}" in " ".join(_proxy_log(proxy))
    # Plain HTTP goes through the proxy in absolute form.
    _round_trip(
        open_calendar(
            _account(radicale_server.base_url, password_env=password_env, proxy=proxy.url),
            create=True,
        )
    )
    absolute = [line for line in _proxy_log(proxy) if radicale_server.base_url in line]
    assert any(line.startswith("PUT ") for line in absolute), _proxy_log(proxy)


def _cli(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """The real command line in its own process (niquests reads proxy variables once)."""
    db = tmp_path / f"cli-{uuid.uuid4().hex[:6]}.sqlite"
    done = subprocess.run(
        [str(CLI), "-vv", "sync", *args],
        env={**os.environ, **env, "FOLLOWUP_SYNC_DATABASE": str(db), "COLUMNS": "200"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode()


def test_the_cli_flags_and_the_standard_proxy_variables(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, tmp_path: Path
) -> None:
    proxy = start_front("forward")
    front = start_front("front", "--upstream", radicale_server.base_url, *tls_args(pki), tls=True)
    clean = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    args = [
        "--url", front.url,
        "--username", USERNAME,
        "--password-command", f"{sys.executable} -c 'print(\"{PASSWORD}\")'",
        "--ca-bundle", str(pki.ca_bundle),
        "--calendar", "reach-cli",
    ]  # fmt: skip
    code, output = _cli(args, {**clean, "HTTPS_PROXY": proxy.url}, tmp_path)
    assert code == 0, output
    tunnels = [line for line in _proxy_log(proxy) if line == f"CONNECT 127.0.0.1:{front.port}"]
    assert tunnels, _proxy_log(proxy)
    # NO_PROXY exempts a host, as everywhere else.
    seen = len(_proxy_log(proxy))
    code, output = _cli(
        args, {**clean, "HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"}, tmp_path
    )
    assert code == 0, output
    assert len(_proxy_log(proxy)) == seen
    # Without the CA bundle the same command is refused, and says why.
    code, output = _cli([*args[:-4], "--calendar", "reach-cli"], clean, tmp_path)
    assert code != 0 and "not trusted" in output, output


# --- OAuth 2.0 and bearer tokens -------------------------------------------------------------


def _oauth_front(
    start_front: StartFront, radicale: RunningServer, pki: TestPki, lifetime: float
) -> tuple[Front, str, str]:
    client_secret = "cs-" + uuid.uuid4().hex
    refresh_token = "rt-" + uuid.uuid4().hex
    front = start_front(
        "front",
        "--upstream", radicale.base_url,
        "--check", "bearer",
        "--client-id", CLIENT_ID,
        "--client-secret", client_secret,
        "--refresh-token", refresh_token,
        "--token-lifetime", str(lifetime),
        *tls_args(pki),
        tls=True,
    )  # fmt: skip
    return front, client_secret, refresh_token


def _oauth_account(
    front: Front, pki: TestPki, tmp_path: Path, client_secret: str, **over: Any
) -> Account:
    token_file = tmp_path / "refresh-token"
    return _account(
        front.url,
        username=None,
        auth="oauth2",
        ca_bundle=str(pki.ca_bundle),
        oauth2={
            "token_url": front.url + "oauth/token",
            "client_id": CLIENT_ID,
            # The secret from a command (a password manager), the refresh token from a file.
            "client_secret": {"command": [sys.executable, "-c", f"print({client_secret!r})"]},
            "refresh_token": {"file": str(token_file)},
            **over,
        },
    )


def test_oauth2_refreshes_before_expiry_and_after_a_401(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, tmp_path: Path
) -> None:
    front, client_secret, refresh_token = _oauth_front(start_front, radicale_server, pki, 20.0)
    (tmp_path / "refresh-token").write_text(refresh_token + "\n")
    account = _oauth_account(front, pki, tmp_path, client_secret)
    calendar = open_calendar(account, create=True)
    uid = f"oauth-{uuid.uuid4().hex}"
    href = calendar.href_for_uid(uid)
    calendar.create(href, _event(uid))
    granted_by = time.monotonic()  # the token was issued before this
    stats = front.stats(pki.ca_bundle)
    assert stats["grants"] == 1 and stats["refused_requests"] == 0, stats
    # The daemon's next pass opens the calendar anew: it reuses the token, asks for none.
    with open_calendar(account, create=False) as next_pass:
        assert next_pass.normalise_href(href) in next_pass.list_etags()
    assert front.stats(pki.ca_bundle)["grants"] == 1
    # In the last half of its 20 s life the token is renewed before a request needs it.
    time.sleep(max(0.0, granted_by + 10.5 - time.monotonic()))
    assert calendar.normalise_href(href) in calendar.list_etags()
    stats = front.stats(pki.ca_bundle)
    assert stats["grants"] == 2 and stats["refused_requests"] == 0, stats
    # The server drops every token early: one 401, one refresh, the request goes through.
    front.revoke_tokens(pki.ca_bundle)
    assert calendar.normalise_href(href) in calendar.list_etags()
    stats = front.stats(pki.ca_bundle)
    assert stats["grants"] == 3 and stats["refused_requests"] == 1, stats
    calendar.close()


def test_oauth2_with_client_credentials_in_basic_auth(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, tmp_path: Path
) -> None:
    front, client_secret, refresh_token = _oauth_front(start_front, radicale_server, pki, 3600)
    (tmp_path / "refresh-token").write_text(refresh_token)
    account = _oauth_account(front, pki, tmp_path, client_secret, client_auth="basic")
    _round_trip(open_calendar(account, create=True))


def test_a_revoked_refresh_token_is_a_clear_error_without_secrets(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, tmp_path: Path
) -> None:
    front, client_secret, _ = _oauth_front(start_front, radicale_server, pki, 3600)
    stale = "rt-revoked-" + uuid.uuid4().hex
    (tmp_path / "refresh-token").write_text(stale)
    account = _oauth_account(front, pki, tmp_path, client_secret)
    with pytest.raises(StoreError) as refused:
        open_calendar(account, create=True)
    message = str(refused.value)
    assert "invalid_grant" in message and "get a new one" in message, message
    assert stale not in message and client_secret not in message


def test_oauth2_from_command_line_flags(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, tmp_path: Path
) -> None:
    front, client_secret, refresh_token = _oauth_front(start_front, radicale_server, pki, 3600)
    token_file = tmp_path / "refresh-token"
    token_file.write_text(refresh_token)
    args = [
        "--url", front.url,
        "--ca-bundle", str(pki.ca_bundle),
        "--oauth-token-url", front.url + "oauth/token",
        "--oauth-client-id", CLIENT_ID,
        "--oauth-client-secret-env", "CLIENT_SECRET_FOR_TEST",
        "--oauth-refresh-token-file", str(token_file),
        "--calendar", "reach-oauth-cli",
    ]  # fmt: skip
    code, output = _cli(args, {"CLIENT_SECRET_FOR_TEST": client_secret}, tmp_path)
    assert code == 0, output
    assert front.stats(pki.ca_bundle)["grants"] == 1
    assert client_secret not in output and refresh_token not in output


def test_a_static_bearer_token(
    radicale_server: RunningServer,
    start_front: StartFront,
    pki: TestPki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    front, client_secret, refresh_token = _oauth_front(start_front, radicale_server, pki, 3600)
    # A token some other tool obtained: here, the gateway's own endpoint.
    from sync.stores.signin import OAuth2RefreshAuth

    token = OAuth2RefreshAuth(
        owner="test",
        token_url=front.url + "oauth/token",
        client_id=CLIENT_ID,
        client_secret=client_secret,
        refresh_token=refresh_token,
        verify=str(pki.ca_bundle),
    ).access_token()
    monkeypatch.setenv("REACH_TOKEN", token)
    account = _account(
        front.url,
        username=None,
        auth="bearer",
        password_env="REACH_TOKEN",
        ca_bundle=str(pki.ca_bundle),
    )
    _round_trip(open_calendar(account, create=True))
    monkeypatch.setenv("REACH_TOKEN", "at-not-issued")
    with pytest.raises(StoreError, match="authentication failed"):
        open_calendar(account, create=True)


# --- Digest, password_command ------------------------------------------------------------------


def test_digest_sign_in(
    radicale_server: RunningServer, start_front: StartFront, password_env: str
) -> None:
    front = start_front(
        "front",
        "--upstream", radicale_server.base_url,
        "--check", "digest",
        "--user", USERNAME,
        "--password", PASSWORD,
    )  # fmt: skip
    _round_trip(
        open_calendar(_account(front.url, password_env=password_env, auth="digest"), create=True)
    )
    # The same password sent as Basic is refused by a Digest-only server.
    with pytest.raises(StoreError, match="authentication failed"):
        open_calendar(_account(front.url, password_env=password_env), create=True)


def test_password_command(radicale_server: RunningServer) -> None:
    command = [sys.executable, "-c", f"print({PASSWORD!r}); print('second line ignored')"]
    _round_trip(
        open_calendar(_account(radicale_server.base_url, password_command=command), create=True)
    )
    failing = [sys.executable, "-c", "import sys; print('leak?'); sys.exit('not in the store')"]
    with pytest.raises(ConfigError) as refused:
        open_calendar(_account(radicale_server.base_url, password_command=failing), create=True)
    message = str(refused.value)
    assert "exited with status 1" in message and "not in the store" in message, message
    assert "leak?" not in message


# --- RFC 6764 discovery ------------------------------------------------------------------------


def test_a_bare_host_and_an_email_style_account_are_discovered_via_well_known(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, password_env: str
) -> None:
    front = start_front("front", "--upstream", radicale_server.base_url, *tls_args(pki), tls=True)
    host = f"127.0.0.1:{front.port}"
    calendar = open_calendar(
        _account(host, password_env=password_env, ca_bundle=str(pki.ca_bundle)), create=True
    )
    assert calendar.url.startswith(f"https://{host}/{USERNAME}/"), calendar.url
    _round_trip(calendar)
    # The same calendar is found again by its display name, from an e-mail-style address.
    again = open_calendar(
        _account(
            f"{USERNAME}@{host}",
            password_env=password_env,
            ca_bundle=str(pki.ca_bundle),
            calendar=_last(calendar.url),
        ),
        create=False,
    )
    assert again.url == calendar.url
    again.close()


@pytest.mark.parametrize("txt_path", [True, False], ids=["srv-and-txt", "srv-then-well-known"])
def test_an_email_style_account_is_discovered_via_dns_srv(
    radicale_server: RunningServer,
    start_front: StartFront,
    pki: TestPki,
    password_env: str,
    loopback_dns: Callable[[dict[tuple[str, str], list[str]]], LoopbackDns],
    txt_path: bool,
) -> None:
    front = start_front("front", "--upstream", radicale_server.base_url, *tls_args(pki), tls=True)
    records = {("_caldavs._tcp.localhost.", "SRV"): [f"0 1 {front.port} localhost."]}
    if txt_path:
        records[("_caldavs._tcp.localhost.", "TXT")] = ['"path=/"']
    dns_server = loopback_dns(records)
    # No port in the address: only the SRV record knows where the service listens.
    account = _account(
        f"{USERNAME}@localhost", password_env=password_env, ca_bundle=str(pki.ca_bundle)
    )
    calendar = open_calendar(account, create=True, resolver=dns_server.resolver())
    assert calendar.url.startswith(f"https://localhost:{front.port}/{USERNAME}/"), calendar.url
    assert "SRV _caldavs._tcp.localhost." in dns_server.queries
    _round_trip(calendar)


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]
