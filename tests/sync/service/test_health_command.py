"""``followup-sync health``: what the container HEALTHCHECK runs, against a real daemon."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.servers import RunningServer, free_port
from tests.sync.service.conftest import (
    DaemonProcess,
    run_cli,
    start_ready,
    write_config,
)


def test_health_asks_the_daemon_at_the_configured_port_and_its_overrides(
    radicale_server: RunningServer, tmp_path: Path, daemons: list[DaemonProcess], http_port: int
) -> None:
    config = write_config(
        tmp_path / "config.toml",
        database=f"sqlite:///{tmp_path / 'state.sqlite'}",
        http_port=http_port,
        accounts={
            "alice": {
                "url": radicale_server.base_url,
                "calendar_url": radicale_server.make_calendar(f"health-{uuid.uuid4().hex[:8]}"),
            }
        },
    )
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0

    down = run_cli("health", "--config", str(config))
    assert down.returncode == 1
    assert f"127.0.0.1:{http_port}/healthz: connection refused" in down.stderr

    start_ready(daemons, config, tmp_path / "daemon.log", http_port=http_port)
    # Listening on every address (as in the container): asked on loopback.
    env = {"FOLLOWUP_SYNC_DAEMON__HTTP_HOST": "0.0.0.0"}
    alive = run_cli("health", "--config", str(config), env=env)
    assert alive.returncode == 0, alive.stderr
    assert alive.stdout.strip() == f"http://127.0.0.1:{http_port}/healthz: 200"
    ready = run_cli("health", "--ready", "--config", str(config))
    assert ready.returncode == 0 and "/readyz: 200" in ready.stdout

    # The port an environment override gives is the one asked (nothing listens there).
    elsewhere = run_cli(
        "health", "--config", str(config), env={"FOLLOWUP_SYNC_DAEMON__HTTP_PORT": str(free_port())}
    )
    assert elsewhere.returncode == 1 and "connection refused" in elsewhere.stderr


def test_health_without_http_says_so(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.toml",
        database=str(tmp_path / "state.sqlite"),
        accounts={"alice": {"url": "http://127.0.0.1:9/"}},
    )
    result = run_cli("health", "--config", str(config))
    assert result.returncode == 2
    assert "http_port is 0" in result.stderr
