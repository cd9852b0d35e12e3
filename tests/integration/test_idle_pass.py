# ruff: noqa: F811  (pytest fixtures imported from test_sync are parameters here)
"""An idle pass that reads no row, and every change that must still wake it up.

Once a pass has found nothing to do, the next one with the same change counter
(sync.state.db.ChangeCounter), the same account settings and a server listing no change
reads neither the follow-ups nor the sync records: its own time stops growing with the
number of series. These tests show it reads no such row, and that a CRM write by
another process, a settings change and a client edit are each still synced.
"""

from __future__ import annotations

import pytest

from mappings.documents import load_followup
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.capabilities import capabilities_for
from tests.integration import client_edits as ce
from tests.integration.test_sync import (  # noqa: F401  (env and synced are fixtures)
    CALL,
    FOLLOWUPS,
    Env,
    env,
    followup_set,
    synced,
)
from tests.rows_read import rows_read

pytestmark = pytest.mark.server


def settle(env: Env) -> None:
    """Passes until one finds nothing to do (the first after a push may see our writes)."""
    for _ in range(3):
        if not env.sync().plan.actions:
            return
    raise AssertionError("the calendar did not settle")


def _proves_unchanged_in_one_request(kind: str) -> bool:
    """Whether the server can say "nothing changed" without listing what it holds.

    A sync-collection delta that lists only changes (Radicale, Xandikos, Cyrus) or a
    getlastmodified that covers every member can; a delta that repeats unchanged items
    (SOGo, DAViCal) or no sync-collection at all (SabreDAV 1.x) makes the pass compare
    the listed ETags with its records, which is reading them: there an idle pass is as
    before, one listing and no fetch.
    """
    caps = capabilities_for(kind)
    return caps.lastmodified_covers_members or (caps.sync_token and caps.sync_delta_minimal)


def test_an_idle_pass_after_an_idle_pass_reads_no_follow_up_or_sync_record(synced: Env) -> None:
    settle(synced)
    with rows_read(synced.db) as touched:
        report = synced.sync()
    assert report.plan.actions == () and report.fetched == 0
    if _proves_unchanged_in_one_request(synced.server.kind):
        assert touched == set()


def test_a_crm_write_by_another_process_wakes_the_next_pass(synced: Env) -> None:
    settle(synced)
    synced.sync()
    other = Database(synced.db.url)  # its own engine and connections, as another process
    try:
        doc = FollowUpStore(other).get(CALL)
        assert doc is not None
        changed = doc.to_json_dict() | {"title": "Call (renamed elsewhere)"}
        FollowUpStore(other).put(load_followup(changed))
    finally:
        other.close()
    report = synced.sync()
    assert report.applied.done == {"server update": 1}
    assert "Call (renamed elsewhere)" in synced.resource(CALL).text


def test_a_wider_account_filter_takes_effect_without_any_write(synced: Env) -> None:
    known = [str(doc["id"]) for doc in FOLLOWUPS]
    synced.configure(ids=known)
    extra = load_followup(FOLLOWUPS[0] | {"id": "9001", "title": "Outside the filter"})
    synced.store.put(extra)
    settle(synced)
    synced.sync()
    assert "9001" not in {
        ce.uid_of(f.data).split("@")[0].removeprefix("followup-") for f in synced.client.all()
    }

    synced.configure(ids=[])
    report = synced.sync()
    assert report.applied.done == {"server create": 1}
    assert "Outside the filter" in synced.resource("9001").text


def test_a_client_edit_after_idle_passes_is_pulled(synced: Env) -> None:
    settle(synced)
    synced.sync()
    resource = synced.resource(CALL)
    synced.client.replace(resource, ce.edit_series(resource.data, summary="Call (client)"))
    report = synced.sync()
    assert report.applied.done == {"crm update": 1}
    assert synced.followup(CALL).title == "Call (client)"


__all__ = ["followup_set"]
