"""Compliance read side on the real reference database: statuses as of T, levels, API, CLI.

Patrol rows are inserted directly, as the compliance engine would write them, so each
test controls exactly which patrols exist and when each became valid.
"""

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import Connection, Engine, event, text

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.compliance.report import AreaCompliance, GridCompliance, Level, WorkerCompliance
from geodata.dataset.layers import LOCAL_TZ
from geodata.db.compliance_read import compliance_report, worker_patrols
from geodata.db.engine import create_db_engine
from geodata.errors import GridNotFound, InvalidAreaCode, InvalidWeek, WorkerNotFound
from grid_service.app import ApiConfig, create_app
from wangge.compliance_cli import print_compliance
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

WEEK = IsoWeek.parse("2020-W37")  # Monday 2020-09-07 to Sunday 2020-09-13, Asia/Shanghai
NEXT_MONDAY = datetime(2020, 9, 14, tzinfo=LOCAL_TZ)


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """Local time in 2020-W37; day 0 is Monday."""
    return datetime(2020, 9, 7 + day, hour, minute, tzinfo=LOCAL_TZ)


@dataclass(frozen=True)
class Pair:
    """A worker and the grid the reference dataset assigns them to."""

    worker_id: str
    grid_code: str


@pytest.fixture
def reference_engine(reference_database_url: str) -> Iterator[Engine]:
    """An engine on a fresh copy of the reference database."""
    engine = create_db_engine(reference_database_url)
    yield engine
    engine.dispose()


def reference_pairs(engine: Engine, n: int) -> list[Pair]:
    """`n` workers of the reference dataset, each in a grid of their own, by grid code."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT DISTINCT ON (grid_code) worker_id, grid_code FROM worker_assignments"
                " ORDER BY grid_code, worker_id LIMIT :n"
            ),
            {"n": n},
        ).all()
    return [Pair(r.worker_id, r.grid_code) for r in rows]


def all_pairs(engine: Engine) -> list[Pair]:
    """Every (worker, grid) assignment of the reference dataset."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT worker_id, grid_code FROM worker_assignments"))
        return [Pair(r.worker_id, r.grid_code) for r in rows]


INSERT_PATROL = text(
    "INSERT INTO patrols (worker_id, grid_code, week, local_day, started_at, ended_at,"
    " checkin_count, valid, valid_at, counted, reason) VALUES (:worker, :grid, :week, :day,"
    " :start, :end, :checkins, :valid, :valid_at, :valid, :reason)"
)


def patrol_row(
    pair: Pair, start: datetime, valid_after: timedelta | None = timedelta(minutes=12)
) -> dict[str, object]:
    """A patrols row as the engine writes it; `valid_after=None` makes it invalid.

    `counted` simply mirrors `valid` here: statuses as of T never read it, only `valid_at`.
    """
    day = start.astimezone(LOCAL_TZ).date()
    valid = valid_after is not None
    return {
        "worker": pair.worker_id,
        "grid": pair.grid_code,
        "week": str(IsoWeek.of_date(day)),
        "day": day,
        "start": start,
        "end": start + timedelta(minutes=25),
        "checkins": 5 if valid else 2,
        "valid": valid,
        "valid_at": start + valid_after if valid_after is not None else None,
        "reason": "counted" if valid else "invalid:too_few_checkins",
    }


def add_patrol(
    connection: Connection,
    pair: Pair,
    start: datetime,
    *,
    valid_after: timedelta | None = timedelta(minutes=12),
) -> None:
    """Insert one patrol of `pair` begun at `start`."""
    connection.execute(INSERT_PATROL, patrol_row(pair, start, valid_after))


def worker_row(
    engine: Engine, pair: Pair, as_of: datetime, config: ComplianceConfig | None = None
) -> WorkerCompliance:
    """The worker-level item of one pair as of a time."""
    report = compliance_report(engine, WEEK, as_of, code=pair.grid_code, config=config)
    [row] = [
        item
        for item in report.items
        if isinstance(item, WorkerCompliance) and item.worker_id == pair.worker_id
    ]
    return row


# --------------------------------------------------------------------------- status as of T


@pytest.mark.parametrize(
    ("as_of", "counted", "status"),
    [
        (at(0, 8), 0, "on_track"),
        (at(0, 9, 11), 0, "on_track"),  # walking, not yet valid
        (at(0, 9, 12), 1, "on_track"),  # valid_at is inclusive
        (at(4, 9, 11), 2, "on_track"),  # Fri, Sat, Sun still open: 2 + 3 > 3
        (at(4, 9, 12), 3, "met"),
        (NEXT_MONDAY + timedelta(days=30), 3, "met"),
    ],
)
def test_status_counts_the_patrols_valid_by_as_of(
    reference_engine: Engine, as_of: datetime, counted: int, status: str
) -> None:
    [pair] = reference_pairs(reference_engine, 1)
    with reference_engine.begin() as connection:
        for day in (0, 2, 4):  # Monday, Wednesday, Friday at 09:00, valid at 09:12
            add_patrol(connection, pair, at(day, 9))
    row = worker_row(reference_engine, pair, as_of)
    assert (row.required, row.counted, row.status) == (3, counted, status)


@pytest.mark.parametrize(
    ("as_of", "status_with_monday", "status_with_nothing"),
    [
        (at(3, 23, 59), "on_track", "on_track"),
        (at(4), "on_track", "at_risk"),  # nothing yet: Fri, Sat and Sun all needed
        (at(5), "at_risk", "missed"),  # one so far: Sat and Sun both needed
        (at(6), "missed", "missed"),
    ],
)
def test_at_risk_when_every_remaining_day_is_needed_then_missed(
    reference_engine: Engine, as_of: datetime, status_with_monday: str, status_with_nothing: str
) -> None:
    walker, idle = reference_pairs(reference_engine, 2)
    with reference_engine.begin() as connection:
        add_patrol(connection, walker, at(0, 9))
    assert worker_row(reference_engine, walker, as_of).status == status_with_monday
    assert worker_row(reference_engine, idle, as_of).status == status_with_nothing


def test_at_risk_recovers_to_met_with_a_patrol_on_each_remaining_day(
    reference_engine: Engine,
) -> None:
    [pair] = reference_pairs(reference_engine, 1)
    with reference_engine.begin() as connection:
        for day in (0, 5, 6):
            add_patrol(connection, pair, at(day, 9))
    assert worker_row(reference_engine, pair, at(5, 8)).status == "at_risk"
    assert worker_row(reference_engine, pair, at(5, 12)).status == "at_risk"  # Sunday still due
    assert worker_row(reference_engine, pair, at(6, 12)).status == "met"


def test_an_unmet_week_is_missed_as_soon_as_it_ends(reference_engine: Engine) -> None:
    [pair] = reference_pairs(reference_engine, 1)
    with reference_engine.begin() as connection:
        add_patrol(connection, pair, at(0, 9))
        add_patrol(connection, pair, at(1, 9))
    assert worker_row(reference_engine, pair, NEXT_MONDAY - timedelta(seconds=1)).status == (
        "at_risk"
    )
    assert worker_row(reference_engine, pair, NEXT_MONDAY).status == "missed"


def test_a_sunday_night_patrol_valid_after_midnight_still_counts_for_its_week(
    reference_engine: Engine,
) -> None:
    [pair] = reference_pairs(reference_engine, 1)
    with reference_engine.begin() as connection:
        add_patrol(connection, pair, at(0, 9))
        add_patrol(connection, pair, at(1, 9))
        add_patrol(connection, pair, at(6, 23, 55))  # valid at Monday 00:07
    assert worker_row(reference_engine, pair, NEXT_MONDAY).status == "missed"
    after = worker_row(reference_engine, pair, NEXT_MONDAY + timedelta(minutes=7))
    assert (after.counted, after.status) == (3, "met")


def test_invalid_patrols_never_count(reference_engine: Engine) -> None:
    [pair] = reference_pairs(reference_engine, 1)
    with reference_engine.begin() as connection:
        for day in range(7):
            add_patrol(connection, pair, at(day, 9), valid_after=None)
    row = worker_row(reference_engine, pair, NEXT_MONDAY)
    assert (row.counted, row.counted_days, row.status) == (0, (), "missed")


def test_a_day_counts_one_valid_patrol_however_many_there_are(reference_engine: Engine) -> None:
    [pair] = reference_pairs(reference_engine, 1)
    with reference_engine.begin() as connection:
        for hour in (8, 10, 14, 16):
            add_patrol(connection, pair, at(0, hour))
        add_patrol(connection, pair, at(1, 9))
    row = worker_row(reference_engine, pair, NEXT_MONDAY)
    assert (row.counted, row.counted_days) == (2, (date(2020, 9, 7), date(2020, 9, 8)))
    assert row.status == "missed"  # however many walks on Monday
    two_a_day = worker_row(
        reference_engine, pair, NEXT_MONDAY, ComplianceConfig(max_counted_per_day=2)
    )
    assert (two_a_day.counted, two_a_day.status) == (3, "met")


def test_a_worker_reassigned_midweek_owes_each_grid_ceil_3_days_over_7(
    reference_engine: Engine,
) -> None:
    mover, other, leaver = reference_pairs(reference_engine, 3)
    assert other.grid_code != mover.grid_code
    thursday = at(3)
    with reference_engine.begin() as connection:
        connection.execute(
            text("UPDATE worker_assignments SET valid_to = :t WHERE worker_id = :w"),
            [{"t": thursday, "w": mover.worker_id}, {"t": at(0), "w": leaver.worker_id}],
        )
        connection.execute(
            text(
                "INSERT INTO worker_assignments (worker_id, grid_code, valid_from)"
                " VALUES (:w, :g, :t)"
            ),
            {"w": mover.worker_id, "g": other.grid_code, "t": thursday},
        )
        add_patrol(connection, mover, at(0, 9))
        add_patrol(connection, mover, at(1, 9))
    report = compliance_report(reference_engine, WEEK, at(5, 12))
    rows = {
        item.grid_code: item
        for item in report.items
        if isinstance(item, WorkerCompliance) and item.worker_id == mover.worker_id
    }
    before, after = rows[mover.grid_code], rows[other.grid_code]
    assert (before.required, before.counted, before.status) == (2, 2, "met")  # Mon-Wed: 3 days
    assert (after.required, after.counted, after.status) == (2, 0, "at_risk")  # Thu-Sun: 4 days
    assert all(
        isinstance(item, WorkerCompliance) and item.worker_id != leaver.worker_id
        for item in report.items
    ), "an assignment that ended when the week began is not evaluated"


# --------------------------------------------------------------------------- levels


@pytest.fixture(scope="module")
def city_week(reference_database_factory: Callable[[], str]) -> Iterator[Engine]:
    """The reference city with a seeded, varied week of patrols for every worker.

    Shared by the module's read-only tests: building it once keeps them fast.
    """
    engine = create_db_engine(reference_database_factory())
    rng = random.Random(37)
    rows = [
        patrol_row(
            pair,
            at(rng.randrange(7), rng.randrange(7, 20), rng.randrange(60)),
            timedelta(minutes=12) if rng.random() < 0.8 else None,
        )
        for pair in all_pairs(engine)
        for _ in range(rng.randrange(0, 7))
    ]
    with engine.begin() as connection:
        connection.execute(INSERT_PATROL, rows)
    yield engine
    engine.dispose()


def independent_totals(
    engine: Engine, as_of: datetime, length: int
) -> dict[str, tuple[int, int, int]]:
    """(met, total, counted patrols) per code prefix of `length`, in SQL alone.

    Every reference assignment covers the whole week, so each pair owes 3 and a met pair
    is one with valid patrols on at least 3 distinct days.
    """
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                """
                WITH counted AS (
                    SELECT worker_id, grid_code, count(DISTINCT local_day) AS days
                    FROM patrols WHERE week = :week AND valid_at <= :as_of
                    GROUP BY worker_id, grid_code
                )
                SELECT left(a.grid_code, :length) AS code,
                       count(*) FILTER (WHERE coalesce(c.days, 0) >= 3) AS met,
                       count(*) AS total,
                       coalesce(sum(c.days), 0) AS patrols
                FROM worker_assignments a LEFT JOIN counted c USING (worker_id, grid_code)
                GROUP BY 1
                """
            ),
            {"week": str(WEEK), "as_of": as_of, "length": length},
        ).all()
    return {r.code: (r.met, r.total, r.patrols) for r in rows}


@pytest.mark.parametrize(
    ("level", "length"), [("grid", 15), ("community", 12), ("street", 9), ("district", 6)]
)
def test_each_level_aggregates_its_subtree_like_an_independent_count(
    city_week: Engine, level: Level, length: int
) -> None:
    as_of = at(4, 12)
    report = compliance_report(city_week, WEEK, as_of, level=level)
    totals = {
        item.grid_code if isinstance(item, GridCompliance) else item.code: (
            item.workers_met,
            item.workers_total,
            item.patrols,
        )
        for item in report.items
        if isinstance(item, GridCompliance | AreaCompliance)
    }
    assert totals == independent_totals(city_week, as_of, length)
    assert all(
        item.name for item in report.items if isinstance(item, GridCompliance | AreaCompliance)
    )


def test_areas_list_exactly_their_workers_at_risk_or_missed(city_week: Engine) -> None:
    as_of = at(4, 12)
    workers = compliance_report(city_week, WEEK, as_of).items
    needing_attention = {
        (w.grid_code, w.worker_id)
        for w in workers
        if isinstance(w, WorkerCompliance) and w.status in ("at_risk", "missed")
    }
    assert needing_attention, "the seeded week should leave someone behind by Friday"
    streets = compliance_report(city_week, WEEK, as_of, level="street").items
    listed = {
        (w.grid_code, w.worker_id)
        for street in streets
        if isinstance(street, AreaCompliance)
        for w in street.at_risk_or_missed
        if w.grid_code.startswith(street.code)
    }
    assert listed == needing_attention
    assert sum(
        s.statuses.at_risk + s.statuses.missed for s in streets if isinstance(s, AreaCompliance)
    ) == len(listed)


@pytest.mark.parametrize("length", [6, 9, 12, 15])
def test_a_code_prefix_selects_its_subtree(city_week: Engine, length: int) -> None:
    [pair] = reference_pairs(city_week, 1)
    code = pair.grid_code[:length]
    report = compliance_report(city_week, WEEK, at(4, 12), code=code)
    with city_week.connect() as connection:
        expected = connection.execute(
            text("SELECT count(*) FROM worker_assignments WHERE left(grid_code, :n) = :code"),
            {"n": length, "code": code},
        ).scalar_one()
    assert report.code == code
    assert len(report.items) == expected > 0
    assert all(
        isinstance(i, WorkerCompliance) and i.grid_code.startswith(code) for i in report.items
    )


def test_a_city_wide_report_runs_a_fixed_number_of_queries(city_week: Engine) -> None:
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(city_week, "before_cursor_execute", record)
    try:
        for level in ("worker", "grid", "district"):
            statements.clear()
            report = compliance_report(city_week, WEEK, at(4, 12), level=level)
            assert report.items
            # Periods, valid patrols per day, and area names: never one query per pair.
            assert len(statements) <= 3, statements
    finally:
        event.remove(city_week, "before_cursor_execute", record)


def test_unknown_grid_code_is_grid_not_found_but_an_empty_prefix_is_no_items(
    reference_engine: Engine,
) -> None:
    with pytest.raises(GridNotFound):
        compliance_report(reference_engine, WEEK, at(4), code="610302999999999")
    assert compliance_report(reference_engine, WEEK, at(4), code="999").items == []
    with pytest.raises(InvalidAreaCode):
        compliance_report(reference_engine, WEEK, at(4), level="district", code="610302001")


# --------------------------------------------------------------------------- patrols


def test_worker_patrols_are_grouped_per_grid_with_assigned_grids_listed(
    reference_engine: Engine,
) -> None:
    mover, other = reference_pairs(reference_engine, 2)
    with reference_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO worker_assignments (worker_id, grid_code, valid_from)"
                " VALUES (:w, :g, :t)"
            ),
            {"w": mover.worker_id, "g": other.grid_code, "t": at(5)},
        )
        add_patrol(connection, mover, at(1, 9))
        add_patrol(connection, mover, at(0, 9), valid_after=None)
        add_patrol(connection, mover, at(0, 7, 30))
        add_patrol(connection, mover, NEXT_MONDAY + timedelta(hours=9))  # another week
    week = worker_patrols(reference_engine, mover.worker_id, WEEK)
    assert [grid.grid_code for grid in week.grids] == sorted([mover.grid_code, other.grid_code])
    patrols = {grid.grid_code: grid.patrols for grid in week.grids}
    assert patrols[other.grid_code] == ()
    assert [(p.started_at, p.valid, p.reason) for p in patrols[mover.grid_code]] == [
        (at(0, 7, 30), True, "counted"),
        (at(0, 9), False, "invalid:too_few_checkins"),
        (at(1, 9), True, "counted"),
    ]
    with pytest.raises(WorkerNotFound):
        worker_patrols(reference_engine, "W99999", WEEK)


# --------------------------------------------------------------------------- HTTP API


@contextlib.contextmanager
def _admin_client(database_url: str) -> Iterator[TestClient]:
    """The real app on `database_url`, as an admin (the whole city's reader)."""
    # No broker is needed: the app's producer connects on first use, and nothing sends.
    app = create_app(ApiConfig(database_url, "127.0.0.1:9"))
    token = add_user(database_url, "admin", "admin", None, None)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as test_client:
        yield test_client


@pytest.fixture
def client(reference_database_url: str) -> Iterator[TestClient]:
    """The app on a city of the test's own, for a test that writes patrols first."""
    with _admin_client(reference_database_url) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def reader(reference_database_factory: Callable[[], str]) -> Iterator[TestClient]:
    """One app for the module's tests that only read the untouched reference city: each
    app's shutdown waits out its probe of the absent broker, some 1.5 s."""
    with _admin_client(reference_database_factory()) as test_client:
        yield test_client


def test_api_reports_a_community_level_as_of_a_time(client: TestClient) -> None:
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    [pair] = reference_pairs(engine, 1)
    with engine.begin() as connection:
        for day in (0, 1, 2):
            add_patrol(connection, pair, at(day, 9))
    street = pair.grid_code[:9]
    response = client.get(
        "/api/v1/compliance",
        params={
            "week": "2020-W37",
            "as_of": "2020-09-10T12:00:00+08:00",
            "level": "community",
            "code": street,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["week"], body["as_of"], body["level"], body["code"]) == (
        "2020-W37",
        "2020-09-10T12:00:00+08:00",
        "community",
        street,
    )
    communities = {item["code"]: item for item in body["items"]}
    assert all(code.startswith(street) and len(code) == 12 for code in communities)
    mine = communities[pair.grid_code[:12]]
    assert mine["workers_met"] == 1
    assert mine["patrols"] == 3
    assert mine["statuses"]["met"] == 1
    assert mine["statuses"]["met"] + mine["statuses"]["on_track"] == mine["workers_total"]
    assert mine["at_risk_or_missed"] == []


def test_api_worker_level_items_carry_status_and_counted_days(client: TestClient) -> None:
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    [pair] = reference_pairs(engine, 1)
    with engine.begin() as connection:
        add_patrol(connection, pair, at(0, 9))
    response = client.get(
        "/api/v1/compliance",
        params={"week": "2020-W37", "as_of": "2020-09-12T00:00:00+08:00", "code": pair.grid_code},
    )
    assert response.status_code == 200, response.text
    [mine] = [i for i in response.json()["items"] if i["worker_id"] == pair.worker_id]
    assert mine == {
        "worker_id": pair.worker_id,
        "name": mine["name"],
        "grid_code": pair.grid_code,
        "required": 3,
        "counted": 1,
        "status": "at_risk",
        "counted_days": ["2020-09-07"],
    }
    assert mine["name"]


def test_api_as_of_defaults_to_now_and_week_to_its_week(reader: TestClient) -> None:
    before = datetime.now(UTC)
    body = reader.get("/api/v1/compliance", params={"level": "district"}).json()
    as_of = datetime.fromisoformat(body["as_of"])
    assert before <= as_of <= datetime.now(UTC)
    assert body["week"] == str(IsoWeek.week_of(as_of, LOCAL_TZ))
    assert sum(item["workers_total"] for item in body["items"]) == 2381


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"week": "2020-W60"}, 422, "invalid_week"),
        ({"week": "last week"}, 422, "invalid_week"),
        ({"week": "2020-W37", "level": "city"}, 422, "invalid_request"),
        ({"week": "2020-W37", "as_of": "2020-09-10T12:00:00"}, 422, "invalid_request"),
        ({"week": "2020-W37", "as_of": "yesterday"}, 422, "invalid_request"),
        ({"week": "2020-W37", "code": "61O302"}, 422, "invalid_code"),
        ({"week": "2020-W37", "level": "district", "code": "610302001"}, 422, "invalid_code"),
        ({"week": "2020-W37", "code": "610302999999999"}, 404, "grid_not_found"),
    ],
)
def test_api_refuses_bad_input_with_a_stable_code(
    reader: TestClient, params: dict[str, str], status: int, code: str
) -> None:
    response = reader.get("/api/v1/compliance", params=params)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_api_code_prefix_with_no_grids_is_empty_not_an_error(reader: TestClient) -> None:
    response = reader.get("/api/v1/compliance", params={"week": "2020-W37", "code": "999"})
    assert response.status_code == 200
    assert response.json()["items"] == []


def test_api_worker_patrols_in_local_time_and_404_for_unknown_worker(client: TestClient) -> None:
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    [pair] = reference_pairs(engine, 1)
    with engine.begin() as connection:
        add_patrol(connection, pair, at(0, 9))
        add_patrol(connection, pair, at(0, 11), valid_after=None)
    response = client.get(f"/api/v1/workers/{pair.worker_id}/patrols", params={"week": "2020-W37"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["worker_id"], body["week"]) == (pair.worker_id, "2020-W37")
    [grid] = body["grids"]
    assert grid["grid_code"] == pair.grid_code
    assert grid["patrols"][0] == {
        "local_day": "2020-09-07",
        "started_at": "2020-09-07T09:00:00+08:00",
        "ended_at": "2020-09-07T09:25:00+08:00",
        "checkin_count": 5,
        "valid": True,
        "valid_at": "2020-09-07T09:12:00+08:00",
        "counted": True,
        "reason": "counted",
    }
    assert (grid["patrols"][1]["valid_at"], grid["patrols"][1]["reason"]) == (
        None,
        "invalid:too_few_checkins",
    )
    missing = client.get("/api/v1/workers/W99999/patrols", params={"week": "2020-W37"})
    assert (missing.status_code, missing.json()["code"]) == (404, "worker_not_found")
    bad_week = client.get(f"/api/v1/workers/{pair.worker_id}/patrols", params={"week": "W37"})
    assert (bad_week.status_code, bad_week.json()["code"]) == (422, "invalid_week")


def test_api_documents_both_routes_in_openapi(reader: TestClient) -> None:
    paths = reader.get("/openapi.json").json()["paths"]
    compliance = paths["/api/v1/compliance"]["get"]
    assert compliance["description"].startswith("Patrol compliance of a week as it stood")
    level = next(p for p in compliance["parameters"] if p["name"] == "level")
    assert level["schema"]["enum"] == ["worker", "grid", "community", "street", "district"]
    assert "/api/v1/workers/{worker_id}/patrols" in paths


# --------------------------------------------------------------------------- CLI


def test_cli_prints_a_row_per_worker_and_the_totals(
    reference_database_url: str, reference_engine: Engine
) -> None:
    first, second = reference_pairs(reference_engine, 2)
    assert second.grid_code.startswith(first.grid_code[:12])
    with reference_engine.begin() as connection:
        for day in (0, 2, 3):
            add_patrol(connection, first, at(day, 9))
    console = Console(record=True, width=200)
    community = first.grid_code[:12]
    # Naive: read as Beijing time, the terminal user's clock.
    print_compliance(
        reference_database_url, "2020-W37", datetime(2020, 9, 11, 12), community, console
    )
    output = console.export_text()
    assert "Patrol compliance 2020-W37 as of 2020-09-11T12:00+08:00" in output
    lines = {line.split("│")[2].strip(): line for line in output.splitlines() if "│ W" in line}
    assert "met" in lines[first.worker_id]
    assert "Mon Wed Thu" in lines[first.worker_id]
    assert second.worker_id in lines
    with reference_engine.connect() as connection:
        total = connection.execute(
            text("SELECT count(*) FROM worker_assignments WHERE grid_code LIKE :c || '%'"),
            {"c": community},
        ).scalar_one()
    assert len(lines) == total
    assert f"1 of {total} met;" in output
    with pytest.raises(InvalidWeek):
        print_compliance(reference_database_url, "2020-W99", None, None, console)
