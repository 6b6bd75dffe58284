"""Deterministic generator of the synthetic Baoji reference dataset (docs/DATASET.md).

One planar partition of 1,138 Voronoi cells is built in EPSG:4545 and every level above
the grids is a union of its cells, so shared edges are identical and the hierarchy nests
exactly. Counts are the real ones; coordinates, names, codes and people are synthetic.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyogrio
import shapely
from pyproj import Transformer

from geodata.dataset import layers, names
from geodata.dataset.partition import cell_neighbours, partition_cells

Progress = Callable[[str, int, int], None]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
GeomArray = npt.NDArray[np.object_]

N_COMMUNITIES = 126
N_GRIDS = 1138
N_WORKERS = 2381
N_LOCKERS = 40
MIN_GRIDS_PER_COMMUNITY = 4
MAX_WORKERS_PER_GRID = 4
HIGH_TECH_CODE = "610371"
DISTRICTS: tuple[tuple[str, str, str], ...] = (
    ("610302", "渭滨区", "Weibin"),
    ("610303", "金台区", "Jintai"),
    ("610304", "陈仓区", "Chencang"),
    (HIGH_TECH_CODE, "高新区", "High-tech Zone"),
)

# Synthetic urban area (lon, lat): a band along the Wei valley, wider in the old centre.
URBAN_OUTLINE: tuple[tuple[float, float], ...] = (
    (107.05, 34.370), (107.075, 34.386), (107.10, 34.397), (107.13, 34.404),
    (107.16, 34.407), (107.19, 34.403), (107.22, 34.396), (107.25, 34.390),
    (107.28, 34.388), (107.31, 34.390), (107.335, 34.386), (107.35, 34.374),
    (107.35, 34.350), (107.33, 34.342), (107.30, 34.335), (107.27, 34.329),
    (107.24, 34.327), (107.21, 34.330), (107.18, 34.335), (107.15, 34.337),
    (107.12, 34.339), (107.09, 34.342), (107.065, 34.348), (107.05, 34.358),
)  # fmt: skip
# The Wei River, west to east; districts are told apart by bank and longitude.
WEI_RIVER: tuple[tuple[float, float], ...] = (
    (107.04, 34.370), (107.08, 34.368), (107.12, 34.365), (107.16, 34.367),
    (107.20, 34.369), (107.24, 34.365), (107.28, 34.367), (107.32, 34.371),
    (107.36, 34.369),
)  # fmt: skip
JINTAI_EAST_LON = 107.23  # north bank: 金台区 to the west, 陈仓区 to the east
WEIBIN_EAST_LON = 107.205  # south bank: 渭滨区 | 高新区 | 陈仓区
HIGH_TECH_EAST_LON = 107.30
# Density peaks (lon, lat, weight, sigma in metres): old towns get smaller grids.
DENSITY_PEAKS: tuple[tuple[float, float, float, float], ...] = (
    (107.145, 34.352, 1.4, 3000.0),  # 渭滨 old town
    (107.150, 34.372, 1.0, 3000.0),  # 金台 centre
    (107.245, 34.345, 1.0, 3500.0),  # 高新 centre
    (107.330, 34.370, 0.6, 3000.0),  # 陈仓 (虢镇)
    (107.075, 34.365, 0.4, 2500.0),  # western suburbs
)
DENSITY_FLOOR = 0.6
# Where the article's named places are put (synthetic locations).
JINGER_ROAD = (107.145, 34.352)
QINGJIANG_ROAD = (107.140, 34.342)
HEXIE_ROAD = (107.245, 34.345)

LLOYD_ITERATIONS = 6
MAX_EXTRA_ITERATIONS = 30
# Relax until grids sit well inside the 0.02–0.6 km² the spec allows.
ACCEPTED_AREA_M2 = (30_000.0, 500_000.0)
POI_EDGE_MARGIN_M = 5.0  # keeps points unambiguous after reprojection


@dataclass(frozen=True)
class ReferenceDataset:
    """The six layers of the reference dataset, in EPSG:4326 (workers without geometry)."""

    districts: gpd.GeoDataFrame
    streets: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame
    grids: gpd.GeoDataFrame
    workers: pd.DataFrame
    pois: gpd.GeoDataFrame


@dataclass
class _Unit:
    """A street, community or grid under construction: its code and cells."""

    code: str
    parent: str
    cells: IntArray
    name: str = ""


def generate_reference_dataset(
    seed: int = 2020, progress: Progress | None = None
) -> ReferenceDataset:
    """Generate the reference dataset; the same seed always gives the same data."""
    total = LLOYD_ITERATIONS + 5
    step = 0

    def report(description: str) -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(description, min(step, total), total)

    rng = np.random.default_rng(seed)
    to_metric = Transformer.from_crs(layers.STORAGE_CRS, layers.METRIC_CRS, always_xy=True)
    to_storage = Transformer.from_crs(layers.METRIC_CRS, layers.STORAGE_CRS, always_xy=True)
    area = shapely.Polygon(np.column_stack(to_metric.transform(*np.array(URBAN_OUTLINE).T)))

    cells = _tessellate(rng, area, to_metric, report)
    centroids = shapely.get_coordinates(shapely.centroid(cells))
    lon, lat = to_storage.transform(centroids[:, 0], centroids[:, 1])
    streets, communities, grids = _build_hierarchy(
        rng, _district_of(np.asarray(lon), np.asarray(lat)), centroids, cell_neighbours(cells)
    )
    _name_places(rng, streets, communities, grids, centroids, to_metric)
    report("Assigning streets, communities and grids")

    households = _households(rng, shapely.area(cells[[g.cells[0] for g in grids]]))
    workers = _workers(rng, grids, households)
    report("Staffing grids")
    pois, poi_points = _pois(rng, grids, cells)
    report("Placing points of interest")

    def to_4326(geoms: GeomArray) -> GeomArray:
        def project(coords: FloatArray) -> FloatArray:
            return np.column_stack(to_storage.transform(coords[:, 0], coords[:, 1]))

        return np.asarray(shapely.transform(geoms, project))

    grid_geoms = np.array([cells[g.cells[0]] for g in grids], dtype=object)
    community_geoms = _unions(cells, communities)
    street_geoms = _unions(cells, streets)
    district_units = [
        _Unit(code, "", np.concatenate([s.cells for s in streets if s.parent == code]), name)
        for code, name, _ in DISTRICTS
    ]
    district_geoms = _unions(cells, district_units)
    report("Building boundaries")

    def frame(data: dict[str, object], geoms: GeomArray) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(data, geometry=_as_multi(to_4326(geoms)), crs=layers.STORAGE_CRS)

    dataset = ReferenceDataset(
        districts=frame(
            {
                "code": [code for code, _, _ in DISTRICTS],
                "name": [name for _, name, _ in DISTRICTS],
                "name_en": [name_en for _, _, name_en in DISTRICTS],
            },
            district_geoms,
        ),
        streets=frame(_attributes(streets, "district_code"), street_geoms),
        communities=frame(_attributes(communities, "street_code"), community_geoms),
        grids=frame(
            {**_attributes(grids, "community_code"), "households": households.tolist()},
            grid_geoms,
        ),
        workers=workers,
        pois=gpd.GeoDataFrame(
            pois, geometry=to_4326(shapely.points(poi_points)), crs=layers.STORAGE_CRS
        ),
    )
    report("Transforming to EPSG:4326")
    return dataset


def write_geopackage(dataset: ReferenceDataset, path: Path) -> None:
    """Write the dataset as one GeoPackage, replacing `path`; same data gives same bytes."""
    path.unlink(missing_ok=True)
    frames: tuple[tuple[str, pd.DataFrame], ...] = (
        (layers.DISTRICTS.layer, dataset.districts),
        (layers.STREETS.layer, dataset.streets),
        (layers.COMMUNITIES.layer, dataset.communities),
        (layers.GRIDS.layer, dataset.grids),
        (layers.WORKERS_LAYER, dataset.workers),
        (layers.POIS_LAYER, dataset.pois),
    )
    with _fixed_gpkg_timestamp():
        for index, (layer, data) in enumerate(frames):
            pyogrio.write_dataframe(data, path, layer=layer, driver="GPKG", append=index > 0)


@contextmanager
def _fixed_gpkg_timestamp() -> Iterator[None]:
    # GDAL stamps gpkg_contents.last_change with the wall clock unless OGR_CURRENT_DATE
    # is set; pinning it to the validity start is what makes the file byte-identical.
    option = "OGR_CURRENT_DATE"
    previous = pyogrio.get_gdal_config_option(option)
    stamp = layers.REFERENCE_VALID_FROM.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    pyogrio.set_gdal_config_options({option: stamp})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({option: previous})


def _tessellate(
    rng: np.random.Generator,
    area: shapely.Polygon,
    to_metric: Transformer,
    report: Callable[[str], None],
) -> GeomArray:
    """Voronoi cells of density-sampled seeds, relaxed by Lloyd iterations, clipped to `area`."""
    peaks = np.array(DENSITY_PEAKS)
    px, py = (np.asarray(c) for c in to_metric.transform(peaks[:, 0], peaks[:, 1]))

    def density(xy: FloatArray) -> FloatArray:
        d2 = (xy[:, 0, None] - px) ** 2 + (xy[:, 1, None] - py) ** 2
        bumps: FloatArray = peaks[:, 2] * np.exp(-d2 / (2 * peaks[:, 3] ** 2))
        relative: FloatArray = DENSITY_FLOOR + bumps.sum(axis=1)
        return relative

    minx, miny, maxx, maxy = area.bounds
    ceiling = DENSITY_FLOOR + peaks[:, 2].sum()
    accepted: list[FloatArray] = []
    while sum(len(batch) for batch in accepted) < N_GRIDS:
        xy = rng.uniform((minx, miny), (maxx, maxy), size=(4000, 2))
        keep = shapely.contains_xy(area, xy[:, 0], xy[:, 1]) & (
            rng.uniform(0, ceiling, size=len(xy)) < density(xy)
        )
        accepted.append(xy[keep])
    seeds = np.concatenate(accepted)[:N_GRIDS]
    envelope = shapely.box(minx - 10_000, miny - 10_000, maxx + 10_000, maxy + 10_000)
    for iteration in range(LLOYD_ITERATIONS + MAX_EXTRA_ITERATIONS):
        diagram = shapely.voronoi_polygons(
            shapely.multipoints(seeds), extend_to=envelope, ordered=True
        )
        cells = np.asarray(shapely.intersection(np.asarray(diagram.geoms), area))
        if iteration >= LLOYD_ITERATIONS and _acceptable(cells):
            return cells
        # Lloyd: move each seed to its cell's centroid, which evens out sizes and shapes
        # while keeping most of the density contrast after a few iterations.
        centroids = shapely.centroid(cells)
        outside = ~shapely.contains(area, centroids)
        centroids[outside] = shapely.point_on_surface(cells[outside])
        seeds = shapely.get_coordinates(centroids)
        if iteration < LLOYD_ITERATIONS:
            report(f"Relaxing grid cells ({iteration + 1}/{LLOYD_ITERATIONS})")
    raise RuntimeError("grid cells did not relax to plausible sizes; try another seed")


def _acceptable(cells: GeomArray) -> bool:
    areas = shapely.area(cells)
    return bool(
        len(cells) == N_GRIDS
        and (shapely.get_type_id(cells) == shapely.GeometryType.POLYGON).all()
        and areas.min() >= ACCEPTED_AREA_M2[0]
        and areas.max() <= ACCEPTED_AREA_M2[1]
    )


def _district_of(lon: FloatArray, lat: FloatArray) -> IntArray:
    """Index into DISTRICTS of each point, by river bank and longitude."""
    river = np.array(WEI_RIVER)
    north = lat > np.interp(lon, river[:, 0], river[:, 1])
    south_district = np.where(lon < WEIBIN_EAST_LON, 0, np.where(lon < HIGH_TECH_EAST_LON, 3, 2))
    return np.where(north, np.where(lon < JINTAI_EAST_LON, 1, 2), south_district).astype(np.intp)


def _build_hierarchy(
    rng: np.random.Generator, district_of: IntArray, xy: FloatArray, neighbours: list[list[int]]
) -> tuple[list[_Unit], list[_Unit], list[_Unit]]:
    """Split each district's cells into streets, communities and grids with exact counts."""
    grid_counts = np.bincount(district_of, minlength=len(DISTRICTS))
    community_counts = _largest_remainder(grid_counts, N_COMMUNITIES)
    streets: list[_Unit] = []
    communities: list[_Unit] = []
    grids: list[_Unit] = []
    for d, (district_code, _, _) in enumerate(DISTRICTS):
        members = np.flatnonzero(district_of == d)
        n_communities = int(community_counts[d])
        n_streets = int(np.clip(round(n_communities / 5.5), 3, 8))
        spare = len(members) - MIN_GRIDS_PER_COMMUNITY * n_communities
        sizes = MIN_GRIDS_PER_COMMUNITY + rng.multinomial(
            spare, rng.dirichlet(np.full(n_communities, 4.0))
        )
        per_street = 2 + rng.multinomial(
            n_communities - 2 * n_streets, rng.dirichlet(np.full(n_streets, 6.0))
        )
        chunks = np.split(sizes, np.cumsum(per_street)[:-1])
        street_cells = partition_cells(members, [int(c.sum()) for c in chunks], xy, neighbours)
        for s_rank, s in enumerate(_west_to_east(street_cells, xy)):
            street_code = f"{district_code}{s_rank + 1:03d}"
            streets.append(_Unit(street_code, district_code, street_cells[s]))
            community_cells = partition_cells(street_cells[s], chunks[s].tolist(), xy, neighbours)
            for c_rank, c in enumerate(_west_to_east(community_cells, xy)):
                community_code = f"{street_code}{c_rank + 1:03d}"
                communities.append(_Unit(community_code, street_code, community_cells[c]))
                for g_rank, cell in enumerate(_clockwise(community_cells[c], xy)):
                    grids.append(
                        _Unit(f"{community_code}{g_rank + 1:03d}", community_code, np.array([cell]))
                    )
    return streets, communities, grids


def _largest_remainder(weights: IntArray, total: int) -> IntArray:
    """Integers proportional to `weights` that sum exactly to `total`."""
    exact = weights * total / weights.sum()
    result: IntArray = np.floor(exact).astype(np.intp)
    order = np.argsort(-(exact - result), kind="stable")
    result[order[: total - result.sum()]] += 1
    return result


def _west_to_east(groups: Sequence[IntArray], xy: FloatArray) -> list[int]:
    return sorted(
        range(len(groups)), key=lambda i: (float(xy[groups[i], 0].mean()), int(groups[i][0]))
    )


def _clockwise(cells: IntArray, xy: FloatArray) -> list[int]:
    # Grids are numbered clockwise from north around their community, like a clock face.
    offset = xy[cells] - xy[cells].mean(axis=0)
    angle = np.mod(np.arctan2(offset[:, 0], offset[:, 1]), 2 * np.pi)
    return [int(cells[i]) for i in np.argsort(angle, kind="stable")]


def _name_places(
    rng: np.random.Generator,
    streets: list[_Unit],
    communities: list[_Unit],
    grids: list[_Unit],
    xy: FloatArray,
    to_metric: Transformer,
) -> None:
    """Name every unit: the article's named places first, then synthetic names."""

    def nearest(units: list[_Unit], lon_lat: tuple[float, float]) -> _Unit:
        target = np.array(to_metric.transform(*lon_lat))
        return min(
            units, key=lambda u: (float(np.linalg.norm(xy[u.cells].mean(axis=0) - target)), u.code)
        )

    jinger = nearest([s for s in streets if s.parent == "610302"], JINGER_ROAD)
    jinger.name = "经二路街道"
    nearest([c for c in communities if c.parent == jinger.code], QINGJIANG_ROAD).name = "清姜路社区"
    high_tech = [c for c in communities if c.code.startswith(HIGH_TECH_CODE)]
    nearest(high_tech, HEXIE_ROAD).name = "和谐路社区"
    for units, draw, reserved in (
        (streets, names.street_names, ("经二",)),
        (communities, names.community_names, ("清姜", "和谐")),
    ):
        unnamed = [u for u in units if not u.name]
        for unit, name in zip(unnamed, draw(rng, len(unnamed), reserved), strict=True):
            unit.name = name
    community_name = {c.code: c.name for c in communities}
    for grid in grids:
        grid.name = f"{community_name[grid.parent]}第{int(grid.code[-3:])}网格"


def _households(rng: np.random.Generator, areas: FloatArray) -> npt.NDArray[np.int64]:
    """A few hundred households per grid, a little more in larger grids."""
    scale = (areas / np.median(areas)) ** 0.3 * rng.lognormal(0.0, 0.2, size=len(areas))
    return np.clip(np.round(380 * scale), 120, 900).astype(np.int64)


def _workers(
    rng: np.random.Generator, grids: list[_Unit], households: npt.NDArray[np.int64]
) -> pd.DataFrame:
    """2,381 workers, 1–4 per grid (busier grids get more), numbered in grid-code order."""
    # One worker per grid, the rest spread by households (multinomial, so counts vary);
    # any above the cap are dealt out again among the grids still below it.
    per_grid = np.ones(len(grids), dtype=np.intp)
    spare = N_WORKERS - len(grids)
    while spare > 0:
        open_grids = np.flatnonzero(per_grid < MAX_WORKERS_PER_GRID)
        weights = households[open_grids] / households[open_grids].sum()
        per_grid[open_grids] += rng.multinomial(spare, weights)
        spare = int(np.maximum(per_grid - MAX_WORKERS_PER_GRID, 0).sum())
        per_grid = np.minimum(per_grid, MAX_WORKERS_PER_GRID)
    people = names.person_names(rng, N_WORKERS)
    phones: dict[str, None] = {}  # insertion-ordered, so the draw order is kept
    while len(phones) < N_WORKERS:
        phones.setdefault(f"1{'35789'[int(rng.integers(5))]}{int(rng.integers(10**9)):09d}")
    phone_list = list(phones)
    rows: list[dict[str, object]] = []
    for grid, count in sorted(zip(grids, per_grid.tolist(), strict=True), key=lambda p: p[0].code):
        # 定岗: one worker per grid carries its party role; every grid has a full-timer.
        party_member = int(rng.integers(count))
        role = "党支部书记" if rng.random() < 0.3 else "党小组长"
        for k in range(count):
            rows.append(
                {
                    "worker_id": f"W{len(rows) + 1:05d}",
                    "name": people[len(rows)],
                    "phone": phone_list[len(rows)],
                    "employment": "full_time" if k == 0 or rng.random() < 0.4 else "part_time",
                    "party_role": role if k == party_member else None,
                    "grid_code": grid.code,
                    "valid_from": layers.REFERENCE_VALID_FROM.isoformat(),
                }
            )
    return pd.DataFrame(rows, columns=list(layers.WORKER_COLUMNS))


def _pois(
    rng: np.random.Generator, grids: list[_Unit], cells: GeomArray
) -> tuple[dict[str, list[str]], FloatArray]:
    """Compounds, organisations, shops and restaurants in every grid, plus the 40 lockers."""
    n = len(grids)
    per_grid = {
        "residential_compound": 1 + rng.poisson(0.3, n),  # a grid is drawn around compounds
        "organisation": rng.poisson(0.35, n),
        "shop": rng.poisson(0.6, n),
        "restaurant": rng.poisson(0.4, n),
    }
    owner = np.concatenate([np.repeat(np.arange(n), counts) for counts in per_grid.values()])
    kind = [k for k, counts in per_grid.items() for _ in range(int(counts.sum()))]
    # Points keep a margin from grid edges so that reprojection cannot move them across.
    safe = shapely.buffer(cells[[g.cells[0] for g in grids]], -POI_EDGE_MARGIN_M)
    points = _sample_points(rng, safe, owner, shapely.bounds(safe)[owner])
    name = [names.poi_name(rng, k) for k in kind]

    # 智慧云柜: lockers stand in 40 distinct compounds of 高新区, a few metres from them.
    high_tech = np.flatnonzero(
        [
            k == "residential_compound" and grids[o].code.startswith(HIGH_TECH_CODE)
            for k, o in zip(kind, owner, strict=True)
        ]
    )
    if len(high_tech) < N_LOCKERS:
        raise RuntimeError(f"only {len(high_tech)} compounds in 高新区 for {N_LOCKERS} lockers")
    hosts = np.sort(rng.choice(high_tech, size=N_LOCKERS, replace=False))
    boxes = np.hstack([points[hosts] - 30.0, points[hosts] + 30.0])
    points = np.vstack([points, _sample_points(rng, safe, owner[hosts], boxes)])
    owner = np.concatenate([owner, owner[hosts]])
    kind += ["cloud_locker"] * N_LOCKERS
    name += [f"{name[h]}智慧云柜" for h in hosts.tolist()]

    grid_code = [grids[o].code for o in owner.tolist()]
    kind_rank = [layers.POI_KINDS.index(k) for k in kind]
    order = sorted(range(len(kind)), key=lambda i: (grid_code[i], kind_rank[i], i))
    columns = {
        "poi_id": [f"P{i + 1:05d}" for i in range(len(order))],
        "name": [name[i] for i in order],
        "kind": [kind[i] for i in order],
        "grid_code": [grid_code[i] for i in order],
    }
    return columns, points[order]


def _sample_points(
    rng: np.random.Generator, polygons: GeomArray, owner: IntArray, boxes: FloatArray
) -> FloatArray:
    """One uniform point per row, inside `polygons[owner]` and the row's box (rejection)."""
    result = np.empty((len(owner), 2))
    pending = np.arange(len(owner))
    while pending.size:
        xy = rng.uniform(boxes[pending, :2], boxes[pending, 2:])
        inside = shapely.contains_xy(polygons[owner[pending]], xy[:, 0], xy[:, 1])
        result[pending[inside]] = xy[inside]
        pending = pending[~inside]
    return result


def _unions(cells: GeomArray, units: Sequence[_Unit]) -> GeomArray:
    # The cells are a coverage (edges shared vertex for vertex), so the coverage union
    # dissolves inner edges exactly and quickly.
    return np.array([shapely.coverage_union_all(cells[u.cells]) for u in units], dtype=object)


def _as_multi(geoms: GeomArray) -> GeomArray:
    return np.array(
        [g if isinstance(g, shapely.MultiPolygon) else shapely.MultiPolygon([g]) for g in geoms],
        dtype=object,
    )


def _attributes(units: Sequence[_Unit], parent_column: str) -> dict[str, object]:
    return {
        "code": [u.code for u in units],
        parent_column: [u.parent for u in units],
        "name": [u.name for u in units],
    }
