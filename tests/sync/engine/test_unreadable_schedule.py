"""The back-off schedule of unreadable items (``sync.engine.unreadable``), as documented."""

from __future__ import annotations

import datetime as dt

from sync.engine.unreadable import EVERY_PASS, backed_off, retry_at

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def test_the_first_failures_are_retried_next_pass_then_the_wait_doubles_up_to_a_day() -> None:
    waits = [retry_at(attempts, NOW) for attempts in range(1, 15)]

    assert waits[:EVERY_PASS] == [None] * EVERY_PASS
    minutes = [(w - NOW).total_seconds() / 60 for w in waits[EVERY_PASS:] if w is not None]
    assert minutes == [10, 20, 40, 80, 160, 320, 640, 1280, 1440, 1440, 1440]


def test_an_item_is_skipped_until_its_time_unless_its_etag_moved() -> None:
    later = NOW + dt.timedelta(minutes=10)

    assert backed_off(later, '"1"', '"1"', NOW)
    assert backed_off(later, '"1"', None, NOW)  # still hidden from the listing
    assert not backed_off(later, '"1"', '"2"', NOW)  # a client rewrote it
    assert not backed_off(later, None, '"2"', NOW)  # listed again after it vanished
    assert not backed_off(later, '"1"', '"1"', later)
    assert not backed_off(None, '"1"', '"1"', NOW)
