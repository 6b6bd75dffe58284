"""Deadlines of incidents (督办): working-time arithmetic, the city's table, what a due moment does.

Pure: no database, no clock of its own. Times are aware datetimes; working days and hours
are reckoned in Asia/Shanghai whatever zone an instant comes in.

- A *stage* is what an open case waits for: a dispatch (reported, escalated), its
  handling (dispatched, in progress), or a supervisor's verification (resolved).
- The table gives, per category (or class, or `*`) and stage, how long the stage may take:
  clock hours for urgent categories (a collapsed road does not wait for Monday), working
  hours or working days for ordinary ones. A working day is `WorkCalendar.day_length` of
  working hours, so "1 working day" from 17:59 on a Friday is 17:59 on Monday.
- When a case's due moment passes it becomes `overdue` and its whistle goes up one level
  (worker -> community -> street office -> district); at the top, or when the workflow
  allows no escalation (a resolved case), it is only marked overdue, once.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from geodata.incidents import (
    COMMUNITY_LEVEL_CODE_LENGTH,
    DISTRICT_CODE_LENGTH,
    FINAL_STATUSES,
    STREET_CODE_LENGTH,
    EscalationLevel,
    IncidentState,
    Status,
)

CITY_ZONE: Final = ZoneInfo("Asia/Shanghai")
ANY_CATEGORY: Final = "*"


class Stage(StrEnum):
    """What an open case waits for."""

    DISPATCH = "dispatch"
    HANDLE = "handle"
    VERIFY = "verify"


class Unit(StrEnum):
    """How a deadline's amount is counted."""

    HOURS = "hours"  # round the clock: urgent categories
    WORKING_HOURS = "working_hours"
    WORKING_DAYS = "working_days"


STAGE_OF_STATUS: Final[Mapping[Status, Stage]] = {
    Status.REPORTED: Stage.DISPATCH,
    Status.ESCALATED: Stage.DISPATCH,
    Status.DISPATCHED: Stage.HANDLE,
    Status.IN_PROGRESS: Stage.HANDLE,
    Status.RESOLVED: Stage.VERIFY,
}


def stage_of(status: Status) -> Stage | None:
    """The stage a case in `status` waits in; None for a closed or cancelled one."""
    return STAGE_OF_STATUS.get(status)


@dataclass(frozen=True, slots=True)
class Deadline:
    """How long one stage may take."""

    amount: float
    unit: Unit

    def __post_init__(self) -> None:
        if not 0 < self.amount <= 1000:
            raise ValueError(f"a deadline is more than 0 and at most 1000, not {self.amount}")


DEFAULT_DEADLINES: Final[Mapping[tuple[str, Stage], Deadline]] = {
    # Ordinary cases, as the digital city-management centres publish them: dispatched
    # within a working hour or two, handled within a few working days, verified next day.
    (ANY_CATEGORY, Stage.DISPATCH): Deadline(2, Unit.WORKING_HOURS),
    (ANY_CATEGORY, Stage.HANDLE): Deadline(3, Unit.WORKING_DAYS),
    (ANY_CATEGORY, Stage.VERIFY): Deadline(1, Unit.WORKING_DAYS),
    # Emergencies (突发事件) run round the clock, in hours.
    ("emergency", Stage.DISPATCH): Deadline(0.5, Unit.HOURS),
    ("emergency", Stage.HANDLE): Deadline(2, Unit.HOURS),
    ("emergency", Stage.VERIFY): Deadline(2, Unit.HOURS),
    # An open manhole is a hazard at any hour.
    ("public_facilities.manhole_cover", Stage.DISPATCH): Deadline(1, Unit.HOURS),
    ("public_facilities.manhole_cover", Stage.HANDLE): Deadline(4, Unit.HOURS),
    # Quick street-order cases: handled within the working day.
    ("street_order", Stage.HANDLE): Deadline(4, Unit.WORKING_HOURS),
    ("advertising.illegal_small_ads", Stage.HANDLE): Deadline(1, Unit.WORKING_DAYS),
}
"""The table a new database is seeded with; the city edits its copy (`wangge incidents
deadlines set`)."""


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """Working days and hours in Asia/Shanghai: Monday to Friday, less holidays, plus the
    weekend days worked in exchange (调休)."""

    start: time = time(9, 0)
    end: time = time(18, 0)
    holidays: frozenset[date] = field(default_factory=frozenset)
    extra_workdays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError(f"a working day starts before it ends, not {self.start}-{self.end}")

    @property
    def day_length(self) -> timedelta:
        """The working time of one working day."""
        return datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)

    def is_working_day(self, day: date) -> bool:
        """Whether `day` is worked: a weekday that is no holiday, or a make-up day."""
        if day in self.extra_workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def is_working_time(self, instant: datetime) -> bool:
        """Whether `instant` falls within working hours of a working day (end excluded)."""
        local = _local(instant)
        return self.is_working_day(local.date()) and self.start <= local.time() < self.end

    def add_working_time(self, instant: datetime, amount: timedelta) -> datetime:
        """The instant `amount` of working time after `instant` (in Asia/Shanghai).

        Time outside working hours does not count: from a night, a weekend or a holiday
        the count starts at the next working morning. A due moment that lands on the end
        of a working day stays there rather than moving to the next morning.
        """
        if amount < timedelta(0):
            raise ValueError("working time is added, not taken away")
        moment = _local(instant)
        remaining = amount
        # Bounded: no calendar has a year without a working day.
        for _ in range(366 * 20):
            day = moment.date()
            opens = datetime.combine(day, self.start, CITY_ZONE)
            closes = datetime.combine(day, self.end, CITY_ZONE)
            if not self.is_working_day(day) or moment >= closes:
                moment = datetime.combine(day + timedelta(days=1), self.start, CITY_ZONE)
                continue
            moment = max(moment, opens)
            available = closes - moment
            if remaining <= available:
                return (moment + remaining).astimezone(instant.tzinfo)
            remaining -= available
            moment = datetime.combine(day + timedelta(days=1), self.start, CITY_ZONE)
        raise ValueError("no working day within twenty years: check the holidays")

    def due(self, start: datetime, deadline: Deadline) -> datetime:
        """When a stage begun at `start` with `deadline` falls due."""
        if deadline.unit is Unit.HOURS:
            return start + timedelta(hours=deadline.amount)
        hours = deadline.amount
        if deadline.unit is Unit.WORKING_DAYS:
            return self.add_working_time(start, self.day_length * deadline.amount)
        return self.add_working_time(start, timedelta(hours=hours))


def _local(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("deadlines take aware datetimes")
    return instant.astimezone(CITY_ZONE)


@dataclass(frozen=True, slots=True)
class DeadlineTable:
    """The city's deadlines and calendar: the most specific row wins (category, class, `*`)."""

    rows: Mapping[tuple[str, Stage], Deadline]
    calendar: WorkCalendar = field(default_factory=WorkCalendar)

    def deadline_of(self, category: str, stage: Stage) -> Deadline | None:
        """The deadline of `stage` for `category`; None when no row covers it."""
        for key in (category, category.split(".", 1)[0], ANY_CATEGORY):
            found = self.rows.get((key, stage))
            if found is not None:
                return found
        return None

    def due_at(self, category: str, status: Status, since: datetime) -> datetime | None:
        """When a case of `category` that entered `status` at `since` falls due; None: never."""
        stage = stage_of(status)
        if stage is None:
            return None
        deadline = self.deadline_of(category, stage)
        return None if deadline is None else self.calendar.due(since, deadline)


def default_table(
    holidays: Iterable[date] = (), extra_workdays: Iterable[date] = ()
) -> DeadlineTable:
    """The seeded defaults over a calendar with these holidays and make-up days."""
    calendar = WorkCalendar(holidays=frozenset(holidays), extra_workdays=frozenset(extra_workdays))
    return DeadlineTable(dict(DEFAULT_DEADLINES), calendar)


# --------------------------------------------------------------------------- due moments


class OnDue(StrEnum):
    """What a passed due moment does to a case."""

    ESCALATE = "escalate"  # overdue, and the whistle goes one level up
    MARK = "mark"  # overdue only: at the top, outside every grid, or resolved
    NOTHING = "nothing"  # already overdue at the top, or final


_LEVEL_BY_LENGTH: Final[Mapping[int, EscalationLevel]] = {
    COMMUNITY_LEVEL_CODE_LENGTH: EscalationLevel.COMMUNITY,
    STREET_CODE_LENGTH: EscalationLevel.STREET,
    DISTRICT_CODE_LENGTH: EscalationLevel.DISTRICT,
}


def next_level(state: IncidentState) -> EscalationLevel | None:
    """The level above where the case stands: a worker's case goes to its community, a
    community's to the street office, a street's to the district; None at the top."""
    if state.community_code is None or state.status not in STAGE_OF_STATUS:
        return None
    if state.status is Status.RESOLVED:
        return None  # the workflow escalates nothing that awaits verification
    if state.escalated_to is None:
        return EscalationLevel.COMMUNITY
    for length in sorted(_LEVEL_BY_LENGTH, reverse=True):
        if length < len(state.escalated_to):
            return _LEVEL_BY_LENGTH[length]
    return None


def on_due(state: IncidentState, overdue: bool) -> tuple[OnDue, EscalationLevel | None]:
    """What the passing of the case's due moment does, and to which level it escalates."""
    if state.status in FINAL_STATUSES:
        return OnDue.NOTHING, None
    level = next_level(state)
    if level is not None:
        return OnDue.ESCALATE, level
    return (OnDue.NOTHING, None) if overdue else (OnDue.MARK, None)
