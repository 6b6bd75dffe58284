"""A worker's seeded week of walks, written as the pipeline would have stored it.

Seven walks around one grid over the week, a fix every 30 seconds (about 500 in all),
with one fix of each kind a supervisor should doubt: poor accuracy, an impossible jump
(out of every grid), a mocked position and a fix in a neighbouring grid. The check-ins
go into `checkins` with the intake's flags, and the patrols into `patrols` as the
compliance engine cuts and judges them (`geodata.compliance.build_patrols`,
`valid_at`), so the track and the patrols routes read exactly what a real week leaves
behind. Used by the track benchmark and by the walk's tests.
"""

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
import shapely
from shapely.geometry import LineString, Point

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.compliance.patrols import CheckinRecord, build_patrols, valid_at
from geodata.compliance.weekly import ComplianceKey
from geodata.db import compliance_store
from geodata.db.compliance_store import PatrolRow
from geodata.db.engine import libpq_url
from geodata.quality import IMPLAUSIBLE_SPEED, LOW_ACCURACY, MOCKED

WEEK = IsoWeek.parse("2020-W37")
"""The seeded week: Monday 2020-09-07 to Sunday 2020-09-13, Asia/Shanghai."""

FIX_EVERY = timedelta(seconds=30)

# (day of the week, hour, minute, minutes walked): Monday twice (the second walk is
# `already_counted_today`), Thursday's too short to be valid, the others counted.
WALKS = ((0, 9, 0, 40), (0, 15, 0, 40), (1, 9, 30, 40), (2, 10, 0, 40), (3, 8, 0, 6),
         (4, 14, 0, 40), (5, 16, 0, 40))  # fmt: skip


@dataclass(frozen=True)
class SeededWalk:
    """What was seeded: whose week, in which grid, and how many fixes of each kind."""

    worker_id: str
    grid_code: str
    neighbour_code: str
    week: IsoWeek
    fixes: int
    flagged: dict[str, int]


def seed_walk_week(database_url: str, worker_id: str | None = None, seed: int = 37) -> SeededWalk:
    """Seed WEEK's walks of `worker_id` (default: the first worker with one grid and a
    neighbouring grid) in their grid; the check-ins and patrols, committed."""
    config = ComplianceConfig()
    tz = config.tz
    rng = random.Random(seed)
    with psycopg.connect(libpq_url(database_url)) as conn:
        worker_id, grid_code, ring, neighbour, inside_neighbour = _pick(conn, worker_id)
        rows: list[tuple[object, ...]] = []
        flagged = {LOW_ACCURACY: 0, IMPLAUSIBLE_SPEED: 0, MOCKED: 0, "outside_assigned_grid": 0}
        start_of_week = WEEK.start(tz)
        for n, (day, hour, minute, minutes) in enumerate(WALKS):
            begin = start_of_week + timedelta(days=day, hours=hour, minutes=minute)
            count = int(timedelta(minutes=minutes) / FIX_EVERY) + 1
            offset = rng.random()
            for i in range(count):
                at = begin + i * FIX_EVERY
                # A 40-minute walk goes nine tenths of the way round; a shorter one less.
                fraction = (offset + i / max(count - 1, 1) * 0.9 * minutes / 40) % 1.0
                point = ring.interpolate(fraction, normalized=True)
                lon = point.x + rng.gauss(0, 0.00002)
                lat = point.y + rng.gauss(0, 0.00002)
                code: str | None = grid_code
                accuracy, flags, assigned = rng.uniform(4, 15), [], True
                if n == 2 and i == 10:
                    accuracy, flags = 180.0, [LOW_ACCURACY]
                elif n == 3 and i == 20:
                    # A jump of kilometres in 30 s, out of the city's grids.
                    lon, lat, flags = lon + 0.05, lat + 0.05, [IMPLAUSIBLE_SPEED]
                    code, assigned = None, False
                elif n == 5 and i == 30:
                    flags = [MOCKED]
                elif n == 6 and i == count - 1:
                    lon, lat, code, assigned = (
                        inside_neighbour.x,
                        inside_neighbour.y,
                        neighbour,
                        False,
                    )
                for flag in flags:
                    flagged[flag] += 1
                if not assigned:
                    flagged["outside_assigned_grid"] += 1
                rows.append(
                    (uuid.uuid4(), worker_id, at, lon, lat, accuracy, code, assigned, flags)
                )
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO checkins (event_id, worker_id, recorded_at, lon, lat, accuracy_m,"
                " geom, grid_code, staff_id, in_assigned_grid, assignment_rule, flags)"
                " VALUES (%s, %s, %s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326),"
                " %s, %s, %s, 'contains', %s)",
                [(r[0], r[1], r[2], r[3], r[4], r[5], r[3], r[4], r[6], r[1], r[7], r[8])
                 for r in rows],
            )  # fmt: skip
        usable = [
            CheckinRecord(
                r[0],  # type: ignore[arg-type]
                worker_id,
                grid_code,
                r[2],  # type: ignore[arg-type]
                r[5],  # type: ignore[arg-type]
                mock=MOCKED in r[8],  # type: ignore[operator]
                implausible_speed=IMPLAUSIBLE_SPEED in r[8],  # type: ignore[operator]
            )
            for r in rows
            if r[7] and r[5] <= config.max_accuracy_m  # type: ignore[operator]
        ]
        patrols = build_patrols(usable, config)
        key = ComplianceKey(worker_id, grid_code, WEEK)
        compliance_store.replace_patrols(
            conn, {key: [PatrolRow(p, valid_at(p, usable, config)) for p in patrols]}
        )
    return SeededWalk(worker_id, grid_code, neighbour, WEEK, len(rows), flagged)


def _pick(
    conn: psycopg.Connection, worker_id: str | None
) -> tuple[str, str, LineString, str, Point]:
    """A worker with one grid (for the whole week), a walk around that grid, a neighbour."""
    row = conn.execute(
        "SELECT a.worker_id, a.grid_code, ST_AsBinary(g.geom), n.code,"
        "       ST_AsBinary(ST_PointOnSurface(n.geom))"
        " FROM worker_assignments a"
        " JOIN grids g ON g.code = a.grid_code AND g.valid_to IS NULL"
        " JOIN LATERAL (SELECT code, geom FROM grids n WHERE n.valid_to IS NULL"
        "   AND n.code <> g.code AND ST_Touches(n.geom, g.geom) ORDER BY n.code LIMIT 1) n ON true"
        " WHERE a.valid_to IS NULL AND a.valid_from <= %s"
        "   AND (%s::text IS NULL OR a.worker_id = %s)"
        "   AND a.worker_id IN (SELECT worker_id FROM worker_assignments"
        "                       GROUP BY worker_id HAVING count(*) = 1)"
        " ORDER BY a.worker_id LIMIT 1",
        (WEEK.start(ComplianceConfig().tz), worker_id, worker_id),
    ).fetchone()
    if row is None:
        raise ValueError(f"no worker with one grid and a neighbouring grid ({worker_id!r})")
    grid = shapely.from_wkb(bytes(row[2]))
    # A walk along the inside of the grid's edge: its boundary pulled in towards the centre.
    inner = grid.buffer(-0.0002)
    shape = inner if not inner.is_empty else grid
    largest = max(getattr(shape, "geoms", [shape]), key=lambda part: part.area)
    neighbour_point = shapely.from_wkb(bytes(row[4]))
    return row[0], row[1], LineString(largest.exterior.coords), row[3], neighbour_point


def local_week_bounds(week: IsoWeek = WEEK) -> tuple[datetime, datetime]:
    """The week's start and end, local time."""
    tz = ComplianceConfig().tz
    return week.start(tz), week.end(tz)
