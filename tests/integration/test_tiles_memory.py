"""Tiles from memory: a 304 or a tile served before runs no SQL, and a change shows.

The tile routes answer public layers from the data stamps `TileMemory` keeps and the
tiles it has drawn. Statements are counted on the app's engine; the stamps' age is moved
by a clock the test holds, and their background reads are the test's `refresh()` calls.
"""

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from geodata.dataset.generate import (
    ReferenceDataset,
    generate_reference_dataset,
    write_geopackage,
)
from geodata.dataset.importer import import_boundaries
from geodata.db.engine import create_db_engine
from geodata.db.tile_memory import TileMemory
from geodata.db.tiles import tile_containing
from grid_service.app import ApiConfig, create_app
from tests.integration.test_tiles import decode_tile, sample_grids, tiles_app

pytestmark = pytest.mark.integration

MAX_AGE_S = 5.0


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Statements:
    """Counts the SQL statements an engine sends."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: object) -> None:
        self.count += 1


@contextmanager
def _tiles(
    url: str, max_bytes: int = 64 * 2**20
) -> Iterator[tuple[TestClient, TileMemory, _Clock, _Statements, Engine]]:
    engine = create_db_engine(url)
    clock = _Clock()
    memory = TileMemory(engine, MAX_AGE_S, max_bytes, clock=clock)
    app = tiles_app(engine)
    app.state.tile_memory = memory
    memory.stamps.refresh()
    try:
        with TestClient(app) as client:
            yield client, memory, clock, _Statements(engine), engine
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def city_url(reference_database_factory: Callable[[], str]) -> str:
    """A copy of the reference city the module's read-only tests share."""
    return reference_database_factory()


def _path(engine: Engine, layer: str = "grids", z: int = 14, n: int = 0) -> str:
    _, lon, lat = sample_grids(engine, n + 1)[n]
    return "/tiles/{}/{}/{}/{}.pbf".format(layer, *tile_containing(lon, lat, z))


def test_a_304_and_a_kept_tile_run_no_sql(city_url: str) -> None:
    with _tiles(city_url) as (client, _memory, _clock, statements, engine):
        for layer, z in (("grids", 14), ("grids", 12), ("communities", 12), ("pois", 14)):
            path = _path(engine, layer, z)
            first = client.get(path)
            assert first.status_code == 200
            assert statements.count > 0  # drawn once, in PostGIS
            statements.count = 0
            again = client.get(path)
            revalidated = client.get(path, headers={"If-None-Match": first.headers["etag"]})
            assert statements.count == 0, layer
            assert (again.status_code, again.content) == (200, first.content)
            assert again.headers["etag"] == first.headers["etag"]
            assert (revalidated.status_code, revalidated.content) == (304, b"")
        tilejson = client.get("/tiles/grids.json")
        statements.count = 0
        etag = tilejson.headers["etag"]
        revalidated = client.get("/tiles/grids.json", headers={"If-None-Match": etag})
        assert (revalidated.status_code, statements.count) == (304, 0)


def test_memory_answers_with_the_etags_the_database_gives(city_url: str) -> None:
    # The same ETag whether the stamp comes from memory or from PostGIS: clients and
    # caches keep their copies across a restart or a database hiccup.
    with _tiles(city_url) as (client, _memory, clock, statements, engine):
        path = _path(engine, n=2)
        from_memory = client.get(path)
        clock.now += MAX_AGE_S  # no fresh stamp in memory: the route asks PostGIS
        statements.count = 0
        from_database = client.get(path)
        assert statements.count == 1
        assert from_database.headers["etag"] == from_memory.headers["etag"]
        assert from_database.content == from_memory.content


def test_the_cache_stays_within_its_bound(city_url: str) -> None:
    bound = 40_000
    with _tiles(city_url, max_bytes=bound) as (client, memory, _clock, _statements, engine):
        served = 0
        for n in range(12):
            for z in (13, 14):
                response = client.get(_path(engine, z=z, n=n))
                served += len(response.content)
                assert memory.tiles.size_bytes <= bound
        assert served > bound  # more was served than it may hold
        assert len(memory.tiles) > 0


def _shrinkable_grid(dataset: ReferenceDataset) -> str:
    """A grid that keeps its points of interest when shrunk to 70 % (the importer checks)."""
    for code, shape in zip(dataset.grids["code"], dataset.grids.geometry, strict=True):
        smaller = shapely.affinity.scale(shape, 0.7, 0.7, origin="centroid")
        pois = dataset.pois.geometry[dataset.pois["grid_code"] == code]
        if all(smaller.contains(poi) for poi in pois):
            return str(code)
    raise AssertionError("no grid keeps its points of interest when shrunk")


def _with_grid_shrunk(dataset: ReferenceDataset, code: str, factor: float, path: Path) -> Path:
    grids = dataset.grids.copy()
    row = grids.index[grids["code"] == code][0]
    shape = grids.at[row, "geometry"]
    grids.at[row, "geometry"] = shapely.affinity.scale(shape, factor, factor, origin="centroid")
    write_geopackage(dataclasses.replace(dataset, grids=grids), path)
    return path


def test_a_kept_tile_gives_way_to_a_boundary_import(
    reference_database_url: str, tmp_path: Path
) -> None:
    with _tiles(reference_database_url) as (client, memory, clock, statements, engine):
        dataset = generate_reference_dataset(2020)
        code = _shrinkable_grid(dataset)
        inside = dataset.grids.loc[dataset.grids["code"] == code, "geometry"].iloc[0]
        point = inside.representative_point()
        path = "/tiles/grids/{}/{}/{}.pbf".format(*tile_containing(point.x, point.y, 14))
        neighbours = path.replace("grids", "districts")
        before = client.get(path)
        district_tag = client.get(neighbours).headers["etag"]
        import_boundaries(engine, _with_grid_shrunk(dataset, code, 0.8, tmp_path / "1.gpkg"))
        with engine.connect() as conn:
            assert (
                conn.execute(
                    text("SELECT count(*) FROM grids WHERE code = :c"), {"c": code}
                ).scalar_one()
                == 2
            )

        # The next background read sees the import: a new ETag, the new tile.
        memory.stamps.refresh()
        after = client.get(path, headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200
        assert after.headers["etag"] != before.headers["etag"]
        assert after.content != before.content

        def area(tile: bytes) -> float:
            features = decode_tile(tile)["grids"].features
            return float(next(f.geometry.area for f in features if f.properties["code"] == code))

        assert area(after.content) < 0.7 * area(before.content)
        # Other layers keep their tiles and ETags: nothing of theirs changed.
        statements.count = 0
        assert client.get(neighbours).headers["etag"] == district_tag
        assert statements.count == 0

        # Without a read since the change, the stamps age out within the interval and
        # the route asks PostGIS: a stale tile is never served beyond it.
        import_boundaries(engine, _with_grid_shrunk(dataset, code, 0.7, tmp_path / "2.gpkg"))
        clock.now += MAX_AGE_S
        latest = client.get(path, headers={"If-None-Match": after.headers["etag"]})
        assert latest.status_code == 200
        assert latest.headers["etag"] != after.headers["etag"]


def test_the_app_keeps_tiles_from_its_lifespan(city_url: str) -> None:
    with TestClient(create_app(ApiConfig(city_url, "127.0.0.1:9"))) as client:
        memory = client.app.state.tile_memory  # type: ignore[attr-defined]
        assert isinstance(memory, TileMemory)
        deadline = time.monotonic() + 30.0  # a guard against hanging, not a timing
        while memory.stamps.fresh() is None:  # the first background read
            assert time.monotonic() < deadline, "the stamps were never read"
            time.sleep(0.01)
        path = "/tiles/grids/14/13195/6464.pbf"
        first = client.get(path)
        assert first.status_code == 200
        assert len(memory.tiles) == 1
        assert client.get(path, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
