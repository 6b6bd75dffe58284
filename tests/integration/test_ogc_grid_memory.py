"""OGC's grids from the grid snapshot (one by id, pages of those in force): the
database's answer, and never older than the snapshot's check interval (the clock is the
test's)."""

import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geodata.db.engine import create_db_engine, unit_of_work
from geodata.db.features import (
    BBox,
    Feature,
    FeaturePage,
    FeatureQuery,
    get_feature,
    query_features,
)
from geodata.db.grid_cache import GridSnapshotCache, load_snapshot
from geodata.snapshot_policy import SnapshotPolicy
from grid_service.app import ApiConfig, create_app
from grid_service.ogc import routes
from grid_service.ogc.documents import feature_object
from grid_service.ogc.grid_features import GRIDS, grid_in_force, grids_in_force_page
from grid_service.ogc.params import parse_datetime, parse_sortby

pytestmark = pytest.mark.integration

UNUSED_BROKER = "127.0.0.1:9"  # the OGC routes never produce; the producer is lazy
INTERVAL_S = 2.0


@pytest.fixture(scope="module")
def city_url(reference_database_factory: Callable[[], str]) -> str:
    """A copy of the reference city for this module (one test changes its grids)."""
    return reference_database_factory()


@pytest.fixture(scope="module")
def engine(city_url: str) -> Iterator[Engine]:
    """An engine on the module's city."""
    engine = create_db_engine(city_url)
    yield engine
    engine.dispose()


def _encoded(feature: Feature | None) -> bytes:
    """The feature as the route encodes it (key order and number digits included)."""
    assert feature is not None
    return bytes(JSONResponse(feature_object(feature)).body)


def test_every_grid_in_force_is_the_databases_feature_byte_for_byte(engine: Engine) -> None:
    snapshot = load_snapshot(engine)
    now = datetime.now(UTC)
    with engine.connect() as connection:
        codes = connection.execute(text("SELECT code FROM grids WHERE valid_to IS NULL")).scalars()
        for n, code in enumerate(sorted(codes)):
            assert _encoded(grid_in_force(snapshot, code, now)) == _encoded(
                get_feature(connection, GRIDS, code)
            ), code
            if n % 25 == 0:  # lat/lon order and a choice of properties, on a sample
                for lat_lon, properties in ((True, None), (False, ("households", "code"))):
                    ours = grid_in_force(
                        snapshot, code, now, lat_lon=lat_lon, properties=properties
                    )
                    theirs = get_feature(
                        connection, GRIDS, code, lat_lon=lat_lon, properties=properties
                    )
                    assert _encoded(ours) == _encoded(theirs), (code, lat_lon, properties)
    assert grid_in_force(snapshot, "999999999999999", now) is None


def test_a_grid_is_answered_from_memory_until_its_check_is_due_then_as_changed(
    city_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.connect() as connection:
        redrawn, closed = connection.execute(
            text("SELECT code FROM grids WHERE valid_to IS NULL ORDER BY code LIMIT 2")
        ).scalars()
    asked: list[str] = []

    def from_database(*args: Any, **kwargs: Any) -> Feature | None:
        asked.append(args[2])
        return get_feature(*args, **kwargs)

    monkeypatch.setattr(routes, "get_feature", from_database)
    items = "/ogc/collections/grids/items"
    app = create_app(ApiConfig(city_url, UNUSED_BROKER))
    with TestClient(app) as client:
        clock = [0.0]
        policy = SnapshotPolicy(check_interval_s=INTERVAL_S)
        cache = GridSnapshotCache(app.state.engine, policy, clock=lambda: clock[0])
        app.state.grid_snapshots = cache
        cache.snapshot()  # checked at 0
        before = client.get(f"{items}/{redrawn}").json()
        assert before["properties"]["valid_to"] is None
        # What a boundary import does: the version in force closed, a new one from now;
        # and a grid closed with no successor, whose last version only the database has.
        with unit_of_work(engine) as session:
            for statement in (
                "UPDATE grids SET valid_to = now() WHERE code = :code AND valid_to IS NULL",
                "INSERT INTO grids (code, community_code, name, households, geom, valid_from)"
                " SELECT code, community_code, 'redrawn', households,"
                " ST_Multi(ST_Buffer(geom, 0.0001)), now() FROM grids WHERE code = :code",
                "UPDATE grids SET valid_to = now() WHERE code = :closed",
            ):
                session.execute(text(statement), {"code": redrawn, "closed": closed})
        clock[0] = INTERVAL_S / 2  # within the interval: as checked at 0
        assert client.get(f"{items}/{redrawn}").json() == before
        assert asked == []
        clock[0] = INTERVAL_S  # due: the database answers while the check runs
        after = client.get(f"{items}/{redrawn}").json()
        assert after["properties"]["name"] == "redrawn"
        assert after["geometry"] != before["geometry"]
        deadline = time.monotonic() + 60  # a bound on a hang, not a timing
        while cache.fresh() is None:
            assert time.monotonic() < deadline, "the snapshot check did not end"
            time.sleep(0.05)
        asked.clear()
        assert client.get(f"{items}/{redrawn}").json() == after
        assert asked == []  # from the reloaded snapshot
        gone = client.get(f"{items}/{closed}")
        assert gone.status_code == 200
        assert gone.json()["properties"]["valid_to"] is not None
        assert asked == [closed]


def _encoded_page(page: FeaturePage | None) -> tuple[int, list[bytes]]:
    assert page is not None
    return page.number_matched, [_encoded(feature) for feature in page.features]


def _boxes(engine: Engine, count: int) -> list[BBox]:
    """Each of a sample of communities' extents, random boxes of the city's size range,
    and boxes whose edges run through a grid's vertices (where `intersects` decides on a
    touch)."""
    with engine.connect() as connection:
        extents = connection.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ("
                " SELECT ST_Extent(geom) AS e FROM grids WHERE valid_to IS NULL"
                " GROUP BY community_code ORDER BY community_code) AS c"
            )
        ).all()
        corners = connection.execute(
            text(
                "SELECT ST_X(p.geom), ST_Y(p.geom) FROM (SELECT (ST_DumpPoints(geom)).geom"
                " FROM grids WHERE valid_to IS NULL ORDER BY code LIMIT 400) AS p"
            )
        ).all()
    rng = random.Random(20)
    boxes = [BBox(*extent) for extent in rng.sample(extents, count // 3)]
    min_lon, min_lat = min(e[0] for e in extents), min(e[1] for e in extents)
    max_lon, max_lat = max(e[2] for e in extents), max(e[3] for e in extents)
    for _ in range(count // 3):
        lon, lat = rng.uniform(min_lon, max_lon), rng.uniform(min_lat, max_lat)
        width, height = rng.uniform(1e-4, 0.03), rng.uniform(1e-4, 0.03)
        boxes.append(BBox(lon, lat, lon + width, lat + height))
    for lon, lat in rng.sample(corners, count - len(boxes)):
        # A box ending exactly at a vertex, on one side or the other.
        if rng.random() < 0.5:
            boxes.append(BBox(lon - 0.002, lat - 0.002, lon, lat))
        else:
            boxes.append(BBox(lon, lat, lon + 0.002, lat + 0.002))
    return boxes


def test_every_page_and_box_of_grids_in_force_is_the_databases_byte_for_byte(
    engine: Engine,
) -> None:
    snapshot = load_snapshot(engine)
    now = datetime.now(UTC)
    queries = [FeatureQuery(limit=100, offset=offset) for offset in range(0, 1200, 100)]
    queries += [FeatureQuery(limit=7, offset=1135), FeatureQuery(limit=1, offset=5000)]
    queries += [
        FeatureQuery(limit=100, offset=100, lat_lon=True),
        FeatureQuery(limit=50, properties=("households", "code")),
        FeatureQuery(limit=50, properties=()),
    ]
    queries += [FeatureQuery(bbox=box, limit=100) for box in _boxes(engine, 90)]
    met = 0
    for query in queries:
        ours = _encoded_page(grids_in_force_page(snapshot, now, query))
        assert ours == _encoded_page(query_features(engine, GRIDS, query)), query
        met += ours[0] > 0
    assert (
        met > len(queries) * 0.8
    )  # the boxes meet grids: a comparison of empty pages proves little


def test_a_page_the_snapshot_cannot_answer_is_left_to_the_database(engine: Engine) -> None:
    snapshot = load_snapshot(engine)
    now = datetime.now(UTC)
    left = [
        FeatureQuery(sortby=parse_sortby("-households")),
        FeatureQuery(interval=parse_datetime("2020-09-07T10:00:00+08:00")),
        FeatureQuery(bbox=BBox(179.5, 34.0, -179.5, 35.0)),  # across the antimeridian
        FeatureQuery(bbox=BBox(107.1, 34.3, 107.1, 34.4)),  # no width
        FeatureQuery(area_prefix="610302"),
    ]
    for query in left:
        assert grids_in_force_page(snapshot, now, query) is None, query


def test_the_items_route_answers_grids_in_force_from_memory_and_the_rest_from_the_database(
    city_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[FeatureQuery] = []

    def from_database(*args: Any, **kwargs: Any) -> FeaturePage:
        asked.append(args[2])
        return query_features(*args, **kwargs)

    monkeypatch.setattr(routes, "query_features", from_database)
    items = "/ogc/collections/grids/items"
    with TestClient(create_app(ApiConfig(city_url, UNUSED_BROKER))) as client:
        client.get(f"{items}/610302001001001")  # loads the snapshot
        page = client.get(items, params={"limit": 100, "offset": 1100, "bbox": "107,34,108,35"})
        assert page.status_code == 200
        body = page.json()
        assert body["numberReturned"] == len(body["features"]) > 0
        assert asked == []
        filtered = client.get(items, params={"limit": 100, "filter": "households > 500"})
        assert filtered.status_code == 200
        assert len(asked) == 1
        assert asked[0].filter is not None
        unknown = client.get(items, params={"properties": "nonsense"})
        assert unknown.status_code == 400
        assert unknown.json()["code"] == "unknown_property"
        assert len(asked) == 1
