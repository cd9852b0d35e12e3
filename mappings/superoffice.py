"""SuperOffice's ``RecurrenceInfo``, as its REST API serialises it.

Field names keep SuperOffice's PascalCase so that a payload from the CRM can be
pasted in unchanged. Enum members are accepted as names (``"Weekly"``), as the
numbers the database and CRMScript use (``2``), and ``Weekdays`` additionally as a
.NET flags string (``"Monday, Friday"``), a list of names or the bitmask
(Mon=1 … Sun=64). They are written back as names, like the REST API does.

The numbers are those of ``../shared/reference/superoffice-recurrence.md`` §2.2.
"""

from __future__ import annotations

import datetime as dt
from enum import IntEnum, IntFlag
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)


class RecurrencePattern(IntEnum):
    Unknown = 0
    Daily = 1
    Weekly = 2
    Monthly = 3
    Yearly = 4
    Custom = 5


class RecurrenceEndType(IntEnum):
    Unknown = 0
    EndDate = 1
    Counter = 2


class RecurrenceDailyPattern(IntEnum):
    Unknown = 0
    EveryWorkday = 1
    EveryWeekday = 2
    EveryCyclicDay = 3


class RecurrenceMonthlyPattern(IntEnum):
    Unknown = 0
    DayOfMonth = 4
    WeekdayOfMonth = 5


class RecurrenceYearlyPattern(IntEnum):
    Unknown = 0
    DayOfMonth = 6
    WeekdayOfMonth = 7


class WeekOfMonth(IntEnum):
    Unknown = 0
    First = 1
    Second = 2
    Third = 3
    Fourth = 4
    Last = 5


class Weekday(IntFlag):
    Unknown = 0
    Monday = 1
    Tuesday = 2
    Wednesday = 4
    Thursday = 8
    Friday = 16
    Saturday = 32
    Sunday = 64


#: Weekday flags in Python's ``date.weekday()`` order (Monday = 0).
WEEKDAY_FLAGS: tuple[Weekday, ...] = (
    Weekday.Monday,
    Weekday.Tuesday,
    Weekday.Wednesday,
    Weekday.Thursday,
    Weekday.Friday,
    Weekday.Saturday,
    Weekday.Sunday,
)


def weekday_indexes(flags: Weekday) -> list[int]:
    """The ``date.weekday()`` numbers (Mon=0) set in ``flags``, in week order."""
    return [i for i, flag in enumerate(WEEKDAY_FLAGS) if flags & flag]


def weekday_flags(indexes: list[int] | set[int]) -> Weekday:
    result = Weekday.Unknown
    for i in indexes:
        result |= WEEKDAY_FLAGS[i]
    return result


def _enum_reader(enum: type[IntEnum]) -> Any:
    """Accept a member name (any case) or its number; reject anything else with the choices."""

    def read(value: Any) -> Any:
        if isinstance(value, enum):
            return value
        if isinstance(value, bool):
            raise ValueError(f"expected one of {[m.name for m in enum]}")
        if isinstance(value, int):
            try:
                return enum(value)
            except ValueError:
                raise ValueError(
                    f"{value} is not a {enum.__name__} number "
                    f"(one of {', '.join(f'{m.value}={m.name}' for m in enum)})"
                ) from None
        if isinstance(value, str):
            text = value.strip()
            if text.lstrip("-").isdigit():
                return read(int(text))
            for member in enum:
                if member.name.lower() == text.lower():
                    return member
            raise ValueError(
                f"{value!r} is not a {enum.__name__} (one of {', '.join(m.name for m in enum)})"
            )
        raise ValueError(f"expected a {enum.__name__} name or number, got {type(value).__name__}")

    return read


def _read_weekdays(value: Any) -> Weekday:
    if isinstance(value, Weekday):
        return value
    if value is None:
        return Weekday.Unknown
    if isinstance(value, bool):
        raise ValueError("expected weekday names or a bitmask")
    if isinstance(value, int):
        if not 0 <= value <= 127:
            raise ValueError(
                f"{value} is not a weekday bitmask (Monday=1 … Sunday=64, at most 127)"
            )
        return Weekday(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _read_weekdays(int(text))
        parts = [p for p in (s.strip() for s in text.replace("|", ",").split(",")) if p]
        return _read_weekdays(parts)
    if isinstance(value, (list, tuple)):
        result = Weekday.Unknown
        # Iterating an IntFlag skips the zero member, but _write_weekdays writes "Unknown"
        # for an empty set, so accept it or a written document cannot be read back.
        names = {str(m.name).lower(): m for m in Weekday} | {"unknown": Weekday.Unknown}
        for item in value:
            if isinstance(item, int) and not isinstance(item, bool):
                result |= _read_weekdays(item)
                continue
            if not isinstance(item, str) or item.strip().lower() not in names:
                raise ValueError(f"{item!r} is not a weekday name (Monday … Sunday)")
            result |= names[item.strip().lower()]
        return result
    raise ValueError(f"expected weekday names or a bitmask, got {type(value).__name__}")


def _write_weekdays(value: Weekday) -> str:
    """.NET flags style, which is what SuperOffice's REST API is assumed to send."""
    names = [flag.name for flag in WEEKDAY_FLAGS if value & flag and flag.name]
    return ", ".join(names) if names else "Unknown"


def _read_date(value: Any) -> Any:
    """SuperOffice sends dates as date-times (``2016-09-23T00:00:00``); only the date counts."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str) and "T" in value:
        return dt.datetime.fromisoformat(value).date()
    return value


def _name_of(member: IntEnum) -> str:
    return member.name


PatternField = Annotated[
    RecurrencePattern,
    BeforeValidator(_enum_reader(RecurrencePattern)),
    PlainSerializer(_name_of, return_type=str),
]
EndTypeField = Annotated[
    RecurrenceEndType,
    BeforeValidator(_enum_reader(RecurrenceEndType)),
    PlainSerializer(_name_of, return_type=str),
]
DailyField = Annotated[
    RecurrenceDailyPattern,
    BeforeValidator(_enum_reader(RecurrenceDailyPattern)),
    PlainSerializer(_name_of, return_type=str),
]
MonthlyField = Annotated[
    RecurrenceMonthlyPattern,
    BeforeValidator(_enum_reader(RecurrenceMonthlyPattern)),
    PlainSerializer(_name_of, return_type=str),
]
YearlyField = Annotated[
    RecurrenceYearlyPattern,
    BeforeValidator(_enum_reader(RecurrenceYearlyPattern)),
    PlainSerializer(_name_of, return_type=str),
]
WeekOfMonthField = Annotated[
    WeekOfMonth,
    BeforeValidator(_enum_reader(WeekOfMonth)),
    PlainSerializer(_name_of, return_type=str),
]
WeekdaysField = Annotated[
    Weekday,
    BeforeValidator(_read_weekdays),
    PlainSerializer(_write_weekdays, return_type=str),
]
DateField = Annotated[dt.date | None, BeforeValidator(_read_date)]


class _SuperOfficeModel(BaseModel):
    # Fields SuperOffice adds that we do not use (TableRight, FieldProperties …) are kept,
    # so a document read and written again loses nothing.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class DayPatternInfo(_SuperOfficeModel):
    Pattern: DailyField = RecurrenceDailyPattern.Unknown
    Cycle: int = 0


class WeekPatternInfo(_SuperOfficeModel):
    Weekdays: WeekdaysField = Weekday.Unknown
    Cycle: int = 1


class MonthPatternInfo(_SuperOfficeModel):
    Pattern: MonthlyField = RecurrenceMonthlyPattern.Unknown
    Cycle: int = 1
    Day: int = 0
    Weekday: WeekdaysField = Weekday.Unknown
    WeekOfMonth: WeekOfMonthField = WeekOfMonth.Unknown


class YearPatternInfo(_SuperOfficeModel):
    """``Cycle`` is the month of the year (1 = January), not a year interval."""

    Pattern: YearlyField = RecurrenceYearlyPattern.Unknown
    Cycle: int = 0
    Day: int = 0
    Weekday: WeekdaysField = Weekday.Unknown
    WeekOfMonth: WeekOfMonthField = WeekOfMonth.Unknown


class RecurrenceDate(_SuperOfficeModel):
    Date: DateField
    IsConflict: bool = False
    Description: str | None = None
    DescriptionStyleHint: str | None = None
    Tooltip: str | None = None

    @field_validator("Date")
    @classmethod
    def _date_required(cls, value: dt.date | None) -> dt.date:
        if value is None:
            raise ValueError("a date is required")
        return value


class RecurrenceInfo(_SuperOfficeModel):
    RecurrenceId: int | None = None
    StartDate: DateField = None
    EndDate: DateField = None
    RecurrenceEndType: EndTypeField = RecurrenceEndType.Unknown
    RecurrenceCounter: int | None = None
    Pattern: PatternField = RecurrencePattern.Unknown
    DayPattern: DayPatternInfo | None = None
    WeekPattern: WeekPatternInfo | None = None
    MonthPattern: MonthPatternInfo | None = None
    YearPattern: YearPatternInfo | None = None
    Dates: list[RecurrenceDate] | None = Field(default=None)
    IsRecurrence: bool | None = None

    @property
    def repeats(self) -> bool:
        """False for SuperOffice's way of saying 'not recurring' (IsRecurrence false, Pattern 0)."""
        if self.IsRecurrence is False:
            return False
        return self.Pattern != RecurrencePattern.Unknown
