"""The reference dataset generator: counts, codes, names, topology and determinism."""

from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from geodata.dataset import layers
from geodata.dataset.generate import ReferenceDataset, generate_reference_dataset, write_geopackage

SEED = 2020
TOLERANCE_M2 = 1.0
POLYGON_LAYERS = ("districts", "streets", "communities", "grids")
PARENT_OF = {"streets": "districts", "communities": "streets", "grids": "communities"}


@pytest.fixture(scope="module")
def dataset() -> ReferenceDataset:
    """The reference dataset for the default seed, generated once for the module."""
    return generate_reference_dataset(SEED)


@pytest.fixture(scope="module")
def metric(dataset: ReferenceDataset) -> dict[str, gpd.GeoDataFrame]:
    """Every spatial layer in the local metric CRS, where areas are in square metres."""
    return {
        name: getattr(dataset, name).to_crs(layers.METRIC_CRS) for name in (*POLYGON_LAYERS, "pois")
    }


def test_levels_have_the_exact_counts_of_the_article(dataset: ReferenceDataset) -> None:
    assert len(dataset.districts) == 4
    assert len(dataset.communities) == 126
    assert len(dataset.grids) == 1138
    assert len(dataset.workers) == 2381


def test_districts_are_baojis_four_urban_districts(dataset: ReferenceDataset) -> None:
    assert dict(zip(dataset.districts.code, dataset.districts.name, strict=True)) == {
        "610302": "渭滨区",
        "610303": "金台区",
        "610304": "陈仓区",
        "610371": "高新区",
    }


def test_layers_have_exactly_the_contract_columns_and_crs(dataset: ReferenceDataset) -> None:
    expected = {
        "districts": layers.DISTRICT_COLUMNS,
        "streets": layers.STREET_COLUMNS,
        "communities": layers.COMMUNITY_COLUMNS,
        "grids": layers.GRID_COLUMNS,
        "pois": layers.POI_COLUMNS,
    }
    for name, columns in expected.items():
        frame = getattr(dataset, name)
        assert list(frame.columns) == [*columns, "geometry"], name
        assert frame.crs == layers.STORAGE_CRS, name
        kind = "Point" if name == "pois" else "MultiPolygon"
        assert set(frame.geom_type) == {kind}, name
    assert list(dataset.workers.columns) == list(layers.WORKER_COLUMNS)


@pytest.mark.parametrize("level", layers.LEVELS, ids=lambda level: level.layer)
def test_codes_are_fixed_width_digits_under_an_existing_parent(
    dataset: ReferenceDataset, level: layers.LevelSpec
) -> None:
    frame = getattr(dataset, level.layer)
    assert frame.code.is_unique
    assert frame.code.str.fullmatch(rf"[0-9]{{{level.code_length}}}").all()
    if level.parent_column is not None:
        parents = getattr(dataset, str(level.parent_layer)).code
        assert frame[level.parent_column].isin(parents).all()
        assert (frame.code.str[:-3] == frame[level.parent_column]).all()


def test_every_district_has_three_to_eight_street_offices(dataset: ReferenceDataset) -> None:
    per_district = dataset.streets.groupby("district_code").size()
    assert sorted(per_district.index) == sorted(dataset.districts.code)
    assert per_district.between(3, 8).all()


def test_every_community_has_at_least_four_grids(dataset: ReferenceDataset) -> None:
    per_community = dataset.grids.groupby("community_code").size()
    assert len(per_community) == 126
    assert per_community.min() >= 4


def test_every_grid_has_one_to_four_workers(dataset: ReferenceDataset) -> None:
    per_grid = dataset.workers.groupby("grid_code").size()
    assert sorted(per_grid.index) == sorted(dataset.grids.code)
    assert per_grid.between(1, 4).all()


def test_worker_ids_are_numbered_in_grid_code_order(dataset: ReferenceDataset) -> None:
    workers = dataset.workers
    assert list(workers.worker_id) == [f"W{i:05d}" for i in range(1, 2382)]
    assert workers.grid_code.is_monotonic_increasing


def test_workers_have_plausible_synthetic_attributes(dataset: ReferenceDataset) -> None:
    workers = dataset.workers
    assert workers.phone.str.fullmatch(r"1[0-9]{10}").all()
    assert workers.phone.is_unique
    assert workers.name.str.fullmatch(r"[\u4e00-\u9fff]{2,3}").all()
    assert set(workers.employment) <= set(layers.EMPLOYMENT_KINDS)
    assert {datetime.fromisoformat(v) for v in workers.valid_from} == {layers.REFERENCE_VALID_FROM}
    assert workers.valid_from.str.endswith("+08:00").all()


def test_each_grid_has_exactly_one_party_post(dataset: ReferenceDataset) -> None:
    roles = dataset.workers.dropna(subset=["party_role"])
    assert set(roles.party_role) <= {"党支部书记", "党小组长"}
    assert sorted(roles.grid_code) == sorted(dataset.grids.code)


def test_the_articles_named_places_are_in_their_districts(dataset: ReferenceDataset) -> None:
    streets = dataset.streets.set_index("name")
    communities = dataset.communities.set_index("name")
    assert streets.loc["经二路街道", "district_code"] == "610302"
    assert communities.loc["清姜路社区", "street_code"].startswith("610302")
    assert communities.loc["和谐路社区", "street_code"].startswith("610371")


def test_place_names_are_unique_and_plausible(dataset: ReferenceDataset) -> None:
    assert dataset.streets.name.is_unique
    assert dataset.streets.name.str.endswith("街道").all()
    assert dataset.communities.name.is_unique
    assert dataset.communities.name.str.endswith("社区").all()
    community_name = dict(zip(dataset.communities.code, dataset.communities.name, strict=True))
    for code, parent, name in zip(
        dataset.grids.code, dataset.grids.community_code, dataset.grids.name, strict=True
    ):
        assert name == f"{community_name[parent]}第{int(code[-3:])}网格"


@pytest.mark.parametrize("layer", POLYGON_LAYERS)
def test_polygons_are_valid_in_storage_and_metric_crs(
    dataset: ReferenceDataset, metric: dict[str, gpd.GeoDataFrame], layer: str
) -> None:
    assert getattr(dataset, layer).is_valid.all()
    assert metric[layer].is_valid.all()


@pytest.mark.parametrize("layer", POLYGON_LAYERS)
def test_no_two_polygons_of_a_level_overlap_by_one_square_metre(
    metric: dict[str, gpd.GeoDataFrame], layer: str
) -> None:
    geoms = metric[layer].geometry.values
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]]))
    assert overlap.max(initial=0.0) < TOLERANCE_M2


@pytest.mark.parametrize("child", list(PARENT_OF))
def test_children_union_equals_parent_within_one_square_metre(
    metric: dict[str, gpd.GeoDataFrame], child: str
) -> None:
    level = layers.LEVEL_BY_LAYER[child]
    children = metric[child].groupby(level.parent_column).geometry.agg(shapely.union_all)
    parents = metric[PARENT_OF[child]].set_index("code").geometry
    assert sorted(children.index) == sorted(parents.index)
    difference = shapely.area(
        shapely.symmetric_difference(children.values, parents.loc[children.index].values)
    )
    assert difference.max() < TOLERANCE_M2


def test_urban_area_is_one_polygon_without_gaps(metric: dict[str, gpd.GeoDataFrame]) -> None:
    urban = shapely.union_all(metric["grids"].geometry.values)
    assert isinstance(urban, shapely.Polygon)
    holes = [shapely.Polygon(ring).area for ring in urban.interiors]
    assert sum(holes) < TOLERANCE_M2


@pytest.mark.parametrize("layer", ["districts", "streets", "communities"])
def test_areas_above_grids_are_contiguous(dataset: ReferenceDataset, layer: str) -> None:
    parts = shapely.get_num_geometries(getattr(dataset, layer).geometry.values)
    assert (parts == 1).all()


def test_grid_areas_are_plausible_for_urban_grids(metric: dict[str, gpd.GeoDataFrame]) -> None:
    areas_km2 = metric["grids"].area / 1e6
    assert areas_km2.min() >= 0.02
    assert areas_km2.max() <= 0.6
    assert 0.1 <= areas_km2.median() <= 0.2


def test_grids_are_irregular_cells_not_rectangles(dataset: ReferenceDataset) -> None:
    vertices = shapely.get_num_coordinates(dataset.grids.geometry.values) - 1
    assert np.median(vertices) >= 5


def test_urban_area_lies_along_the_wei_river_at_baoji(dataset: ReferenceDataset) -> None:
    min_lon, min_lat, max_lon, max_lat = dataset.districts.total_bounds
    # docs/DATASET.md: roughly lon 107.05–107.35, lat 34.32–34.42.
    assert min_lon >= 107.04
    assert max_lon <= 107.36
    assert min_lat >= 34.31
    assert max_lat <= 34.43


def test_districts_sit_on_their_banks(metric: dict[str, gpd.GeoDataFrame]) -> None:
    centre = metric["districts"].set_index("name").geometry.centroid
    assert centre["金台区"].y > centre["渭滨区"].y  # Jintai on the north bank
    assert centre["高新区"].x > centre["渭滨区"].x  # High-tech east of Weibin
    assert centre["陈仓区"].x > max(centre["金台区"].x, centre["高新区"].x)


def test_grid_households_are_a_few_hundred(dataset: ReferenceDataset) -> None:
    assert dataset.grids.households.between(100, 1000).all()


def test_pois_are_a_few_thousand_of_the_contract_kinds(dataset: ReferenceDataset) -> None:
    pois = dataset.pois
    assert 2000 <= len(pois) <= 5000
    assert pois.poi_id.is_unique
    assert set(pois.kind) == set(layers.POI_KINDS)


def test_every_poi_lies_in_the_grid_it_names(dataset: ReferenceDataset) -> None:
    grids = dataset.grids.geometry.values
    poi_index, grid_index = shapely.STRtree(grids).query(
        dataset.pois.geometry.values, predicate="within"
    )
    # Each point in exactly one grid, and that grid is the one named.
    assert np.array_equal(poi_index, np.arange(len(dataset.pois)))
    assert np.array_equal(
        dataset.grids.code.to_numpy()[grid_index], dataset.pois.grid_code.to_numpy()
    )


def test_forty_cloud_lockers_stand_in_high_tech_compounds(
    metric: dict[str, gpd.GeoDataFrame],
) -> None:
    pois = metric["pois"]
    lockers = pois[pois.kind == "cloud_locker"]
    compounds = pois[pois.kind == "residential_compound"]
    assert len(lockers) == 40
    assert lockers.grid_code.str.startswith("610371").all()
    hosts = [
        compounds[compounds.grid_code == code].distance(point).idxmin()
        for code, point in zip(lockers.grid_code, lockers.geometry, strict=True)
    ]
    assert len(set(hosts)) == 40  # forty distinct compounds
    distance = shapely.distance(compounds.loc[hosts].geometry.values, lockers.geometry.values)
    assert (distance < 50).all()


def test_progress_is_reported_up_to_completion() -> None:
    calls: list[tuple[str, int, int]] = []
    generate_reference_dataset(SEED, progress=lambda *call: calls.append(call))
    done = [d for _, d, _ in calls]
    assert done == sorted(done)
    assert calls[-1][1] == calls[-1][2]
    assert all(description for description, _, _ in calls)


def test_same_seed_writes_byte_identical_geopackages(
    dataset: ReferenceDataset, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.gpkg", tmp_path / "second.gpkg"
    write_geopackage(dataset, first)
    write_geopackage(generate_reference_dataset(SEED), second)
    assert first.read_bytes() == second.read_bytes()


def test_geopackage_has_the_contract_layers_and_overwrites(
    dataset: ReferenceDataset, tmp_path: Path
) -> None:
    path = tmp_path / "baoji.gpkg"
    path.write_bytes(b"not a geopackage")
    write_geopackage(dataset, path)
    found = {str(name): kind for name, kind in pyogrio.list_layers(path)}
    assert found == {
        "districts": "MultiPolygon",
        "streets": "MultiPolygon",
        "communities": "MultiPolygon",
        "grids": "MultiPolygon",
        "workers": None,
        "pois": "Point",
    }
    workers = pyogrio.read_dataframe(path, layer="workers")
    assert len(workers) == 2381
    assert workers.party_role.isna().sum() == 2381 - 1138


def test_a_different_seed_gives_different_grid_geometry(dataset: ReferenceDataset) -> None:
    other = generate_reference_dataset(SEED + 1)
    assert len(other.grids) == 1138
    assert not shapely.equals_exact(
        dataset.grids.geometry.values, other.grids.geometry.values
    ).all()
