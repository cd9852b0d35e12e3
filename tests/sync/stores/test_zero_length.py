"""sync.stores.zero_length: zero-length events one second long on the way out, and back."""

from __future__ import annotations

import datetime as dt

from icalendar import Calendar

from sync.stores.zero_length import MARK, lengthen, shorten


def resource(*events: str) -> bytes:
    body = "".join(
        f"BEGIN:VEVENT\r\nUID:u\r\nDTSTAMP:20260101T000000Z\r\n{e}SUMMARY:x\r\nEND:VEVENT\r\n"
        for e in events
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n{body}END:VCALENDAR\r\n".encode()


def spans(data: bytes) -> list[dt.timedelta | None]:
    out: list[dt.timedelta | None] = []
    for event in Calendar.from_ical(data).walk("VEVENT"):
        start = event["DTSTART"].dt
        if "DTEND" in event:
            out.append(event["DTEND"].dt - start)
        elif "DURATION" in event:
            out.append(event["DURATION"].dt)
        else:
            out.append(None)
    return out


ZERO = "DTSTART;TZID=Europe/Oslo:20260203T110000\r\nDTEND;TZID=Europe/Oslo:20260203T110000\r\n"
HOUR = "DTSTART:20260203T100000Z\r\nDTEND:20260203T110000Z\r\n"


def test_every_zero_length_timed_event_goes_out_one_second_long_and_comes_back() -> None:
    override = "RECURRENCE-ID:20260210T100000Z\r\nDTSTART:20260210T120000Z\r\n"  # no end
    data = resource(ZERO, HOUR, "DTSTART:20260203T100000Z\r\nDURATION:PT0S\r\n", override)

    out = lengthen(data)
    assert (
        spans(out)
        == [dt.timedelta(seconds=1), dt.timedelta(hours=1)] + [dt.timedelta(seconds=1)] * 2
    )
    assert out.count(MARK.encode()) == 3

    back = shorten(out)
    assert spans(back) == [dt.timedelta(0), dt.timedelta(hours=1)] + [dt.timedelta(0)] * 2
    assert MARK.encode() not in back
    first = Calendar.from_ical(back).walk("VEVENT")[0]
    assert first["DTEND"].to_ical() == first["DTSTART"].to_ical()
    assert first["DTEND"].params["TZID"] == "Europe/Oslo"


def test_events_with_a_length_and_all_day_events_are_left_as_they_are() -> None:
    data = resource(HOUR, "DTSTART;VALUE=DATE:20260203\r\n")
    assert lengthen(data) == data
    assert shorten(data) == data


def test_an_end_a_client_set_on_a_marked_event_is_kept() -> None:
    out = lengthen(resource(ZERO)).replace(b"DURATION:PT1S", b"DURATION:PT30M")
    assert spans(shorten(out)) == [dt.timedelta(minutes=30)]
    assert MARK.encode() not in shorten(out)
