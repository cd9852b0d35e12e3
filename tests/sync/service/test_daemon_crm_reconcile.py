"""The daemon's scheduled reconciliation: a SuperOffice series reaches the calendar and a
calendar user's rename reaches SuperOffice, with no import and no command but the daemon.

The stand-in CRM runs in the test process, the daemon as a real process (conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.crm.superoffice import documents
from sync.testing.superoffice.server import SuperOfficeStandIn
from tests.servers import RunningServer
from tests.sync.service.conftest import (
    DaemonProcess,
    alice_config,
    client_retitles,
    run_cli,
    start_ready,
    wait_for,
    wait_for_title,
)

pytestmark = pytest.mark.server


def test_the_daemon_reconciles_the_crm_on_its_schedule_both_ways(
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
) -> None:
    with SuperOfficeStandIn() as crm:
        crm.add_basic_user("sync", "secret", associate_id=5)
        first = crm.create(
            {
                "Title": "Weekly status",
                "StartDate": "2026-03-02T09:00:00",
                "EndDate": "2026-03-02T10:00:00",
                "Recurrence": {
                    "IsRecurrence": True,
                    "Pattern": "Weekly",
                    "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
                    "RecurrenceEndType": "Counter",
                    "RecurrenceCounter": 3,
                },
            },
            associate_id=5,
        )
        made = alice_config(
            tmp_path, radicale_server, http_port=http_port, prefix="crm", owners=["5"]
        )
        with made.path.open("a") as config:
            config.write(
                "\n[accounts.alice.crm]\n"
                f'url = "{crm.base_url}"\n'
                'username = "sync"\npassword_env = "SO_PASSWORD"\nassociates = [5]\n'
            )
        start_ready(
            daemons,
            made.path,
            tmp_path / "daemon.log",
            http_port=http_port,
            env={"SO_PASSWORD": "secret"},
        )
        followup_id = documents.followup_id_for(
            0, first.rule_id, documents.tenant_key(crm.base_url, None)
        )
        wait_for_title(
            radicale_server, made.calendar_url, followup_id, "Weekly status", 30, "the CRM series"
        )
        client_retitles(radicale_server, made.calendar_url, followup_id, "Weekly status (moved)")
        wait_for(
            lambda: (
                {row.title for row in crm.tenant.series_rows(first.rule_id)}
                == {"Weekly status (moved)"}
            ),
            30,
            "the rename in the CRM",
        )
        assert crm.violations == []


def test_a_registered_webhook_brings_a_crm_edit_to_the_calendar_within_seconds(
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
) -> None:
    with SuperOfficeStandIn() as crm:
        crm.add_basic_user("sync", "secret", associate_id=5)
        first = crm.create(
            {
                "Title": "Kick-off",
                "StartDate": "2026-03-02T09:00:00",
                "EndDate": "2026-03-02T10:00:00",
            },
            associate_id=5,
        )
        made = alice_config(
            tmp_path,
            radicale_server,
            http_port=http_port,
            prefix="crmhook",
            owners=["5"],
            interval_seconds=3600,  # no scheduled pass during the test: only the webhook
        )
        with made.path.open("a") as config:
            config.write(
                "\n[accounts.alice.crm]\n"
                f'url = "{crm.base_url}"\n'
                'username = "sync"\npassword_env = "SO_PASSWORD"\nassociates = [5]\n'
                'webhook_secret_env = "SO_HOOK_SECRET"\n'
            )
        env = {"SO_PASSWORD": "secret", "SO_HOOK_SECRET": "hook-secret"}
        start_ready(daemons, made.path, tmp_path / "daemon.log", http_port=http_port, env=env)
        followup_id = documents.followup_id_for(
            first.appointment_id, 0, documents.tenant_key(crm.base_url, None)
        )
        wait_for_title(radicale_server, made.calendar_url, followup_id, "Kick-off", 30, "start")

        registered = run_cli(
            "crm", "webhook", "register", "--config", str(made.path),
            "--daemon-url", f"http://127.0.0.1:{http_port}", env=env,
        )  # fmt: skip
        assert registered.returncode == 0, registered.stderr
        (hook,) = crm.webhooks.hooks.values()
        assert hook.events == ["activity.created", "activity.changed", "activity.deleted"]

        crm.edit_behind(first.appointment_id, title="Kick-off (moved to Friday)")
        wait_for_title(
            radicale_server,
            made.calendar_url,
            followup_id,
            "Kick-off (moved to Friday)",
            15,
            "the webhook's pass",
        )
        assert crm.violations == []
