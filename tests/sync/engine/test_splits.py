"""Which new series is the tail of a follow-up cut short in a calendar (``sync.engine.splits``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.engine.splits import lost_dates, parent_uids

UID = "followup-2002@followup-sync"


def standup(**recurrence: Any) -> FollowUp:
    rule: dict[str, Any] = {
        "Pattern": "Daily",
        "DayPattern": {"Pattern": "EveryWorkday", "Cycle": 1},
        "RecurrenceEndType": "Counter",
        "RecurrenceCounter": 10,
    }
    rule.update(recurrence)
    return load_followup(
        {
            "id": "2002",
            "start": "2026-01-05T09:00:00",
            "end": "2026-01-05T09:15:00",
            "timezone": "Europe/Oslo",
            "recurrence": rule,
        }
    )


def resource(*lines: str) -> bytes:
    body = "".join(f"{line}\r\n" for line in lines)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        "UID:tail@example.com\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260112T080000Z\r\n"
        f"{body}END:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def test_google_tail_uid_names_its_parent() -> None:
    assert parent_uids(f"{UID}_R20260112T090000", resource()) == [UID]
    assert parent_uids(f"{UID}_R20260112", resource()) == [UID]
    assert parent_uids("abc_Rotation@example.com", resource()) == []


def test_related_to_names_the_parent_unless_it_names_a_child() -> None:
    assert parent_uids("tail@example.com", resource(f"RELATED-TO:{UID}")) == [UID]
    assert parent_uids("tail@example.com", resource(f"RELATED-TO;RELTYPE=SIBLING:{UID}")) == [UID]
    assert parent_uids("tail@example.com", resource(f"RELATED-TO;RELTYPE=CHILD:{UID}")) == []


def test_a_series_ended_early_lost_its_last_dates() -> None:
    cut = standup(RecurrenceEndType="EndDate", EndDate="2026-01-09", RecurrenceCounter=0)
    lost = lost_dates(standup(), cut)
    assert lost == [dt.date(2026, 1, d) for d in (12, 13, 14, 15, 16)]


def test_an_open_series_ended_early_lost_its_dates_from_the_cut() -> None:
    open_ended = standup(RecurrenceEndType="Unknown", RecurrenceCounter=0)
    cut = standup(RecurrenceEndType="EndDate", EndDate="2026-01-09", RecurrenceCounter=0)
    assert lost_dates(open_ended, cut)[0] == dt.date(2026, 1, 12)


def test_a_longer_moved_or_retimed_series_is_not_a_cut() -> None:
    assert lost_dates(standup(), standup(RecurrenceCounter=12)) == []
    moved = load_followup(
        {**standup().to_json_dict(), "start": "2026-01-05T10:00:00", "end": "2026-01-05T10:15:00"}
    )
    assert lost_dates(standup(), moved) == []
    assert lost_dates(standup(), standup()) == []
