"""The daemon's scheduled reconciliation: a SuperOffice series reaches the calendar and a
calendar user's rename reaches SuperOffice, with no import and no command but the daemon.

The stand-in CRM runs in the test process, the daemon as a real process (conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.testing.superoffice.server import SuperOfficeStandIn
from tests.servers import RunningServer
from tests.sync.service.conftest import (
    DaemonProcess,
    alice_config,
    client_retitles,
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
        followup_id = f"so-r{first.rule_id}"
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
