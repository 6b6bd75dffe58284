"""Who sees and moves which incident, and what a listing selects, on the real app and PostGIS.

The authorization matrix runs every (caller, endpoint, incident) pair and asserts the
exact status and code, and that a refused PATCH changed nothing; listings are checked
against the same selection written independently in SQL.
"""

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from httpx import Response
from rich.console import Console

from geodata.incidents import InvalidIncidentFilter
from tests.integration.incident_support import Env, open_env, pick_city, snapshot, store_incident
from tests.integration.test_auth import CALLERS, assert_cell, bearer
from wangge.incidents_cli import print_incidents

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(reference_database_factory: Callable[[], str]) -> Iterator[Env]:
    """One app on a fresh city for the module."""
    with open_env(reference_database_factory()) as opened:
        yield opened


# --------------------------------------------------------------------------- the matrix

OK, NONE, GONE = "200", "401 missing_token", "404 incident_not_found"
ROLE, AREA, SELF = "403 forbidden", "403 outside_area", "403 worker_mismatch"
EXPECTED: dict[str, tuple[str, ...]] = {
    # case                              worker_a worker_b sup_x  sup_y  sup_c  admin  anonymous
    "read A's incident":                (OK,     SELF,    OK,    AREA,  OK,    OK,    NONE),
    "read B's incident":                (SELF,   OK,      AREA,  OK,    AREA,  OK,    NONE),
    "read a hotline report in C":       (SELF,   SELF,    OK,    AREA,  OK,    OK,    NONE),
    "read an unknown incident":         (GONE,   GONE,    GONE,  GONE,  GONE,  GONE,  NONE),
    "list incidents":                   (OK,     OK,      OK,    OK,    OK,    OK,    NONE),
    "list incidents of district Y":     (OK,     OK,      AREA,  OK,    AREA,  OK,    NONE),
    "list incidents of community C":    (OK,     OK,      OK,    AREA,  OK,    OK,    NONE),
    "dispatch A's incident":            (ROLE,   SELF,    OK,    AREA,  OK,    OK,    NONE),
    "dispatch B's incident":            (SELF,   ROLE,    AREA,  OK,    AREA,  OK,    NONE),
    "start A's dispatched incident":    (OK,     SELF,    ROLE,  AREA,  ROLE,  OK,    NONE),
    "start B's dispatched incident":    (SELF,   OK,      AREA,  ROLE,  AREA,  OK,    NONE),
    "resolve A's incident in progress": (OK,     SELF,    ROLE,  AREA,  ROLE,  OK,    NONE),
    "close A's resolved incident":      (ROLE,   SELF,    OK,    AREA,  OK,    OK,    NONE),
    "reopen A's resolved incident":     (ROLE,   SELF,    OK,    AREA,  OK,    OK,    NONE),
    "escalate A's incident":            (ROLE,   SELF,    OK,    AREA,  OK,    OK,    NONE),
    "cancel A's incident":              (ROLE,   SELF,    OK,    AREA,  OK,    OK,    NONE),
    "close A's whistled incident":      (ROLE,   SELF,    OK,    AREA,  AREA,  OK,    NONE),
    "cancel a hotline report in C":     (SELF,   SELF,    OK,    AREA,  OK,    OK,    NONE),
    "move an unknown incident":         (GONE,   GONE,    GONE,  GONE,  GONE,  GONE,  NONE),
}  # fmt: skip
"""Every endpoint × incident × caller, written out rather than derived from the rules."""


def matrix_call(env: Env, case: str, caller: str) -> tuple[Response, str | None]:
    """Make the request of `case` as `caller`; the incident it wrote to, if any."""
    city, url = env.city, env.database_url
    a_grid, b_grid = city.grid_a, city.grid_b
    a, b = city.worker_a, city.worker_b
    if case.startswith("read"):
        incident_id = {
            "read A's incident": lambda: store_incident(url, a_grid, staff=a, reporter=a),
            "read B's incident": lambda: store_incident(url, b_grid, staff=b, reporter=b),
            "read a hotline report in C": lambda: store_incident(url, a_grid, staff=None),
            "read an unknown incident": lambda: str(uuid.uuid4()),
        }[case]()
        return env.get(caller, f"/{incident_id}"), None
    if case.startswith("list"):
        code = {
            "list incidents": None,
            "list incidents of district Y": city.district_y,
            "list incidents of community C": city.community_c,
        }[case]
        return env.get(caller, **({"code": code} if code else {})), None
    setups: dict[str, tuple[Callable[[], str], dict[str, Any]]] = {
        "dispatch A's incident": (
            lambda: store_incident(url, a_grid, staff=a, reporter=a),
            {"action": "dispatch", "assignee": a},
        ),
        "dispatch B's incident": (
            lambda: store_incident(url, b_grid, staff=b, reporter=b),
            {"action": "dispatch", "assignee": b},
        ),
        "start A's dispatched incident": (
            lambda: store_incident(url, a_grid, staff=a, status="dispatched"),
            {"action": "start"},
        ),
        "start B's dispatched incident": (
            lambda: store_incident(url, b_grid, staff=b, status="dispatched"),
            {"action": "start"},
        ),
        "resolve A's incident in progress": (
            lambda: store_incident(url, a_grid, staff=a, status="in_progress"),
            {"action": "resolve", "note": "done"},
        ),
        "close A's resolved incident": (
            lambda: store_incident(url, a_grid, staff=a, status="resolved"),
            {"action": "close"},
        ),
        "reopen A's resolved incident": (
            lambda: store_incident(url, a_grid, staff=a, status="resolved"),
            {"action": "reopen", "note": "still there"},
        ),
        "escalate A's incident": (
            lambda: store_incident(url, a_grid, staff=a, reporter=a),
            {"action": "escalate", "note": "needs the street"},
        ),
        "cancel A's incident": (
            lambda: store_incident(url, a_grid, staff=a, reporter=a),
            {"action": "cancel", "note": "duplicate"},
        ),
        "close A's whistled incident": (
            lambda: store_incident(
                url, a_grid, staff=a, status="resolved", escalated_to=city.grid_a[:9]
            ),
            {"action": "close"},
        ),
        "cancel a hotline report in C": (
            lambda: store_incident(url, a_grid, staff=None),
            {"action": "cancel", "note": "not an issue"},
        ),
        "move an unknown incident": (lambda: str(uuid.uuid4()), {"action": "close"}),
    }
    make, body = setups[case]
    incident_id = make()
    written = None if case == "move an unknown incident" else incident_id
    return env.patch(caller, incident_id, body), written


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", list(EXPECTED))
def test_authorization_matrix(env: Env, case: str, caller: str) -> None:
    expected = EXPECTED[case][CALLERS.index(caller)]
    response, written = matrix_call(env, case, caller)
    assert_cell(response, expected, caller, case)
    if written is not None:
        _, _, version, history = snapshot(env.database_url, written)
        assert (version, history) == ((2, 1) if response.is_success else (1, 0)), expected


def test_the_matrix_has_every_caller_for_every_case() -> None:
    assert all(len(row) == len(CALLERS) for row in EXPECTED.values())


# --------------------------------------------------------------------------- listings


@pytest.fixture(scope="module")
def listed(reference_database_factory: Callable[[], str]) -> Iterator[Env]:
    """An app on its own city holding 60 incidents in two districts, in every status."""
    database_url = reference_database_factory()
    city = pick_city(database_url)
    with psycopg.connect(database_url) as conn:
        grids = [
            row[0]
            for row in conn.execute(
                "SELECT code FROM grids WHERE valid_to IS NULL AND (left(code, 6) = %s"
                " OR left(code, 6) = %s) ORDER BY md5(code) LIMIT 12",
                (city.district_x, city.district_y),
            ).fetchall()
        ]
    grids += [city.grid_a, city.grid_b]
    statuses = ("reported", "dispatched", "in_progress", "resolved", "closed", "cancelled")
    categories = ("environment.garbage", "street_order.illegal_parking", "emergency.fire")
    base = datetime(2020, 9, 7, 9, tzinfo=UTC)
    for n in range(60):
        grid = grids[n % len(grids)]
        staff = city.worker_a if n % 5 == 0 else None
        store_incident(
            database_url,
            grid,
            staff=staff,
            reporter=city.worker_b if n % 7 == 0 else None,
            category=categories[n % 3],
            reported_at=base + timedelta(minutes=n % 20),  # ties: the id orders them
            status=statuses[n % len(statuses)],
        )
    with open_env(database_url) as opened:
        assert opened.city == city
        yield opened


def _expected_ids(env: Env, caller: str, params: dict[str, str]) -> set[str]:
    """The same selection written independently in SQL."""
    clauses: list[str] = ["TRUE"]
    args: list[Any] = []
    city = env.city
    area = {"sup_x": city.district_x, "sup_y": city.district_y, "sup_c": city.community_c}
    if caller in area:
        clauses.append("position(%s in coalesce(grid_code, community_code)) = 1")
        args.append(area[caller])
    if caller.startswith("worker"):
        worker = city.worker_a if caller == "worker_a" else city.worker_b
        clauses.append("(staff_id = %s OR (source = 'worker' AND reporter_id = %s))")
        args += [worker, worker]
    if "code" in params:
        clauses.append("left(coalesce(grid_code, community_code), %s) = %s")
        args += [len(params["code"]), params["code"]]
    if "bbox" in params:
        clauses.append("ST_Covers(ST_MakeEnvelope(%s, %s, %s, %s, 4326), geom)")
        args += [float(v) for v in params["bbox"].split(",")]
    if "status" in params:
        clauses.append("status = ANY(%s)")
        args.append(params["status"].split(","))
    if "category" in params:
        clauses.append("split_part(category, '.', 1) = %s OR category = %s")
        clauses[-1] = f"({clauses[-1]})"
        args += [params["category"], params["category"]]
    with psycopg.connect(env.database_url) as conn:
        rows = conn.execute(
            f"SELECT incident_id::text FROM incidents WHERE {' AND '.join(clauses)}", args
        ).fetchall()
    return {row[0] for row in rows}


def _listed_ids(env: Env, caller: str, params: dict[str, str], limit: int = 7) -> list[str]:
    """Every page of the listing, followed by its next links."""
    ids: list[str] = []
    response = env.get(caller, **params, limit=limit)
    while True:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/geo+json")
        body = response.json()
        assert body["numberReturned"] == len(body["features"]) <= limit
        ids += [feature["id"] for feature in body["features"]]
        following = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not following:
            assert len(ids) == body["numberMatched"]
            return ids
        response = env.client.get(following[0], headers=bearer(env.tokens[caller]))


def _bbox_around(env: Env, grid: str) -> str:
    with psycopg.connect(env.database_url) as conn:
        row = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM"
            " (SELECT ST_Expand(ST_Envelope(geom), 0.002) AS e FROM grids"
            " WHERE code = %s AND valid_to IS NULL) s",
            (grid,),
        ).fetchone()
    assert row is not None
    return ",".join(f"{v:.6f}" for v in row)


@pytest.mark.parametrize("caller", ["admin", "sup_x", "sup_y", "sup_c", "worker_a", "worker_b"])
@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"status": "resolved"},
        {"status": "reported,dispatched,in_progress"},
        {"category": "environment"},
        {"category": "emergency.fire", "status": "closed,cancelled"},
        {"code": "district_x"},
        {"code": "community_c", "category": "street_order"},
        {"bbox": "around_grid_a"},
        {"bbox": "around_grid_a", "status": "reported"},
    ],
)
def test_listings_select_what_postgis_selects_in_the_callers_scope(
    listed: Env, caller: str, filters: dict[str, str]
) -> None:
    city = listed.city
    params = dict(filters)
    if params.get("code") == "district_x":
        params["code"] = city.district_x
    if params.get("code") == "community_c":
        params["code"] = city.community_c
    if "bbox" in params:
        params["bbox"] = _bbox_around(listed, city.grid_a)
    if caller in ("sup_y",) and "code" in params:
        response = listed.get(caller, **params)
        assert (response.status_code, response.json()["code"]) == (403, "outside_area")
        return
    if caller == "sup_c" and params.get("code") == city.district_x:
        assert listed.get(caller, **params).status_code == 403
        return
    ids = _listed_ids(listed, caller, params)
    assert len(ids) == len(set(ids))
    assert set(ids) == _expected_ids(listed, caller, params)


def test_listing_pages_are_newest_first_and_stable(listed: Env) -> None:
    body = listed.get("admin", limit=1000).json()
    stamps = [(f["properties"]["reported_at"], f["id"]) for f in body["features"]]
    assert [s[0] for s in stamps] == sorted((s[0] for s in stamps), reverse=True)
    assert _listed_ids(listed, "admin", {}, limit=9) == [s[1] for s in stamps]
    beyond = listed.get("admin", offset=1000).json()
    assert (beyond["numberReturned"], beyond["numberMatched"]) == (0, 60)


def test_a_listing_is_geojson_without_a_residents_reporter_id(listed: Env) -> None:
    body = listed.get("sup_x", limit=1000).json()
    assert body["type"] == "FeatureCollection"
    for feature in body["features"]:
        assert feature["geometry"]["type"] == "Point"
        properties = feature["properties"]
        if properties["source"] != "worker":
            assert properties["reporter_id"] is None
    assert json.dumps(body)  # serialisable as is


def test_the_cli_prints_the_newest_incidents_of_an_area(listed: Env) -> None:
    console = Console(record=True, width=200)
    print_incidents(
        listed.database_url,
        code=listed.city.community_c,
        status="reported,resolved",
        category=None,
        limit=50,
        console=console,
    )
    text = console.export_text()
    expected = _expected_ids(
        listed, "admin", {"code": listed.city.community_c, "status": "reported,resolved"}
    )
    assert f"{len(expected)} newest of {len(expected)}" in text
    assert all(incident_id[:8] in text for incident_id in expected)
    assert "closed" not in text


def test_the_cli_refuses_a_bad_filter(listed: Env) -> None:
    with pytest.raises(InvalidIncidentFilter):
        print_incidents(
            listed.database_url,
            code=None,
            status="open",
            category=None,
            limit=5,
            console=Console(),
        )
