"""When a collection's getlastmodified may stand in for a sync REPORT (Radicale).

The value has whole seconds, so it proves "nothing changed" only if it was read in a
later second than itself; the integration side is in tests/integration/test_interop.py.
"""

from __future__ import annotations

import datetime as dt

from sync.engine.listing import _trusted
from sync.stores.caldav import LastModified
from sync.stores.caldav.listing import http_date

NOON = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)


def test_a_value_read_within_two_seconds_of_itself_is_not_kept() -> None:
    assert _trusted(LastModified(NOON, NOON)) is None
    assert _trusted(LastModified(NOON, NOON + dt.timedelta(seconds=1, milliseconds=999))) is None


def test_a_value_read_two_seconds_or_more_after_itself_is_kept() -> None:
    assert _trusted(LastModified(NOON, NOON + dt.timedelta(seconds=2))) == NOON
    assert _trusted(LastModified(NOON, NOON + dt.timedelta(hours=5))) == NOON


def test_nothing_read_keeps_nothing() -> None:
    assert _trusted(None) is None


def test_http_dates_are_read_as_aware_datetimes_and_garbage_as_none() -> None:
    assert http_date("Tue, 24 Nov 2026 12:00:00 GMT") == NOON
    assert http_date("Tuesday, 24-Nov-26 12:00:00 GMT") == NOON  # RFC 850 form
    assert http_date("yesterday") is None
    assert http_date("") is None
    assert http_date(None) is None
