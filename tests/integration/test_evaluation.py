"""GET /api/v1/evaluation on ~200 seeded cases: figures checked against the test's own count.

The cases and their histories are made here from one seed and written straight into a
copy of the reference city; the expected figures are computed here from the same
generated histories, following docs/EVALUATION.md, by walking status segments rather
than by calling `geodata.evaluation`.
"""

import csv
import io
import math
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.integration.incident_support import Env, open_env, point_in
from tests.integration.test_auth import bearer

pytestmark = pytest.mark.integration

URL = "/api/v1/evaluation"
TZ = ZoneInfo("Asia/Shanghai")
PERIOD_START = datetime(2020, 10, 1, tzinfo=TZ)
PERIOD_END = datetime(2020, 11, 1, tzinfo=TZ)
OCTOBER = {"from": "2020-10-01", "to": "2020-10-31"}
STAGE = {
    "reported": "dispatch",
    "escalated": "dispatch",
    "dispatched": "handle",
    "in_progress": "handle",
    "resolved": "verify",
}
CATEGORIES = (
    "environment.garbage",
    "street_order.unlicensed_vendor",
    "public_facilities.manhole_cover",
)
SOURCES = ("worker", "hotline", "open311")


@dataclass
class Ev:
    action: str
    to: str
    assignee: str | None
    role: str
    at: datetime


@dataclass
class Case:
    incident_id: uuid.UUID
    grid: str | None
    category: str
    source: str
    reporter: str | None
    reported_at: datetime
    events: list[Ev] = field(default_factory=list)


@dataclass(frozen=True)
class Place:
    grid: str | None
    workers: tuple[str, ...]


def _path(rng: random.Random, case: Case, workers: tuple[str, ...]) -> None:
    """A random history: the workflow's moves and the deadlines' escalations and marks."""
    at = case.reported_at
    holder: str | None = None

    def add(action: str, to: str, assignee: str | None, role: str = "supervisor") -> None:
        nonlocal at, holder
        at = at + timedelta(minutes=rng.randint(10, 4 * 24 * 60))
        case.events.append(Ev(action, to, assignee, role, at))
        holder = assignee

    if rng.random() < 0.15:
        add("escalate", "escalated", None, "system")
    if rng.random() < 0.08:
        add("cancel", "cancelled", None)
        return
    if rng.random() < 0.05 or not workers:
        return
    add("dispatch", "dispatched", rng.choice(workers))
    if rng.random() < 0.2:
        add("dispatch", "dispatched", rng.choice(workers))
    if rng.random() < 0.08:
        return
    add("start", "in_progress", holder, "worker")
    if rng.random() < 0.15:
        add("escalate", "escalated", None, "system" if rng.random() < 0.6 else "supervisor")
        add("dispatch", "dispatched", rng.choice(workers))
        add("start", "in_progress", holder, "worker")
    add("resolve", "resolved", holder, "worker")
    if rng.random() < 0.2:
        add("reopen", "in_progress", holder)
        add("resolve", "resolved", holder, "worker")
    if rng.random() < 0.1:
        add("overdue", "resolved", holder, "system")
    if rng.random() < 0.08:
        return
    if rng.random() < 0.05:
        add("cancel", "cancelled", holder)
        return
    add("close", "closed", holder)


def make_cases(places: list[Place], seed: int = 2020, count: int = 196) -> list[Case]:
    """`count` random cases from late September to early November, and four on the bounds."""
    rng = random.Random(seed)
    first = datetime(2020, 9, 20, tzinfo=TZ)
    cases: list[Case] = []
    for _ in range(count):
        place = rng.choice(places)
        source = rng.choice(SOURCES)
        reporter = rng.choice(place.workers) if source == "worker" and place.workers else None
        case = Case(
            uuid.UUID(int=rng.getrandbits(128), version=4),
            place.grid,
            rng.choice(CATEGORIES),
            source if reporter or source != "worker" else "hotline",
            reporter,
            first + timedelta(seconds=rng.randint(0, 45 * 24 * 3600)),
        )
        _path(rng, case, place.workers)
        cases.append(case)
    inside = places[0]
    for reported in (
        datetime(2020, 9, 30, 23, 59, 59, tzinfo=TZ),
        PERIOD_START,
        datetime(2020, 10, 31, 23, 59, 59, tzinfo=TZ),
        PERIOD_END,
    ):
        cases.append(Case(uuid.uuid4(), inside.grid, CATEGORIES[0], "hotline", None, reported, []))
    return cases


def store(url: str, cases: list[Case]) -> None:
    """The cases and their histories, as the consumer, the API and the deadlines write them."""
    points: dict[str | None, tuple[float, float]] = {}
    with psycopg.connect(url) as conn:
        for case in cases:
            if case.grid not in points:
                points[case.grid] = point_in(url, case.grid) if case.grid else (107.0, 34.0)
            lon, lat = points[case.grid]
            final = case.events[-1] if case.events else None
            conn.execute(
                "INSERT INTO incidents (incident_id, event_id, category, source, reporter_id,"
                " reported_at, lon, lat, geom, grid_code, community_code, staff_id,"
                " assignment_rule, status, version, payload) VALUES (%s, %s, %s, %s, %s, %s,"
                " %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s, %s, %s, 'contains', %s,"
                " %s, %s)",
                (
                    case.incident_id,
                    case.incident_id,
                    case.category,
                    case.source,
                    case.reporter,
                    case.reported_at,
                    lon,
                    lat,
                    lon,
                    lat,
                    case.grid,
                    case.grid[:12] if case.grid else None,
                    final.assignee if final else None,
                    final.to if final else "reported",
                    len(case.events) + 1,
                    Jsonb({}),
                ),
            )
            status = "reported"
            with conn.cursor() as cursor:
                rows = []
                for version, ev in enumerate(case.events, start=2):
                    actor = "deadlines" if ev.role == "system" else "someone"
                    rows.append(
                        (
                            case.incident_id,
                            version,
                            ev.action,
                            status,
                            ev.to,
                            ev.assignee,
                            actor,
                            ev.role,
                            ev.at,
                        )
                    )
                    status = ev.to
                cursor.executemany(
                    "INSERT INTO incident_events (incident_id, version, action, from_status,"
                    " to_status, assignee, actor, actor_role, at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )


# --------------------------------------------------------------------------- expected


def _inside(at: datetime) -> bool:
    return PERIOD_START <= at < PERIOD_END


@dataclass
class Expected:
    reported: int = 0
    sources: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    categories: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dispatched: set[uuid.UUID] = field(default_factory=set)
    closed: int = 0
    on_time: int = 0
    reopened: int = 0
    overdue: set[uuid.UUID] = field(default_factory=set)
    escalations: int = 0
    by_deadlines: int = 0
    stays: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def _segments(case: Case) -> list[tuple[str, datetime, Ev | None, str | None]]:
    """(status, since, the entry that ended it or None, holder) for each status held."""
    segments: list[tuple[str, datetime, Ev | None, str | None]] = []
    status, since, holder = "reported", case.reported_at, None
    for ev in case.events:
        segments.append((status, since, ev, holder))
        status, since, holder = ev.to, ev.at, ev.assignee
    segments.append((status, since, None, holder))
    return segments


def expected(
    cases: list[Case], unit: Callable[[Case, str | None], str | None]
) -> dict[str, Expected]:
    """The October figures per unit (`unit(case, worker)`; None: counted in no unit)."""
    out: dict[str, Expected] = defaultdict(Expected)

    def units(case: Case, worker: str | None) -> list[Expected]:
        key = unit(case, worker)
        return [out["*"]] + ([out[key]] if key is not None else [])

    for case in cases:
        if _inside(case.reported_at):
            for e in units(case, case.reporter):
                e.reported += 1
                e.sources[case.source] += 1
                e.categories[case.category] += 1
        segments = _segments(case)
        # Stays: runs of segments of one stage; each ended by an entry into another stage.
        run_start: datetime | None = None
        for status, since, ended_by, holder in segments:
            stage = STAGE.get(status)
            if stage is None or ended_by is None:
                continue
            run_start = run_start or since
            if STAGE.get(ended_by.to) != stage:
                if _inside(ended_by.at) and ended_by.to != "cancelled":
                    for e in units(case, holder):
                        e.stays[stage].append((ended_by.at - run_start).total_seconds())
                run_start = None
        for _status, _since, ev, holder in segments:
            if ev is None or not _inside(ev.at):
                continue
            if ev.action == "dispatch":
                for e in units(case, ev.assignee):
                    e.dispatched.add(case.incident_id)
            if ev.role == "system":
                for e in units(case, holder):
                    e.overdue.add(case.incident_id)
            if ev.action == "escalate":
                for e in units(case, holder):
                    e.escalations += 1
                    e.by_deadlines += ev.role == "system"
            if ev.action == "close":
                before = [x for x in case.events if x.at < ev.at]
                for e in units(case, holder):
                    e.closed += 1
                    e.on_time += not any(x.role == "system" for x in before)
                    e.reopened += any(x.action == "reopen" for x in before)
                    e.stays["total"].append((ev.at - case.reported_at).total_seconds())
    return out


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(len(ordered) * 9 / 10) - 1]


def check(figures: dict[str, Any], e: Expected) -> None:
    """The API's figures of one unit equal the expected ones."""
    assert figures["reported"] == e.reported
    assert figures["dispatched"] == len(e.dispatched)
    assert figures["closed"] == e.closed
    assert figures["closed_on_time"] == e.on_time
    assert figures["on_time_rate"] == (pytest.approx(e.on_time / e.closed) if e.closed else None)
    assert figures["overdue"] == len(e.overdue)
    assert figures["escalations"] == e.escalations
    assert figures["escalations_by_deadlines"] == e.by_deadlines
    assert figures["reopened"] == e.reopened
    assert figures["reopen_rate"] == (pytest.approx(e.reopened / e.closed) if e.closed else None)
    for stage in ("dispatch", "handle", "verify", "total"):
        got, values = figures["stages"][stage], e.stays.get(stage, [])
        assert got["count"] == len(values), stage
        if values:
            assert got["mean_s"] == pytest.approx(sum(values) / len(values)), stage
            assert got["p90_s"] == pytest.approx(_p90(values)), stage
        else:
            assert got["mean_s"] is None
            assert got["p90_s"] is None
    assert {s["key"]: s["count"] for s in figures["by_source"]} == dict(e.sources)
    assert {s["key"]: s["count"] for s in figures["by_category"]} == dict(e.categories)
    for share in figures["by_source"]:
        assert share["share"] == pytest.approx(share["count"] / e.reported)


# --------------------------------------------------------------------------- fixtures


@dataclass
class Seeded:
    env: Env
    cases: list[Case]
    places: list[Place]

    def get(self, caller: str | None, **params: Any) -> Any:
        """GET the evaluation as `caller`."""
        return self.env.client.get(
            URL, params=params, headers=bearer(self.env.tokens.get(caller or ""))
        )


@pytest.fixture(scope="module")
def seeded(reference_database_factory: Callable[[], str]) -> Iterator[Seeded]:
    url = reference_database_factory()
    with open_env(url) as env:
        city = env.city
        with psycopg.connect(url) as conn:
            other = conn.execute(
                "SELECT grid_code, array_agg(DISTINCT worker_id) FROM worker_assignments"
                " WHERE valid_to IS NULL AND left(grid_code, 6) = %s AND left(grid_code, 12) <> %s"
                " GROUP BY grid_code ORDER BY grid_code LIMIT 1",
                (city.district_x, city.community_c),
            ).fetchone()
        assert other is not None
        places = [
            Place(city.grid_a, (city.worker_a, city.worker_a2)),
            Place(other[0], tuple(other[1])),
            Place(city.grid_b, (city.worker_b,)),
            Place(None, ()),
        ]
        cases = make_cases(places)
        store(url, cases)
        yield Seeded(env, cases, places)


# --------------------------------------------------------------------------- tests


def test_the_whole_city_by_district_matches_the_seeded_cases(seeded: Seeded) -> None:
    response = seeded.get("admin", **OCTOBER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["level"], body["code"]) == (
        "2020-10-01",
        "2020-10-31",
        "district",
        None,
    )
    want = expected(seeded.cases, lambda case, _w: case.grid[:6] if case.grid else None)
    check(body["total"], want["*"])
    # The seed reaches every rule: closes on time and late, rework, both kinds of escalation.
    whole = want["*"]
    assert whole.closed > 40
    assert 0 < whole.on_time < whole.closed
    assert whole.reopened > 0
    assert 0 < whole.by_deadlines < whole.escalations
    items = {item["code"]: item for item in body["items"]}
    # Every district is listed, those without a case with zeros.
    assert len(items) >= 2
    assert all(item["name"] for item in items.values())
    for code, item in items.items():
        check(item, want[code])
    assert sum(item["reported"] for item in items.values()) < body["total"]["reported"]


def test_a_district_by_street_and_a_community_by_grid_and_by_worker(seeded: Seeded) -> None:
    city = seeded.env.city
    for caller, params, unit in (
        ("sup_x", {"level": "street"}, lambda c, _w: c.grid[:9] if c.grid else None),
        ("sup_x", {"code": city.community_c}, lambda c, _w: c.grid),
        ("admin", {"code": city.community_c, "level": "worker"}, lambda _c, w: w),
    ):
        response = seeded.get(caller, **OCTOBER, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        scope = body["code"]
        inside = [c for c in seeded.cases if c.grid and c.grid.startswith(scope)]
        want = expected(inside, unit)
        check(body["total"], want["*"])
        for item in body["items"]:
            check(item, want[item["code"]])
        assert {k for k in want if k != "*"} <= {item["code"] for item in body["items"]}
    # A worker's row is named; the community's workers are listed.
    names = {item["code"]: item["name"] for item in body["items"]}
    assert names[city.worker_a]
    assert names[city.worker_a2]


def test_the_period_takes_local_midnight_to_midnight(seeded: Seeded) -> None:
    grid = seeded.places[0].grid
    assert grid is not None
    body = seeded.get("admin", code=grid, **{"from": "2020-10-01", "to": "2020-10-01"}).json()
    on_first = [
        c
        for c in seeded.cases
        if c.grid == grid
        and c.reported_at.astimezone(TZ).day == 1
        and c.reported_at.astimezone(TZ).month == 10
    ]
    assert body["total"]["reported"] == len(on_first) >= 1
    day_before = seeded.get("admin", code=grid, **{"from": "2020-09-30", "to": "2020-09-30"}).json()
    assert day_before["total"]["reported"] == sum(
        1
        for c in seeded.cases
        if c.grid == grid and c.reported_at.astimezone(TZ).date().isoformat() == "2020-09-30"
    )


def test_csv_holds_the_same_figures_total_first(seeded: Seeded) -> None:
    code = seeded.env.city.district_x
    json_body = seeded.get("sup_x", **OCTOBER, level="street").json()
    response = seeded.get("sup_x", **OCTOBER, level="street", format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        f"evaluation-{code}-street-2020-10-01-2020-10-31.csv"
        in response.headers["content-disposition"]
    )
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [row["code"] for row in rows] == [code] + [i["code"] for i in json_body["items"]]
    for row, figures in zip(rows, [json_body["total"], *json_body["items"]], strict=True):
        assert int(row["closed"]) == figures["closed"]
        assert int(row["overdue"]) == figures["overdue"]
        rate = figures["on_time_rate"]
        assert (
            (row["on_time_rate"] == "")
            if rate is None
            else float(row["on_time_rate"]) == pytest.approx(rate, abs=1e-4)
        )
        for share in figures["by_category"]:
            assert int(row[f"category:{share['key']}"]) == share["count"]


def test_a_new_history_entry_shows_in_the_next_answer(seeded: Seeded) -> None:
    grid = seeded.places[0].grid
    case = next(
        c for c in seeded.cases if c.grid == grid and c.events and c.events[-1].to == "resolved"
    )
    before = seeded.get("admin", **OCTOBER, code=grid).json()["total"]
    close = Ev(
        "close", "closed", case.events[-1].assignee, "supervisor", PERIOD_END - timedelta(hours=1)
    )
    with psycopg.connect(seeded.env.database_url) as conn:
        # History is append-only: the seeded case keeps the close (and the expected count).
        conn.execute(
            "INSERT INTO incident_events (incident_id, version, action, from_status, to_status,"
            " assignee, actor, actor_role, at) VALUES (%s, %s, 'close', 'resolved', 'closed',"
            " %s, 'someone', 'supervisor', %s)",
            (case.incident_id, len(case.events) + 2, close.assignee, close.at),
        )
    case.events.append(close)
    after = seeded.get("admin", **OCTOBER, code=grid).json()["total"]
    assert after["closed"] == before["closed"] + 1
    check(after, expected([c for c in seeded.cases if c.grid == grid], lambda c, _w: None)["*"])


@pytest.mark.parametrize(
    ("caller", "params", "status", "code"),
    [
        (None, {}, 401, "missing_token"),
        ("worker_a", {}, 403, "forbidden"),
        ("sup_x", {"code": "DISTRICT_Y"}, 403, "outside_area"),
        ("sup_c", {"level": "street"}, 422, "invalid_code"),
        ("sup_x", {"from": "2020-10-31", "to": "2020-10-01"}, 422, "invalid_period"),
        ("admin", {"from": "2020-01-01", "to": "2021-01-02"}, 422, "invalid_period"),
        ("admin", {"from": "1969-12-31"}, 422, "invalid_period"),
        ("admin", {"from": "2020-13-01"}, 422, "invalid_request"),
        ("admin", {"level": "province"}, 422, "invalid_request"),
        ("admin", {"format": "xlsx"}, 422, "invalid_request"),
        ("admin", {"code": "6103"}, 422, "invalid_code"),
        ("admin", {"code": "61030x"}, 422, "invalid_code"),
        ("admin", {"code": "610399"}, 404, "area_not_found"),
    ],
)
def test_refusals_have_a_status_and_a_stable_code(
    seeded: Seeded, caller: str | None, params: dict[str, str], status: int, code: str
) -> None:
    if params.get("code") == "DISTRICT_Y":
        params = params | {"code": seeded.env.city.district_y}
    response = seeded.get(caller, **params)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_a_community_supervisor_sees_its_grids_by_default(seeded: Seeded) -> None:
    body = seeded.get("sup_c", **OCTOBER).json()
    community = seeded.env.city.community_c
    assert (body["level"], body["code"]) == ("grid", community)
    assert body["items"]
    assert all(item["code"].startswith(community) for item in body["items"])
