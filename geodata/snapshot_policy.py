"""How the grid snapshot is kept fresh: plain numbers, read by the settings at start-up.

Kept apart from `geodata.db.grid_cache` so that reading settings (every `wangge`
command does) does not import SQLAlchemy, shapely and numpy.
"""

from dataclasses import dataclass

#: How far outside every grid (metres) a point is still given to the nearest grid.
DEFAULT_TOLERANCE_M = 30.0


@dataclass(frozen=True)
class SnapshotPolicy:
    """How the grid snapshot is kept: how often it is checked, and the index's tolerance.

    A check (one small query) runs at most every `check_interval_s`, and the snapshot is
    reloaded only when it finds the data changed. Both adapters take the same default, so
    a change reaches the API's locate and the consumers' assignment within one interval.
    """

    check_interval_s: float = 2.0
    #: How far outside every grid (metres) a point is still given to the nearest.
    tolerance_m: float = DEFAULT_TOLERANCE_M

    def __post_init__(self) -> None:
        if self.check_interval_s < 0 or self.tolerance_m < 0:
            raise ValueError("need check_interval_s >= 0 and tolerance_m >= 0")
