"""The compliance benchmark's week: every worker's walks of 2020-W37, and what they fold to.

`plan_week` draws each worker's walks (a few a week, on different days, along random
lines inside their grid, a fix every 30 s); `check_fold` recomputes a sample of the
engine's statuses with `evaluate_week` from the same fixes.
"""

import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import psycopg
import shapely

from geodata.compliance import CheckinRecord, ComplianceConfig, IsoWeek, evaluate_week
from geodata.dataset.layers import LOCAL_TZ
from geodata.db.compliance_store import CLOCK_NAME
from geodata.records import assignment_record
from geodata.staffing import AssignmentPeriod
from wangge.benchmarks.harness import scalar

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

WEEK = IsoWeek(2020, 37)
SEED = 37
LAZY_SHARE = 0.10
WALKS = (3, 5)  # per week on different days; lazy workers 0 to 2
WALK_MINUTES = (40, 90)
FIRST_START_H, LAST_START_H = 7, 19  # every walk ends on the local day it began
SPEED_M_S = (0.8, 1.4)
ACCURACY_M = (5.0, 15.0)
WAYPOINTS = 8
INSET_DEG = 1e-5
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0  # at the equator; times cos(latitude)


@dataclass(frozen=True)
class WeekPlan:
    """Every fix of a simulated week, column by column, in recorded-time order."""

    pairs: list[tuple[str, str]]  # (worker_id, grid_code) of each worker index
    walks: int
    lazy: int
    worker: IntArray
    at_s: IntArray  # epoch seconds
    lon: FloatArray
    lat: FloatArray
    accuracy: FloatArray
    ids: bytes  # 16 random bytes per fix: its event id

    def __len__(self) -> int:
        return len(self.at_s)

    def event_id(self, i: int) -> uuid.UUID:
        """The event id of fix `i`."""
        return uuid.UUID(bytes=self.ids[16 * i : 16 * i + 16], version=4)

    def messages(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Fixes `start:stop` as phones send them: keyed by worker id, JSON value."""
        span = slice(start, stop)
        # Local time has no DST in China, so one offset serves the whole week; formatting
        # the columns at once keeps a million events at seconds, not a minute.
        offset = WEEK.start(LOCAL_TZ).utcoffset() or timedelta(0)
        local = (self.at_s[span] + int(offset.total_seconds())).astype("datetime64[s]")
        suffix = f"{offset.total_seconds() / 3600:+03.0f}:00"
        columns = zip(
            self.worker[span].tolist(),
            np.datetime_as_string(local).tolist(),
            np.char.mod("%.7f", self.lon[span]).tolist(),
            np.char.mod("%.7f", self.lat[span]).tolist(),
            np.char.mod("%.1f", self.accuracy[span]).tolist(),
            strict=True,
        )
        for i, (worker, at, lon, lat, accuracy) in enumerate(columns, start=start):
            worker_id = self.pairs[worker][0]
            value = (
                f'{{"event_id":"{self.event_id(i)}","worker_id":"{worker_id}","lon":{lon},'
                f'"lat":{lat},"recorded_at":"{at}{suffix}","accuracy_m":{accuracy}}}'
            )
            yield worker_id.encode(), value.encode()

    def assignments(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Fixes `start:stop` as the storage stage passes them on: keyed by grid, each in
        its worker's own grid (the plan walks nowhere else), no quality flag."""
        assigned_at = datetime.now(UTC)
        for i, (_, value) in enumerate(self.messages(start, stop), start=start):
            worker_id, grid_code = self.pairs[int(self.worker[i])]
            record = assignment_record(
                "",
                json.loads(value),
                kind="checkin",
                grid_code=grid_code,
                staff_id=worker_id,
                in_assigned_grid=True,
                rule="contains",
                flags=(),
                assigned_at=assigned_at,
            )
            yield record.key or b"", record.value or b""

    def records_of(self, index: int) -> list[CheckinRecord]:
        """Worker `index`'s fixes as the patrol rule reads them, in their own grid."""
        worker_id, grid_code = self.pairs[index]
        return [
            CheckinRecord(
                self.event_id(int(i)),
                worker_id,
                grid_code,
                datetime.fromtimestamp(int(self.at_s[i]), LOCAL_TZ),
                float(self.accuracy[i]),
            )
            for i in np.flatnonzero(self.worker == index)
        ]

    def a_week_later(self, seed: int) -> "WeekPlan":
        """The same walks seven days later, as new events."""
        fresh = np.random.default_rng(seed).bytes(16 * len(self))
        return replace(self, at_s=self.at_s + 7 * 86_400, ids=fresh)


class _Routes:
    """Random walks inside one grid, along straight lines between interior waypoints."""

    def __init__(self, grid: shapely.Geometry, rng: np.random.Generator) -> None:
        # Walk a metre inside the border, so that rounding a fix to the 7 decimals it is
        # sent with never moves it into the neighbouring grid.
        inset = grid.buffer(-INSET_DEG)
        grid = grid if inset.is_empty else inset
        shapely.prepare(grid)
        low, high = np.array(grid.bounds[:2]), np.array(grid.bounds[2:])
        points = np.empty((0, 2))
        while len(points) < WAYPOINTS:
            xy = rng.uniform(low, high, size=(4 * WAYPOINTS, 2))
            points = np.vstack([points, xy[shapely.contains_xy(grid, xy[:, 0], xy[:, 1])]])
        self.lonlat = points[:WAYPOINTS]
        scale = [M_PER_DEG_LON * math.cos(math.radians(self.lonlat[:, 1].mean())), M_PER_DEG_LAT]
        metres = self.lonlat * scale
        self.length = np.linalg.norm(metres[:, None, :] - metres[None, :, :], axis=2)
        # Only lines the grid covers are walked, so a concave grid never loses a fix.
        i, j = np.triu_indices(WAYPOINTS, 1)
        lines = shapely.linestrings(np.stack([self.lonlat[i], self.lonlat[j]], axis=1))
        covered = shapely.covers(grid, lines)
        self.neighbours: list[list[int]] = [[] for _ in range(WAYPOINTS)]
        for a, b in zip(i[covered].tolist(), j[covered].tolist(), strict=True):
            self.neighbours[a].append(b)
            self.neighbours[b].append(a)

    def walk(
        self, fixes: int, step_m: float, rng: np.random.Generator
    ) -> tuple[FloatArray, FloatArray]:
        """Positions of `fixes` fixes `step_m` apart along a random walk."""
        starts = [k for k in range(WAYPOINTS) if self.neighbours[k]] or [0]
        node = int(rng.choice(starts))
        path, travelled = [node], [0.0]
        while self.neighbours[node] and travelled[-1] < step_m * (fixes - 1):
            following = self.neighbours[node][int(rng.integers(len(self.neighbours[node])))]
            travelled.append(travelled[-1] + float(self.length[node, following]))
            path.append(following)
            node = following
        at = np.arange(fixes) * step_m
        return (
            np.interp(at, travelled, self.lonlat[path, 0]),
            np.interp(at, travelled, self.lonlat[path, 1]),
        )


def _assigned_all_week(database_url: str) -> list[tuple[str, str, bytes]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT wa.worker_id, wa.grid_code, ST_AsBinary(g.geom) FROM worker_assignments wa"
            " JOIN grids g ON g.code = wa.grid_code AND g.valid_from <= %(start)s"
            " AND (g.valid_to IS NULL OR g.valid_to >= %(end)s)"
            " WHERE wa.valid_from <= %(start)s AND (wa.valid_to IS NULL OR wa.valid_to >= %(end)s)"
            " ORDER BY wa.worker_id, wa.grid_code",
            {"start": WEEK.start(LOCAL_TZ), "end": WEEK.end(LOCAL_TZ)},
        ).fetchall()
    return [(str(w), str(g), bytes(geom)) for w, g, geom in rows]


def plan_week(
    database_url: str, workers: int | None = None, fix_interval_s: int = 30, seed: int = SEED
) -> WeekPlan:
    """Walks of 2020-W37 for every worker assigned all week (or `workers` of them at random)."""
    rng = np.random.default_rng(seed)
    assigned = _assigned_all_week(database_url)
    if workers is not None and workers < len(assigned):
        assigned = [assigned[i] for i in sorted(rng.choice(len(assigned), workers, replace=False))]
    routes: dict[str, _Routes] = {}
    for _worker, code, geom in assigned:
        if code not in routes:
            routes[code] = _Routes(shapely.from_wkb(geom), rng)
    monday = int(WEEK.start(LOCAL_TZ).timestamp())
    columns: list[tuple[IntArray, IntArray, FloatArray, FloatArray]] = []
    walks = lazy = 0
    for index, (_worker, code, _geom) in enumerate(assigned):
        is_lazy = bool(rng.random() < LAZY_SHARE)
        count = int(rng.integers(0, WALKS[0]) if is_lazy else rng.integers(WALKS[0], WALKS[1] + 1))
        lazy, walks = lazy + is_lazy, walks + count
        for day in sorted(rng.choice(7, count, replace=False).tolist()):
            start = monday + day * 86_400 + int(rng.integers(FIRST_START_H, LAST_START_H) * 3600)
            start += int(rng.integers(0, 3600))
            fixes = int(rng.integers(WALK_MINUTES[0], WALK_MINUTES[1] + 1)) * 60 // fix_interval_s
            step_m = float(rng.uniform(*SPEED_M_S)) * fix_interval_s
            lon, lat = routes[code].walk(fixes + 1, step_m, rng)
            at = start + np.arange(fixes + 1, dtype=np.int64) * fix_interval_s
            columns.append((np.full(fixes + 1, index, dtype=np.int64), at, lon, lat))
    worker, at_s, lon, lat = (np.concatenate([c[k] for c in columns]) for k in range(4))
    order = np.lexsort((worker, at_s))
    accuracy = np.round(rng.uniform(*ACCURACY_M, size=len(order)), 1)
    return WeekPlan(
        pairs=[(w, g) for w, g, _geom in assigned],
        walks=walks,
        lazy=lazy,
        worker=worker[order],
        at_s=at_s[order],
        lon=lon[order],
        lat=lat[order],
        accuracy=accuracy,
        ids=rng.bytes(16 * len(order)),
    )


# --------------------------------------------------------------------------- what it folds to


@dataclass(frozen=True)
class FoldCheck:
    """What the replay left: rows per table, and statuses against `evaluate_week`."""

    checkins: int
    patrol_checkins: int
    in_patrols: int
    patrols: int
    statuses: int
    changes: int
    sampled: int
    agreeing: int


def check_fold(url: str, plan: WeekPlan, sample: int, seed: int = SEED) -> FoldCheck:
    """Count the rows, and recompute a sample of workers' weeks with `evaluate_week`."""
    config = ComplianceConfig()
    week = str(WEEK)
    with psycopg.connect(url) as conn:
        counts = [
            scalar(conn, sql, *params)
            for sql, params in (
                ("SELECT count(*) FROM checkins", ()),
                ("SELECT count(*) FROM patrol_checkins", ()),
                ("SELECT sum(checkin_count) FROM patrols WHERE week = %s", (week,)),
                ("SELECT count(*) FROM patrols WHERE week = %s", (week,)),
                ("SELECT count(*) FROM patrol_weeks WHERE week = %s", (week,)),
                ("SELECT count(*) FROM compliance_changes", ()),
            )
        ]
        clock = conn.execute(
            "SELECT watermark FROM compliance_clock WHERE name = %s", (CLOCK_NAME,)
        ).fetchone()
        stored = {
            (w, g): (s, c, r)
            for w, g, s, c, r in conn.execute(
                "SELECT worker_id, grid_code, status, counted, required FROM patrol_weeks"
                " WHERE week = %s",
                (week,),
            )
        }
        periods = [
            AssignmentPeriod(*row)
            for row in conn.execute(
                "SELECT worker_id, grid_code, valid_from, valid_to FROM worker_assignments"
            )
        ]
    if clock is None or clock[0] is None:
        raise RuntimeError("the engine has no watermark: nothing was folded")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(plan.pairs), min(sample, len(plan.pairs)), replace=False)
    agreeing = 0
    for index in chosen.tolist():
        worker_id, grid_code = plan.pairs[index]
        result = evaluate_week(
            plan.records_of(index),
            periods,
            worker_id=worker_id,
            grid_code=grid_code,
            week=WEEK,
            as_of=clock[0],
            config=config,
        )
        agreeing += stored.get((worker_id, grid_code)) == (
            result.status,
            result.counted,
            result.required,
        )
    checkins, patrol_checkins, in_patrols, patrols, statuses, changes = counts
    return FoldCheck(
        checkins, patrol_checkins, in_patrols, patrols, statuses, changes, len(chosen), agreeing
    )
