"""The API while its PostgreSQL is away: 503 `database_unavailable` with Retry-After, never
a 500 or a dropped connection, then the same app serves again once the database is back.

The database is a cluster of this test's own (pg_createcluster, a free port), so that
stopping it disturbs no other test; the app runs on real uvicorn, where a connection
reset would show.
"""

import time
from collections.abc import Callable

import httpx
import pytest

from geodata.contract import Topics
from grid_service.app import ApiConfig
from grid_service.auth import AuthConfig
from tests.integration.fault_support import PrivateCluster
from tests.integration.incident_support import pick_city, store_incident
from tests.integration.live_support import serving
from tests.integration.test_auth import checkin
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

RECOVERY_BOUND_S = 60.0
"""How long the app may take to serve again once the database is back (not a target)."""


def test_while_postgresql_is_down_every_route_is_503_and_the_same_app_recovers(
    private_cluster: PrivateCluster, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    url = private_cluster.url("wangge")
    city = pick_city(url)
    worker = add_user(url, "outage-worker", "worker", None, city.worker_a)
    supervisor = add_user(url, "outage-supervisor", "supervisor", city.district_x, None)
    incident_id = store_incident(url, city.grid_a, staff=None)
    # No token cache: every request looks its token up, as one would after the TTL.
    config = ApiConfig(
        url, kafka_bootstrap, topic_factory(partitions=1), AuthConfig(token_cache_ttl_s=0)
    )
    calls: dict[str, tuple[Callable[[httpx.Client], httpx.Response], int]] = {
        "checkin (token lookup)": (
            lambda http: http.post(
                "/api/v1/checkins",
                json=checkin(city.worker_a),
                headers={"Authorization": f"Bearer {worker}"},
            ),
            202,
        ),
        "one incident": (
            lambda http: http.get(
                f"/api/v1/incidents/{incident_id}",
                headers={"Authorization": f"Bearer {supervisor}"},
            ),
            200,
        ),
        "compliance": (
            lambda http: http.get(
                "/api/v1/compliance",
                params={"week": "2020-W37", "level": "grid"},
                headers={"Authorization": f"Bearer {supervisor}"},
            ),
            200,
        ),
        "patrols": (
            lambda http: http.get(
                f"/api/v1/workers/{city.worker_a}/patrols",
                params={"week": "2020-W37"},
                headers={"Authorization": f"Bearer {worker}"},
            ),
            200,
        ),
        "grid listing (public)": (
            lambda http: http.get("/api/v1/grids", params={"code": city.district_x}),
            200,
        ),
    }
    with serving(config) as base, httpx.Client(base_url=base, timeout=30) as http:
        for name, (call, ok) in calls.items():
            assert call(http).status_code == ok, f"{name} before the outage"

        private_cluster.stop()
        try:
            for name, (call, _ok) in calls.items():
                # A reset connection would raise here rather than answer.
                response = call(http)
                assert response.status_code == 503, (name, response.text)
                assert response.json() == {
                    "code": "database_unavailable",
                    "detail": "the database is not reachable right now; retry later",
                }, name
                assert int(response.headers["Retry-After"]) >= 1, name
        finally:
            private_cluster.start()  # and waits until it takes connections

        # The same app, not restarted, serves again: its pool replaces the dead connections.
        for name, (call, ok) in calls.items():
            deadline = time.monotonic() + RECOVERY_BOUND_S
            while (response := call(http)).status_code != ok:
                assert response.status_code == 503, (name, response.text)
                assert time.monotonic() < deadline, f"{name} did not recover"
                time.sleep(0.2)
