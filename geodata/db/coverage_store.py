"""Coverage in PostGIS: the storage stage ORs covered cells in, the readers sum a period.

`coverage_days` holds one bit string per (grid version, local day) over the version's
lattice window (geodata/coverage.py), `coverage_lattices` each version's count of cells.
Visits are the compliance engine's counted patrols (`patrols`), read, never written here.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Connection, Engine, text

from geodata.compliance import IsoWeek
from geodata.coverage import (
    AreaCoverage,
    CoverageLevel,
    CoveragePeriod,
    GridCoverage,
    aggregate,
    days_since,
)
from geodata.db.kept_answers import KEPT_ANSWERS, MAX_AGE_S, KeptAnswers


@dataclass(frozen=True)
class LatticeRow:
    """A grid version and how many lattice cells lie inside it."""

    grid_code: str
    grid_from: datetime
    cells_inside: int


@dataclass(frozen=True)
class CoverageDay:
    """A grid version's cells covered on a local day, as the hex digits of a bit string."""

    grid_code: str
    grid_from: datetime
    local_day: date
    cells_hex: str


_ADD_LATTICES = """
INSERT INTO coverage_lattices (grid_code, grid_from, cells_inside)
SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::int[])
ON CONFLICT DO NOTHING
"""

# Rows in key order, so two intake members OR-ing into the same days lock them in the
# same order and never deadlock.
_ADD_DAYS = """
INSERT INTO coverage_days (grid_code, grid_from, local_day, cells)
SELECT code, grid_from, day, ('x' || hex)::varbit
FROM unnest(%s::text[], %s::timestamptz[], %s::date[], %s::text[]) AS t(code, grid_from, day, hex)
ORDER BY code, grid_from, day
ON CONFLICT (grid_code, grid_from, local_day)
DO UPDATE SET cells = coverage_days.cells | EXCLUDED.cells
"""


def add(
    conn: psycopg.Connection, lattices: Sequence[LatticeRow], days: Sequence[CoverageDay]
) -> None:
    """Store lattices (once) and OR covered days in, in the caller's transaction."""
    if lattices:
        conn.execute(
            _ADD_LATTICES,
            (
                [r.grid_code for r in lattices],
                [r.grid_from for r in lattices],
                [r.cells_inside for r in lattices],
            ),
        )
    if days:
        conn.execute(
            _ADD_DAYS,
            (
                [d.grid_code for d in days],
                [d.grid_from for d in days],
                [d.local_day for d in days],
                [d.cells_hex for d in days],
            ),
        )


# The grid versions valid at the period's last instant; visits (counted patrols begun in
# the period), the last counted patrol begun before its end, and the OR of its days' cells.
_GRIDS_SQL = text(
    """
WITH scope AS (
    SELECT code, name, valid_from FROM grids
    WHERE valid_from < :end AND (valid_to IS NULL OR valid_to >= :end)
      AND code LIKE :pattern
), visits AS (
    SELECT grid_code, count(*) AS visits FROM patrols
    WHERE counted AND week = ANY(:weeks) AND started_at >= :start AND started_at < :end
      AND grid_code LIKE :pattern
    GROUP BY grid_code
), cells AS (
    SELECT grid_code, grid_from, bit_count(bit_or(cells)) AS covered FROM coverage_days
    WHERE local_day >= :first AND local_day <= :last AND grid_code LIKE :pattern
    GROUP BY grid_code, grid_from
)
SELECT s.code, s.name, coalesce(v.visits, 0), last.at,
       coalesce(c.covered, 0), coalesce(l.cells_inside, 0)
FROM scope s
LEFT JOIN visits v ON v.grid_code = s.code
LEFT JOIN cells c ON c.grid_code = s.code AND c.grid_from = s.valid_from
LEFT JOIN coverage_lattices l ON l.grid_code = s.code AND l.grid_from = s.valid_from
LEFT JOIN LATERAL (
    SELECT max(p.started_at) AS at FROM patrols p
    WHERE p.grid_code = s.code AND p.counted AND p.started_at < :end
) last ON true
ORDER BY s.code
"""
)

# psycopg prepares a statement on its fifth run on a connection, and PostgreSQL plans a
# prepared statement generically after five more. Without the values, `code LIKE :pattern`
# and the period look like one row, and the generic plan sorts and sums the period's
# coverage days again for every grid: 0.5 s for Baoji's week instead of 10 ms. A custom
# plan per run costs a few milliseconds of planning.
_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")

_AREA_NAMES = {
    "community": text("SELECT code, name FROM communities WHERE code LIKE :pattern"),
    "street": text("SELECT code, name FROM streets WHERE code LIKE :pattern"),
    "district": text("SELECT code, name FROM districts WHERE code LIKE :pattern"),
}


def _weeks(period: CoveragePeriod) -> list[str]:
    weeks = []
    day = period.first
    while day <= period.last:
        weeks.append(str(IsoWeek.of_date(day)))
        day += timedelta(days=7)
    last = str(IsoWeek.of_date(period.last))
    return weeks if weeks[-1] == last else [*weeks, last]


def grid_coverage(
    conn: Connection, period: CoveragePeriod, prefix: str, tz: ZoneInfo
) -> list[GridCoverage]:
    """Every grid under `prefix` ('' for all) in the period, in code order."""
    rows = conn.execute(
        _GRIDS_SQL,
        {
            "start": period.start(tz),
            "end": period.end(tz),
            "first": period.first,
            "last": period.last,
            "weeks": _weeks(period),
            "pattern": prefix + "%",
        },
    )
    return [
        GridCoverage(
            grid_code=code,
            name=name,
            visits=visits,
            last_visit=last,
            days_since_last_visit=days_since(last, period, tz),
            cells_covered=covered,
            cells_total=total,
        )
        for code, name, visits, last, covered, total in rows
    ]


def coverage_report(
    engine: Engine, period: CoveragePeriod, level: CoverageLevel, prefix: str, tz: ZoneInfo
) -> list[GridCoverage] | list[AreaCoverage]:
    """The period's coverage per grid, or summed per community, street or district."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            conn.execute(_CUSTOM_PLANS)
            grids = grid_coverage(conn, period, prefix, tz)
            if level == "grid":
                return grids
            rows = conn.execute(_AREA_NAMES[level], {"pattern": prefix + "%"})
            names = {code: name for code, name in rows}  # noqa: C416 (a Result has keys())
    return aggregate(grids, level, names, period, tz)


def read_stamp(engine: Engine) -> int:
    """The highest id of the patrols: moved by every new counted or uncounted patrol."""
    with engine.connect() as conn:
        stamp = conn.execute(text("SELECT coalesce(max(id), 0) FROM patrols")).scalar_one()
        conn.rollback()
    return int(stamp)


AnswerKey = tuple[CoveragePeriod, CoverageLevel, str, str]
"""(period, level, code prefix, form): one rendering of one coverage report."""


class CoverageMemory:
    """Rendered coverage answers kept while no patrol was written (at most `max_age_s`).

    The stamp is the patrols' highest id. The compliance engine rewrites a local day's
    patrols (new ids) for every batch of usable check-ins in it, and those are the
    check-ins whose cells the storage stage ORs into that day, so a walk moves the stamp
    once the engine has folded it in, a second or so after its cells were stored. What
    the stamp does not see (a day whose patrols were only deleted, a new grid version)
    shows within `max_age_s`.
    """

    def __init__(
        self, engine: Engine, *, max_age_s: float = MAX_AGE_S, size: int = KEPT_ANSWERS
    ) -> None:
        self._kept: KeptAnswers[AnswerKey] = KeptAnswers(
            lambda: read_stamp(engine), max_age_s=max_age_s, size=size
        )

    def answer(self, key: AnswerKey, make: Callable[[], bytes]) -> bytes:
        """The kept rendering for `key`, or `make()`'s (which reads `coverage_report`)."""
        return self._kept.answer(key, make)
