"""``GET``/``PUT /v1/accounts/{name}/direction``: one-way mode set over the API.

The choice is a row in the shared database that the next pass reads
(``sync.engine.direction.OneWay``); setting it asks for that pass at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sync.api import controls
from sync.api.app import create_app
from sync.config import Account, Settings
from sync.engine.direction import OneWay
from sync.state.db import Database

TOKEN = "direction-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Database, Settings]]:
    db = Database.open(str(tmp_path / "state.sqlite"))
    settings = Settings(
        accounts={
            "alice": Account(name="alice", url="http://127.0.0.1:9/"),
            "bob": Account(name="bob", url="http://127.0.0.1:9/", direction="to-crm"),
        }
    )
    with TestClient(create_app(db, token=TOKEN, settings=settings), headers=AUTH) as client:
        yield client, db, settings
    db.close()


def test_direction_comes_from_the_config_until_set_over_the_api(
    served: tuple[TestClient, Database, Settings],
) -> None:
    client, db, settings = served
    assert client.get("/v1/accounts/alice/direction").json() == {
        "account": "alice",
        "direction": "both",
        "configured": "both",
        "source": "config",
    }
    assert client.get("/v1/accounts/bob/direction").json()["direction"] == "to-crm"

    changed = client.put("/v1/accounts/alice/direction", json={"direction": "to-calendar"})
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "account": "alice",
        "direction": "to-calendar",
        "configured": "both",
        "source": "api",
    }
    # What the next pass of the account uses, and that pass is asked for.
    assert OneWay(settings.accounts["alice"], db).direction == "to-calendar"
    assert OneWay(settings.accounts["bob"], db).direction == "to-crm"
    assert controls.take_requests(db, {"alice", "bob"}) == ["alice"]

    back = client.put("/v1/accounts/alice/direction", json={"direction": None})
    assert back.json()["source"] == "config"
    assert OneWay(settings.accounts["alice"], db).direction == "both"


def test_an_unknown_account_or_direction_is_refused(
    served: tuple[TestClient, Database, Settings],
) -> None:
    client, _, _ = served
    assert client.get("/v1/accounts/nobody/direction").status_code == 404
    assert (
        client.put("/v1/accounts/nobody/direction", json={"direction": "to-crm"}).status_code == 404
    )
    assert (
        client.put("/v1/accounts/alice/direction", json={"direction": "sideways"}).status_code
        == 422
    )
    assert client.put("/v1/accounts/alice/direction", json={}).status_code == 422
    assert client.get("/v1/accounts/alice/direction").json()["direction"] == "both"
