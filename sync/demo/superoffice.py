"""``python -m sync.demo.superoffice`` (``make demo-superoffice``): the loop with a CRM in it.

The plain demo (``sync.demo.run``) starts from a JSON import; this one starts from SuperOffice
itself, played by the stand-in (``python -m sync.testing.superoffice``, run as a child process:
docs/superoffice-standin.md), with the same embedded Radicale. It

1. books a weekly series in the CRM and reconciles: the series enters the follow-up store;
2. syncs it to the calendar;
3. moves one meeting the way Thunderbird does (a RECURRENCE-ID override, plain HTTP);
4. syncs and reconciles: SuperOffice has that one row moved (``UpdateMode=OnlyThis``);
5. renames one meeting in the CRM (no webhook needed) and brings it to the calendar;
6. shows that nothing more happens: no loop on either side.

It needs a checkout with the test extra (the stand-in checks its traffic with openapi-core).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from sync.config import Account
from sync.config.crm import CrmSettings
from sync.crm.connect import connector_for
from sync.crm.reconcile import ReconcileReport, reconcile
from sync.crm.superoffice import documents
from sync.demo.run import show_report
from sync.run import run_pass
from sync.state.db import Database, SyncItem

try:
    import niquests

    from sync.demo.embedded import EmbeddedRadicale
except ImportError as missing:
    raise SystemExit(
        f"the demo needs {missing.name!r}: pip install 'followup-sync[demo]'"
    ) from None

SERIES: dict[str, Any] = {
    "Title": "Weekly status with Nordic Freight",
    "StartDate": "2026-03-02T09:00:00",
    "EndDate": "2026-03-02T10:00:00",
    "Recurrence": {
        "IsRecurrence": True,
        "Pattern": "Weekly",
        "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
        "RecurrenceEndType": "Counter",
        "RecurrenceCounter": 5,
    },
}
MOVED_FROM = dt.datetime(2026, 3, 16, 9)
MOVED_TO = dt.datetime(2026, 3, 17, 13)


def main() -> int:
    console = Console()
    run_dir = Path(".demo") / ("crm-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    run_dir.mkdir(parents=True, exist_ok=True)
    standin = subprocess.Popen(
        [sys.executable, "-m", "sync.testing.superoffice", "--for", "600"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert standin.stdout is not None
        crm_url = standin.stdout.readline().split()[3]
        return _loop(console, run_dir, crm_url)
    finally:
        standin.terminate()
        standin.wait(10)


def _loop(console: Console, run_dir: Path, crm_url: str) -> int:
    os.environ["FOLLOWUP_SYNC_DEMO_PASSWORD"] = "demo"
    os.environ["FOLLOWUP_SYNC_DEMO_CRM_PASSWORD"] = "secret"
    crm = httpx.Client(base_url=crm_url, auth=("sync", "secret"), timeout=10)
    with EmbeddedRadicale(run_dir / "radicale", username="demo", password="demo") as server:
        account = Account(
            name="demo",
            url=server.url,
            username="demo",
            password_env="FOLLOWUP_SYNC_DEMO_PASSWORD",
            calendar="followups",
            server_kind="radicale",
            owners=["5"],
            crm=CrmSettings(
                url=crm_url,
                username="sync",
                password_env="FOLLOWUP_SYNC_DEMO_CRM_PASSWORD",
                associates=[5],
            ),
        )
        db = Database.open(str(run_dir / "state.sqlite"))

        console.rule(f"[bold]1. A weekly series booked in SuperOffice (stand-in at {crm_url})")
        booked = crm.post("/api/v1/Appointment", json=SERIES).json()
        rule_id = booked["Recurrence"]["RecurrenceId"]
        followup_id = documents.followup_id_for(0, rule_id, documents.tenant_key(crm_url, None))
        show_reconcile(console, account, db)

        console.rule(f"[bold]2. Sync to the CalDAV server at {server.url}")
        show_report(console, run_pass(account, db))

        console.rule("[bold]3. A calendar user moves one meeting in Thunderbird")
        client_moves(server.url, db, followup_id, console)

        console.rule("[bold]4. Sync, then reconcile: SuperOffice moves that row only")
        show_report(console, run_pass(account, db))
        show_reconcile(console, account, db)
        show_rows(console, crm, rule_id)

        console.rule("[bold]5. Someone renames one meeting in SuperOffice")
        rows = series_rows(crm, rule_id)
        entity = crm.get(f"/api/v1/Appointment/{rows[1]['AppointmentId']}").json()
        entity["Title"] = "Status with the auditors"
        crm.post(
            "/api/v1/Agents/Appointment/Save",
            json={"AppointmentEntity": entity, "UpdateMode": "OnlyThis"},
        )
        show_reconcile(console, account, db)
        show_report(console, run_pass(account, db))

        console.rule("[bold]6. Nothing changed: nothing happens (no loop)")
        idle = show_reconcile(console, account, db)
        show_report(console, run_pass(account, db))
        db.close()
    crm.close()
    console.print(f"\nState kept in {run_dir}/. See docs/how-to/superoffice.md.")
    moved = any(row["StartDate"] == MOVED_TO.isoformat() for row in rows)
    return 0 if moved and not (idle.imported or idle.written) else 1


def show_reconcile(console: Console, account: Account, db: Database) -> ReconcileReport:
    connector = connector_for(account)
    try:
        report = reconcile(account, db, connector)
    finally:
        connector.close()
    console.print(
        f"reconcile: {len(report.imported)} imported from the CRM, "
        f"{len(report.written)} written back, {len(report.conflicts)} conflict(s)"
        + (f", errors: {report.errors}" if report.errors else "")
    )
    return report


def series_rows(crm: httpx.Client, rule_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = crm.post(
        "/api/v1/Agents/Appointment/GetAppointmentRecords",
        json={"MotherId": 0, "RecurrenceRuleId": rule_id},
    ).json()
    return rows


def show_rows(console: Console, crm: httpx.Client, rule_id: int) -> None:
    console.print("The series' rows in SuperOffice:")
    for row in series_rows(crm, rule_id):
        mark = (
            "  [bold green]<- moved in the calendar[/bold green]"
            if (row["StartDate"] == MOVED_TO.isoformat())
            else ""
        )
        console.print(f"  row {row['AppointmentId']}: {row['StartDate']}  {row['Title']}{mark}")


def client_moves(server_url: str, db: Database, followup_id: str, console: Console) -> None:
    """PUT what Thunderbird writes when one occurrence is dragged: a RECURRENCE-ID override."""
    with db.session() as session:
        item = session.get(SyncItem, ("demo", followup_id))
        assert item is not None
        href = item.href
    url = server_url.rstrip("/") + href
    current = niquests.get(url, auth=("demo", "demo"))
    text = (current.text or "").replace("\r\n", "\n")
    uid = next(line[4:].strip() for line in text.splitlines() if line.startswith("UID:"))
    override = (
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:20260301T120000Z\n"
        f"RECURRENCE-ID:{MOVED_FROM:%Y%m%dT%H%M%S}Z\n"
        f"DTSTART:{MOVED_TO:%Y%m%dT%H%M%S}Z\n"
        f"DTEND:{MOVED_TO + dt.timedelta(hours=1):%Y%m%dT%H%M%S}Z\n"
        "SUMMARY:Weekly status with Nordic Freight\nSEQUENCE:1\nEND:VEVENT\n"
    )
    body = text.replace("END:VCALENDAR", override + "END:VCALENDAR").replace("\n", "\r\n")
    response = niquests.put(
        url,
        data=body.encode(),
        headers={"If-Match": current.headers.get("ETag") or "", "Content-Type": "text/calendar"},
        auth=("demo", "demo"),
    )
    console.print(
        f"PUT {href} (If-Match) -> {response.status_code}: the meeting of "
        f"{MOVED_FROM:%a %d.%m %H:%M} now starts {MOVED_TO:%a %d.%m %H:%M} (UTC)"
    )


if __name__ == "__main__":
    sys.exit(main())
