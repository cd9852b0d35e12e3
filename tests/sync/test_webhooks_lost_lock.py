"""A webhook sender that loses its cluster lock stops before its next POST.

On PostgreSQL the lock is a session advisory lock on its own connection; once that
connection breaks another daemon may take the subscription, and two senders would race
each other's order. The sender asks ``still_held`` before each POST, and the position it
stored is where the next holder starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync import webhooks
from sync.config import WebhookSettings
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.state.locks import Held
from tests.sync.test_webhooks import SECRET, Receiver, doc, receiver  # noqa: F401


class _HeldFor:
    """Held for ``checks`` calls of ``still_held``, then lost."""

    def __init__(self, checks: int) -> None:
        self.checks = checks

    def still_held(self) -> bool:
        self.checks -= 1
        return self.checks >= 0


class LosingLock:
    def __init__(self, checks: int) -> None:
        self.checks = checks

    @contextlib.contextmanager
    def hold(self, account: str) -> Iterator[Held | None]:
        yield _HeldFor(self.checks)

    def close(self) -> None:
        pass


def test_a_sender_whose_lock_broke_stops_and_the_next_one_resumes(
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UNIT_WEBHOOK_SECRET", SECRET)
    receiver.status = 204
    db = Database.open(str(tmp_path / "lost.sqlite"))
    configured = {"crm": WebhookSettings(url=receiver.url, secret_env="UNIT_WEBHOOK_SECRET")}
    webhooks.sync_config(db, configured)
    store = FollowUpStore(db)
    for n in range(4):
        store.put(doc(f"l{n}", "x"))

    losing = webhooks.Deliverer(db, configured, cluster_lock=LosingLock(checks=2))
    assert losing.run_once().sent == 2
    assert [b["delivery_id"] for b in receiver.bodies] == ["crm:1", "crm:2"]

    taking_over = webhooks.Deliverer(db, configured)
    assert taking_over.run_once().sent == 2
    assert [b["delivery_id"] for b in receiver.bodies] == ["crm:1", "crm:2", "crm:3", "crm:4"]
    losing.close()
    taking_over.close()
    db.close()
