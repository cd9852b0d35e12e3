"""The RFC 6638 probe without a server: asked once per calendar URL, and quiet only where it runs.

The real servers are in tests/integration/test_server_scheduling.py (DAViCal says yes) and
tests/integration/test_invitations.py (Radicale says no).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sync.config import Account
from sync.invitations import scheduling


class _Principal:
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    def schedule_outbox(self) -> object:
        return object()

    def calendar_user_address_set(self) -> list[str]:
        return self.addresses


class _Calendar:
    """What the probe uses of a DavCalendar: its URL and its principal."""

    def __init__(self, url: str, addresses: list[str] | None = None, fail: bool = False) -> None:
        self.url = url
        self.addresses = addresses or []
        self.fail = fail
        self.asked = 0

    def principal(self) -> _Principal:
        self.asked += 1
        if self.fail:
            logging.getLogger("caldav").error("principal lookup failed")
            raise RuntimeError("no principal")
        return _Principal(self.addresses)


@pytest.fixture(autouse=True)
def fresh_probes() -> Iterator[None]:
    scheduling.forget_probes()
    yield
    scheduling.forget_probes()


def account(mode: str = "auto") -> Account:
    return Account.model_validate(
        {"name": "alice", "url": "https://dav.example/", "calendar": "work", "scheduling": mode}
    )


def test_a_mailto_address_means_the_server_schedules_and_it_is_asked_once_per_url() -> None:
    first = _Calendar("https://dav.example/cal/", ["mailto:alice@example.org"])
    assert scheduling.scheduling_mode(account(), first) == "server"
    # The next pass opens a new calendar at the same URL: no second probe.
    again = _Calendar("https://dav.example/cal/", [])
    assert scheduling.scheduling_mode(account(), again) == "server"
    assert (first.asked, again.asked) == (1, 0)
    # Another URL is asked on its own.
    other = _Calendar("https://other.example/cal/", ["/principals/bob/"])
    assert scheduling.scheduling_mode(account(), other) == "email"
    assert other.asked == 1


def test_a_configured_mode_never_probes() -> None:
    calendar = _Calendar("https://dav.example/cal/", ["mailto:alice@example.org"])
    assert scheduling.scheduling_mode(account("email"), calendar) == "email"
    assert calendar.asked == 0


def test_a_failed_probe_means_email_and_silences_caldav_in_its_own_thread_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    elsewhere = threading.Event()

    class Busy(_Calendar):
        def principal(self) -> Any:
            # Another thread (another account's pass) logs while the probe runs.
            thread = threading.Thread(target=lambda: logging.getLogger("caldav").error("other"))
            thread.start()
            thread.join()
            elsewhere.set()
            return super().principal()

    assert not scheduling.server_schedules(Busy("https://dav.example/cal/", fail=True))
    assert elsewhere.is_set()
    caldav = [r.getMessage() for r in caplog.records if r.name == "caldav"]
    assert caldav == ["other"]
    assert any("scheduling probe of" in r.getMessage() for r in caplog.records)
    # Once the probe is done, caldav logs as usual in this thread too.
    logging.getLogger("caldav").error("after")
    assert [r.getMessage() for r in caplog.records if r.name == "caldav"] == ["other", "after"]
