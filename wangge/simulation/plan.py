"""Who walks when: the week's schedule of every simulated worker and their phone.

Pure and seeded: each worker's plan comes from a generator seeded by (seed, worker id),
so a subset of workers (`--workers N`) gets exactly the plans it has in the full city.
"""

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import numpy as np
from shapely.geometry.base import BaseGeometry

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.staffing import AssignmentPeriod

ONE_DAY: Final = timedelta(days=1)


class Profile(StrEnum):
    """How a worker treats the rule this week."""

    DILIGENT = "diligent"  # 3 to 5 walks on different days
    LAZY = "lazy"  # 0 to 2 walks
    ONE_MORNING = "one_morning"  # three short walks on one morning, and little else
    SHORT_WALKS = "short_walks"  # some walks of 5 minutes
    NEIGHBOUR_GRID = "neighbour_grid"  # some walks in the next grid, not their own


class WalkKind(StrEnum):
    """What a planned walk is, and so what the rules should make of it."""

    PATROL = "patrol"
    MORNING = "morning"  # one of several short walks on one morning
    SHORT = "short"  # 5 minutes: too short to be valid
    NEIGHBOUR = "neighbour"  # in a grid the worker is not assigned to


@dataclass(frozen=True)
class SimulationConfig:
    """The shares and ranges of the simulated week; defaults aim at a realistic city."""

    lazy_share: float = 0.10
    one_morning_share: float = 0.03
    short_walks_share: float = 0.03
    neighbour_grid_share: float = 0.03
    diligent_walks: tuple[int, int] = (3, 5)
    lazy_walks: tuple[int, int] = (0, 2)
    walk_minutes: tuple[float, float] = (30.0, 95.0)
    short_walk_minutes: float = 5.0
    morning_walk_minutes: tuple[float, float] = (12.0, 20.0)
    # Longer than the 30-minute patrol gap, so that each morning walk is its own patrol.
    morning_gap_minutes: tuple[float, float] = (35.0, 50.0)
    # Walks start in these local hours and end the same evening, far from midnight.
    start_hours: tuple[int, int] = (7, 19)
    fix_interval_s: int = 30
    walking_speed_m_s: tuple[float, float] = (0.8, 1.3)
    noise_m: tuple[float, float] = (5.0, 15.0)
    poor_accuracy_share: float = 0.01
    poor_accuracy_m: tuple[float, float] = (120.0, 800.0)
    teleport_share: float = 0.0005
    teleport_km: tuple[float, float] = (1.5, 8.0)
    gcj02_share: float = 0.15
    cgcs2000_share: float = 0.05
    no_accuracy_share: float = 0.05
    skewed_clock_share: float = 0.2
    # Below the consumer's 5-minute refusal of fixes from the future, even live.
    max_clock_skew_s: int = 240
    offline_walk_share: float = 0.06
    offline_delay_hours: tuple[float, float] = (0.5, 30.0)
    out_of_order_batch_share: float = 0.3
    batch_retry_share: float = 0.1
    duplicate_share: float = 0.01
    duplicate_delay_s: tuple[float, float] = (1.0, 600.0)
    network_delay_s: tuple[float, float] = (0.2, 3.0)
    malformed_per_million: float = 20.0
    incidents_per_day: float = 300.0
    # Idle pings after the week move the engine's event-time watermark past its end;
    # see `tail_hours` in the simulate command for why 6 hours and not 48.
    tail_hours: float = 6.0
    ping_interval_s: int = 300
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)

    def __post_init__(self) -> None:
        shares = (
            self.lazy_share
            + self.one_morning_share
            + self.short_walks_share
            + self.neighbour_grid_share
        )
        if not 0 <= shares <= 1:
            raise ValueError("the profile shares must add up to at most 1")
        if self.max_clock_skew_s >= 300:
            raise ValueError("a clock skew of 5 minutes or more gets fixes refused")
        if self.poor_accuracy_m[0] <= self.compliance.max_accuracy_m:
            raise ValueError("poor accuracy must be worse than the rule's max_accuracy_m")
        latest_end = self.start_hours[1] + 1 + self.walk_minutes[1] / 60
        if latest_end >= 24 - self.compliance.patrol_gap.total_seconds() / 3600:
            raise ValueError("walks must end well before midnight")


@dataclass(frozen=True)
class SimWorker:
    """A worker to simulate: the grid they patrol and all their assignment periods."""

    worker_id: str
    grid_code: str
    periods: tuple[AssignmentPeriod, ...]


@dataclass(frozen=True)
class World:
    """What the simulator knows of the city: grid polygons (EPSG:4326) and workers."""

    grids: Mapping[str, BaseGeometry]
    workers: tuple[SimWorker, ...]
    #: Every worker id the platform knows, so that an unknown one can be made up.
    known_workers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Phone:
    """A worker's phone: the CRS it reports, its GPS noise, its clock."""

    crs: str
    noise_m: float
    reports_accuracy: bool
    clock_skew_s: int


@dataclass(frozen=True)
class PlannedWalk:
    """One walk as planned, in true time (the phone stamps it with its own clock)."""

    grid_code: str
    kind: WalkKind
    start: datetime
    minutes: float

    @property
    def end(self) -> datetime:
        """When the walk ends, true time."""
        return self.start + timedelta(minutes=self.minutes)


@dataclass(frozen=True)
class WorkerPlan:
    """A worker's week: profile, phone and walks in start order."""

    worker: SimWorker
    profile: Profile
    phone: Phone
    walks: tuple[PlannedWalk, ...]


def worker_rng(seed: int, worker_id: str) -> np.random.Generator:
    """The generator of one worker's plan, independent of which others are simulated."""
    return np.random.default_rng([seed, zlib.crc32(worker_id.encode())])


def choose_workers(
    workers: Sequence[SimWorker], count: int | None, seed: int
) -> tuple[SimWorker, ...]:
    """`count` workers spread over the city (all when None), the same for the same seed."""
    ordered = sorted(workers, key=lambda w: w.worker_id)
    if count is None or count >= len(ordered):
        return tuple(ordered)
    chosen = np.random.default_rng([seed, 0x5E7]).choice(len(ordered), count, replace=False)
    return tuple(ordered[i] for i in sorted(chosen.tolist()))


def _profile(rng: np.random.Generator, config: SimulationConfig) -> Profile:
    shares = (
        (Profile.LAZY, config.lazy_share),
        (Profile.ONE_MORNING, config.one_morning_share),
        (Profile.SHORT_WALKS, config.short_walks_share),
        (Profile.NEIGHBOUR_GRID, config.neighbour_grid_share),
    )
    draw, cumulative = rng.random(), 0.0
    for profile, share in shares:
        cumulative += share
        if draw < cumulative:
            return profile
    return Profile.DILIGENT


def _phone(rng: np.random.Generator, config: SimulationConfig) -> Phone:
    draw = rng.random()
    crs = (
        "GCJ-02"
        if draw < config.gcj02_share
        else "EPSG:4490"
        if draw < config.gcj02_share + config.cgcs2000_share
        else "EPSG:4326"
    )
    skewed = rng.random() < config.skewed_clock_share
    skew = int(rng.integers(-config.max_clock_skew_s, config.max_clock_skew_s + 1))
    return Phone(
        crs=crs,
        noise_m=float(rng.uniform(*config.noise_m)),
        reports_accuracy=bool(rng.random() >= config.no_accuracy_share),
        clock_skew_s=skew if skewed else 0,
    )


def _start(rng: np.random.Generator, week: IsoWeek, day: int, config: SimulationConfig) -> datetime:
    first, last = config.start_hours
    minute = int(rng.integers(first * 60, (last + 1) * 60))
    second = int(rng.integers(0, 60))
    return (
        week.start(config.compliance.tz) + day * ONE_DAY + timedelta(minutes=minute, seconds=second)
    )


def _days(rng: np.random.Generator, count: int, exclude: int | None = None) -> list[int]:
    pool = [d for d in range(7) if d != exclude]
    return sorted(rng.choice(pool, min(count, len(pool)), replace=False).tolist())


def _walks_on(
    rng: np.random.Generator,
    week: IsoWeek,
    days: list[int],
    grid_code: str,
    kind: WalkKind,
    config: SimulationConfig,
) -> list[PlannedWalk]:
    minutes = (
        [config.short_walk_minutes] * len(days)
        if kind is WalkKind.SHORT
        else rng.uniform(*config.walk_minutes, size=len(days)).tolist()
    )
    return [
        PlannedWalk(grid_code, kind, _start(rng, week, day, config), _whole_seconds(m))
        for day, m in zip(days, minutes, strict=True)
    ]


def _whole_seconds(minutes: float) -> float:
    return round(minutes * 60) / 60


def _one_morning(
    rng: np.random.Generator, week: IsoWeek, grid_code: str, config: SimulationConfig
) -> list[PlannedWalk]:
    day = int(rng.integers(0, 7))
    at = week.start(config.compliance.tz) + day * ONE_DAY + timedelta(hours=7)
    at += timedelta(seconds=int(rng.integers(0, 3600)))
    walks = []
    for _ in range(3):
        minutes = _whole_seconds(float(rng.uniform(*config.morning_walk_minutes)))
        walks.append(PlannedWalk(grid_code, WalkKind.MORNING, at, minutes))
        gap = _whole_seconds(float(rng.uniform(*config.morning_gap_minutes)))
        at += timedelta(minutes=minutes + gap)
    # One proper walk at most: the morning alone is the gaming, and it does not make a week.
    extra = _days(rng, int(rng.integers(0, 2)), exclude=day)
    return walks + _walks_on(rng, week, extra, grid_code, WalkKind.PATROL, config)


def plan_worker(
    worker: SimWorker,
    week: IsoWeek,
    neighbours: Sequence[str],
    seed: int,
    config: SimulationConfig,
) -> WorkerPlan:
    """The worker's profile, phone and walks for the week."""
    rng = worker_rng(seed, worker.worker_id)
    profile = _profile(rng, config)
    if profile is Profile.NEIGHBOUR_GRID and not neighbours:
        profile = Profile.DILIGENT  # an island grid has no neighbour to cheat in
    phone = _phone(rng, config)
    own = worker.grid_code
    walks: list[PlannedWalk]
    if profile is Profile.ONE_MORNING:
        walks = _one_morning(rng, week, own, config)
    else:
        low, high = config.lazy_walks if profile is Profile.LAZY else config.diligent_walks
        days = _days(rng, int(rng.integers(low, high + 1)))
        kinds = [WalkKind.PATROL] * len(days)
        if profile in (Profile.SHORT_WALKS, Profile.NEIGHBOUR_GRID):
            odd = WalkKind.SHORT if profile is Profile.SHORT_WALKS else WalkKind.NEIGHBOUR
            for i in rng.choice(len(days), int(rng.integers(1, len(days) + 1)), replace=False):
                kinds[int(i)] = odd
        neighbour = str(rng.choice(list(neighbours))) if neighbours else own
        walks = []
        for day, kind in zip(days, kinds, strict=True):
            grid = neighbour if kind is WalkKind.NEIGHBOUR else own
            walks += _walks_on(rng, week, [day], grid, kind, config)
    return WorkerPlan(worker, profile, phone, tuple(sorted(walks, key=lambda w: w.start)))
