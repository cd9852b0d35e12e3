"""Secrets: a password, token, refresh token or client key never shows up anywhere else.

Failing runs of the real CLI (``followup-sync -vv sync …``) — a wrong calendar URL, a
server that is down, a 401 — and a ``--dry-run``: all output is captured, and the state
database (with its -wal/-shm files) is read byte for byte; neither the password nor its
Basic-auth form may appear. TLS verification is on unless an account turns it off, which
is logged as a WARNING. The state database is created readable by its owner only.
The same holds for OAuth 2.0 (client secret, refresh token, the access tokens the test
gateway issues), Digest, bearer tokens, a password from a command, and a client key.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sync.config import Account, load_settings
from sync.stores.caldav import DavCalendar, SessionSender
from sync.stores.caldav.direct import DirectSender
from tests.reach.fixtures import StartFront, TestPki, tls_args
from tests.reliability.helpers import seed_for
from tests.servers import RunningServer, free_port

#: The production senders: http.client where the transport allows, else niquests.
SENDERS = (DirectSender, SessionSender)

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "followup-sync"


def _forms(password: str, username: str = "alice") -> list[bytes]:
    """The password and every form it could leak in: Basic auth, URL-quoted."""
    from urllib.parse import quote

    return [
        password.encode(),
        base64.b64encode(f"{username}:{password}".encode()),
        quote(password).encode(),
    ]


def _run(args: list[str], env_extra: dict[str, str], db: Path) -> tuple[int, bytes]:
    env = {**os.environ, **env_extra, "FOLLOWUP_SYNC_DATABASE": str(db), "COLUMNS": "200"}
    done = subprocess.run(
        [str(CLI), "-vv", *args], cwd=ROOT, env=env, capture_output=True, timeout=120
    )
    return done.returncode, done.stdout + done.stderr


def _stored_bytes(db: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(f"{db}{suffix}")
        if path.exists():
            out += path.read_bytes()
    return out


def _assert_no_leak(password: str, *blobs: bytes) -> None:
    for blob in blobs:
        for form in _forms(password):
            assert form not in blob, f"the password leaked ({form!r}) in: {blob[:3000]!r}"


@pytest.fixture
def secret() -> str:
    seed_for("secrets")
    return "Pw-" + secrets.token_urlsafe(18)


def test_failing_and_dry_runs_never_show_the_password(
    radicale_server: RunningServer, xandikos_server: RunningServer, tmp_path: Path, secret: str
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(secret + "\n")
    password_file.chmod(0o600)
    down = f"http://127.0.0.1:{free_port()}/"
    good_xandikos = xandikos_server.make_calendar("secrets-ok")  # no auth: any password works
    cases = {
        "wrong calendar URL (404)": [
            "--url", xandikos_server.base_url,
            "--calendar-url", xandikos_server.base_url + "alice/calendars/nope/",
        ],
        "server down": ["--url", down, "--calendar-url", down + "alice/cal/"],
        "401": [
            "--url", radicale_server.base_url,
            "--calendar-url", radicale_server.make_calendar("secrets-401"),
        ],
        "dry run": [
            "--url", xandikos_server.base_url, "--calendar-url", good_xandikos, "--dry-run",
        ],
    }  # fmt: skip
    for how in ("env", "file"):
        source = (
            ["--password-env", "SECRET_FOR_TEST"]
            if how == "env"
            else ["--password-file", str(password_file)]
        )
        for name, args in cases.items():
            db = tmp_path / f"{how}-{name.split()[0]}.sqlite"
            code, output = _run(
                ["sync", "--username", "alice", *source, *args], {"SECRET_FOR_TEST": secret}, db
            )
            print(
                f"  {how:4} {name:26} exit {code}, {len(output)} bytes of output: "
                f"{output.decode()[-160:]!r}"
            )
            if name == "dry run":
                assert code == 0, output.decode()
            else:
                assert code != 0, output.decode()
            if name == "401":
                assert b"401" in output
            _assert_no_leak(secret, output, _stored_bytes(db))
            # The state database and its WAL/SHM files: owner only.
            for suffix in ("", "-wal", "-shm"):
                path = Path(f"{db}{suffix}")
                if path.exists():
                    mode = stat.S_IMODE(path.stat().st_mode)
                    assert mode & 0o077 == 0, f"{path.name} is {oct(mode)}"


def test_secrets_come_from_env_or_file_not_from_the_config(tmp_path: Path, secret: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[accounts.a]\nurl = "https://dav.example.com/"\npassword = "inline"\n')
    with pytest.raises(Exception, match="password"):
        load_settings(config)
    (tmp_path / "pw").write_text(secret)
    from_file = Account(url="https://dav.example.com/", password_file=str(tmp_path / "pw"))
    assert from_file.password() == secret
    os.environ["SECRET_FOR_TEST_2"] = secret
    try:
        from_env = Account(url="https://dav.example.com/", password_env="SECRET_FOR_TEST_2")
        assert from_env.password() == secret
        assert secret not in repr(from_env) and secret not in from_env.model_dump_json()
    finally:
        del os.environ["SECRET_FOR_TEST_2"]


def test_tls_is_verified_by_default_and_turning_it_off_is_a_warning(
    caplog: pytest.LogCaptureFixture, secret: str
) -> None:
    assert Account(url="https://dav.example.com/").verify_tls is True
    with caplog.at_level(logging.WARNING, logger="sync.stores.caldav"):
        on = DavCalendar.connect("https://dav.example.com/cal/", username="alice", password=secret)
        assert isinstance(on.sender, SENDERS) and on.sender.transport.verify is True
        assert not [r for r in caplog.records if "TLS" in r.getMessage()]
        off = DavCalendar.connect(
            "https://dav.example.com/cal/", username="alice", password=secret, verify_tls=False
        )
        assert isinstance(off.sender, SENDERS) and off.sender.transport.verify is False
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "TLS" in r.getMessage()
    ]
    assert len(warnings) == 1 and "verify_tls = false" in warnings[0].getMessage()
    _assert_no_leak(secret, caplog.text.encode())


def test_turning_tls_off_in_the_config_is_logged_by_the_cli(
    xandikos_server: RunningServer, tmp_path: Path, secret: str
) -> None:
    calendar_url = xandikos_server.make_calendar("secrets-tls")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[accounts.lab]\nurl = "{xandikos_server.base_url}"\ncalendar_url = "{calendar_url}"\n'
        f'username = "alice"\npassword_env = "SECRET_FOR_TEST"\nverify_tls = false\n'
    )
    db = tmp_path / "tls.sqlite"
    code, output = _run(
        ["sync", "--config", str(config), "--dry-run"], {"SECRET_FOR_TEST": secret}, db
    )
    assert code == 0, output.decode()
    assert b"WARNING" in output and b"verify_tls = false" in output, output.decode()
    _assert_no_leak(secret, output, _stored_bytes(db))


# --- sign-in beyond Basic: OAuth 2.0, bearer, Digest, password_command, client keys -----------

ACCESS_TOKEN = re.compile(rb"at-[A-Za-z0-9_-]{32}")  # what the test gateway issues


def _oauth_config(tmp_path: Path, front_url: str, ca_bundle: Path, calendar: str) -> Path:
    config = tmp_path / f"oauth-{calendar}.toml"
    config.write_text(
        f'[accounts.g]\nurl = "{front_url}"\nauth = "oauth2"\nca_bundle = "{ca_bundle}"\n'
        f'calendar = "{calendar}"\n'
        "[accounts.g.oauth2]\n"
        f'token_url = "{front_url}oauth/token"\nclient_id = "followup-sync-test"\n'
        'client_secret = { env = "CLIENT_SECRET_FOR_TEST" }\n'
        'refresh_token = { env = "REFRESH_TOKEN_FOR_TEST" }\n'
    )
    return config


def test_oauth_tokens_and_client_secrets_never_show(
    radicale_server: RunningServer, start_front: StartFront, pki: TestPki, tmp_path: Path
) -> None:
    client_secret = "Cs-" + secrets.token_urlsafe(18)
    refresh_token = "Rt-" + secrets.token_urlsafe(18)
    front = start_front(
        "front",
        "--upstream", radicale_server.base_url,
        "--check", "bearer",
        "--client-id", "followup-sync-test",
        "--client-secret", client_secret,
        "--refresh-token", refresh_token,
        *tls_args(pki),
        tls=True,
    )  # fmt: skip
    config = _oauth_config(tmp_path, front.url, pki.ca_bundle, "secrets-oauth")
    cases = {
        "works": (client_secret, refresh_token, 0),
        "wrong client secret": ("Cs-wrong-" + secrets.token_urlsafe(8), refresh_token, 1),
        "revoked refresh token": (client_secret, "Rt-old-" + secrets.token_urlsafe(8), 1),
    }
    for name, (given_secret, given_refresh, expected) in cases.items():
        db = tmp_path / f"oauth-{name.split()[0]}.sqlite"
        env = {"CLIENT_SECRET_FOR_TEST": given_secret, "REFRESH_TOKEN_FOR_TEST": given_refresh}
        code, output = _run(["sync", "--config", str(config)], env, db)
        print(f"  oauth {name:22} exit {code}: {output.decode()[-160:]!r}")
        assert (code == 0) == (expected == 0), output.decode()
        stored = _stored_bytes(db)
        for blob in (output, stored):
            for value in {client_secret, refresh_token, given_secret, given_refresh}:
                assert value.encode() not in blob, f"{value} leaked in {name}"
            assert not ACCESS_TOKEN.search(blob), f"an access token leaked in {name}"
        if name == "revoked refresh token":
            assert b"invalid_grant" in output
        if name == "wrong client secret":
            assert b"invalid_client" in output
    assert front.stats(pki.ca_bundle)["grants"] == 1


def test_digest_bearer_and_command_passwords_never_show(
    radicale_server: RunningServer, start_front: StartFront, tmp_path: Path, secret: str
) -> None:
    digest = start_front(
        "front",
        "--upstream", radicale_server.base_url,
        "--check", "digest",
        "--user", "alice",
        "--password", secret,
    )  # fmt: skip
    bearer = start_front("front", "--upstream", radicale_server.base_url, "--check", "bearer")
    command = f"{sys.executable} -c 'import os; print(os.environ[\"SECRET_FOR_TEST\"])'"
    cases = {
        "digest ok": ["--url", digest.url, "--auth", "digest", "--password-env", "SECRET_FOR_TEST"],
        "digest via command": [
            "--url", digest.url, "--auth", "digest", "--password-command", command,
        ],
        "digest sent as basic (401)": ["--url", digest.url, "--password-env", "SECRET_FOR_TEST"],
        "bearer refused (401)": [
            "--url", bearer.url, "--auth", "bearer", "--password-env", "SECRET_FOR_TEST",
        ],
    }  # fmt: skip
    for name, args in cases.items():
        db = tmp_path / f"{name.split()[0]}-{len(name)}.sqlite"
        code, output = _run(
            ["sync", "--username", "alice", "--calendar", "secrets-auth", *args],
            {"SECRET_FOR_TEST": secret},
            db,
        )
        print(f"  {name:28} exit {code}: {output.decode()[-160:]!r}")
        should_work = name.startswith("digest") and "401" not in name
        assert (code == 0) == should_work, output.decode()
        _assert_no_leak(secret, output, _stored_bytes(db))
        assert f"Bearer {secret}".encode() not in output


def test_a_client_key_is_never_read_into_output(
    radicale_server: RunningServer,
    start_front: StartFront,
    pki: TestPki,
    tmp_path: Path,
    secret: str,
) -> None:
    front = start_front(
        "front",
        "--upstream",
        radicale_server.base_url,
        *tls_args(pki, client_certificates=True),
        tls=True,
    )
    key_body = b"".join(pki.client_key.read_bytes().splitlines()[1:-1])[:40]
    for with_key in (True, False):
        args = ["--url", front.url, "--username", "alice", "--password-env", "SECRET_FOR_TEST"]
        args += ["--ca-bundle", str(pki.ca_bundle), "--calendar", "secrets-cert"]
        if with_key:
            args += ["--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]
        db = tmp_path / f"cert-{with_key}.sqlite"
        code, output = _run(["sync", *args], {"SECRET_FOR_TEST": "secret"}, db)
        assert (code == 0) == with_key, output.decode()
        assert key_body not in output and key_body not in _stored_bytes(db)
        assert b"PRIVATE KEY" not in output
