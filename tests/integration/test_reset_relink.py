"""``reset`` (``POST /v1/accounts/NAME/reset``): forget the links, re-link them by UID.

On Radicale and Xandikos: after a reset the next pass sees follow-ups and calendar
resources with no record between them, as a first pass does. Both sides unchanged, it
must write nothing, create nothing twice and log no conflict (a conflict on a part only
the CRM knows, such as the owner, would be spurious); a client edit waiting on the
server is the one conflict, for the part the client changed. Before the fix, an
occurrence the CRM spelled out in full, and the calendar's copy as the difference to its
series, was a conflict too.
"""

from __future__ import annotations

import pytest

from sync.api import controls
from tests.integration import client_edits as ce
from tests.integration import test_sync
from tests.integration.test_sync import CALL, STANDUP, TASK, Env

pytestmark = pytest.mark.server

env = test_sync.env
synced = test_sync.synced


#: Servers that schedule on their own: SOGo rewrites ORGANIZER's CN to the principal's display
#: name and an attendee's PARTSTAT to NEEDS-ACTION. After a reset there is no base to tell
#: that from a client's edit, so those two parts are logged as conflicts, the CRM's values kept.
REWRITES_SCHEDULING = {"sogo"}


def reset(env: Env) -> None:
    controls.request_reset(env.db, env.account.name)
    assert controls.take_reset(env.db, env.account.name)


def test_reset_with_nothing_changed_relinks_without_a_write_or_a_conflict(synced: Env) -> None:
    # Follow-ups with the CRM's own fields: an owner, a completed task, participants.
    synced.edit_in_crm(CALL, owner="alice", location="Nordic Freight, Oslo")
    synced.edit_in_crm(TASK, owner="alice", status="completed")
    synced.edit_in_crm(
        STANDUP,
        owner="bob",
        organizer={"name": "Alice", "email": "alice@example.com"},
        participants=[{"name": "Bob", "email": "bob@example.com", "status": "accepted"}],
    )
    synced.sync()
    uids = synced.uids_on_server()
    followups = {f.id: f for f in synced.store.all()}

    reset(synced)
    report = synced.sync(full=True)

    kinds = {(a.kind, a.side) for a in report.plan.actions}
    if synced.server.kind in REWRITES_SCHEDULING:
        assert kinds <= {("RecordState", "state"), ("Merge", "both")}
        assert sorted((c.followup_id, c.part, c.winner) for c in synced.conflicts()) == [
            (STANDUP, "organizer", "crm"),
            (STANDUP, "participants", "crm"),
        ]
    else:
        assert kinds == {("RecordState", "state")}
        assert len(report.plan.actions) == len(uids)
        assert synced.conflicts() == []
    assert synced.uids_on_server() == uids
    assert {f.id: f for f in synced.store.all()} == followups
    assert synced.sync().plan.actions == ()  # linked again: the next pass is idle


def test_reset_with_a_client_edit_waiting_logs_that_one_conflict(synced: Env) -> None:
    synced.edit_in_crm(CALL, owner="alice")
    synced.sync()
    resource = synced.resource(CALL)
    synced.client.replace(resource, ce.edit_series(resource.data, summary="Call (client)"))
    uids = synced.uids_on_server()

    reset(synced)
    synced.sync(full=True)

    assert [(c.followup_id, c.part, c.winner) for c in synced.conflicts()] == [
        (CALL, "title", "crm")
    ]
    assert synced.uids_on_server() == uids
    assert synced.followup(CALL).owner == "alice"
    assert synced.sync().plan.actions == ()
