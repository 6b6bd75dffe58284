"""The query and path parameters of the OGC routes, as FastAPI reads and documents them.

Their values are checked by `grid_service.ogc.params`, which answers 400 as the standard
asks.
"""

from typing import Annotated, Literal

from fastapi import Path, Query

from geodata.cql2 import FilterLang
from geodata.db.features import COLLECTIONS
from geodata.query_limits import MAX_OFFSET
from grid_service.ogc.params import MAX_LIMIT, Format

MetadataFormat = Annotated[
    Literal["json"] | None, Query(description="Representation: `json` (the only one).")
]
FeatureFormat = Annotated[
    Format | None,
    Query(description="Representation: `geojson` (default, application/geo+json) or `json`."),
]
CrsQuery = Annotated[
    str | None,
    Query(
        description="CRS of the coordinates returned: CRS84 (default, lon/lat), or EPSG:4490 "
        "or EPSG:4326 (lat/lon), as a URI such as http://www.opengis.net/def/crs/EPSG/0/4490.",
    ),
]
PropertiesQuery = Annotated[
    str | None,
    Query(
        description="Only these comma-separated properties in each feature (empty: none); "
        "the id and the geometry are always there.",
        examples=["name,households"],
    ),
]
CollectionId = Annotated[
    str,
    Path(
        alias="collectionId",
        description="The collection's id.",
        json_schema_extra={"enum": list(COLLECTIONS)},
    ),
]
BboxQuery = Annotated[
    str | None,
    Query(
        description="Features intersecting minx,miny,maxx,maxy (in `bbox-crs`, CRS84 "
        "by default: lon,lat).",
        examples=["107.14,34.36,107.16,34.37"],
    ),
]
BboxCrsQuery = Annotated[
    str | None, Query(alias="bbox-crs", description="CRS of `bbox`; default CRS84.")
]
DatetimeQuery = Annotated[
    str | None,
    Query(
        alias="datetime",
        description="An RFC 3339 instant or interval (`start/end`, `..` for open). "
        "Grids: each grid's version valid at the instant, or its latest version "
        "overlapping the interval; incidents: reported_at. Other collections have no time.",
        examples=["2020-09-07T10:00:00+08:00"],
    ),
]
LimitQuery = Annotated[
    int,
    Query(
        ge=1,
        description=f"Features per page; above {MAX_LIMIT}, {MAX_LIMIT} are served.",
        json_schema_extra={"maximum": MAX_LIMIT},
    ),
]
OffsetQuery = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="Features to skip (see the next link).")
]
FilterQuery = Annotated[
    str | None,
    Query(
        alias="filter",
        description="A CQL2 condition over the collection's queryables (see its "
        "queryables): comparisons, LIKE, BETWEEN, IN, IS NULL, CASEI, and S_INTERSECTS, "
        "S_WITHIN... with `geometry` first and a geometry or BBOX literal.",
        examples=["households > 500 AND S_INTERSECTS(geometry, BBOX(107.14,34.36,107.16,34.37))"],
    ),
]
FilterLangQuery = Annotated[
    FilterLang | None,
    Query(alias="filter-lang", description="`cql2-text` (default) or `cql2-json`."),
]
FilterCrsQuery = Annotated[
    str | None,
    Query(
        alias="filter-crs",
        description="CRS of the filter's geometry literals: CRS84 (default, lon/lat), or "
        "EPSG:4490 or EPSG:4326 (lat/lon).",
    ),
]
SortbyQuery = Annotated[
    str | None,
    Query(
        description="Comma-separated queryables to order by, `-` before one for "
        "descending; the id always ends the order.",
        examples=["-households,code"],
    ),
]
