"""The public face of ``mappings.from_ical``: a calendar, or one UID's components, in.

``parse_calendar`` groups a whole calendar's VEVENTs/VTODOs by UID; ``parse_components``
reads the components of one UID as a CalDAV resource holds them. Either way one bad UID
never hides the others: it becomes a ``MappingError`` naming its UID (``_safely``).
"""

from __future__ import annotations

import warnings as warnings_module
from collections.abc import Callable
from dataclasses import dataclass, field

from icalendar import Calendar, Component, Todo
from icalendar.cal.component_factory import ComponentFactory

from mappings.errors import MappingError
from mappings.from_ical.components import check_broken
from mappings.from_ical.participants import with_participants
from mappings.from_ical.represent import represent
from mappings.from_ical.series import (
    read_series,
    reconcile_masters,
    report_ignored,
    split_master,
    synthetic_master,
)
from mappings.from_ical.zones import check_zone_name
from mappings.model import FollowUp
from mappings.uids import describe_item, give_uids


@dataclass(frozen=True)
class ParseResult:
    """What ``parse_calendar`` found: follow-ups, one-line warnings, and per-UID errors."""

    followups: list[FollowUp]
    warnings: list[str]
    errors: list[MappingError] = field(default_factory=list)


class _TolerantTodo(Todo):
    """icalendar raises for a broken property in a VTODO (but not in a VEVENT); keep it
    as ``vBroken`` instead so one bad task does not hide the rest of the calendar."""

    ignore_exceptions = True


class _TolerantCalendar(Calendar):
    _components_factory = ComponentFactory()


_TolerantCalendar._components_factory.add_component_class(_TolerantTodo)


def parse_calendar(data: bytes | str, *, default_timezone: str = "UTC") -> ParseResult:
    """Every follow-up in an iCalendar text; bad UIDs land in ``errors``, not in a traceback."""
    check_zone_name(default_timezone, item=None, field="default_timezone")
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if "BEGIN:VCALENDAR" not in text.upper():
        raise MappingError("not iCalendar data (no BEGIN:VCALENDAR)")
    try:
        with warnings_module.catch_warnings():
            warnings_module.simplefilter("ignore")
            parsed = _TolerantCalendar.from_ical(text, multiple=True)
    except Exception as exc:  # the parser meets untrusted bytes: any failure means "not iCalendar"
        raise MappingError(f"not valid iCalendar: {exc}") from None
    groups: dict[str, list[Component]] = {}
    zones: dict[str, str | None] = {}
    found = False
    errors: list[MappingError] = []
    warnings: list[str] = []
    calendars = [cal for cal in parsed if cal.name == "VCALENDAR"]
    items = [c for cal in calendars for c in cal.subcomponents if c.name in ("VEVENT", "VTODO")]
    for component, derived in give_uids(items):
        warnings.append(
            f"{derived}: the {describe_item(component)} has no UID; "
            "gave it one derived from its content"
        )
    for cal in calendars:
        x_wr = cal.get("X-WR-TIMEZONE")
        for component in cal.subcomponents:
            if component.name not in ("VEVENT", "VTODO"):
                continue
            found = True
            uid = str(component.get("UID", "")).strip()
            groups.setdefault(uid, []).append(component)
            zones.setdefault(uid, str(x_wr).strip() if x_wr is not None else None)
    if not found:
        raise MappingError("the calendar holds no VEVENT or VTODO")
    followups: list[FollowUp] = []
    for uid, components in groups.items():
        try:
            followups.extend(
                _safely(
                    uid,
                    lambda components=components, uid=uid: _parse_group(  # type: ignore[misc]
                        components, default_timezone, zones[uid], None, warnings
                    ),
                )
            )
        except MappingError as exc:
            errors.append(exc)
        except Exception as exc:  # a shape we did not foresee: report it, never a traceback
            errors.append(MappingError(f"cannot be read: {type(exc).__name__}: {exc}", item=uid))
    return ParseResult(followups, warnings, errors)


def parse_components(
    components: list[Component],
    *,
    default_timezone: str = "UTC",
    known: FollowUp | None = None,
    calendar_timezone: str | None = None,
    warnings: list[str] | None = None,
) -> list[FollowUp]:
    """The follow-up(s) of ONE UID: master plus overrides, as a CalDAV resource holds them.

    ``known`` is the follow-up last synced for this UID: its id, kind and pattern form
    are kept when the new rule still means the same, so a round trip does not churn the
    document. ``calendar_timezone`` is the calendar's X-WR-TIMEZONE, if any; repairs and
    ignored properties are appended to ``warnings`` when a list is given.
    """
    check_zone_name(default_timezone, item=None, field="default_timezone")
    items = [c for c in components if c.name in ("VEVENT", "VTODO")]
    if not items:
        raise MappingError("no VEVENT or VTODO among the components")
    uid = str(items[0].get("UID", "")).strip() or None
    return _safely(
        uid,
        lambda: _parse_group(
            items,
            default_timezone,
            calendar_timezone,
            known,
            warnings if warnings is not None else [],
        ),
    )


def _safely(uid: str | None, read_group: Callable[[], list[FollowUp]]) -> list[FollowUp]:
    """A component broken in a way no check foresaw still fails as a MappingError naming its
    UID, never as a crash of the whole run (found by tests/reliability/test_fuzz.py)."""
    try:
        return read_group()
    except MappingError as exc:
        if exc.item is None:
            exc.item = uid
        raise
    except (
        AttributeError,
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        OverflowError,
        ArithmeticError,
    ) as exc:
        raise MappingError(f"cannot be read: {type(exc).__name__}: {exc}", item=uid) from None


def _parse_group(
    components: list[Component],
    default_timezone: str,
    calendar_timezone: str | None,
    known: FollowUp | None,
    warnings: list[str],
) -> list[FollowUp]:
    uid = str(components[0].get("UID", "")).strip()
    for component in components:
        check_broken(component, uid)
    master, other_masters, overrides = split_master(components, uid, warnings)
    synthetic = master is None
    if master is None:
        master = synthetic_master(overrides, uid, warnings)
    series = read_series(
        master, overrides, components, uid, default_timezone, calendar_timezone, known
    )
    if other_masters:
        series = reconcile_masters(series, other_masters, warnings)
    report_ignored(master, uid, warnings)
    return with_participants(
        represent(series, known, warnings, synthetic), master, series.overrides, series, known
    )
