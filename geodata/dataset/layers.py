"""The layer contract shared by the generator, the importer and the database.

A GeoPackage written by `wangge dataset generate` has exactly these layers and columns;
the importer reads the same names from any supported format.
"""

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

#: Reference boundaries and assignments are valid from this instant (docs/DATASET.md).
REFERENCE_VALID_FROM = datetime(2020, 1, 1, tzinfo=LOCAL_TZ)

#: Storage CRS of every layer.
STORAGE_CRS = "EPSG:4326"
#: Local metric CRS for areas and distances: CGCS2000 / 3-degree Gauss-Kruger CM 108E.
#: Not EPSG:4547, often quoted for it, which is the CM 114E zone: 4545 is 108E, the
#: zone Baoji (107.05–107.35°E) lies in, so scale error stays below 0.01 %.
METRIC_CRS = "EPSG:4545"


@dataclass(frozen=True)
class LevelSpec:
    """One level of the hierarchy: its layer name, code width and parent column."""

    layer: str
    code_length: int
    parent_column: str | None
    parent_layer: str | None


DISTRICTS = LevelSpec("districts", 6, None, None)
STREETS = LevelSpec("streets", 9, "district_code", "districts")
COMMUNITIES = LevelSpec("communities", 12, "street_code", "streets")
GRIDS = LevelSpec("grids", 15, "community_code", "communities")

#: Top-down order; a parent level always precedes its children.
LEVELS: tuple[LevelSpec, ...] = (DISTRICTS, STREETS, COMMUNITIES, GRIDS)
LEVEL_BY_LAYER = {level.layer: level for level in LEVELS}
LEVEL_BY_CODE_LENGTH = {level.code_length: level for level in LEVELS}

# Attribute columns of each layer, besides `geometry`.
DISTRICT_COLUMNS = ("code", "name", "name_en")
STREET_COLUMNS = ("code", "district_code", "name")
COMMUNITY_COLUMNS = ("code", "street_code", "name")
GRID_COLUMNS = ("code", "community_code", "name", "households")
# `workers` has no geometry: one row per worker with the grid assigned to them.
WORKER_COLUMNS = (
    "worker_id",
    "name",
    "phone",
    "employment",
    "party_role",
    "grid_code",
    "valid_from",
)
POI_COLUMNS = ("poi_id", "name", "kind", "grid_code")

WORKERS_LAYER = "workers"
POIS_LAYER = "pois"

EMPLOYMENT_KINDS = ("full_time", "part_time")
POI_KINDS = ("residential_compound", "organisation", "shop", "restaurant", "cloud_locker")
