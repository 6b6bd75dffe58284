"""Helpers of the incident tests: a city of callers, incidents stored as the consumer does."""

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from httpx import Response

from geodata.db import event_store
from grid_service.app import ApiConfig, create_app
from tests.integration.test_auth import City as AuthCity
from tests.integration.test_auth import bearer, make_accounts

URL = "/api/v1/incidents"


@dataclass(frozen=True)
class City:
    """Workers A and A2 share community C in district X; worker B is in district Y."""

    worker_a: str
    worker_a2: str
    grid_a: str
    worker_b: str
    grid_b: str

    @property
    def community_c(self) -> str:
        return self.grid_a[:12]

    @property
    def district_x(self) -> str:
        return self.grid_a[:6]

    @property
    def district_y(self) -> str:
        return self.grid_b[:6]


def pick_city(database_url: str) -> City:
    """Two workers of one community (each in that community only), one in another district."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT worker_id, min(grid_code) FROM worker_assignments WHERE valid_to IS NULL"
            " GROUP BY worker_id HAVING count(DISTINCT left(grid_code, 12)) = 1"
            " ORDER BY worker_id"
        ).fetchall()
    by_community: dict[str, list[tuple[str, str]]] = {}
    for worker, grid in rows:
        by_community.setdefault(grid[:12], []).append((worker, grid))
    (worker_a, grid_a), (worker_a2, _), *_ = next(v for v in by_community.values() if len(v) >= 2)
    worker_b, grid_b = next((w, g) for w, g in rows if g[:6] != grid_a[:6])
    return City(worker_a, worker_a2, grid_a, worker_b, grid_b)


def point_in(database_url: str, grid: str) -> tuple[float, float]:
    """A point inside the grid's current boundary."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grids"
            " WHERE code = %s AND valid_to IS NULL) s",
            (grid,),
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def store_incident(
    database_url: str,
    grid: str,
    *,
    staff: str | None,
    reporter: str | None = None,
    category: str = "environment.garbage",
    point: tuple[float, float] | None = None,
    reported_at: datetime | None = None,
    status: str = "reported",
    escalated_to: str | None = None,
) -> str:
    """An incident stored by the consumer's own function, then put in `status` directly."""
    incident_id = uuid.uuid4()
    lon, lat = point or point_in(database_url, grid)
    row = event_store.StoredIncident(
        incident_id=incident_id,
        event_id=incident_id,
        category=category,
        description="垃圾堆放在楼道口",
        source="worker" if reporter else "hotline",
        reporter_id=reporter,
        reported_at=reported_at or datetime.now(UTC) - timedelta(minutes=5),
        lon=lon,
        lat=lat,
        wgs_lon=lon,
        wgs_lat=lat,
        grid_code=grid,
        community_code=grid[:12],
        staff_id=staff,
        assignment_rule="contains",
        escalated_to=None,
        flags=[],
        payload={},
    )
    with psycopg.connect(database_url) as conn:
        assert event_store.insert_incidents(conn, [row]) == {incident_id}
        # Test setup only: a state reached without the API, at version 1.
        conn.execute(
            "UPDATE incidents SET status = %s, escalated_to = %s WHERE incident_id = %s",
            (status, escalated_to, incident_id),
        )
    return str(incident_id)


def snapshot(database_url: str, incident_id: str) -> tuple[Any, ...]:
    """The incident's status, holder, version and the number of its history rows."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT status, staff_id, version,"
            " (SELECT count(*) FROM incident_events e WHERE e.incident_id = i.incident_id)"
            " FROM incidents i WHERE incident_id = %s",
            (incident_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


@dataclass
class Env:
    """The app on a fresh copy of the reference city, with its accounts."""

    client: TestClient
    database_url: str
    city: City
    tokens: dict[str, str]

    def patch(
        self, caller: str | None, incident_id: str, body: dict[str, Any], version: int | None = 1
    ) -> Response:
        """PATCH as `caller`, naming `version` in If-Match unless None."""
        headers = bearer(self.tokens.get(caller or ""))
        if version is not None:
            headers["If-Match"] = f'"{version}"'
        response: Response = self.client.patch(f"{URL}/{incident_id}", json=body, headers=headers)
        return response

    def get(self, caller: str | None, path: str = "", **params: Any) -> Response:
        """GET `URL + path` as `caller`."""
        headers = bearer(self.tokens.get(caller or ""))
        response: Response = self.client.get(URL + path, params=params, headers=headers)
        return response


def accounts_of(database_url: str, city: City) -> dict[str, str]:
    """One account per caller (test_auth's), the token by caller."""
    return make_accounts(
        database_url,
        AuthCity(
            city.worker_a,
            city.grid_a,
            city.worker_b,
            city.district_x,
            city.district_y,
            city.community_c,
        ),
    )


@contextlib.contextmanager
def open_env(database_url: str) -> Iterator[Env]:
    """The app on `database_url` (a fresh reference city) with one account per caller.

    No broker: the producer connects on first use, and these apps never produce.
    """
    city = pick_city(database_url)
    tokens = accounts_of(database_url, city)
    app = create_app(ApiConfig(database_url, "127.0.0.1:9"))
    with TestClient(app) as client:
        yield Env(client, database_url, city, tokens)
