"""The daemon as a real process against a real Radicale: both directions, SIGTERM, restart, metrics.

Intervals are 1.5 s; every wait below is bounded by a few intervals, so a failure means
the daemon did not converge in time, not that the test was impatient.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from mappings.model import uid_for_id
from tests.servers import RunningServer
from tests.sync.service.conftest import (
    alice_config,
    calendar_items,
    client_retitles,
    crm_titles,
    followup,
    put_followups,
    run_cli,
    start_ready,
    summaries,
    wait_for,
    wait_for_title,
    write_config,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]

#: How long a change may take to reach the other side: poll + debounce + one pass, with room
#: for a slow, shared CI machine.
CONVERGE = 15.0


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def test_daemon_converges_both_ways_survives_sigterm_and_restart(
    radicale_server: RunningServer, tmp_path: Path, daemons: list, http_port: int
) -> None:
    made = alice_config(tmp_path, radicale_server, http_port=http_port, prefix="daemon")
    config, calendar_url, database = made.path, made.calendar_url, made.database
    put_followups(
        database,
        [followup("d1", "Kick-off"), followup("d2", "Review"), followup("x9", "Bob's", "bob")],
    )

    daemon = start_ready(daemons, config, tmp_path / "daemon.log", http_port=http_port)
    assert daemon.get("/healthz")[0] == 200

    # 1. First passes put the CRM's follow-ups (alice's only) on the calendar.
    wait_for(
        lambda: (
            summaries(radicale_server, calendar_url)
            == {uid_for_id("d1"): "Kick-off", uid_for_id("d2"): "Review"}
        ),
        CONVERGE,
        "initial upload",
    )

    # 2. A CRM write reaches the calendar within seconds (the crm-poll job), not "next interval".
    started = time.monotonic()
    put_followups(database, [followup("d1", "Kick-off (moved)")])
    wait_for_title(
        radicale_server,
        calendar_url,
        "d1",
        "Kick-off (moved)",
        CONVERGE,
        "CRM change on the calendar",
    )
    crm_latency = time.monotonic() - started

    # 3. A calendar client's edit comes back to the CRM.
    client_retitles(radicale_server, calendar_url, "d2", "Review (renamed in Thunderbird)")
    wait_for(
        lambda: crm_titles(database).get("d2") == "Review (renamed in Thunderbird)",
        CONVERGE,
        "calendar change in the CRM",
    )

    # 4. Metrics reflect what happened.
    status, text = daemon.get("/metrics")
    assert status == 200
    assert metric(text, "followup_sync_runs_total", account="alice", result="ok") >= 3
    assert metric(text, "followup_sync_items_pushed_total", account="alice", op="create") == 2
    assert metric(text, "followup_sync_items_pushed_total", account="alice", op="update") >= 1
    assert metric(text, "followup_sync_items_pulled_total", account="alice", op="update") >= 1
    assert metric(text, "followup_sync_http_requests_total", account="alice") > 0
    assert (
        metric(text, "followup_sync_last_success_timestamp_seconds", account="alice")
        > time.time() - 60
    )
    assert metric(text, "followup_sync_pass_duration_seconds_count", account="alice") >= 3

    # 5. SIGTERM: exit 0.
    assert daemon.terminate() == 0, daemon.log_text()[-3000:]
    records = daemon.log_records()
    pass_lines = [r for r in records if r["logger"] == "sync.service.daemon" and "pass" in r["msg"]]
    assert pass_lines and all(r["account"] == "alice" for r in pass_lines)
    assert any(r["item"] == "d1" for r in records), "action log lines carry the follow-up id"

    # 6. Changes while it is down, on both sides; a restart picks them up, nothing doubles.
    put_followups(database, [followup("d3", "Created while down")])
    client_retitles(radicale_server, calendar_url, "d1", "Kick-off (client while down)")
    restarted = start_ready(daemons, config, tmp_path / "daemon2.log", http_port=http_port)
    expected = {
        uid_for_id("d1"): "Kick-off (client while down)",
        uid_for_id("d2"): "Review (renamed in Thunderbird)",
        uid_for_id("d3"): "Created while down",
    }
    wait_for(
        lambda: summaries(radicale_server, calendar_url) == expected,
        CONVERGE,
        "catch-up after restart",
    )
    wait_for(
        lambda: crm_titles(database).get("d1") == "Kick-off (client while down)",
        CONVERGE,
        "pull after restart",
    )
    assert len(calendar_items(radicale_server, calendar_url)) == 3
    assert restarted.terminate() == 0

    # 7. status reads what the daemon wrote.
    shown = run_cli("status", "--config", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"account": "alice"' in shown.stdout and '"result": "ok"' in shown.stdout
    assert '"next_run": "20' in shown.stdout
    assert crm_latency < CONVERGE


def test_sigterm_mid_pass_abandons_safely_and_restart_completes(
    radicale_server: RunningServer, tmp_path: Path, daemons: list, http_port: int
) -> None:
    """A pass with many writes is interrupted; the restart finishes it with no duplicate."""
    made = alice_config(tmp_path, radicale_server, http_port=http_port, prefix="sigterm")
    config, calendar_url, database = made.path, made.calendar_url, made.database
    count = 80
    put_followups(database, [followup(f"m{i:03d}", f"Meeting {i}") for i in range(count)])
    daemon = start_ready(daemons, config, tmp_path / "daemon.log", http_port=http_port)
    wait_for(
        lambda: len(calendar_items(radicale_server, calendar_url)) >= 3,
        30,
        "the pass to be writing",
        0.05,
    )
    assert daemon.terminate() == 0
    partial = len(calendar_items(radicale_server, calendar_url))
    assert any("stopping" in r["msg"] for r in daemon.log_records()) or partial == count

    restarted = start_ready(daemons, config, tmp_path / "daemon2.log", http_port=http_port)
    wait_for(
        lambda: len(summaries(radicale_server, calendar_url)) == count,
        60,
        "all follow-ups after restart",
    )
    assert len(calendar_items(radicale_server, calendar_url)) == count  # one resource per follow-up
    assert restarted.terminate() == 0


def test_daemon_refuses_an_old_schema(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.toml",
        database=str(tmp_path / "empty.sqlite"),
        accounts={"alice": {"url": "http://127.0.0.1:9/"}},
    )
    result = run_cli("daemon", "--config", str(config))
    assert result.returncode == 2
    assert "followup-sync db upgrade" in result.stderr


def test_config_check_tries_each_account(radicale_server: RunningServer, tmp_path: Path) -> None:
    calendar_url = radicale_server.make_calendar(f"check-{uuid.uuid4().hex[:8]}")
    config = write_config(
        tmp_path / "config.toml",
        database=str(tmp_path / "s.sqlite"),
        accounts={
            "good": {"url": radicale_server.base_url, "calendar_url": calendar_url},
            "discovered": {
                "url": radicale_server.base_url,
                "calendar": calendar_url.rstrip("/").rsplit("/", 1)[1],
            },
            "missing": {"url": radicale_server.base_url, "calendar": "no-such-calendar"},
            "badpw": {
                "url": radicale_server.base_url,
                "calendar_url": calendar_url,
                "password_env": "NOPE_UNSET",
            },
        },
    )
    result = run_cli("config", "check", "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {
        line.split("│")[1].strip(): line
        for line in result.stdout.splitlines()
        if line.count("│") > 3
    }
    assert "ok" in lines["good"] and "yes" in lines["good"]  # Radicale has sync tokens
    assert "ok" in lines["discovered"]
    # A calendar that does not exist yet is no failure: the first sync creates it.
    assert "FAILED" not in lines["missing"] and "not there yet" in result.stdout
    assert "FAILED" in lines["badpw"]
