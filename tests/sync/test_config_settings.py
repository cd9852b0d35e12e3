"""Config: the example file, environment overrides, secrets (env, file, keyring), error lines."""

from __future__ import annotations

from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from sync.config import Account, load_settings
from sync.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "followup-sync.example.toml"


def test_example_config_loads_with_every_documented_table() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert set(settings.accounts) == {"alice", "bob"}
    alice = settings.accounts["alice"]
    assert alice.interval_seconds == 300 and alice.jitter_seconds == 15 and alice.full_every == 12
    assert alice.full_interval_seconds == 3600
    assert settings.daemon.http_port == 8484 and settings.daemon.max_concurrent_accounts == 4
    assert settings.accounts["bob"].password_file == "/run/secrets/bob-dav"
    assert alice.scheduling == "auto"
    assert settings.mail is not None and settings.mail.sender_address == "crm@example.com"
    assert settings.mail.imap is not None and settings.mail.imap.poll_seconds == 60


def test_compose_config_loads() -> None:
    settings = load_settings(ROOT / "config" / "followup-sync.compose.toml", environ={})
    assert settings.daemon.log_format.value == "json"


def test_environment_overrides_nested_keys_and_match_account_names_case_insensitively() -> None:
    settings = load_settings(
        EXAMPLE,
        environ={
            "FOLLOWUP_SYNC_DATABASE": "postgresql+psycopg://db/x",
            "FOLLOWUP_SYNC_DAEMON__HTTP_PORT": "9000",
            "FOLLOWUP_SYNC_DAEMON__LOG_FORMAT": "json",
            "FOLLOWUP_SYNC_ACCOUNTS__ALICE__URL": "https://other.example.com/",
            "FOLLOWUP_SYNC_ACCOUNTS__ALICE__OWNERS": '["alice", "carol"]',
            "FOLLOWUP_SYNC_ACCOUNTS__CAROL__URL": "https://carol.example.com/",
            "FOLLOWUP_SYNC_CONFIG": "/ignored.toml",  # the CLI's own variable, not a setting
            "FOLLOWUP_SYNC_SOMETHING_ELSE": "x",  # not ours: left alone
        },
    )
    assert settings.database == "postgresql+psycopg://db/x"
    assert settings.daemon.http_port == 9000 and settings.daemon.log_format.value == "json"
    assert settings.accounts["alice"].url == "https://other.example.com/"
    assert settings.accounts["alice"].owners == ["alice", "carol"]
    assert settings.accounts["carol"].name == "carol"


def test_an_invalid_override_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(EXAMPLE, environ={"FOLLOWUP_SYNC_DAEMON__MAX_CONCURRENT_ACCOUNTS": "0"})
    assert "$FOLLOWUP_SYNC_DAEMON__MAX_CONCURRENT_ACCOUNTS: daemon.max_concurrent_accounts" in str(
        info.value
    )


def test_errors_name_key_and_line_in_daemon_and_account_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'database = "x.sqlite"\n\n[daemon]\nhttp_port = 70000\nlog_format = "xml"\n\n'
        '[accounts.a]\nurl = "https://a/"\ninterval_seconds = 0\n'
        'password_env = "A"\npassword_file = "/f"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert f"{path}:4: daemon.http_port" in message
    assert f"{path}:5: daemon.log_format" in message
    assert f"{path}:9: accounts.a.interval_seconds" in message
    path.write_text('[accounts.a]\nurl = "https://a/"\npassword_env = "A"\npassword_file = "/f"\n')
    with pytest.raises(
        ConfigError, match=r"c.toml:1: accounts.a: Value error, give only one of password_env"
    ):
        load_settings(path, environ={})


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


def test_secrets_from_env_file_and_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAV_PW", "from-env")
    assert Account(url="https://a/", password_env="DAV_PW").password() == "from-env"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert Account(url="https://a/", password_file=str(secret)).password() == "from-file"

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    backend.set_password("followup-sync", "alice", "from-keyring")
    keyring.set_keyring(backend)
    try:
        assert (
            Account(url="https://a/", password_keyring="followup-sync:alice").password()
            == "from-keyring"
        )
        # "service" alone: the account's username is the keyring user.
        assert (
            Account(url="https://a/", username="alice", password_keyring="followup-sync").password()
            == "from-keyring"
        )
        with pytest.raises(ConfigError, match="no password for followup-sync:bob in the keyring"):
            Account(url="https://a/", password_keyring="followup-sync:bob").password()
    finally:
        keyring.set_keyring(previous)
