"""Boundary versions dated by the city: a redrawing loaded today takes effect on its date.

One import, through `wangge dataset import --valid-from` (the CLI in process), moves a strip
of grid B into grid A (renamed) and one of B's workers to A from the 1st of next month.
Until then locate, the consumers' grid snapshot, OGC, the map's tiles and the health
check's grid count answer the old versions; from then (asked with `at` or `datetime`, or
with the tiles' clock moved), the new ones.
"""

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyogrio
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from geodata.dataset.importer import export_layers
from geodata.dataset.layers import LOCAL_TZ
from geodata.db.engine import create_db_engine
from geodata.db.grid_cache import load_snapshot
from geodata.db.tile_memory import TileMemory
from geodata.db.tiles import tile_containing
from geodata.snapshot_policy import SnapshotPolicy
from grid_service.app import ApiConfig, create_app
from grid_service.health import HealthConfig
from tests.integration.test_tiles import decode_tile, tiles_app
from wangge.cli import app as wangge_cli
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

UNUSED_BROKER = "127.0.0.1:9"  # these routes never produce; the producer is lazy
STRIP_DEGREES = 0.0004  # about 40 m of B along its edge with A goes to A
NEW_NAME = "调整后的网格"

# Two grids of one community sharing a long edge, and a worker of the second.
_PAIR_SQL = text(
    """
    SELECT a.code AS a, b.code AS b,
           (SELECT min(w.worker_id) FROM worker_assignments w
            WHERE w.grid_code = b.code AND w.valid_to IS NULL) AS worker
    FROM grids a JOIN grids b
      ON b.community_code = a.community_code AND a.code < b.code
     AND ST_Length(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))::geography) > 300
    WHERE a.valid_to IS NULL AND b.valid_to IS NULL
      AND EXISTS (SELECT 1 FROM worker_assignments w
                  WHERE w.grid_code = b.code AND w.valid_to IS NULL)
    ORDER BY a.code, b.code LIMIT 1
    """
)


@dataclass(frozen=True)
class Redraw:
    """The city after the dated import, and what it changed."""

    database_url: str
    engine: Engine
    grid_a: str
    grid_b: str
    worker: str
    point: tuple[float, float]
    """A point in the strip: in B before the date, in A from it."""
    effective: datetime
    path: Path


def first_of_next_month(today: date) -> date:
    """The 1st of the month after `today`'s."""
    return (today.replace(day=1) + timedelta(days=32)).replace(day=1)


def _wangge(database_url: str, tmp_path: Path, *args: str) -> Result:
    """`wangge ARGS` in this process (a new one costs seconds of imports)."""
    env = {
        "WANGGE_DATABASE_URL": database_url,
        "WANGGE_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "200",
    }
    return CliRunner().invoke(wangge_cli, list(args), env=env)


def _write_redraw(engine: Engine, path: Path) -> tuple[str, str, str, tuple[float, float]]:
    """A GeoPackage moving a strip of B into A (renamed) and B's worker to A."""
    with engine.connect() as connection:
        pair = connection.execute(_PAIR_SQL).one()
    layers = export_layers(engine)
    grids = layers["grids"].set_index("code", drop=False)
    geom_a, geom_b = grids.loc[pair.a, "geometry"], grids.loc[pair.b, "geometry"]
    strip = shapely.intersection(geom_b, geom_a.buffer(STRIP_DEGREES))
    changed = grids.loc[[pair.a, pair.b]].copy()
    changed.loc[pair.a, "geometry"] = shapely.multipolygons(
        shapely.get_parts(shapely.union(geom_a, strip))
    )
    changed.loc[pair.b, "geometry"] = shapely.multipolygons(
        shapely.get_parts(shapely.difference(geom_b, strip))
    )
    changed.loc[pair.a, "name"] = NEW_NAME
    workers = layers["workers"]
    moved = workers[workers["worker_id"] == pair.worker].copy()
    moved["grid_code"] = pair.a
    moved["valid_from"] = None  # from the import's valid_from
    pyogrio.write_dataframe(changed.reset_index(drop=True), path, layer="grids", driver="GPKG")
    pyogrio.write_dataframe(moved, path, layer="workers", driver="GPKG", append=True)
    # Well inside the strip, away from its edges.
    inner = shapely.intersection(strip, geom_a.buffer(STRIP_DEGREES / 2)).buffer(-STRIP_DEGREES / 8)
    point = shapely.get_coordinates(inner.representative_point())[0]
    return pair.a, pair.b, pair.worker, (float(point[0]), float(point[1]))


@pytest.fixture(scope="module")
def redraw(
    reference_database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Redraw]:
    """The reference city with a redrawing imported today, effective the 1st of next month."""
    database_url = reference_database_factory()
    engine = create_db_engine(database_url)
    tmp_path = tmp_path_factory.mktemp("dated")
    path = tmp_path / "redraw.gpkg"
    grid_a, grid_b, worker, point = _write_redraw(engine, path)
    day = first_of_next_month(datetime.now(LOCAL_TZ).date())
    done = _wangge(database_url, tmp_path, "dataset", "import", "--valid-from", str(day), str(path))
    assert done.exit_code == 0, done.output
    effective = datetime.combine(day, time(0), tzinfo=LOCAL_TZ)
    assert f"imported, valid from {effective.isoformat()}" in done.stdout
    yield Redraw(database_url, engine, grid_a, grid_b, worker, point, effective, path)
    engine.dispose()


@pytest.fixture(scope="module")
def client(redraw: Redraw) -> Iterator[TestClient]:
    """The API on the redrawn city, its snapshot checked on every request."""
    config = ApiConfig(
        redraw.database_url, UNUSED_BROKER, grid_snapshot=SnapshotPolicy(check_interval_s=0)
    )
    with TestClient(create_app(config)) as test_client:
        yield test_client


def _just_before(moment: datetime) -> datetime:
    return moment - timedelta(microseconds=1)


def test_the_import_closes_the_old_versions_at_the_citys_date(redraw: Redraw) -> None:
    with redraw.engine.connect() as connection:
        grids = connection.execute(
            text(
                "SELECT code, name, valid_from, valid_to FROM grids"
                " WHERE code IN (:a, :b) ORDER BY code, valid_from"
            ),
            {"a": redraw.grid_a, "b": redraw.grid_b},
        ).all()
        periods = connection.execute(
            text(
                "SELECT grid_code, valid_from, valid_to FROM worker_assignments"
                " WHERE worker_id = :w ORDER BY valid_from"
            ),
            {"w": redraw.worker},
        ).all()
    assert [(g.code, g.valid_to) for g in grids] == [
        (redraw.grid_a, redraw.effective),
        (redraw.grid_a, None),
        (redraw.grid_b, redraw.effective),
        (redraw.grid_b, None),
    ]
    assert grids[1].valid_from == grids[3].valid_from == redraw.effective
    assert grids[1].name == NEW_NAME
    assert [tuple(p) for p in periods][-2:] == [
        (redraw.grid_b, periods[-2].valid_from, redraw.effective),
        (redraw.grid_a, redraw.effective, None),
    ]


def test_locate_answers_the_old_version_until_the_date_then_the_new(
    redraw: Redraw, client: TestClient
) -> None:
    lon, lat = redraw.point

    def located(at: datetime | None) -> dict[str, Any]:
        params: dict[str, Any] = {"lon": lon, "lat": lat}
        if at is not None:
            params["at"] = at.isoformat()
        response = client.get("/api/v1/grids/locate", params=params)
        assert response.status_code == 200, response.text
        properties: dict[str, Any] = response.json()["properties"]
        return properties

    now = located(None)
    assert (now["code"], now["assignment_rule"]) == (redraw.grid_b, "contains")
    assert redraw.worker in {member["worker_id"] for member in now["staff"]}
    assert located(_just_before(redraw.effective))["code"] == redraw.grid_b
    then = located(redraw.effective)
    assert (then["code"], then["name"]) == (redraw.grid_a, NEW_NAME)
    assert redraw.worker in {member["worker_id"] for member in then["staff"]}


def test_the_consumers_snapshot_assigns_by_the_events_time(redraw: Redraw) -> None:
    snapshot = load_snapshot(redraw.engine)
    lon, lat = redraw.point
    before = snapshot.locate(lon, lat, _just_before(redraw.effective))
    after = snapshot.locate(lon, lat, redraw.effective)
    assert before is not None
    assert after is not None
    assert before.detail.grid.code == redraw.grid_b
    assert (after.detail.grid.code, after.detail.grid.name) == (redraw.grid_a, NEW_NAME)
    assert redraw.worker in snapshot.roster.workers_of(redraw.grid_b, datetime.now(UTC))
    assert redraw.worker not in snapshot.roster.workers_of(redraw.grid_a, datetime.now(UTC))
    assert redraw.worker in snapshot.roster.workers_of(redraw.grid_a, redraw.effective)
    assert redraw.worker not in snapshot.roster.workers_of(redraw.grid_b, redraw.effective)


def test_ogc_serves_the_versions_in_force_and_the_new_ones_at_their_date(
    redraw: Redraw, client: TestClient
) -> None:
    items = "/ogc/collections/grids/items"

    def grid_a(**params: Any) -> dict[str, Any]:
        page = client.get(items, params={"limit": 2000, **params}).json()
        assert page["numberMatched"] == 1138
        (feature,) = [f for f in page["features"] if f["id"] == redraw.grid_a]
        return dict(feature["properties"])

    effective = redraw.effective.astimezone(UTC).isoformat().replace("+00:00", "Z")
    in_force = grid_a()
    assert in_force["name"] != NEW_NAME
    assert in_force["valid_to"] == effective
    assert client.get(f"{items}/{redraw.grid_a}").json()["properties"] == in_force
    scheduled = grid_a(datetime=effective)
    assert (scheduled["name"], scheduled["valid_from"]) == (NEW_NAME, effective)
    assert scheduled["valid_to"] is None


def test_admin_route_dates_an_import_and_refuses_a_bad_or_too_early_date(
    redraw: Redraw, client: TestClient
) -> None:
    token = add_user(redraw.database_url, f"adm-{uuid.uuid4().hex[:6]}", "admin", None, None)
    headers = {"Authorization": f"Bearer {token}"}

    def post(valid_from: str) -> Any:
        with redraw.path.open("rb") as file:
            return client.post(
                "/api/v1/admin/boundaries",
                params={"dry_run": "true", "valid_from": valid_from},
                files={"file": ("redraw.gpkg", file, "application/geopackage+sqlite3")},
                headers=headers,
            )

    later = redraw.effective + timedelta(days=31)
    dated = post(later.date().isoformat())
    assert dated.status_code == 200, dated.text
    assert datetime.fromisoformat(dated.json()["valid_from"]) == later
    assert dated.json()["dry_run"] is True
    bad = post("next month")
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    assert post("1969-12-31").json()["code"] == "invalid_request"


def test_a_date_before_the_scheduled_version_is_refused_naming_the_option(
    redraw: Redraw, tmp_path: Path
) -> None:
    # Undo the redrawing in a new file: a change to the scheduled versions.
    layers = export_layers(redraw.engine)
    grids = layers["grids"]
    undo = grids[grids["code"] == redraw.grid_a].copy()
    undo["name"] = "又改了名"
    path = tmp_path / "undo.gpkg"
    pyogrio.write_dataframe(undo, path, layer="grids", driver="GPKG")
    day = _just_before(redraw.effective).date().isoformat()
    url = redraw.database_url
    done = _wangge(url, tmp_path, "dataset", "import", "--valid-from", day, str(path))
    assert done.exit_code == 1
    assert "valid_from_too_early" in done.output
    assert "--valid-from" in done.output
    bad = _wangge(url, tmp_path, "dataset", "import", "--valid-from", "soon", str(path))
    assert bad.exit_code == 1
    assert "neither a date" in bad.output


def _grids_at(client: TestClient, lon: float, lat: float) -> dict[str, dict[str, Any]]:
    """The grids of the z16 tile holding a point, by code: their properties."""
    response = client.get("/tiles/grids/{}/{}/{}.pbf".format(*tile_containing(lon, lat, 16)))
    assert response.status_code == 200, response.text
    layer = decode_tile(response.content)["grids"]
    return {f.properties["code"]: f.properties for f in layer.features}


def test_tiles_draw_the_versions_in_force_and_the_new_ones_from_their_date(
    redraw: Redraw, client: TestClient
) -> None:
    lon, lat = redraw.point
    assert _grids_at(client, lon, lat)[redraw.grid_a]["name"] != NEW_NAME
    # The tile memory's wall clock moved to the date, its stamps read once before: a tile
    # kept (and an ETag given) before the date is not served after it.
    now = [datetime.now(UTC)]
    memory = TileMemory(redraw.engine, 3600, clock=lambda: 0.0, now=lambda: now[0])
    app = tiles_app(redraw.engine)
    app.state.tile_memory = memory
    memory.stamps.refresh()
    with TestClient(app) as clock_client:
        path = "/tiles/grids/{}/{}/{}.pbf".format(*tile_containing(lon, lat, 16))
        before = clock_client.get(path)
        assert clock_client.get(path).content == before.content  # kept
        now[0] = redraw.effective
        after = clock_client.get(path, headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200
        assert after.headers["etag"] != before.headers["etag"]
        names = {
            f.properties["code"]: f.properties["name"]
            for f in decode_tile(after.content)["grids"].features
        }
        assert names[redraw.grid_a] == NEW_NAME


@pytest.mark.parametrize("when", ["future", "past"])
def test_tiles_and_health_count_a_new_grid_from_its_date(
    reference_database_factory: Callable[[], str], tmp_path: Path, when: str
) -> None:
    # A new grid cut from an old one: the health check's count moves, as it must, only
    # from the import's date.
    url = reference_database_factory()
    engine = create_db_engine(url)
    try:
        grids = export_layers(engine)["grids"]
        split = grids.iloc[[0, 0]].reset_index(drop=True)
        whole = split.geometry.iloc[0]
        west, south, east, north = whole.bounds
        half = shapely.box(west, south, (west + east) / 2, north)
        parts = [shapely.difference(whole, half), shapely.intersection(whole, half)]
        split["geometry"] = [shapely.multipolygons(shapely.get_parts(p)) for p in parts]
        code = str(split["code"].iloc[0])[:-3] + "999"
        split["code"] = [split["code"].iloc[0], code]
        split["name"] = [split["name"].iloc[0], "新网格"]
        point = shapely.get_coordinates(parts[1].representative_point())[0]
        path = tmp_path / "split.gpkg"
        pyogrio.write_dataframe(split, path, layer="grids", driver="GPKG")
    finally:
        engine.dispose()
    today = datetime.now(LOCAL_TZ).date()
    day = first_of_next_month(today) if when == "future" else today - timedelta(days=1)
    done = _wangge(url, tmp_path, "dataset", "import", "--valid-from", str(day), str(path))
    assert done.exit_code == 0, done.output
    config = ApiConfig(url, UNUSED_BROKER, health=HealthConfig(probe_interval_s=0.1))
    with TestClient(create_app(config)) as client:
        drawn = _grids_at(client, float(point[0]), float(point[1]))
        deadline = datetime.now(UTC) + timedelta(seconds=15)
        while (database := client.get("/healthz").json()["database"])["age_s"] is None:
            assert datetime.now(UTC) < deadline, database
    expected = {"future": (1138, False), "past": (1139, True)}[when]
    assert (database["grids"], code in drawn) == expected
