"""From check-ins to patrols: which check-ins count, how they chain, which patrols count."""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Literal, Self
from uuid import UUID
from zoneinfo import ZoneInfo

from geodata.compliance.config import ComplianceConfig
from geodata.compliance.weeks import IsoWeek, require_aware
from geodata.events import CheckInAssignment
from geodata.quality import IMPLAUSIBLE_SPEED
from geodata.staffing import AssignmentPeriod

PresenceFlag = Literal["mocked_location", "implausible_speed"]
"""Why a fix is no proof that the worker was there (docs/PATROL_RULE.md)."""

InvalidReason = Literal["too_few_checkins", "too_short", "mocked_location", "implausible_speed"]
"""Why a patrol is not valid, the first that holds in this order: too few check-ins, too
short, then a fix up to the moment it would have been valid that is flagged as mocked,
else one flagged as an impossible speed."""

CountReason = Literal["counted", "invalid", "already_counted_today"]
"""Why a patrol counts towards the week or not."""


@dataclass(frozen=True)
class CheckinRecord:
    """A stored check-in as the patrol rule reads it: who, which grid, when, how precise."""

    event_id: UUID
    worker_id: str
    grid_code: str | None
    recorded_at: datetime
    accuracy_m: float | None = None
    mock: bool = False
    """The phone or tracking app said the position came from a mock-location provider."""
    implausible_speed: bool = False
    """The intake flagged the fix: reaching it from the worker's previous fix needs a
    speed nobody walks or drives (`geodata.quality`)."""

    def __post_init__(self) -> None:
        require_aware(self.recorded_at, "recorded_at")

    @classmethod
    def from_assignment(cls, event: CheckInAssignment, tz: ZoneInfo | None = None) -> Self:
        """The record of a check-in on `grid.assignments.v1` (grid assigned by location).

        With `tz`, its time is that instant in `tz`: times that share one zone compare
        without converting, which made the engine's per-check-in work a quarter faster.
        """
        recorded_at = event.recorded_at if tz is None else event.recorded_at.astimezone(tz)
        return cls(
            event.event_id,
            event.worker_id,
            event.grid_code,
            recorded_at,
            event.accuracy_m,
            mock=bool(event.mock),
            implausible_speed=IMPLAUSIBLE_SPEED in event.flags,
        )


def is_usable(
    checkin: CheckinRecord, assignments: Iterable[AssignmentPeriod], config: ComplianceConfig
) -> bool:
    """Whether a check-in can be part of a patrol (docs/PATROL_RULE.md).

    Located in a grid, posted by a worker assigned to that very grid at `recorded_at`,
    and with no accuracy or one within `max_accuracy_m`.
    """
    if checkin.grid_code is None:
        return False
    if checkin.accuracy_m is not None and checkin.accuracy_m > config.max_accuracy_m:
        return False
    return any(
        p.worker_id == checkin.worker_id
        and p.grid_code == checkin.grid_code
        and p.covers(checkin.recorded_at)
        for p in assignments
    )


def presence_flag(checkin: CheckinRecord, config: ComplianceConfig) -> PresenceFlag | None:
    """Whether a usable fix is no proof of presence, and why (docs/PATROL_RULE.md).

    Such a fix still belongs to its walk (it chains, it is counted), but a walk with one
    among the check-ins up to the moment it would have become valid is not valid. A
    mock flag is named first when a fix has both; `config` may turn either flag off.
    """
    if checkin.mock and config.refuse_mocked:
        return "mocked_location"
    if checkin.implausible_speed and config.refuse_implausible_speed:
        return "implausible_speed"
    return None


@dataclass(frozen=True)
class Patrol:
    """One walk: a run of a worker's usable check-ins in a grid with no gap over `patrol_gap`."""

    worker_id: str
    grid_code: str
    start: datetime
    end: datetime
    checkin_count: int
    day: date
    week: IsoWeek
    invalid_reason: InvalidReason | None
    count_reason: CountReason

    @property
    def valid(self) -> bool:
        """Enough check-ins over long enough."""
        return self.invalid_reason is None

    @property
    def counted(self) -> bool:
        """Whether it counts towards the week's requirement."""
        return self.count_reason == "counted"

    @property
    def duration(self) -> timedelta:
        """From the first check-in to the last."""
        return self.end - self.start


def unique_checkins(checkins: Iterable[CheckinRecord]) -> list[CheckinRecord]:
    """The check-ins once each, ordered by (recorded_at, event_id).

    A check-in is its event id at its event time, as stored (the tables are keyed so,
    docs/HISTORY.md): delivery is at least once, so the same event may come twice; an id
    reused at another time is another check-in. The order key makes every result
    independent of arrival order, even for equal timestamps. Two different records under
    one id and time are a producer bug and raise ValueError.
    """
    by_key: dict[tuple[datetime, UUID], CheckinRecord] = {}
    for checkin in checkins:
        seen = by_key.setdefault((checkin.recorded_at, checkin.event_id), checkin)
        if seen != checkin:
            raise ValueError(f"event {checkin.event_id} appears with different contents")
    return [by_key[k] for k in sorted(by_key)]


def _validity(run: list[CheckinRecord], config: ComplianceConfig) -> InvalidReason | None:
    if len(run) < config.min_checkins:
        return "too_few_checkins"
    first = run[0].recorded_at
    if run[-1].recorded_at - first < config.min_duration:
        return "too_short"
    # Up to the check-in with which the walk first has both thresholds: a flag after that
    # comes once presence is proven, and reading no further keeps validity settled within
    # `patrol_horizon` of the start, and the same for every later prefix of the walk.
    flags: set[PresenceFlag] = set()
    for k, checkin in enumerate(run, start=1):
        flag = presence_flag(checkin, config)
        if flag is not None:
            flags.add(flag)
        if k >= config.min_checkins and checkin.recorded_at - first >= config.min_duration:
            break
    if "mocked_location" in flags:
        return "mocked_location"
    if "implausible_speed" in flags:
        return "implausible_speed"
    return None


def build_patrols(checkins: Iterable[CheckinRecord], config: ComplianceConfig) -> list[Patrol]:
    """Cut one worker's usable check-ins in one grid into patrols, ordered by start.

    A gap of exactly `patrol_gap` continues a patrol; only a longer one starts a new
    patrol. A patrol belongs to the local day and week of its first check-in. At most
    `max_counted_per_day` valid patrols count per day: the earliest ones, so the choice
    never depends on the order the check-ins arrived in.
    """
    return patrols_of_ordered(unique_checkins(checkins), config)


def patrols_of_ordered(ordered: Sequence[CheckinRecord], config: ComplianceConfig) -> list[Patrol]:
    """`build_patrols` of check-ins already once each and in `unique_checkins`' order (the
    incremental fold keeps them so, and skips sorting a day's again for each new fix)."""
    if not ordered:
        return []
    owners = {(c.worker_id, c.grid_code) for c in ordered}
    if len(owners) > 1 or ordered[0].grid_code is None:
        raise ValueError(f"patrols are per worker and grid, got {sorted(owners, key=str)}")
    worker_id, grid_code = ordered[0].worker_id, ordered[0].grid_code

    runs: list[list[CheckinRecord]] = [[ordered[0]]]
    for previous, current in pairwise(ordered):
        if current.recorded_at - previous.recorded_at > config.patrol_gap:
            runs.append([current])
        else:
            runs[-1].append(current)

    tz = config.tz
    counted_on: Counter[date] = Counter()
    patrols = []
    for run in runs:
        start = run[0].recorded_at.astimezone(tz)
        day = start.date()
        invalid_reason = _validity(run, config)
        count_reason: CountReason
        if invalid_reason is not None:
            count_reason = "invalid"
        elif counted_on[day] < config.max_counted_per_day:
            count_reason = "counted"
            counted_on[day] += 1
        else:
            count_reason = "already_counted_today"
        patrols.append(
            Patrol(
                worker_id=worker_id,
                grid_code=grid_code,
                start=start,
                end=run[-1].recorded_at.astimezone(tz),
                checkin_count=len(run),
                day=day,
                week=IsoWeek.of_date(day),
                invalid_reason=invalid_reason,
                count_reason=count_reason,
            )
        )
    return patrols


def valid_at(
    patrol: Patrol, checkins: Iterable[CheckinRecord], config: ComplianceConfig
) -> datetime | None:
    """Time at which a valid patrol first met both thresholds (None if invalid).

    `checkins` are the usable check-ins the patrol was built from (others may come too:
    only those between its start and end are read). Patrol runs are prefix-stable, so
    "valid as of T" is exactly "valid_at <= T": this is what lets the API answer for any
    `as_of` from stored patrols.
    """
    if not patrol.valid:
        return None
    times = sorted(c.recorded_at for c in checkins if patrol.start <= c.recorded_at <= patrol.end)
    for k, t in enumerate(times, start=1):
        if k >= config.min_checkins and t - times[0] >= config.min_duration:
            return t
    return None
