"""The literal reading (proved structurally, nothing expanded) gives what the proof by
expansion gives, and it is what reads the calendars the mapper itself writes."""

from __future__ import annotations

import pytest

from mappings.from_ical import parse_calendar, represent
from mappings.from_ical.parse import ParseResult
from sync.testing.mapper_mix import make_documents, ours


def _parse_all(blobs: list[bytes]) -> list[ParseResult]:
    return [parse_calendar(blob) for blob in blobs]


@pytest.fixture(scope="module")
def realistic() -> list[bytes]:
    """The benchmark's mix: weekly most, daily, monthly, yearly, custom; 10 % with edits."""
    blobs = ours(make_documents(300, 21))
    return [b for b in blobs if b"BEGIN:V" in b.replace(b"BEGIN:VCALENDAR", b"")]


def test_same_follow_ups_as_the_proof_by_expansion(
    realistic: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    literal = _parse_all(realistic)
    monkeypatch.setattr(represent, "literal_reading", lambda series, known: None)
    expanded = _parse_all(realistic)
    assert literal == expanded


def test_the_mappers_own_output_is_read_literally(
    realistic: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    found: list[bool] = []
    reading = represent.literal_reading

    def counted(series: object, known: object) -> object:
        result = reading(series, known)  # type: ignore[arg-type]
        found.append(result is not None)
        return result

    monkeypatch.setattr(represent, "literal_reading", counted)
    _parse_all(realistic)
    assert len(found) >= len(realistic)
    assert sum(found) >= 0.99 * len(found)
