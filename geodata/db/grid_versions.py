"""Read every grid boundary version for the in-memory index.

The grid snapshot (`geodata.db.grid_cache`) reads them with their hierarchy and staff for
both adapters; `load_grid_versions` reads the versions alone (the locate benchmark).
"""

from collections.abc import Sequence
from typing import Any

import shapely
from sqlalchemy import Engine, Row, func, select

from geodata.db.models import Grid
from geodata.spatial_index import GridVersion


def load_grid_versions(engine: Engine) -> list[GridVersion]:
    """Every grid version, current and closed, ordered by code then valid_from."""
    statement = select(
        Grid.code,
        Grid.community_code,
        func.ST_AsBinary(Grid.geom).label("wkb"),
        Grid.valid_from,
        Grid.valid_to,
    ).order_by(Grid.code, Grid.valid_from)
    with engine.connect() as conn:
        return decode_versions(conn.execute(statement).all())


def decode_versions(rows: Sequence[Row[Any]]) -> list[GridVersion]:
    """Grid versions from rows with `code`, `community_code`, `wkb`, `valid_from`, `valid_to`."""
    # One vectorised WKB decode for all rows; WKB keeps the stored doubles bit for bit,
    # which the index needs to agree with PostGIS on points exactly on an edge.
    geometries = shapely.from_wkb([bytes(row.wkb) for row in rows])
    return [
        GridVersion(
            code=row.code,
            community_code=row.community_code,
            geometry=geometry,
            valid_from=row.valid_from,
            valid_to=row.valid_to,
        )
        for row, geometry in zip(rows, geometries, strict=True)
    ]
