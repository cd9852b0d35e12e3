"""docker-compose.yml, Dockerfile and the systemd unit: parsed and cross-checked (no Docker)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sync.cli.main import cli
from sync.config import load_settings

ROOT = Path(__file__).resolve().parents[3]


def test_compose_has_caldav_postgres_and_a_daemon_with_a_mounted_config() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"radicale", "postgres", "daemon"} <= set(services)
    daemon = services["daemon"]
    assert daemon["command"][0] == "daemon"
    config_in_container = daemon["command"][daemon["command"].index("--config") + 1]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in daemon["volumes"]}
    assert config_in_container in mounts
    source = ROOT / mounts[config_in_container]
    assert source.is_file()
    settings = load_settings(source, environ=dict(daemon["environment"]))
    assert settings.database is not None
    assert settings.database.startswith("postgresql+psycopg://followup@postgres:5432/")
    assert settings.daemon.http_host == "0.0.0.0"
    assert (ROOT / daemon.get("build", ".") / "Dockerfile").is_file()
    # The daemon needs a current schema: the migrate service runs first.
    assert services["migrate"]["command"][:2] == ["db", "upgrade"]
    assert daemon["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Every command given in compose exists in the CLI.
    for service in ("daemon", "migrate"):
        name = services[service]["command"][0]
        assert name in cli.commands, f"{service}: unknown command {name}"


def test_compose_passes_passwords_as_secrets_not_environment_values() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services, secrets = compose["services"], compose["secrets"]
    for name, service in services.items():
        environment = service.get("environment", {})
        leaked = [key for key in environment if "PASSWORD" in key and not key.endswith("_FILE")]
        assert not leaked, f"{name}: password in the environment: {leaked}"
        for secret in service.get("secrets", []):
            assert (ROOT / secrets[secret]["file"]).is_file(), secret
    daemon = services["daemon"]
    settings = load_settings(
        ROOT / "config" / "followup-sync.compose.toml", environ=dict(daemon["environment"])
    )
    used = {settings.database_password_file} | {
        account.password_file for account in settings.accounts.values()
    }
    assert used == {f"/run/secrets/{name}" for name in daemon["secrets"]}
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    # The database password the daemon reads is the one PostgreSQL was given.
    assert secrets["postgres_password"] == {"file": "./config/compose-secrets/postgres-password"}


def test_compose_radicale_is_built_once_not_pip_installed_at_every_start() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    radicale = compose["services"]["radicale"]
    assert "command" not in radicale
    assert radicale["build"]["target"] == "radicale"
    assert "FROM python:3.11-slim AS radicale" in (ROOT / "Dockerfile").read_text()


def test_dockerfile_entrypoint_runs_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["followup-sync"]' in text
    assert '"daemon", "--config", "/etc/followup-sync/config.toml"' in text
    for copied in ("mappings", "sync", "pyproject.toml"):
        assert (ROOT / copied).exists()


def test_dockerfile_healthcheck_reads_the_port_from_the_config() -> None:
    text = (ROOT / "Dockerfile").read_text()
    healthcheck = text[text.index("HEALTHCHECK") :].split("\n\n")[0]
    assert 'CMD ["followup-sync", "health"]' in healthcheck
    assert "8484" not in healthcheck
    assert "health" in cli.commands


def test_dockerfile_copies_only_what_exists_and_everything_the_wheel_needs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    copied = [
        part
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for part in shlex.split(line)[1:-1]
    ]
    for path in copied:
        assert (ROOT / path).exists(), path
    # sync/examples links into these: without them the wheel would lack its data files.
    for link in (ROOT / "sync" / "examples").iterdir():
        target = link.resolve().relative_to(ROOT)
        assert any(str(target).startswith(path.rstrip("/")) for path in copied), target
    assert "LICENSE" in copied  # pyproject's license-files


def test_systemd_unit_starts_the_daemon() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "contrib" / "followup-sync.service").read_text())
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0].endswith("followup-sync") and argv[1] == "daemon" and "--config" in argv
    assert "db upgrade" in unit["Service"]["ExecStartPre"]
    assert unit["Service"]["KillSignal"] == "SIGTERM"


def test_systemd_unit_is_sandboxed_and_installed_from_a_path_that_exists() -> None:
    unit = (ROOT / "contrib" / "followup-sync.service").read_text()
    assert "pip install followup-sync" not in unit  # not published: install the checkout
    assert "pip install '.[api,postgresql]'" in unit
    assert "Documentation=file:///opt" not in unit
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20",  # exposure x 10: below 2.0 ("OK")
         str(ROOT / "contrib" / "followup-sync.service")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-400:]
    assert " OK " in result.stdout
