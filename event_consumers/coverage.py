"""The storage stage's coverage part: a batch's usable fixes as covered cells per grid and day.

Run by `CheckinHandler`: `rows` on the main thread while preparing a batch (CPU only),
`geodata.db.coverage_store.add` on the writer thread in the batch's transaction. The
bits of a (grid, day) are OR-ed in, so a redelivered fix sets bits already set and
changes nothing; no event id is needed to make it idempotent.
"""

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import shapely
from pyproj import Transformer

from geodata.coverage import (
    COVERAGE_CRS,
    CoverageConfig,
    Lattice,
    bits_hex,
    covered_cells,
    lattice_of,
)
from geodata.dataset.layers import STORAGE_CRS
from geodata.db.coverage_store import CoverageDay, LatticeRow
from geodata.db.event_store import CheckinBatch
from geodata.spatial_index import GridIndex, GridVersion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoverageRows:
    """What a batch adds: lattices not yet written by this process, and covered days."""

    lattices: list[LatticeRow] = field(default_factory=list)
    days: list[CoverageDay] = field(default_factory=list)


class CoverageRecorder:
    """Turns a batch's usable fixes into covered cells of each grid version and local day."""

    def __init__(self, config: CoverageConfig | None = None) -> None:
        self.config = config or CoverageConfig()
        self._to_metric = Transformer.from_crs(STORAGE_CRS, COVERAGE_CRS, always_xy=True)
        self._index: GridIndex | None = None
        self._versions: dict[str, list[GridVersion]] = {}
        self._lattices: dict[tuple[str, datetime], Lattice] = {}
        self._written: set[tuple[str, datetime]] = set()

    def reset(self) -> None:
        """After a rolled-back batch: lattice rows it carried may not be stored."""
        self._written.clear()

    def rows(self, index: GridIndex, batch: CheckinBatch) -> CoverageRows:
        """The lattice and covered-day rows of a batch, located with `index`."""
        self._follow(index)
        lattices = [
            LatticeRow(code, valid_from, lattice.cells_inside)
            for (code, valid_from), lattice in self._lattices.items()
            if (code, valid_from) not in self._written
        ]
        self._written.update(self._lattices)
        groups = self._usable_groups(batch)
        if not groups:
            return CoverageRows(lattices, [])
        lon = np.asarray(batch.wgs_lon, dtype=float)
        lat = np.asarray(batch.wgs_lat, dtype=float)
        x, y = self._to_metric.transform(lon, lat)
        days = []
        for (code, valid_from, day), members in groups.items():
            lattice = self._lattices[(code, valid_from)]
            take = np.asarray(members)
            covered = covered_cells(lattice, x[take], y[take], self.config.buffer_m)
            if covered.any():
                days.append(CoverageDay(code, valid_from, day, bits_hex(lattice, covered)))
        return CoverageRows(lattices, days)

    def _follow(self, index: GridIndex) -> None:
        """Build every version's lattice once per grid index (a new snapshot, new index)."""
        if index is self._index:
            return
        versions: dict[str, list[GridVersion]] = {}
        lattices: dict[tuple[str, datetime], Lattice] = {}
        for version in index.versions:
            versions.setdefault(version.code, []).append(version)
            key = (version.code, version.valid_from)
            lattice = self._lattices.get(key)
            if lattice is None:
                metric = shapely.transform(version.geometry, self._project, interleaved=False)
                lattice = lattice_of(metric, self.config.cell_m)
            lattices[key] = lattice
        self._index, self._versions, self._lattices = index, versions, lattices
        logger.info("coverage lattices of %d grid versions ready", len(lattices))

    def _project(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mx, my = self._to_metric.transform(x, y)
        return np.asarray(mx), np.asarray(my)

    def _usable_groups(self, batch: CheckinBatch) -> dict[tuple[str, datetime, date], list[int]]:
        """Indices of the usable fixes by (grid code, version's valid_from, local day).

        Usable as for a patrol (docs/PATROL_RULE.md): in a grid its poster is assigned to,
        accuracy absent or within `max_accuracy_m`; and no quality flag at all.
        """
        tz = self.config.tz
        groups: dict[tuple[str, datetime, date], list[int]] = {}
        for i, code in enumerate(batch.grid_codes):
            if code is None or not batch.in_assigned_grid[i] or batch.flags[i]:
                continue
            accuracy = batch.accuracy_m[i]
            if accuracy is not None and accuracy > self.config.max_accuracy_m:
                continue
            at = batch.recorded_at[i]
            version = self._version_at(code, at)
            if version is None:
                continue
            key = (code, version.valid_from, at.astimezone(tz).date())
            groups.setdefault(key, []).append(i)
        return groups

    def _version_at(self, code: str, at: datetime) -> GridVersion | None:
        for version in self._versions.get(code, ()):
            if version.valid_from <= at and (version.valid_to is None or at < version.valid_to):
                return version
        return None
