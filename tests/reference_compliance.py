"""A simple second reading of docs/PATROL_RULE.md, for checking geodata.compliance.

Written apart from the engine and differently: plain loops over the raw check-ins, times
as integer microseconds, every patrol of the worker's whole history rebuilt for each
question, no reading window. It shares nothing with the engine but the config and the
parsing of a week's name, so a slip in one is unlikely to be repeated in the other.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from math import ceil
from zoneinfo import ZoneInfo

from geodata.compliance import CheckinRecord, ComplianceConfig, IsoWeek
from geodata.staffing import AssignmentPeriod

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class RefPatrol:
    """A patrol as the reference sees it."""

    start: datetime
    end: datetime
    checkins: int
    day: date
    validity: str  # "valid", "too_few_checkins", "too_short", "mocked_location", ...
    count_reason: str  # "counted", "invalid" or "already_counted_today"


@dataclass(frozen=True)
class RefResult:
    """The reference's answer for one (worker, grid, week) as of a time."""

    patrols: list[RefPatrol]
    counted: int
    required: int
    status: str


def _us(t: datetime) -> int:
    return (t - EPOCH) // MICROSECOND


def _instant(us: int) -> datetime:
    return EPOCH + us * MICROSECOND


def _assigned(periods: list[AssignmentPeriod], worker: str, grid: str, t: datetime) -> bool:
    for p in periods:
        if p.worker_id != worker or p.grid_code != grid:
            continue
        if p.valid_from <= t and (p.valid_to is None or t < p.valid_to):
            return True
    return False


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _whole_day_assigned(
    periods: list[AssignmentPeriod], worker: str, grid: str, day: date, tz: ZoneInfo
) -> bool:
    # Coverage of [from, to) periods can only stop at some period's valid_to, so the day
    # is covered whole when its first instant and every valid_to inside it are covered.
    first = _local_midnight(day, tz)
    after = _local_midnight(day + timedelta(days=1), tz)
    points = [first]
    for p in periods:
        if p.valid_to is not None and first < p.valid_to < after:
            points.append(p.valid_to)
    return all(_assigned(periods, worker, grid, point) for point in points)


def _validity(run: list[tuple[int, str]], config: ComplianceConfig) -> str:
    """ "valid", or why not: the walk's flags count up to its proving check-in only."""
    if len(run) < config.min_checkins:
        return "too_few_checkins"
    min_us = config.min_duration // MICROSECOND
    if run[-1][0] - run[0][0] < min_us:
        return "too_short"
    proving = next(
        k for k in range(config.min_checkins - 1, len(run)) if run[k][0] - run[0][0] >= min_us
    )
    flags = [flag for _t, flag in run[: proving + 1]]
    if "mocked_location" in flags:
        return "mocked_location"
    if "implausible_speed" in flags:
        return "implausible_speed"
    return "valid"


def reference_week(
    checkins: list[CheckinRecord],
    periods: list[AssignmentPeriod],
    worker: str,
    grid: str,
    week_name: str,
    as_of: datetime,
    config: ComplianceConfig,
) -> RefResult:
    """Everything about one (worker, grid, week) as of `as_of`, from the raw check-ins."""
    tz = ZoneInfo(config.timezone)
    week = IsoWeek.parse(week_name)
    monday = date.fromisocalendar(week.year, week.week, 1)
    week_days = [monday + timedelta(days=i) for i in range(7)]

    # Usable check-ins, each (event, time) once, as (microseconds, id, flag) triples; the flag
    # is what the fix says against the worker's presence ("" for nothing).
    seen = set()
    points = []
    for c in checkins:
        if (c.event_id, c.recorded_at) in seen:
            continue
        seen.add((c.event_id, c.recorded_at))
        if c.worker_id != worker or c.grid_code != grid or c.recorded_at > as_of:
            continue
        if c.accuracy_m is not None and c.accuracy_m > config.max_accuracy_m:
            continue
        if not _assigned(periods, worker, grid, c.recorded_at):
            continue
        flag = ""
        if c.implausible_speed and config.refuse_implausible_speed:
            flag = "implausible_speed"
        if c.mock and config.refuse_mocked:
            flag = "mocked_location"
        points.append((_us(c.recorded_at), str(c.event_id), flag))
    points.sort()

    # Chain them into runs of (microseconds, flag).
    gap = config.patrol_gap // MICROSECOND
    runs: list[list[tuple[int, str]]] = []
    for t, _event, flag in points:
        if runs and t - runs[-1][-1][0] <= gap:
            runs[-1].append((t, flag))
        else:
            runs.append([(t, flag)])

    # Keep the runs that start on a day of the week, and judge them.
    patrols = []
    counted_on = dict.fromkeys(week_days, 0)
    for run in runs:
        first = _instant(run[0][0]).astimezone(tz)
        if first.date() not in counted_on:
            continue
        validity = _validity(run, config)
        if validity != "valid":
            reason = "invalid"
        elif counted_on[first.date()] >= config.max_counted_per_day:
            reason = "already_counted_today"
        else:
            reason = "counted"
            counted_on[first.date()] += 1
        patrols.append(
            RefPatrol(
                first,
                _instant(run[-1][0]).astimezone(tz),
                len(run),
                first.date(),
                validity,
                reason,
            )
        )
    counted = sum(counted_on.values())

    days = 0
    for day in week_days:
        if _whole_day_assigned(periods, worker, grid, day, tz):
            days += 1
    required = ceil(Fraction(config.weekly_required * days, 7))

    today = as_of.astimezone(tz).date()
    best_possible = counted
    for day in week_days:
        if day >= today:
            best_possible += config.max_counted_per_day - counted_on[day]
    if counted >= required:
        status = "met"
    elif best_possible < required:
        status = "missed"
    elif best_possible == required:
        status = "at_risk"
    else:
        status = "on_track"
    return RefResult(patrols, counted, required, status)
