"""The geometric checks of an import: valid polygons and points, overlaps, containment.

Geometries are shapely objects in EPSG:4326, and the topology (intersections,
differences) is computed there, as PostGIS does on the stored columns; every area or
distance that is compared with a tolerance is then measured in metres, in the metric CRS.
"""

import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from geodata.dataset.layers import METRIC_CRS, STORAGE_CRS, LevelSpec
from geodata.dataset.rows import Boundary, Poi, Problem, Reason, Repair

#: Overlaps and parts outside a parent smaller than this are rounding, not errors (m²).
AREA_TOLERANCE_M2 = 1.0
#: A POI this close to its grid counts as inside it (m).
POINT_TOLERANCE_M = 0.01
#: `--repair` may change a polygon's area by at most this fraction (0.1 %).
REPAIR_MAX_AREA_CHANGE = 0.001

GeometryArray = npt.NDArray[np.object_]

_local = threading.local()


def to_metric(geoms: Sequence[BaseGeometry] | GeometryArray) -> GeometryArray:
    """Project EPSG:4326 geometries to the metric CRS, so that areas come out in m²."""
    # One transformer per thread: building one costs ~50 ms, and they are not thread-safe.
    transformer = getattr(_local, "to_metric", None)
    if transformer is None:
        transformer = _local.to_metric = Transformer.from_crs(
            STORAGE_CRS, METRIC_CRS, always_xy=True
        )

    def project(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    return np.asarray(shapely.transform(_array(geoms), project), dtype=object)


def as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """Promote a Polygon to a one-part MultiPolygon; leave a MultiPolygon as it is."""
    return MultiPolygon([geom]) if isinstance(geom, Polygon) else geom


def check_polygon(
    layer: str, label: str, geom: BaseGeometry | None, *, repair: bool
) -> tuple[MultiPolygon | None, Problem | None, Repair | None]:
    """A valid 2D MultiPolygon, or the problem with it; `repair` applies a safe make_valid."""
    if geom is None or geom.is_empty:
        return None, Problem(layer, label, Reason.EMPTY_GEOMETRY, "has no geometry"), None
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        detail = f"is a {geom.geom_type}, expected a Polygon or MultiPolygon"
        return None, Problem(layer, label, Reason.WRONG_GEOMETRY_TYPE, detail), None
    polygon = as_multipolygon(shapely.force_2d(geom) if shapely.has_z(geom) else geom)
    validity = shapely.is_valid_reason(polygon)
    if validity == "Valid Geometry":
        return polygon, None, None
    fixed, change = repair_polygon(polygon)
    if fixed is not None and repair:
        return fixed, None, Repair(layer, label, change)
    if fixed is not None:
        detail = f"{validity}; --repair would fix it (area changes by {change:.4%})"
    else:
        detail = f"{validity}; make_valid would change its area by more than 0.1 %"
    self_intersecting = "self-intersection" in validity.lower()
    reason = Reason.SELF_INTERSECTION if self_intersecting else Reason.INVALID_GEOMETRY
    return None, Problem(layer, label, reason, detail), None


def repair_polygon(geom: BaseGeometry) -> tuple[MultiPolygon | None, float]:
    """make_valid's polygonal part and the relative area change; None if that exceeds 0.1 %."""
    parts = [
        part
        for part in shapely.get_parts(shapely.make_valid(geom))
        if part.geom_type in ("Polygon", "MultiPolygon")
    ]
    if not parts:
        return None, float("inf")
    fixed = as_multipolygon(shapely.union_all(parts))
    if fixed.geom_type != "MultiPolygon" or fixed.is_empty or not fixed.is_valid:
        return None, float("inf")
    # An invalid ring's area is its shoelace area: a bow-tie's lobes cancel out, so the
    # valid version of a bow-tie shows up as a large change and is never "repaired".
    before, after = metric_areas([geom, fixed]).tolist()
    change = abs(after - before) / before if before > 0 else float("inf")
    return (fixed if change <= REPAIR_MAX_AREA_CHANGE else None), change


def check_point(
    layer: str, label: str, geom: BaseGeometry | None
) -> tuple[Point | None, Problem | None]:
    """A 2D Point, or the problem with the geometry."""
    if geom is None or geom.is_empty:
        return None, Problem(layer, label, Reason.EMPTY_GEOMETRY, "has no geometry")
    if geom.geom_type == "MultiPoint" and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    if geom.geom_type != "Point":
        detail = f"is a {geom.geom_type}, expected a Point"
        return None, Problem(layer, label, Reason.WRONG_GEOMETRY_TYPE, detail)
    return (Point(geom.x, geom.y) if geom.has_z else geom), None


def find_overlaps(
    layer: str, rows: Sequence[Boundary], others: Sequence[Boundary] = ()
) -> list[Problem]:
    """Pairs of one level's features whose intersection is larger than 1 m².

    `others` are features already in the database that the file does not replace; only
    pairs with at least one feature of the file are reported. An STRtree finds candidates.
    """
    items = [*rows, *others]
    if len(items) < 2 or not rows:
        return []
    geoms = _array([item.geom for item in items])
    left, right = shapely.STRtree(geoms).query(geoms[: len(rows)], predicate="intersects")
    keep = (left < right) | (right >= len(rows))  # each pair within the file once
    left, right = left[keep], right[keep]
    areas = metric_areas(shapely.intersection(geoms[left], geoms[right]))
    problems = []
    for i, j, area in zip(left.tolist(), right.tolist(), areas.tolist(), strict=True):
        if area > AREA_TOLERANCE_M2:
            where = " (in the database)" if j >= len(rows) else ""
            detail = f"overlaps {items[j].code}{where} by {area:,.1f} m²"
            problems.append(Problem(layer, items[i].code, Reason.OVERLAP, detail))
    return problems


def find_outside_parent(
    level: LevelSpec, rows: Sequence[Boundary], parents: Mapping[str, BaseGeometry]
) -> list[Problem]:
    """Rows with more than 1 m² outside their parent's polygon (from the file or the DB)."""
    pairs = [(row, row.parent_code) for row in rows if row.parent_code in parents]
    if not pairs:
        return []
    children = _array([row.geom for row, _ in pairs])
    containers = _array([parents[code] for _, code in pairs if code is not None])
    shapely.prepare(containers)
    # covers() settles nearly every child quickly; only the others need an area.
    suspects = np.flatnonzero(~shapely.covers(containers, children))
    outside = metric_areas(shapely.difference(children[suspects], containers[suspects]))
    return [
        Problem(
            level.layer,
            pairs[index][0].code,
            Reason.OUTSIDE_PARENT,
            f"{area:,.1f} m² lie outside its {level.parent_column} {pairs[index][1]}",
        )
        for index, area in zip(suspects.tolist(), outside.tolist(), strict=True)
        if area > AREA_TOLERANCE_M2
    ]


def find_pois_outside_grid(
    layer: str, pois: Sequence[Poi], grids: Mapping[str, BaseGeometry]
) -> list[Problem]:
    """POIs farther than 1 cm from the grid they state they lie in."""
    located = [poi for poi in pois if poi.grid_code in grids]
    if not located:
        return []
    points = _array([poi.geom for poi in located])
    polygons = _array([grids[poi.grid_code] for poi in located])
    outside = np.flatnonzero(~shapely.covers(polygons, points))
    gaps = to_metric(shapely.shortest_line(polygons[outside], points[outside]))
    return [
        Problem(
            layer,
            located[index].poi_id,
            Reason.OUTSIDE_PARENT,
            f"lies {distance:,.1f} m outside its grid {located[index].grid_code}",
        )
        for index, distance in zip(outside.tolist(), shapely.length(gaps).tolist(), strict=True)
        if distance > POINT_TOLERANCE_M
    ]


def same_geometries(
    old: Sequence[BaseGeometry], new: Sequence[BaseGeometry]
) -> npt.NDArray[np.bool_]:
    """Pairwise: True where the symmetric difference is under 1 m² (so: unchanged)."""
    old_array, new_array = _array(old), _array(new)
    same = np.asarray(shapely.equals_exact(old_array, new_array, tolerance=0.0), dtype=bool)
    differ = np.flatnonzero(~same)
    symmetric = shapely.symmetric_difference(old_array[differ], new_array[differ])
    same[differ] = metric_areas(symmetric) < AREA_TOLERANCE_M2
    return same


def metric_areas(geoms: Sequence[BaseGeometry] | GeometryArray) -> npt.NDArray[np.float64]:
    """Areas in m² of EPSG:4326 geometries."""
    return np.asarray(shapely.area(to_metric(geoms)), dtype=np.float64)


def _array(geoms: Iterable[BaseGeometry]) -> GeometryArray:
    items = list(geoms)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array
