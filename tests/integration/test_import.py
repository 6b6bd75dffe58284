"""The boundary importer against a real PostGIS: formats, refusals, versions, repairs."""

import hashlib
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, text

from geodata.dataset import layers
from geodata.dataset.importer import (
    STAGE_READ,
    STAGE_VALIDATE,
    STAGE_WRITE,
    database_is_empty,
    export_layers,
    import_boundaries,
)
from geodata.dataset.rows import Problem, Reason
from geodata.errors import ImportRefused

pytestmark = pytest.mark.integration

# Values are GeoDataFrames, or a DataFrame for workers (geopandas is untyped: Any).
Layers = dict[str, Any]

DISTRICT = "610302"
STREET = "610302001"
COMMUNITY = "610302001001"
GRID_CODES = [f"{COMMUNITY}{n:03d}" for n in range(1, 7)]
# The community, cut into 3 x 2 grids along a zigzag; every grid shares its edges exactly.
XS = (107.15, 107.1532, 107.1571, 107.16)
Y_SOUTH, Y_NORTH = 34.36, 34.37
Y_MIDDLE = (34.3648, 34.3652, 34.3645, 34.3650)
LATER = datetime(2024, 7, 1, tzinfo=layers.LOCAL_TZ)


def _cells() -> list[Polygon]:
    cells = []
    for i in range(3):
        x0, x1, m0, m1 = XS[i], XS[i + 1], Y_MIDDLE[i], Y_MIDDLE[i + 1]
        cells.append(Polygon([(x0, Y_SOUTH), (x1, Y_SOUTH), (x1, m1), (x0, m0)]))
        cells.append(Polygon([(x0, m0), (x1, m1), (x1, Y_NORTH), (x0, Y_NORTH)]))
    return cells


def _frame(data: dict[str, Any], geoms: list[BaseGeometry]) -> gpd.GeoDataFrame:
    multi = [MultiPolygon([g]) if isinstance(g, Polygon) else g for g in geoms]
    return gpd.GeoDataFrame(data, geometry=multi, crs=layers.STORAGE_CRS)


def _on_zigzag(x: float) -> tuple[float, float]:
    """The point of the zigzag between the south and the north grids at longitude `x`."""
    i = max(k for k in range(3) if XS[k] <= x)
    share = (x - XS[i]) / (XS[i + 1] - XS[i])
    return x, Y_MIDDLE[i] + share * (Y_MIDDLE[i + 1] - Y_MIDDLE[i])


def _south_west_cell(east_edge: float) -> Polygon:
    """The south-western grid with its east edge moved to `east_edge` (past the old one)."""
    return Polygon(
        [(XS[0], Y_SOUTH), (east_edge, Y_SOUTH), _on_zigzag(east_edge), (XS[1], Y_MIDDLE[1]),
         (XS[0], Y_MIDDLE[0])]
    )  # fmt: skip


def small_dataset() -> Layers:
    """One district, street and community cut into six grids, with workers and POIs."""
    cells = _cells()
    grids = _frame(
        {
            "code": GRID_CODES,
            "community_code": [COMMUNITY] * 6,
            "name": [f"清姜路第{n}网格" for n in range(1, 7)],
            "households": [210, 340, 190, 405, 275, 320],
        },
        list(cells),
    )
    workers = pd.DataFrame(
        [
            {
                "worker_id": f"W{n:05d}",
                "name": f"网格员{n}",
                "phone": f"1380000{n:04d}",
                "employment": "full_time" if n % 2 else "part_time",
                "party_role": "党小组长" if n == 1 else None,
                "grid_code": GRID_CODES[(n - 1) // 2 % 6],
                "valid_from": layers.REFERENCE_VALID_FROM.isoformat(),
            }
            for n in range(1, 10)
        ],
        columns=list(layers.WORKER_COLUMNS),
    )
    pois = gpd.GeoDataFrame(
        {
            "poi_id": [f"P{n:04d}" for n in range(1, 7)],
            "name": [f"小区{n}" for n in range(1, 7)],
            "kind": ["residential_compound", "shop", "restaurant", "organisation"] + ["shop"] * 2,
            "grid_code": GRID_CODES,
        },
        geometry=[cell.representative_point() for cell in cells],
        crs=layers.STORAGE_CRS,
    )
    return {
        "districts": _frame(
            {"code": [DISTRICT], "name": ["渭滨区"], "name_en": ["Weibin"]},
            [box(107.14, 34.35, 107.17, 34.38)],
        ),
        "streets": _frame(
            {"code": [STREET], "district_code": [DISTRICT], "name": ["经二路街道"]},
            [box(107.145, 34.355, 107.165, 34.375)],
        ),
        "communities": _frame(
            {"code": [COMMUNITY], "street_code": [STREET], "name": ["清姜路社区"]},
            [box(XS[0], Y_SOUTH, XS[-1], Y_NORTH)],
        ),
        "grids": grids,
        "workers": workers,
        "pois": pois,
    }


def with_grid(data: Layers, index: int, geom: BaseGeometry, **attributes: object) -> Layers:
    """A copy of the dataset with one grid's geometry (and attributes) replaced."""
    grids = data["grids"].copy()
    grids.loc[index, "geometry"] = MultiPolygon([geom]) if isinstance(geom, Polygon) else geom
    for column, value in attributes.items():
        grids.loc[index, column] = value
    return {**data, "grids": grids}


def write_gpkg(data: Layers, path: Path) -> Path:
    """Every layer into one GeoPackage, top-down, like the generator writes it."""
    for index, (name, frame) in enumerate(data.items()):
        pyogrio.write_dataframe(frame, path, layer=name, driver="GPKG", append=index > 0)
    return path


def write_per_layer(data: Layers, folder: Path, suffix: str) -> list[Path]:
    """One file per geometry layer (GeoJSON, FlatGeobuf, Shapefile), top-down."""
    folder.mkdir(exist_ok=True)
    paths = []
    for name, frame in data.items():
        if isinstance(frame, gpd.GeoDataFrame):
            path = folder / f"{name}{suffix}"
            frame.to_file(path)
            paths.append(path)
    return paths


def zip_shapefiles(paths: list[Path], archive: Path) -> Path:
    """All the Shapefiles (with their sidecar files) in one zip, inside a folder."""
    with zipfile.ZipFile(archive, "w") as bundle:
        for shp in paths:
            for part in shp.parent.glob(f"{shp.stem}.*"):
                bundle.write(part, f"boundaries/{part.name}")
    return archive


def snapshot(engine: Engine) -> dict[str, str]:
    """A checksum of every table the importer writes, to prove that nothing changed."""
    queries = {
        "districts": "SELECT code, name, name_en, ST_AsBinary(geom) FROM districts ORDER BY 1",
        "streets": "SELECT code, district_code, name, ST_AsBinary(geom) FROM streets ORDER BY 1",
        "communities": "SELECT code, street_code, name, ST_AsBinary(geom) FROM communities "
        "ORDER BY 1",
        "grids": "SELECT id, code, community_code, name, households, ST_AsBinary(geom), "
        "valid_from, valid_to FROM grids ORDER BY 1",
        "workers": "SELECT * FROM workers ORDER BY 1",
        "worker_assignments": "SELECT * FROM worker_assignments ORDER BY 1",
        "pois": "SELECT poi_id, name, kind, grid_code, ST_AsBinary(geom) FROM pois ORDER BY 1",
        "dataset_imports": "SELECT id, source, summary FROM dataset_imports ORDER BY 1",
    }
    sums = {}
    with engine.connect() as connection:
        for table, query in queries.items():
            rows = connection.execute(text(query)).all()
            sums[table] = f"{len(rows)}:{hashlib.sha256(repr(rows).encode()).hexdigest()}"
    return sums


def assert_same_layer(
    exported: pd.DataFrame, expected: pd.DataFrame, key: str, tolerance: float = 1e-9
) -> None:
    """Same ids, attributes and (within `tolerance` degrees) geometries, in id order."""
    expected = expected.sort_values(key).reset_index(drop=True)
    assert exported[key].tolist() == expected[key].tolist()
    columns = [c for c in expected.columns if c not in ("geometry", "valid_from")]
    for column in columns:
        assert _plain(exported[column]) == _plain(expected[column]), column
    if "valid_from" in expected.columns:
        assert pd.to_datetime(exported["valid_from"]).tolist() == (
            pd.to_datetime(expected["valid_from"]).tolist()
        )
    if isinstance(expected, gpd.GeoDataFrame):
        # Shapefiles store rings clockwise: compare normalised vertex sequences.
        ours = shapely.normalize(exported.geometry.to_numpy())
        theirs = shapely.normalize(expected.geometry.to_numpy())
        assert shapely.equals_exact(ours, theirs, tolerance=tolerance).all()


def _plain(values: pd.Series) -> list[object]:
    """Values with every kind of missing value as None (pandas 3 turns None into NaN)."""
    return [None if pd.isna(value) else value for value in values.tolist()]


def assert_round_trip(engine: Engine, data: Layers, tolerance: float = 1e-9) -> None:
    """export_layers gives back every layer of `data`."""
    exported = export_layers(engine)
    for name, frame in data.items():
        key = {"workers": "worker_id", "pois": "poi_id"}.get(name, "code")
        assert_same_layer(exported[name], frame, key, tolerance)


def refusal(engine: Engine, path: Path, **options: object) -> ImportRefused:
    """Import `path`, which must be refused without changing anything."""
    before = snapshot(engine)
    with pytest.raises(ImportRefused) as refused:
        import_boundaries(engine, path, **options)  # type: ignore[arg-type]
    assert snapshot(engine) == before
    return refused.value


def problems_of(refused: ImportRefused, reason: Reason) -> list[Problem]:
    """The problems of one reason (ImportRefused types them loosely)."""
    problems = [p for p in refused.problems if isinstance(p, Problem)]
    assert len(problems) == len(refused.problems)
    return [p for p in problems if p.reason == reason]


@pytest.fixture
def data() -> Layers:
    """The small dataset, fresh for each test."""
    return small_dataset()


@pytest.fixture
def imported(engine: Engine, data: Layers, tmp_path: Path) -> Engine:
    """A database that already holds the small dataset."""
    import_boundaries(engine, write_gpkg(data, tmp_path / "base.gpkg"))
    return engine


def test_geopackage_round_trip_reproduces_every_layer(
    engine: Engine, data: Layers, tmp_path: Path
) -> None:
    report = import_boundaries(engine, write_gpkg(data, tmp_path / "all.gpkg"))

    assert_round_trip(engine, data)
    assert report.valid_from == layers.REFERENCE_VALID_FROM
    assert report.layers["grids"].inserted == 6
    assert report.layers["workers"].inserted == 9
    assert report.layers["worker_assignments"].inserted == 9
    assert report.layers["pois"].inserted == 6


@pytest.mark.parametrize("suffix", [".geojson", ".fgb", ".shp"])
def test_one_file_per_layer_round_trips(
    engine: Engine, data: Layers, tmp_path: Path, suffix: str
) -> None:
    # Each file after the first finds its parents in the database.
    for path in write_per_layer(data, tmp_path / "layers", suffix):
        import_boundaries(engine, path)

    assert_round_trip(engine, {k: v for k, v in data.items() if k != "workers"})


def test_zipped_shapefiles_round_trip(engine: Engine, data: Layers, tmp_path: Path) -> None:
    shapefiles = write_per_layer(data, tmp_path / "shp", ".shp")
    archive = zip_shapefiles(shapefiles, tmp_path / "boundaries.zip")

    report = import_boundaries(engine, archive)

    assert_round_trip(engine, {k: v for k, v in data.items() if k != "workers"})
    assert report.layers["grids"].inserted == 6


def test_grids_alone_are_recognised_by_code_width(
    imported: Engine, data: Layers, tmp_path: Path
) -> None:
    grids = data["grids"].drop(columns="community_code")
    path = tmp_path / "my_boundaries.geojson"
    grids.to_file(path)

    report = import_boundaries(imported, path)

    assert report.layers == {"grids": report.layers["grids"]}
    assert report.layers["grids"].unchanged == 6


def test_projected_file_is_transformed_to_wgs84(
    engine: Engine, data: Layers, tmp_path: Path
) -> None:
    projected = {
        name: frame.to_crs(layers.METRIC_CRS) if isinstance(frame, gpd.GeoDataFrame) else frame
        for name, frame in data.items()
    }

    import_boundaries(engine, write_gpkg(projected, tmp_path / "cgcs2000_gk.gpkg"))

    assert_round_trip(engine, data, tolerance=1e-7)


def test_cgcs2000_geographic_file_is_accepted(engine: Engine, data: Layers, tmp_path: Path) -> None:
    cgcs = {
        name: frame.set_crs("EPSG:4490", allow_override=True)
        if isinstance(frame, gpd.GeoDataFrame)
        else frame
        for name, frame in data.items()
    }

    import_boundaries(engine, write_gpkg(cgcs, tmp_path / "cgcs2000.gpkg"))

    assert_round_trip(engine, data, tolerance=1e-7)


def test_bow_tie_grid_is_refused_naming_it(imported: Engine, data: Layers, tmp_path: Path) -> None:
    bow_tie = Polygon([(107.151, 34.361), (107.152, 34.362), (107.152, 34.361), (107.151, 34.362)])
    path = write_gpkg(with_grid(data, 0, bow_tie), tmp_path / "bow_tie.gpkg")

    refused = refusal(imported, path)

    [problem] = problems_of(refused, Reason.SELF_INTERSECTION)
    assert problem.feature == GRID_CODES[0]
    assert "--repair would fix it" not in problem.detail
    assert GRID_CODES[0] in str(refused)


def test_overlapping_grids_are_refused_naming_both_codes(
    imported: Engine, data: Layers, tmp_path: Path
) -> None:
    # Push the first grid's east edge 0.0005° (about 46 m) into its eastern neighbour.
    wider = _south_west_cell(east_edge=XS[1] + 0.0005)
    path = write_gpkg(with_grid(data, 0, wider), tmp_path / "overlap.gpkg")

    refused = refusal(imported, path)

    [problem] = problems_of(refused, Reason.OVERLAP)
    assert {problem.feature, problem.detail.split()[1]} == {GRID_CODES[0], GRID_CODES[2]}
    assert GRID_CODES[0] in str(refused)
    assert GRID_CODES[2] in str(refused)


def test_grid_outside_its_community_is_refused(
    imported: Engine, data: Layers, tmp_path: Path
) -> None:
    # The westernmost grid reaches 0.001° (about 90 m) west of its community.
    spilling = Polygon(
        [(XS[0] - 0.001, Y_SOUTH), (XS[1], Y_SOUTH), (XS[1], Y_MIDDLE[1]), (XS[0], Y_MIDDLE[0])]
    )
    path = write_gpkg(with_grid(data, 0, spilling), tmp_path / "outside.gpkg")

    refused = refusal(imported, path)

    [problem] = problems_of(refused, Reason.OUTSIDE_PARENT)
    assert problem.feature == GRID_CODES[0]
    assert COMMUNITY in problem.detail


def test_duplicate_grid_code_is_refused(imported: Engine, data: Layers, tmp_path: Path) -> None:
    path = write_gpkg(with_grid(data, 1, _cells()[1], code=GRID_CODES[0]), tmp_path / "dup.gpkg")

    refused = refusal(imported, path)

    [problem] = problems_of(refused, Reason.DUPLICATE_CODE)
    assert problem.feature == GRID_CODES[0]
    assert "rows 0, 1" in problem.detail


def test_file_without_crs_is_refused(imported: Engine, data: Layers, tmp_path: Path) -> None:
    path = tmp_path / "grids.shp"
    data["grids"].set_crs(None, allow_override=True).to_file(path)  # no .prj

    refused = refusal(imported, path)

    [problem] = problems_of(refused, Reason.MISSING_CRS)
    assert problem.layer == "grids"


def test_empty_file_is_refused(imported: Engine, data: Layers, tmp_path: Path) -> None:
    path = tmp_path / "grids.geojson"
    data["grids"].iloc[0:0].to_file(path)

    refused = refusal(imported, path)

    assert problems_of(refused, Reason.EMPTY_FILE)


def test_unknown_extension_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "grids.csv"
    path.write_text("code,name\n")

    refused = refusal(engine, path)

    assert problems_of(refused, Reason.UNSUPPORTED_FORMAT)


def test_refusal_lists_every_problem_not_just_the_first(
    imported: Engine, data: Layers, tmp_path: Path
) -> None:
    bow_tie = Polygon([(107.151, 34.361), (107.152, 34.362), (107.152, 34.361), (107.151, 34.362)])
    broken = with_grid(with_grid(data, 0, bow_tie), 3, _cells()[3], code="61030200100100X")
    workers = broken["workers"].copy()
    workers.loc[0, "grid_code"] = "610302001001099"
    path = write_gpkg({**broken, "workers": workers}, tmp_path / "many.gpkg")

    refused = refusal(imported, path)

    reasons = {problem.reason for problem in problems_of(refused, Reason.SELF_INTERSECTION)}
    reasons |= {p.reason for p in problems_of(refused, Reason.BAD_CODE)}
    reasons |= {p.reason for p in problems_of(refused, Reason.UNKNOWN_GRID)}
    assert reasons == {Reason.SELF_INTERSECTION, Reason.BAD_CODE, Reason.UNKNOWN_GRID}


def _twisted_corner_cell() -> Polygon:
    """The first grid with its south-west corner twisted into a bow-tie lobe of ~1 m²."""
    d = 0.00001  # about 1 m
    x0, x1, m0, m1 = XS[0], XS[1], Y_MIDDLE[0], Y_MIDDLE[1]
    return Polygon(
        [(x1, Y_SOUTH), (x1, m1), (x0, m0), (x0 + 2 * d, Y_SOUTH), (x0, Y_SOUTH + 2 * d)]
    )


def test_repairable_ring_is_refused_without_repair_saying_repair_would_fix_it(
    engine: Engine, data: Layers, tmp_path: Path
) -> None:
    twisted = _twisted_corner_cell()
    assert not twisted.is_valid
    path = write_gpkg(with_grid(data, 0, twisted), tmp_path / "twisted.gpkg")

    refused = refusal(engine, path)
    [problem] = problems_of(refused, Reason.SELF_INTERSECTION)
    assert problem.feature == GRID_CODES[0]
    assert "--repair would fix it" in problem.detail

    report = import_boundaries(engine, path, repair=True)

    assert report.layers["grids"].repaired == 1
    assert [(r.layer, r.feature) for r in report.repairs] == [("grids", GRID_CODES[0])]
    assert report.repairs[0].area_change <= 0.001
    stored = export_layers(engine)["grids"].geometry
    assert stored.is_valid.all()


def test_dry_run_reports_but_writes_nothing(engine: Engine, data: Layers, tmp_path: Path) -> None:
    before = snapshot(engine)

    report = import_boundaries(engine, write_gpkg(data, tmp_path / "all.gpkg"), dry_run=True)

    assert report.dry_run
    assert report.layers["grids"].inserted == 6
    assert snapshot(engine) == before
    assert database_is_empty(engine)


def test_changed_boundary_keeps_the_old_version_with_valid_to(
    imported: Engine, data: Layers, tmp_path: Path
) -> None:
    # Move the edge between the two south-western grids 0.0003° (about 28 m) east.
    moved = XS[1] + 0.0003
    west = _south_west_cell(east_edge=moved)
    east = Polygon([(moved, Y_SOUTH), (XS[2], Y_SOUTH), (XS[2], Y_MIDDLE[2]), _on_zigzag(moved)])
    changed = with_grid(with_grid(data, 0, west), 2, east)
    path = write_gpkg({"grids": changed["grids"]}, tmp_path / "changed.gpkg")

    report = import_boundaries(imported, path, valid_from=LATER)

    counts = report.layers["grids"]
    assert (counts.new_versions, counts.unchanged, counts.inserted) == (2, 4, 0)
    with imported.connect() as connection:
        versions = connection.execute(
            text("SELECT valid_from, valid_to FROM grids WHERE code = :code ORDER BY valid_from"),
            {"code": GRID_CODES[0]},
        ).all()
    assert [(row.valid_from, row.valid_to) for row in versions] == [
        (layers.REFERENCE_VALID_FROM, LATER),
        (LATER, None),
    ]
    assert_same_layer(export_layers(imported)["grids"], changed["grids"], "code")


def test_changed_boundary_dated_before_the_current_version_is_refused(
    imported: Engine, data: Layers, tmp_path: Path
) -> None:
    smaller = _cells()[1].buffer(-0.0001, join_style="mitre")
    path = write_gpkg({"grids": with_grid(data, 1, smaller)["grids"]}, tmp_path / "early.gpkg")

    refused = refusal(imported, path, valid_from=datetime(2019, 1, 1, tzinfo=layers.LOCAL_TZ))

    [problem] = problems_of(refused, Reason.VALID_FROM_TOO_EARLY)
    assert problem.feature == GRID_CODES[1]


def test_reimporting_the_same_file_changes_nothing(
    engine: Engine, data: Layers, tmp_path: Path
) -> None:
    path = write_gpkg(data, tmp_path / "all.gpkg")
    import_boundaries(engine, path)
    before = snapshot(engine)

    report = import_boundaries(engine, path)

    after = snapshot(engine)
    assert {k: v for k, v in after.items() if k != "dataset_imports"} == {
        k: v for k, v in before.items() if k != "dataset_imports"
    }
    assert all(
        counts.inserted == counts.updated == counts.new_versions == 0
        for counts in report.layers.values()
    )
    assert after["dataset_imports"].startswith("2:")


def test_reassigned_worker_closes_the_old_assignment(
    imported: Engine, data: Layers, tmp_path: Path
) -> None:
    workers = data["workers"].copy()
    workers.loc[0, "grid_code"] = GRID_CODES[5]
    workers.loc[0, "valid_from"] = LATER.isoformat()
    path = write_gpkg({"workers": workers}, tmp_path / "workers.gpkg")

    report = import_boundaries(imported, path)

    assert report.layers["worker_assignments"].new_versions == 1
    assert report.layers["worker_assignments"].unchanged == 8
    with imported.connect() as connection:
        history = connection.execute(
            text(
                "SELECT grid_code, valid_to FROM worker_assignments "
                "WHERE worker_id = 'W00001' ORDER BY valid_from"
            )
        ).all()
    assert [tuple(row) for row in history] == [(GRID_CODES[0], LATER), (GRID_CODES[5], None)]


def test_grids_whose_community_is_nowhere_are_refused(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "grids.geojson"
    small_dataset()["grids"].to_file(path)

    refused = refusal(engine, path)

    missing = problems_of(refused, Reason.MISSING_PARENT)
    assert sorted(p.feature for p in missing if p.feature) == GRID_CODES


def test_import_records_an_audit_row(imported: Engine) -> None:
    with imported.connect() as connection:
        source, summary = connection.execute(
            text("SELECT source, summary FROM dataset_imports")
        ).one()
    assert source.endswith("base.gpkg")
    assert summary["layers"]["grids"]["inserted"] == 6


def test_progress_is_reported_per_stage(engine: Engine, data: Layers, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []

    import_boundaries(engine, write_gpkg(data, tmp_path / "all.gpkg"), progress=_append(seen))

    stages = list(dict.fromkeys(stage for stage, _, _ in seen))  # in first-seen order
    assert stages == [STAGE_READ, STAGE_VALIDATE, STAGE_WRITE]
    assert all(0 < done <= total for _, done, total in seen)


def _append(seen: list[tuple[str, int, int]]) -> Callable[[str, int, int], None]:
    return lambda stage, done, total: seen.append((stage, done, total))


def test_reference_dataset_round_trips_exactly(engine: Engine, reference_gpkg: Path) -> None:
    # reference_gpkg (conftest) is generate_reference_dataset(2020) written by write_geopackage.
    from geodata.dataset.generate import generate_reference_dataset

    report = import_boundaries(engine, reference_gpkg)

    assert report.layers["grids"].inserted == 1138
    assert report.layers["workers"].inserted == 2381
    assert report.layers["worker_assignments"].inserted == 2381
    dataset = generate_reference_dataset(2020)
    names = (*layers.LEVEL_BY_LAYER, layers.WORKERS_LAYER, layers.POIS_LAYER)
    assert_round_trip(engine, {name: getattr(dataset, name) for name in names})


def test_report_renders_counts_per_layer(engine: Engine, data: Layers, tmp_path: Path) -> None:
    report = import_boundaries(engine, write_gpkg(data, tmp_path / "all.gpkg"), dry_run=True)

    text_report = report.render()

    assert "grids" in text_report
    assert "dry run" in text_report
