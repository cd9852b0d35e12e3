"""Digest sign-in against a real server that offers only Digest: SabreDAV 1.8 (Debian).

SabreDAV's example server (the engine of Baikal and Nextcloud) answers every request
without a valid Digest login with 401 and a Digest challenge; Basic is not accepted.
These tests run the real command line against it: an account with ``auth = "digest"``
syncs the follow-ups both ways, the same account with Basic is refused, and a wrong
password is one clear error naming the account, with no secret in the output or the
state database. Interop tier only (``FOLLOWUP_SYNC_SERVERS`` with ``sabredav``).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration import client_edits as ce
from tests.servers import RunningServer

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "followup-sync"
FOLLOWUPS = ROOT / "examples" / "followups.json"
PASSWORD_ENV = "SABREDAV_PASSWORD_FOR_TEST"
ACCOUNT = "nextcloud-like"

PROPFIND_PRINCIPAL = (
    b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:current-user-principal/>'
    b"</D:prop></D:propfind>"
)


def _cli(args: list[str], db: Path, password: str) -> tuple[int, str]:
    env = {**os.environ, PASSWORD_ENV: password, "FOLLOWUP_SYNC_DATABASE": str(db)}
    done = subprocess.run(
        [str(CLI), "-v", *args], cwd=ROOT, env=env, capture_output=True, timeout=180, text=True
    )
    return done.returncode, done.stdout + done.stderr


def _config(tmp_path: Path, server: RunningServer, calendar_url: str, auth: str) -> Path:
    config = tmp_path / f"{auth}.toml"
    config.write_text(
        f'[accounts.{ACCOUNT}]\nurl = "{server.base_url}"\nusername = "{server.username}"\n'
        f'password_env = "{PASSWORD_ENV}"\nauth = "{auth}"\ncalendar_url = "{calendar_url}"\n'
    )
    return config


def test_sabredav_refuses_basic_and_accepts_digest(sabredav_server: RunningServer) -> None:
    """The fixture really is Digest-only, so the other tests here prove Digest works."""
    assert sabredav_server.auth == "digest"
    login = (sabredav_server.username or "", sabredav_server.password or "")

    def propfind(auth: httpx.Auth) -> httpx.Response:
        return httpx.request(
            "PROPFIND",
            sabredav_server.home_url,
            content=PROPFIND_PRINCIPAL,
            headers={"Depth": "0", "Content-Type": "application/xml"},
            auth=auth,
            timeout=10,
        )

    basic = propfind(httpx.BasicAuth(*login))
    assert basic.status_code == 401
    assert basic.headers["www-authenticate"].startswith("Digest "), basic.headers
    assert propfind(httpx.DigestAuth(*login)).status_code == 207


def _stored_values(db: Path) -> bytes:
    """Every value in every table of the state database (not the schema's own words)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found: list[bytes] = []
        for name in names:
            for row in con.execute(f'SELECT * FROM "{name}"'):
                found += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    finally:
        con.close()
    return b"\n".join(found)


def test_digest_account_syncs_with_sabredav_and_basic_or_a_wrong_password_is_refused(
    sabredav_server: RunningServer, tmp_path: Path
) -> None:
    password = sabredav_server.password or ""
    calendar_url = sabredav_server.make_calendar("digest-e2e")
    db = tmp_path / "state.sqlite"
    code, output = _cli(["import", str(FOLLOWUPS)], db, password)
    assert code == 0, output
    expected = len(json.loads(FOLLOWUPS.read_text()))

    digest = _config(tmp_path, sabredav_server, calendar_url, "digest")
    code, output = _cli(["sync", "--config", str(digest)], db, password)
    assert code == 0, output
    client = ce.PlainClient(calendar_url, sabredav_server.username, password, sabredav_server.auth)
    etags = client.list()
    assert len(etags) == expected, output
    # And back: a calendar user's edit, made over Digest, reaches the follow-up.
    first = client.get(min(etags))
    uid = ce.uid_of(first.data)
    client.replace(first, first.data.replace(b"\r\nSUMMARY:", b"\r\nSUMMARY:Moved - ", 1))
    code, output = _cli(["sync", "--config", str(digest)], db, password)
    assert code == 0, output
    code, exported = _cli(["export"], db, password)
    assert code == 0, exported
    assert "Moved - " in exported, f"{uid}'s edit did not come back:\n{output}"

    # The same account with Basic: refused, nothing on either side touched.
    basic = _config(tmp_path, sabredav_server, calendar_url, "basic")
    code, output = _cli(["sync", "--config", str(basic)], db, password)
    assert code != 0 and "authentication failed" in output, output
    assert len(client.list()) == expected

    # A wrong Digest password: one clear error naming the account, and no secret anywhere.
    wrong = "Wrong-Digest-Pw-7fq2"
    code, output = _cli(["sync", "--config", str(digest)], db, wrong)
    assert code != 0, output
    assert "authentication failed" in output and ACCOUNT in output, output
    stored = b"".join(
        Path(f"{db}{suffix}").read_bytes()
        for suffix in ("", "-wal", "-shm")
        if Path(f"{db}{suffix}").exists()
    )
    values = _stored_values(db)
    for secret in (wrong, password):
        for form in (secret, base64.b64encode(f"alice:{secret}".encode()).decode()):
            assert form not in output, f"{form!r} in the output:\n{output}"
            # The fixtures' shared password is the word "secret", which the schema itself
            # spells (a webhook's secret column): for it, look at what the rows hold.
            haystack = values if form == "secret" else stored
            assert form.encode() not in haystack, f"{form!r} in the state database"
    assert len(client.list()) == expected
