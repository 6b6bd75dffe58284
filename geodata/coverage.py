"""Coverage of grids by walks: which share of a grid the usable fixes came near.

A grid's area is sampled by a fixed metric lattice (`CoverageConfig.cell_m` square cells
in EPSG:4545, anchored at the CRS's origin, so every grid's cells line up). A cell is the
grid's when its centre lies inside the grid; it is covered when its centre lies within
`buffer_m` of a usable fix in that grid. Each grid version has a window of the lattice
(its bounding box's cells, row by row), and a day's covered cells are a bit string over
that window: days union by OR, the share is the set bits over the grid's cells.
docs/COVERAGE.md says how close this is to the exact buffered area.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from geodata.compliance.weeks import MAX_YEAR, MIN_YEAR
from geodata.dataset.layers import METRIC_CRS
from geodata.track import InvalidInterval

COVERAGE_CRS: Final = METRIC_CRS
#: The longest period one coverage answer spans, in local days.
MAX_PERIOD_DAYS: Final = 366
# The days whose ISO weeks lie in the supported years: a period's weeks are read, and the
# week of 1970-01-01 begins in 1969.
EARLIEST_DAY: Final = date(MIN_YEAR, 1, 5)
LATEST_DAY: Final = date(MAX_YEAR - 1, 12, 24)

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

CoverageLevel = Literal["grid", "community", "street", "district"]
CODE_LENGTHS: Final[dict[str, int]] = {"district": 6, "street": 9, "community": 12, "grid": 15}


class InvalidPeriod(InvalidInterval):
    """A coverage period that is reversed or too long (the track's `invalid_interval`)."""


@dataclass(frozen=True)
class CoverageConfig:
    """How walks cover grids; built at the edge (WANGGE_COVERAGE_*) and passed down."""

    buffer_m: float = 25.0
    #: The lattice's cell side. Fixed: stored days are bits of this lattice.
    cell_m: float = 10.0
    timezone: str = "Asia/Shanghai"
    max_accuracy_m: float = 100.0

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)
        if not 0 < self.buffer_m <= 500:
            raise ValueError("buffer_m must be in (0, 500]")
        if not 0 < self.cell_m <= 100:
            raise ValueError("cell_m must be in (0, 100]")

    @property
    def tz(self) -> ZoneInfo:
        """The zone local days are cut in."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Lattice:
    """One grid version's window of the city lattice and which of its cells are inside."""

    ix0: int
    iy0: int
    nx: int
    ny: int
    cell_m: float
    inside: BoolArray  # nx * ny, row by row (y then x)

    @property
    def cells_inside(self) -> int:
        """How many cells' centres lie inside the grid: the share's denominator."""
        return int(self.inside.sum())

    @property
    def bits(self) -> int:
        """The bit string's length: the window's cells, padded to whole bytes."""
        return -(-self.nx * self.ny // 8) * 8


def lattice_of(polygon: BaseGeometry, cell_m: float) -> Lattice:
    """The lattice window of a polygon given in COVERAGE_CRS metres."""
    minx, miny, maxx, maxy = polygon.bounds
    ix0, iy0 = int(np.floor(minx / cell_m)), int(np.floor(miny / cell_m))
    nx = int(np.floor(maxx / cell_m)) - ix0 + 1
    ny = int(np.floor(maxy / cell_m)) - iy0 + 1
    cx = (np.arange(ix0, ix0 + nx) + 0.5) * cell_m
    cy = (np.arange(iy0, iy0 + ny) + 0.5) * cell_m
    gx, gy = np.meshgrid(cx, cy)
    inside = shapely.contains_xy(polygon, gx.ravel(), gy.ravel())
    return Lattice(ix0, iy0, nx, ny, cell_m, np.asarray(inside, dtype=bool))


def covered_cells(lattice: Lattice, x: FloatArray, y: FloatArray, buffer_m: float) -> BoolArray:
    """The window's cells inside the grid whose centre is within `buffer_m` of a fix."""
    covered = np.zeros(lattice.nx * lattice.ny, dtype=bool)
    if len(x) == 0:
        return covered
    s = lattice.cell_m
    k = int(np.ceil(buffer_m / s)) + 1
    offsets = np.arange(-k, k + 1)
    # Every fix's (2k+1)² neighbouring cells, kept where the centre is near enough.
    ix = np.floor(x / s).astype(np.int64)[:, None, None] + offsets[None, None, :]
    iy = np.floor(y / s).astype(np.int64)[:, None, None] + offsets[None, :, None]
    dx = (ix + 0.5) * s - x[:, None, None]
    dy = (iy + 0.5) * s - y[:, None, None]
    near = dx * dx + dy * dy <= buffer_m * buffer_m
    col = ix - lattice.ix0
    row = iy - lattice.iy0
    near &= (col >= 0) & (col < lattice.nx) & (row >= 0) & (row < lattice.ny)
    rows, cols = np.broadcast_arrays(row, col)
    covered[rows[near] * lattice.nx + cols[near]] = True
    return covered & lattice.inside


def bits_hex(lattice: Lattice, covered: BoolArray) -> str:
    """The covered cells as the hex digits of a PostgreSQL bit string of `lattice.bits`."""
    padded = np.zeros(lattice.bits, dtype=bool)
    padded[: len(covered)] = covered
    return np.packbits(padded).tobytes().hex()


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class CoveragePeriod:
    """Local days `first` to `last`, both included."""

    first: date
    last: date

    @classmethod
    def of(cls, first: date | None, last: date | None, today: date) -> "CoveragePeriod":
        """The period asked for; by default the 7 days ending `last` (today)."""
        last = last or today
        first = first or last - timedelta(days=6)
        if first > last:
            raise InvalidPeriod(f"from {first} is after to {last}")
        if (last - first).days + 1 > MAX_PERIOD_DAYS:
            raise InvalidPeriod(f"a period spans at most {MAX_PERIOD_DAYS} days")
        if first < EARLIEST_DAY or last > LATEST_DAY:
            raise InvalidPeriod(
                f"a period lies within {EARLIEST_DAY} to {LATEST_DAY} (whole ISO weeks of the"
                f" supported years {MIN_YEAR} to {MAX_YEAR}), not {first} to {last}"
            )
        return cls(first, last)

    def start(self, tz: ZoneInfo) -> datetime:
        """The first day's local midnight."""
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=tz)

    def end(self, tz: ZoneInfo) -> datetime:
        """The local midnight after the last day (excluded)."""
        after = self.last + timedelta(days=1)
        return datetime(after.year, after.month, after.day, tzinfo=tz)


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class GridCoverage:
    """One grid in a period: its counted patrols, the last one, and its covered share."""

    grid_code: str
    name: str
    visits: int
    last_visit: datetime | None
    days_since_last_visit: int | None
    cells_covered: int
    cells_total: int

    @property
    def covered_share(self) -> float:
        """Covered cells over the grid's cells, 0 to 1."""
        return self.cells_covered / self.cells_total if self.cells_total else 0.0


@dataclass(frozen=True)
class AreaCoverage:
    """A community, street or district over its grids (shares weighted by area)."""

    level: CoverageLevel
    code: str
    name: str
    grids: int
    grids_visited: int
    visits: int
    last_visit: datetime | None
    days_since_last_visit: int | None
    cells_covered: int
    cells_total: int

    @property
    def covered_share(self) -> float:
        """Covered cells over the area's grids' cells, 0 to 1."""
        return self.cells_covered / self.cells_total if self.cells_total else 0.0


def days_since(last_visit: datetime | None, period: CoveragePeriod, tz: ZoneInfo) -> int | None:
    """Whole local days from the last visit's day to the period's last day; None if never."""
    if last_visit is None:
        return None
    return (period.last - last_visit.astimezone(tz).date()).days


def aggregate(
    grids: Sequence[GridCoverage],
    level: CoverageLevel,
    names: Mapping[str, str],
    period: CoveragePeriod,
    tz: ZoneInfo,
) -> list[AreaCoverage]:
    """Grids summed into the areas of `level`, in code order."""
    width = CODE_LENGTHS[level]
    groups: dict[str, list[GridCoverage]] = {}
    for grid in grids:
        groups.setdefault(grid.grid_code[:width], []).append(grid)
    areas = []
    for code in sorted(groups):
        members = groups[code]
        visits = [g.last_visit for g in members if g.last_visit is not None]
        last = max(visits) if visits else None
        areas.append(
            AreaCoverage(
                level=level,
                code=code,
                name=names.get(code, ""),
                grids=len(members),
                grids_visited=sum(1 for g in members if g.visits > 0),
                visits=sum(g.visits for g in members),
                last_visit=last,
                days_since_last_visit=days_since(last, period, tz),
                cells_covered=sum(g.cells_covered for g in members),
                cells_total=sum(g.cells_total for g in members),
            )
        )
    return areas
