"""Coverage on a seeded week: the storage stage's incremental cells against SQL from scratch,
redelivery, the API's scope and its exports, and the CLI."""

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from rich.console import Console
from sqlalchemy import Engine, text

from event_consumers.checkins import CheckinHandler
from event_consumers.coverage import CoverageRecorder
from geodata.coverage import CoverageConfig
from geodata.db.engine import create_db_engine
from geodata.db.grid_cache import GridSnapshotCache
from grid_service.app import ApiConfig, create_app
from wangge.benchmarks.compliance_week import WeekPlan
from wangge.benchmarks.coverage_seed import TOPICS, WEEK_TZ, records_of, run_storage, seed_week
from wangge.coverage_cli import print_coverage
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

WEEK_FROM, WEEK_TO = "2020-09-07", "2020-09-13"
CONFIG = CoverageConfig()

# Every usable check-in's lattice cells within the buffer and inside its grid version,
# counted per grid over the week: the cell rule written again in SQL, from the stored
# check-ins, with none of the storage stage's code.
FROM_SCRATCH = text(
    """
WITH fixes AS (
    SELECT c.grid_code, g.valid_from, ST_Transform(c.geom, 4545) AS p,
           ST_Transform(g.geom, 4545) AS poly
    FROM checkins c
    JOIN grids g ON g.code = c.grid_code AND g.valid_from <= c.recorded_at
                AND (g.valid_to IS NULL OR c.recorded_at < g.valid_to)
    WHERE c.in_assigned_grid AND cardinality(c.flags) = 0
      AND (c.accuracy_m IS NULL OR c.accuracy_m <= :max_accuracy)
      AND c.recorded_at >= :start AND c.recorded_at < :end
), cells AS (
    SELECT DISTINCT f.grid_code, ix, iy
    FROM fixes f,
         generate_series(floor((ST_X(f.p) - :r) / :s)::int, floor((ST_X(f.p) + :r) / :s)::int) ix,
         generate_series(floor((ST_Y(f.p) - :r) / :s)::int, floor((ST_Y(f.p) + :r) / :s)::int) iy
    WHERE ((ix + 0.5) * :s - ST_X(f.p)) ^ 2 + ((iy + 0.5) * :s - ST_Y(f.p)) ^ 2 <= :r ^ 2
      AND ST_Contains(f.poly, ST_SetSRID(ST_MakePoint((ix + 0.5) * :s, (iy + 0.5) * :s), 4545))
)
SELECT grid_code, count(*) FROM cells GROUP BY grid_code
"""
)

VISITS_FROM_SCRATCH = text(
    """
SELECT grid_code, count(*) FILTER (WHERE local_day BETWEEN :first AND :last),
       max(started_at)
FROM patrols WHERE counted GROUP BY grid_code
"""
)


@pytest.fixture(scope="module")
def seeded(reference_database_factory: object) -> Iterator[tuple[str, Engine, WeekPlan]]:
    """A reference database with 25 workers' walks of 2020-W37 through both stages."""
    url = reference_database_factory()  # type: ignore[operator]
    engine = create_db_engine(url)
    plan = seed_week(engine, url, workers=25)
    yield url, engine, plan
    engine.dispose()


@pytest.fixture(scope="module")
def admin(seeded: tuple[str, Engine, WeekPlan]) -> Iterator[TestClient]:
    url = seeded[0]
    token = add_user(url, "cov-admin", "admin", None, None)
    with TestClient(
        create_app(ApiConfig(url, "127.0.0.1:9")), headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


def week_grids(client: TestClient, **params: str) -> list[dict[str, object]]:
    answer = client.get("/api/v1/coverage", params={"from": WEEK_FROM, "to": WEEK_TO, **params})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, object]] = answer.json()["items"]
    return items


def test_incremental_cells_and_visits_equal_a_computation_from_scratch(
    seeded: tuple[str, Engine, WeekPlan], admin: TestClient
) -> None:
    _url, engine, _plan = seeded
    start = datetime(2020, 9, 7, tzinfo=WEEK_TZ)
    with engine.connect() as conn:
        cells: dict[str, int] = dict(
            conn.execute(
                FROM_SCRATCH,
                {
                    "r": CONFIG.buffer_m,
                    "s": CONFIG.cell_m,
                    "max_accuracy": CONFIG.max_accuracy_m,
                    "start": start,
                    "end": start + timedelta(days=7),
                },
            ).all()
        )
        visits = {
            code: (n, last)
            for code, n, last in conn.execute(
                VISITS_FROM_SCRATCH, {"first": start.date(), "last": start.date() + timedelta(6)}
            )
        }
    items = {str(item["grid_code"]): item for item in week_grids(admin)}
    assert len(items) == 1138
    walked = {code for code, item in items.items() if item["cells_covered"]}
    assert walked == set(cells)
    assert len(walked) > 20
    for code, item in items.items():
        assert item["cells_covered"] == cells.get(code, 0), code
        n, last = visits.get(code, (0, None))
        assert item["visits"] == n, code
        got = item["last_visit"]
        assert (datetime.fromisoformat(got) if got else None) == last, code  # type: ignore[arg-type]
        if item["cells_covered"]:
            assert 0 < item["covered_share"] <= 1  # type: ignore[operator]


def test_a_redelivered_batch_changes_nothing(seeded: tuple[str, Engine, WeekPlan]) -> None:
    url, engine, plan = seeded
    dump = text("SELECT grid_code, local_day, cells::text FROM coverage_days ORDER BY 1, 2")
    with engine.connect() as conn:
        before = conn.execute(dump).all()
    # A fresh stage (no memory of what it wrote), as after a restart, handles it all again.
    handler = CheckinHandler(GridSnapshotCache(engine), TOPICS, coverage=CoverageRecorder())
    now = datetime.fromtimestamp(int(plan.at_s.max()), tz=WEEK_TZ) + timedelta(hours=2)
    run_storage(engine, handler, records_of(plan, TOPICS.checkins)[:3000], now)
    with engine.connect() as conn:
        assert conn.execute(dump).all() == before
    del url


def test_areas_sum_their_grids_and_a_supervisor_sees_only_their_street(
    seeded: tuple[str, Engine, WeekPlan], admin: TestClient
) -> None:
    url = seeded[0]
    grids = week_grids(admin)
    districts = week_grids(admin, level="district")
    assert [d["code"] for d in districts] == sorted({str(g["grid_code"])[:6] for g in grids})
    for district in districts:
        members = [g for g in grids if str(g["grid_code"]).startswith(str(district["code"]))]
        assert district["visits"] == sum(g["visits"] for g in members)  # type: ignore[misc]
        assert district["cells_covered"] == sum(g["cells_covered"] for g in members)  # type: ignore[misc]

    street = str(next(g for g in grids if g["visits"])["grid_code"])[:9]
    token = add_user(url, "cov-street", "supervisor", street, None)
    as_supervisor = {"Authorization": f"Bearer {token}"}  # the same app, another caller
    answer = admin.get(
        "/api/v1/coverage", params={"from": WEEK_FROM, "to": WEEK_TO}, headers=as_supervisor
    )
    assert answer.status_code == 200, answer.text
    mine = answer.json()["items"]
    assert mine
    assert all(str(g["grid_code"]).startswith(street) for g in mine)
    other = "610371" if not street.startswith("610371") else "610302"
    refused = admin.get("/api/v1/coverage", params={"code": other}, headers=as_supervisor)
    assert refused.status_code == 403
    bad = admin.get("/api/v1/coverage", params={"from": WEEK_TO, "to": WEEK_FROM})
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_interval"
    finer = admin.get("/api/v1/coverage", params={"level": "district", "code": street})
    assert finer.status_code == 422
    assert finer.json()["code"] == "invalid_code"


def test_csv_and_xlsx_rows_equal_the_api_items(admin: TestClient) -> None:
    params = {"from": WEEK_FROM, "to": WEEK_TO, "level": "community"}
    items = admin.get("/api/v1/coverage", params=params).json()["items"]
    expected = [[("" if v is None else v) for v in item.values()] for item in items]

    got_csv = admin.get("/api/v1/coverage", params={**params, "format": "csv"})
    assert got_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got_csv.content.decode("utf-8-sig"))))
    assert rows[0] == list(items[0])
    assert rows[1:] == [[str(v) for v in row] for row in expected]

    got_xlsx = admin.get("/api/v1/coverage", params={**params, "format": "xlsx"})
    sheet = load_workbook(io.BytesIO(got_xlsx.content), read_only=True).worksheets[0]
    cells = [[("" if v is None else v) for v in row] for row in sheet.iter_rows(values_only=True)]
    assert cells[0] == list(items[0])
    assert cells[1:] == expected


def test_the_command_prints_the_grids_and_writes_the_same_csv(
    seeded: tuple[str, Engine, WeekPlan], admin: TestClient, tmp_path: object
) -> None:
    url = seeded[0]
    console = Console(record=True, width=200)
    out = tmp_path / "coverage.csv"  # type: ignore[operator]
    print_coverage(
        url, WEEK_FROM, WEEK_TO, "street", None, console=console, csv_path=out, xlsx_path=None
    )
    printed = console.export_text()
    streets = admin.get(
        "/api/v1/coverage", params={"from": WEEK_FROM, "to": WEEK_TO, "level": "street"}
    ).json()["items"]
    assert all(item["code"] in printed for item in streets)
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [row[1] for row in rows[1:]] == [item["code"] for item in streets]


def test_a_kept_answer_gives_way_to_new_patrols(
    seeded: tuple[str, Engine, WeekPlan], admin: TestClient
) -> None:
    url, engine, _plan = seeded
    before = week_grids(admin)
    assert week_grids(admin) == before  # kept: the same bytes while no patrol is written
    seed_week(engine, url, workers=3, seed=99)  # three more workers' walks, both stages
    after = {str(item["grid_code"]): item for item in week_grids(admin)}
    with engine.connect() as conn:
        visits = {
            code: n
            for code, n, _last in conn.execute(
                VISITS_FROM_SCRATCH, {"first": WEEK_FROM, "last": WEEK_TO}
            )
        }
    assert sum(visits.values()) > sum(int(g["visits"]) for g in before)  # type: ignore[call-overload]
    assert {code: item["visits"] for code, item in after.items() if item["visits"]} == {
        code: n for code, n in visits.items() if n
    }
