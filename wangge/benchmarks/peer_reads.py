"""What `wangge bench peers` asks each server: the reads, their paths and their targets.

Each read is asked of wangge and of its peer (tipg, or the bare route) in the paths each
server takes for the same thing; tipg is configured to publish wangge's grids table with
the same feature ids and properties, so that both answer alike.
"""

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from geodata.compliance import IsoWeek
from geodata.db.engine import libpq_url
from geodata.db.tiles import TILE_BUFFER, tiles_covering
from wangge.benchmarks.loadgen import Target
from wangge.benchmarks.servers import CEILING_PATH

CONNECTIONS = 16
OGC_PAGE = 100
TILE_ZOOMS = (12, 14)
POINTS = 2000
SEED = 2020
#: The grid properties wangge's OGC features carry; tipg is told to publish the same.
FEATURE_FIELDS = ("code", "community_code", "households", "name", "valid_from", "valid_to")
#: What tipg puts in a grids tile: wangge's tile fields but the district and street codes,
#: which wangge cuts from the grid code.
TILE_FIELDS = ("code", "name", "community_code", "households")
TIPG_COLLECTION = "public.grids"
COMPLIANCE_P99_MS = 100.0

WANGGE, RENDERING, TIPG, BARE = "wangge", "wangge, tile cache off", "tipg", "bare"
SERVER_NAMES = {
    WANGGE: "wangge",
    RENDERING: "wangge, tile cache off",
    TIPG: "tipg",
    BARE: "bare async FastAPI route",
}


@dataclass(frozen=True)
class Read:
    """One read, as each of two servers is asked it, and what wangge must reach."""

    name: str
    ours_server: str
    ours: Sequence[Target]
    peer_server: str
    peer: Sequence[Target]
    target: str
    min_ratio: float
    p99_at_most_peer: bool = False
    p99_at_most_ms: float | None = None
    ours_status: str = "200"


# --------------------------------------------------------------------------- the city


@dataclass(frozen=True)
class City:
    """What the reads are asked about: points, community boxes, tiles, grid codes."""

    points: list[tuple[float, float]]
    boxes: list[tuple[float, ...]]
    tiles: dict[int, list[tuple[int, int, int]]]
    codes: list[str]


def read_city(url: str) -> City:
    """The city's grids in force, each list in a fixed shuffled order."""
    with psycopg.connect(libpq_url(url)) as conn:
        points = conn.execute(
            "SELECT ST_X(d.geom), ST_Y(d.geom) FROM ST_Dump(ST_GeneratePoints("
            "(SELECT ST_Union(geom) FROM grids WHERE valid_to IS NULL), %s, %s)) AS d",
            (POINTS, SEED),
        ).fetchall()
        boxes = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom)"
            " AS e FROM grids WHERE valid_to IS NULL GROUP BY community_code) AS c"
        ).fetchall()
        bounds = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom)"
            " AS e FROM grids WHERE valid_to IS NULL) AS city"
        ).fetchone()
        codes = [r[0] for r in conn.execute("SELECT code FROM grids WHERE valid_to IS NULL")]
    if not codes or bounds is None or None in bounds:
        raise ValueError("no grids in force: import the reference dataset first")
    west, south, east, north = (float(v) for v in bounds)
    city = City(
        points=[(float(x), float(y)) for x, y in points],
        boxes=[tuple(float(v) for v in box) for box in boxes],
        tiles={z: tiles_covering((west, south, east, north), z) for z in TILE_ZOOMS},
        codes=sorted(codes),
    )
    rng = random.Random(SEED)
    rng.shuffle(city.points)
    rng.shuffle(city.boxes)
    rng.shuffle(city.codes)
    for tiles in city.tiles.values():
        rng.shuffle(tiles)
    return city


def _bbox(box: Sequence[float]) -> str:
    return ",".join(f"{v:.6f}" for v in box)


def _tipg_tile(z: int, x: int, y: int) -> str:
    return (
        f"/collections/{TIPG_COLLECTION}/tiles/WebMercatorQuad/{z}/{x}/{y}"
        f"?properties={','.join(TILE_FIELDS)}"
    )


def plan_reads(
    city: City, etags: dict[tuple[int, int, int], str], week: IsoWeek, token: str
) -> list[Read]:
    """Every read, in the order they run; `etags` are wangge's for each tile."""
    pages = range(0, len(city.codes), OGC_PAGE)
    tipg_items = f"/collections/{TIPG_COLLECTION}/items"
    vs_tipg = "≥ 1.0 × tipg, p99 ≤ tipg's"
    reads = [
        Read(
            f"OGC items, {OGC_PAGE} grids", WANGGE,
            [f"/ogc/collections/grids/items?limit={OGC_PAGE}&offset={o}" for o in pages],
            TIPG, [f"{tipg_items}?limit={OGC_PAGE}&offset={o}" for o in pages],
            vs_tipg, 1.0, p99_at_most_peer=True,
        ),
        Read(
            "OGC items, bbox of one community", WANGGE,
            [f"/ogc/collections/grids/items?limit={OGC_PAGE}&bbox={_bbox(b)}" for b in city.boxes],
            TIPG, [f"{tipg_items}?limit={OGC_PAGE}&bbox={_bbox(b)}" for b in city.boxes],
            vs_tipg, 1.0, p99_at_most_peer=True,
        ),
        Read(
            "OGC one feature by id", WANGGE,
            [f"/ogc/collections/grids/items/{code}" for code in city.codes],
            TIPG, [f"{tipg_items}/{code}" for code in city.codes],
            vs_tipg, 1.0, p99_at_most_peer=True,
        ),
    ]  # fmt: skip
    for z in TILE_ZOOMS:
        reads.append(
            Read(
                f"tiles z{z}, drawn each time", RENDERING,
                [f"/tiles/grids/{z}/{x}/{y}.pbf" for _, x, y in city.tiles[z]],
                TIPG, [_tipg_tile(z, x, y) for _, x, y in city.tiles[z]],
                vs_tipg, 1.0, p99_at_most_peer=True,
            )
        )  # fmt: skip
    bare = [CEILING_PATH]
    for z in TILE_ZOOMS:
        wangge_tiles = [f"/tiles/grids/{z}/{x}/{y}.pbf" for _, x, y in city.tiles[z]]
        reads.append(Read(f"tiles z{z}, cache hits", WANGGE, list(wangge_tiles), BARE, bare,
                          "≥ 0.5 × bare", 0.5))  # fmt: skip
        revalidations: list[Target] = [
            {"path": path, "headers": {"If-None-Match": etags[tile]}}
            for path, tile in zip(wangge_tiles, city.tiles[z], strict=True)
        ]
        reads.append(Read(f"tiles z{z}, 304 revalidations", WANGGE, revalidations, BARE, bare,
                          "≥ 0.5 × bare", 0.5, ours_status="304"))  # fmt: skip
    compliance: Target = {
        "path": f"/api/v1/compliance?week={week}",
        "headers": {"Authorization": f"Bearer {token}"},
    }
    reads += [
        Read(
            "nearest", WANGGE,
            [f"/api/v1/grids/nearest?lon={x:.6f}&lat={y:.6f}" for x, y in city.points],
            BARE, bare, "≥ 0.3 × bare", 0.3,
        ),
        Read(
            f"compliance, whole city, open week ({week})", WANGGE, [compliance], BARE, bare,
            f"≥ 0.1 × bare, p99 ≤ {COMPLIANCE_P99_MS:g} ms", 0.1,
            p99_at_most_ms=COMPLIANCE_P99_MS,
        ),
    ]  # fmt: skip
    return reads


def tipg_env(url: str) -> dict[str, str]:
    """tipg's settings: the grids table alone, the code as feature id, wangge's fields."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIPG_", "WANGGE_"))}
    return {
        **env,
        "DATABASE_URL": libpq_url(url),
        "TIPG_DB_TABLES": json.dumps([TIPG_COLLECTION]),
        "TIPG_DB_FUNCTIONS": json.dumps([]),
        "TIPG_TABLE_CONFIG__public_grids__pk": "code",
        "TIPG_TABLE_CONFIG__public_grids__properties": json.dumps(FEATURE_FIELDS),
        "TIPG_TILE_BUFFER": str(TILE_BUFFER),  # wangge's, so both clip the same margin
    }
