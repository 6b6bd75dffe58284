"""Local days and ISO weeks: the calendar that patrols are counted in.

Also the one supported span of time: weeks of the ISO years MIN_YEAR to MAX_YEAR and
instants from EARLIEST to LATEST. Python's datetime ends at year 9999 and a week's end or
a conversion to UTC near either end of its range overflows; nothing outside the span is
meant anyway, so every edge (HTTP, events) refuses it before any arithmetic is done.
"""

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Self
from zoneinfo import ZoneInfo

MIN_YEAR: Final = 1970
"""The first ISO year whose weeks are supported."""
MAX_YEAR: Final = 9000
"""The last ISO year whose weeks are supported."""
EARLIEST: Final = datetime(MIN_YEAR, 1, 1, tzinfo=UTC)
"""The first supported instant."""
LATEST: Final = datetime(MAX_YEAR, 1, 1, tzinfo=UTC)
"""The first instant past the supported span; in any time zone it is still in MAX_YEAR's
weeks, so every supported instant has a supported week."""

# ASCII digits only: `\d` would also take other scripts' digits, which int() reads.
_WEEK_NAME = re.compile(r"([0-9]{4})-W([0-9]{2})")


def require_aware(t: datetime, name: str = "time") -> None:
    """Refuse a naive datetime: a local day cannot be told from one."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {t.isoformat()}")


def check_supported_time(t: datetime, name: str = "time") -> datetime:
    """`t` if aware and within [EARLIEST, LATEST); ValueError otherwise.

    Compared without converting `t`: year 1 at +14:00 or year 9999 at -12:00 cannot even
    be converted to UTC.
    """
    require_aware(t, name)
    if not EARLIEST <= t < LATEST:
        raise ValueError(
            f"{name} must be from {EARLIEST.isoformat()} to before {LATEST.isoformat()}, "
            f"got {t.isoformat()}"
        )
    return t


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
        # Checked first: the weeks of years near 1 and 9999 have no start or end in datetime.
        if not MIN_YEAR <= self.year <= MAX_YEAR:
            raise ValueError(
                f"week {self.year:04d}-W{self.week:02d} is outside the supported years "
                f"{MIN_YEAR} to {MAX_YEAR}"
            )
        try:
            # date.fromisocalendar knows which years have a week 53.
            date.fromisocalendar(self.year, self.week, 1)
        except ValueError:
            raise ValueError(f"{self.year:04d} has no week {self.week}") from None

    @classmethod
    def parse(cls, name: str) -> Self:
        """Read `2020-W37`; ValueError for anything else, a week its year lacks, or a year
        outside MIN_YEAR to MAX_YEAR (so that every week's end is a valid datetime)."""
        match = _WEEK_NAME.fullmatch(name)
        if match is None:
            raise ValueError(f"not an ISO week name such as 2020-W37: {name[:40]!r}")
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
        return list(_week_days(self.year, self.week))

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


# Cached: the compliance engine judges a week's status once per folded check-in, and
# working out its seven days each time was over a third of folding one (24 -> 15 us).
@functools.lru_cache(maxsize=256)
def _week_days(year: int, week: int) -> tuple[date, ...]:
    monday = date.fromisocalendar(year, week, 1)
    return tuple(monday + timedelta(days=i) for i in range(7))
