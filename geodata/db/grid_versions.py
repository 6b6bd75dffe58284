"""Read every grid boundary version for the in-memory index, and detect when they change."""

import shapely
from sqlalchemy import Engine, func, select, text

from geodata.db.models import Grid
from geodata.spatial_index import GridVersion

# One pass over `grids` (about a thousand rows per boundary generation): the count and
# a digest of every row's identity, validity and geometry. A digest rather than
# max(id)/max(valid_to) alone, because closing a version with a valid_to earlier than
# some other timestamp, or an edit in place, would not move a maximum.
_STAMP_SQL = text(
    """
    SELECT count(*) AS n,
           coalesce(md5(string_agg(
               concat_ws('|', id, code, valid_from, valid_to, md5(ST_AsBinary(geom))),
               ',' ORDER BY id
           )), '') AS digest
    FROM grids
    """
)


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
        rows = conn.execute(statement).all()
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


def boundary_stamp(engine: Engine) -> tuple[int, str]:
    """A cheap value that changes whenever a grid version is inserted, closed or edited."""
    with engine.connect() as conn:
        row = conn.execute(_STAMP_SQL).one()
    return int(row.n), str(row.digest)
