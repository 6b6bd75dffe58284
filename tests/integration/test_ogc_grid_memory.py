"""OGC's one grid by id from the grid snapshot: the database's answer, and never older
than the snapshot's check interval (the clock is the test's)."""

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geodata.db.engine import create_db_engine, unit_of_work
from geodata.db.features import Feature, get_feature
from geodata.db.grid_cache import GridSnapshotCache, load_snapshot
from geodata.snapshot_policy import SnapshotPolicy
from grid_service.app import ApiConfig, create_app
from grid_service.ogc import routes
from grid_service.ogc.documents import feature_object
from grid_service.ogc.grid_features import GRIDS, grid_in_force

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
