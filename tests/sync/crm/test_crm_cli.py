"""``followup-sync crm reconcile`` against the SuperOffice stand-in (no calendar server needed).

The config file names the CRM and where its password is; the command imports the CRM's series
into the store, says what it did, and a second run finds nothing new (no loop).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync.cli.main import cli
from sync.crm.superoffice import documents
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.testing.superoffice.server import SuperOfficeStandIn


@pytest.fixture
def crm() -> Iterator[SuperOfficeStandIn]:
    with SuperOfficeStandIn() as standin:
        standin.add_basic_user("sync", "secret", associate_id=5)
        yield standin
        assert standin.violations == []


def test_crm_reconcile_imports_the_crm_series_once(
    crm: SuperOfficeStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm.create(
        {
            "Title": "Quarterly review",
            "StartDate": "2026-03-05T10:00:00",
            "EndDate": "2026-03-05T11:00:00",
            "Recurrence": {
                "IsRecurrence": True,
                "Pattern": "Monthly",
                "MonthPattern": {"Pattern": "DayOfMonth", "Day": 5, "Cycle": 3},
                "RecurrenceEndType": "Counter",
                "RecurrenceCounter": 4,
            },
        },
        associate_id=5,
    )
    crm.create(
        {"Title": "Someone else's", "StartDate": "2026-03-05T10:00:00",
         "EndDate": "2026-03-05T11:00:00"},
        associate_id=9,
    )  # fmt: skip
    monkeypatch.setenv("SO_PASSWORD", "secret")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[accounts.alice]
url = "https://dav.example.invalid/"
[accounts.alice.crm]
kind = "superoffice"
url = "{crm.base_url}"
username = "sync"
password_env = "SO_PASSWORD"
associates = [5]
"""
    )
    database = str(tmp_path / "state.sqlite")
    runner = CliRunner()
    args = ["crm", "reconcile", "--config", str(config), "--database", database, "--json"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["imported"] == [
        documents.followup_id_for(0, 1, documents.tenant_key(crm.base_url, None))
    ]
    second = runner.invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["imported"] == []
    db = Database.open(database)
    try:
        (stored,) = FollowUpStore(db).all()
    finally:
        db.close()
    assert stored.title == "Quarterly review" and stored.owner == "5"
    assert stored.recurrence is not None and stored.recurrence.RecurrenceCounter == 4


def test_crm_reconcile_without_a_crm_table_says_so(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[accounts.alice]\nurl = "https://dav.example.invalid/"\n')
    result = CliRunner().invoke(
        cli, ["crm", "reconcile", "--config", str(config), "--database", str(tmp_path / "s.db")]
    )
    assert result.exit_code == 2
    assert "no account has an [accounts.NAME.crm] table" in result.output
