"""One (worker, grid, week): what is owed, what counts, and how the week stands at a time."""

import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from geodata.compliance.config import ComplianceConfig
from geodata.compliance.patrols import (
    CheckinRecord,
    Patrol,
    build_patrols,
    is_usable,
    unique_checkins,
)
from geodata.compliance.weeks import IsoWeek, day_start, local_date, require_aware
from geodata.events import ComplianceStatus
from geodata.staffing import AssignmentPeriod

ONE_DAY = timedelta(days=1)


def _covers_whole(periods: list[AssignmentPeriod], start: datetime, end: datetime) -> bool:
    # Sweep a cursor through periods sorted by valid_from, so that overlapping or
    # back-to-back periods (a re-import, a renewed contract) join into one span.
    cursor = start
    for period in periods:
        if period.valid_from > cursor:
            return False
        if period.valid_to is None:
            return True
        cursor = max(cursor, period.valid_to)
        if cursor >= end:
            return True
    return False


def _one_owner(periods: Iterable[AssignmentPeriod]) -> list[AssignmentPeriod]:
    spans = sorted(periods, key=lambda p: p.valid_from)
    owners = {(p.worker_id, p.grid_code) for p in spans}
    if len(owners) > 1:
        raise ValueError(f"periods of one worker in one grid expected, got {sorted(owners)}")
    return spans


def days_assigned(
    periods: Iterable[AssignmentPeriod], week: IsoWeek, config: ComplianceConfig
) -> int:
    """Local days of the week that one worker's assignment to one grid covers whole.

    A day the worker joins or leaves the grid part-way through is owed to neither grid:
    a mid-day reassignment then never asks more days of a worker than the week has, and
    a sliver of an assignment (a change stamped 00:00:01) creates no obligation.
    """
    spans = _one_owner(periods)
    tz = config.tz
    return sum(
        _covers_whole(spans, day_start(day, tz), day_start(day + ONE_DAY, tz))
        for day in week.days()
    )


def required_patrols(
    periods: Iterable[AssignmentPeriod], week: IsoWeek, config: ComplianceConfig
) -> int:
    """Counted patrols owed: ceil(weekly_required × days_assigned / 7); a full week owes all."""
    days = days_assigned(periods, week, config)
    return -(-config.weekly_required * days // 7)


def remaining_capacity(
    counted_per_day: Mapping[date, int], week: IsoWeek, as_of: datetime, config: ComplianceConfig
) -> int:
    """Counted patrols still possible from `as_of`'s local day (included) to the week's end.

    Each remaining day offers `max_counted_per_day` minus what it already counted: with
    the default of 1 these are docs/PATROL_RULE.md's "days left" (days with no counted
    patrol yet, 1 each), and with more it keeps its meaning of missed, "can no longer be
    met".
    """
    today = local_date(as_of, config.tz)
    return sum(
        max(config.max_counted_per_day - counted_per_day.get(day, 0), 0)
        for day in week.days()
        if day >= today
    )


def status_as_of(
    counted_per_day: Mapping[date, int],
    required: int,
    week: IsoWeek,
    as_of: datetime,
    config: ComplianceConfig,
) -> ComplianceStatus:
    """met, missed, at_risk or on_track, exactly as docs/PATROL_RULE.md defines them.

    `counted_per_day` holds the counted patrols of each local day of the week as of
    `as_of`. Once the week has ended no capacity remains, so an unmet week is missed.
    """
    outside = sorted(set(counted_per_day) - set(week.days()))
    if outside:
        raise ValueError(f"days outside {week}: {outside}")
    counted = sum(counted_per_day.values())
    if counted >= required:
        return "met"
    reachable = counted + remaining_capacity(counted_per_day, week, as_of, config)
    if reachable < required:
        return "missed"
    if reachable == required:
        return "at_risk"
    return "on_track"


def is_week_final(week: IsoWeek, watermark: datetime, config: ComplianceConfig) -> bool:
    """Whether the event-time watermark has reached the week's end plus `allowed_lateness`."""
    require_aware(watermark, "watermark")
    return watermark >= _final_from(week, config)


@functools.lru_cache(maxsize=256)
def _final_from(week: IsoWeek, config: ComplianceConfig) -> datetime:
    return week.end(config.tz) + config.allowed_lateness


# Cached: the engine asks for up to three windows per check-in, which uncached was a tenth
# of its time, and a batch (or a replay) spans only a handful of weeks.
@functools.lru_cache(maxsize=256)
def checkin_window(week: IsoWeek, config: ComplianceConfig) -> tuple[datetime, datetime]:
    """The half-open span [from, to) of recorded_at that a week's evaluation reads.

    From one `patrol_gap` before the week, to tell whether an early check-in continues a
    patrol of the previous week; to `patrol_horizon` after it, by when any patrol begun
    in the week has shown whether it is valid.
    """
    tz = config.tz
    return week.start(tz) - config.patrol_gap, week.end(tz) + config.patrol_horizon


def weeks_reading(t: datetime, config: ComplianceConfig) -> list[IsoWeek]:
    """The weeks whose evaluation window contains an instant (usually one, at most three)."""
    week = IsoWeek.week_of(t, config.tz)
    previous, following = _neighbours(week, config)
    weeks = []
    for candidate in (previous, week, following):
        start, end = checkin_window(candidate, config)
        if start <= t < end:
            weeks.append(candidate)
    return weeks


# Cached, like the windows: the engine asks for every check-in it folds.
@functools.lru_cache(maxsize=256)
def _neighbours(week: IsoWeek, config: ComplianceConfig) -> tuple[IsoWeek, IsoWeek]:
    return week.previous(), week.next()


class ComplianceKey(NamedTuple):
    """What a status is about: a worker, one of their grids, a week."""

    worker_id: str
    grid_code: str
    week: IsoWeek


@dataclass(frozen=True)
class WeekResult:
    """How a (worker, grid, week) stood at `as_of`, and the patrols behind it."""

    worker_id: str
    grid_code: str
    week: IsoWeek
    as_of: datetime
    patrols: tuple[Patrol, ...]
    counted: int
    required: int
    status: ComplianceStatus

    @property
    def key(self) -> ComplianceKey:
        """The (worker, grid, week) this is about."""
        return ComplianceKey(self.worker_id, self.grid_code, self.week)

    @property
    def counted_days(self) -> list[date]:
        """The local days with a counted patrol, in order."""
        return sorted({p.day for p in self.patrols if p.counted})


def evaluate_week(
    checkins: Iterable[CheckinRecord],
    assignments: Iterable[AssignmentPeriod],
    *,
    worker_id: str,
    grid_code: str,
    week: IsoWeek,
    as_of: datetime,
    config: ComplianceConfig,
) -> WeekResult:
    """Patrols, counted, required and status of one (worker, grid, week) as of a time.

    The one function the consumer, the API and the tests call. Any superset of the
    check-ins in `checkin_window` gives the same result: others, other workers' and other
    grids' are ignored, as are those recorded after `as_of`, so the answer is how the
    week stood then. A patrol begun in the week but still going at the window's end is
    reported up to there (its validity is settled by then).
    """
    require_aware(as_of, "as_of")
    periods = [p for p in assignments if p.worker_id == worker_id and p.grid_code == grid_code]
    window_from, window_to = checkin_window(week, config)
    usable = [
        c
        for c in unique_checkins(checkins)
        if c.worker_id == worker_id
        and c.grid_code == grid_code
        and window_from <= c.recorded_at < window_to
        and c.recorded_at <= as_of
        and is_usable(c, periods, config)
    ]
    patrols = tuple(p for p in build_patrols(usable, config) if p.week == week)
    counted_per_day = Counter(p.day for p in patrols if p.counted)
    required = required_patrols(periods, week, config)
    return WeekResult(
        worker_id=worker_id,
        grid_code=grid_code,
        week=week,
        as_of=as_of,
        patrols=patrols,
        counted=sum(counted_per_day.values()),
        required=required,
        status=status_as_of(counted_per_day, required, week, as_of, config),
    )


@dataclass(frozen=True)
class StatusChange:
    """A status that differs from the one last published; `old` is None the first time."""

    key: ComplianceKey
    old: ComplianceStatus | None
    new: ComplianceStatus


def status_changes(
    previous: Mapping[ComplianceKey, ComplianceStatus],
    current: Mapping[ComplianceKey, ComplianceStatus],
) -> list[StatusChange]:
    """The keys whose status in `current` differs from `previous`, in key order.

    A key absent from `current` was not evaluated this time, which is no change; publish
    these and store `current` over `previous`, and each change goes out once.
    """
    return [
        StatusChange(key, previous.get(key), status)
        for key, status in sorted(current.items())
        if previous.get(key) != status
    ]
