"""docker-compose.yml, Dockerfile and the systemd unit: parsed and cross-checked (no Docker)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import yaml

from sync.cli import cli
from sync.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


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
    load_settings(source, environ=dict(daemon["environment"]))  # valid with the compose environment
    assert daemon["environment"]["FOLLOWUP_SYNC_DATABASE"].startswith("postgresql+psycopg://")
    assert "postgres:5432" in daemon["environment"]["FOLLOWUP_SYNC_DATABASE"]
    assert (ROOT / daemon.get("build", ".") / "Dockerfile").is_file()
    # The daemon needs a current schema: the migrate service runs first.
    assert services["migrate"]["command"][:2] == ["db", "upgrade"]
    assert daemon["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Every command given in compose exists in the CLI.
    for service in ("daemon", "migrate"):
        name = services[service]["command"][0]
        assert name in cli.commands, f"{service}: unknown command {name}"


def test_dockerfile_entrypoint_runs_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["followup-sync"]' in text
    assert '"daemon", "--config", "/etc/followup-sync/config.toml"' in text
    for copied in ("mappings", "sync", "pyproject.toml"):
        assert (ROOT / copied).exists()


def test_systemd_unit_starts_the_daemon() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "contrib" / "followup-sync.service").read_text())
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0].endswith("followup-sync") and argv[1] == "daemon" and "--config" in argv
    assert "db upgrade" in unit["Service"]["ExecStartPre"]
    assert unit["Service"]["KillSignal"] == "SIGTERM"
