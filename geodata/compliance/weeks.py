"""Local days and ISO weeks: the calendar that patrols are counted in."""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Self
from zoneinfo import ZoneInfo

_WEEK_NAME = re.compile(r"(\d{4})-W(\d{2})")


def require_aware(t: datetime, name: str = "time") -> None:
    """Refuse a naive datetime: a local day cannot be told from one."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {t.isoformat()}")


def local_date(t: datetime, tz: ZoneInfo) -> date:
    """The local calendar day `t` falls on."""
    require_aware(t)
    return t.astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """Local midnight at the start of `day`, as an aware datetime."""
    return datetime.combine(day, time(0), tzinfo=tz)


@dataclass(frozen=True, order=True)
class IsoWeek:
    """An ISO week (Monday to Monday, local time), named like `2020-W37`."""

    year: int
    week: int

    def __post_init__(self) -> None:
        # date.fromisocalendar knows which years have a week 53.
        date.fromisocalendar(self.year, self.week, 1)

    @classmethod
    def parse(cls, name: str) -> Self:
        """Read `2020-W37`; raises ValueError for anything else or a week the year lacks."""
        match = _WEEK_NAME.fullmatch(name)
        if match is None:
            raise ValueError(f"not an ISO week name: {name!r}")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def of_date(cls, day: date) -> Self:
        """The ISO week a calendar day belongs to."""
        iso = day.isocalendar()
        return cls(iso.year, iso.week)

    @classmethod
    def week_of(cls, t: datetime, tz: ZoneInfo) -> Self:
        """The week that the instant `t` falls in, local time."""
        return cls.of_date(local_date(t, tz))

    def __str__(self) -> str:
        return f"{self.year:04d}-W{self.week:02d}"

    @property
    def monday(self) -> date:
        """The week's first day."""
        return date.fromisocalendar(self.year, self.week, 1)

    def days(self) -> list[date]:
        """The seven local days, Monday first."""
        return [self.monday + timedelta(days=i) for i in range(7)]

    def start(self, tz: ZoneInfo) -> datetime:
        """Monday 00:00 local time, the first instant of the week."""
        return day_start(self.monday, tz)

    def end(self, tz: ZoneInfo) -> datetime:
        """The next Monday 00:00 local time, the first instant after the week."""
        # From the next Monday's date, not start + 7 days: a DST zone has 167-hour weeks.
        return day_start(self.monday + timedelta(days=7), tz)

    def next(self) -> Self:
        """The following week."""
        return self.of_date(self.monday + timedelta(days=7))

    def previous(self) -> Self:
        """The preceding week."""
        return self.of_date(self.monday - timedelta(days=7))
