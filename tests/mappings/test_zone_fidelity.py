"""``mappings.zone_fidelity``: which resources a server's rewritten VTIMEZONE would move.

The stored definition below is what Radicale 3.9 keeps for every resource of a
whole-calendar upload in Europe/Oslo (vobject writes it anew): the autumn change at
04:00 in the summer offset, an hour late, and a fixed +01:00 before 2024.
"""

from __future__ import annotations

import datetime as dt

from mappings.model import FollowUp
from mappings.resource import render
from mappings.zone_fidelity import misplacing_zones
from sync.testing.followups import weekly_series

RADICALE_OSLO = (
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Oslo\r\n"
    "BEGIN:STANDARD\r\nDTSTART:20000101T000000\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=1;UNTIL=20231231T230000Z\r\nTZNAME:CET\r\n"
    "TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n"
    "BEGIN:STANDARD\r\nDTSTART:20251026T040000\r\n"
    "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nTZNAME:CET\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n"
    "BEGIN:DAYLIGHT\r\nDTSTART:20250330T020000\r\n"
    "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nTZNAME:CEST\r\n"
    "TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
)
STAMP = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def rendered(followup: FollowUp) -> bytes:
    data = render(followup, stamp=STAMP)
    assert data is not None
    return data


def with_zone(data: bytes, zone: str) -> bytes:
    """``data`` with its VTIMEZONE replaced by ``zone`` (as the server stores it)."""
    text = data.decode()
    start, end = text.index("BEGIN:VTIMEZONE"), text.index("END:VTIMEZONE\r\n") + 15
    return (text[:start] + zone + text[end:]).encode()


def test_a_series_in_the_hour_the_rewritten_zone_gets_wrong_is_found() -> None:
    ours = rendered(weekly_series("autumn", "2026-10-04T03:30:00", "Sunday", 6))
    assert misplacing_zones(ours, with_zone(ours, RADICALE_OSLO)) == ["Europe/Oslo"]


def test_series_at_other_hours_are_not() -> None:
    # 02:00-02:30 is in the repeated hour, read in summer time by both definitions.
    for start in ("2026-10-04T04:00:00", "2026-10-04T02:00:00", "2026-01-05T10:00:00"):
        ours = rendered(weekly_series("other", start, "Sunday", 6))
        assert misplacing_zones(ours, with_zone(ours, RADICALE_OSLO)) == [], start


def test_years_the_stored_definition_gets_wrong_are_found() -> None:
    ours = rendered(weekly_series("old", "2019-06-03T10:00:00", "Monday", 5))
    assert misplacing_zones(ours, with_zone(ours, RADICALE_OSLO)) == ["Europe/Oslo"]


def test_our_own_definition_and_a_reordered_copy_move_nothing() -> None:
    ours = rendered(weekly_series("autumn", "2026-10-04T03:30:00", "Sunday", 6))
    assert misplacing_zones(ours, ours) == []
    text = ours.decode()
    daylight = text[text.index("BEGIN:DAYLIGHT") : text.index("END:DAYLIGHT\r\n") + 14]
    reordered = text.replace(daylight, "").replace("END:VTIMEZONE", daylight + "END:VTIMEZONE")
    assert reordered != text
    assert misplacing_zones(ours, reordered.encode()) == []


def test_a_zone_the_server_dropped_or_a_rule_with_its_own_hours_counts() -> None:
    ours = rendered(weekly_series("plain", "2026-01-05T10:00:00", "Monday", 5))
    assert misplacing_zones(ours, with_zone(ours, "")) == ["Europe/Oslo"]
    hourly = ours.replace(b"RRULE:FREQ=WEEKLY", b"RRULE:FREQ=WEEKLY;BYHOUR=3,10")
    assert misplacing_zones(hourly, with_zone(hourly, RADICALE_OSLO)) == ["Europe/Oslo"]
