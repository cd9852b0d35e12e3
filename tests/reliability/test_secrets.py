"""Secrets: a password read from the environment or a file never shows up anywhere else.

Failing runs of the real CLI (``followup-sync -vv sync …``) — a wrong calendar URL, a
server that is down, a 401 — and a ``--dry-run``: all output is captured, and the state
database (with its -wal/-shm files) is read byte for byte; neither the password nor its
Basic-auth form may appear. TLS verification is on unless an account turns it off, which
is logged as a WARNING. The state database is created readable by its owner only.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest

from sync.config import Account, load_settings
from sync.dav import DavCalendar
from tests.reliability.helpers import seed_for
from tests.servers import RunningServer, free_port

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
    with caplog.at_level(logging.WARNING, logger="sync.dav"):
        on = DavCalendar.connect("https://dav.example.com/cal/", username="alice", password=secret)
        assert on._verify is True
        assert not [r for r in caplog.records if "TLS" in r.getMessage()]
        off = DavCalendar.connect(
            "https://dav.example.com/cal/", username="alice", password=secret, verify_tls=False
        )
        assert off._verify is False
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
