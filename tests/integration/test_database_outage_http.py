"""The API while its PostgreSQL is away: 503 `database_unavailable` with Retry-After, never
a 500 or a dropped connection, then the same app serves again once the database is back.

The database is a cluster of this test's own (pg_createcluster, a free port), so that
stopping it disturbs no other test; the app runs on real uvicorn, where a connection
reset would show.
"""

import contextlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from geodata.contract import Topics
from geodata.db import migrate
from geodata.db.engine import create_db_engine
from geodata.events import CHECKIN_EXAMPLE
from grid_service.app import ApiConfig, create_app
from grid_service.auth import AuthConfig
from tests.integration.incident_support import pick_city, store_incident
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

RECOVERY_BOUND_S = 60.0
"""How long the app may take to serve again once the database is back (not a target)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    """A PostgreSQL cluster of this test's own, trusted on 127.0.0.1."""

    version: str
    name: str
    port: int

    def url(self, database: str) -> str:
        """The libpq URL of one of its databases."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def ctl(self, action: str) -> None:
        """pg_ctlcluster start or stop (fast: open sessions are cut, as in a restart)."""
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action],
            check=True,
            capture_output=True,
        )

    def wait_up(self) -> None:
        """Return once it takes connections."""
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, f"cluster {self.name} did not come up"
                time.sleep(0.1)


@pytest.fixture
def cluster(postgis_server: str, reference_gpkg: Path) -> Iterator[Cluster]:
    """A fresh cluster holding the reference city in database `wangge`; dropped at the end."""
    from geodata.dataset.importer import import_boundaries

    if shutil.which("pg_createcluster") is None:
        pytest.skip("pg_createcluster (postgresql-common) is not installed")
    with psycopg.connect(f"{postgis_server}/postgres") as conn:
        # The shared server's major version: its binaries are the ones installed.
        version = str(conn.info.server_version // 10000)
    made = Cluster(version, f"faultb{uuid.uuid4().hex[:6]}", _free_port())
    try:
        subprocess.run(
            ["pg_createcluster", version, made.name, "-p", str(made.port), "--", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        made.ctl("start")
        made.wait_up()
        with psycopg.connect(made.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE wangge")
        with psycopg.connect(made.url("wangge"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
        migrate.upgrade(made.url("wangge"))
        engine = create_db_engine(made.url("wangge"))
        try:
            import_boundaries(engine, reference_gpkg)
        finally:
            engine.dispose()
        yield made
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, made.name], check=False, capture_output=True
        )


@contextlib.contextmanager
def serving(config: ApiConfig) -> Iterator[str]:
    """The real app on uvicorn (in a thread), its base URL while the block runs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _checkin(worker_id: str) -> dict[str, Any]:
    recorded = datetime.now(UTC) - timedelta(minutes=1)
    return CHECKIN_EXAMPLE | {
        "event_id": str(uuid.uuid4()),
        "worker_id": worker_id,
        "recorded_at": recorded.isoformat(),
    }


def test_while_postgresql_is_down_every_route_is_503_and_the_same_app_recovers(
    cluster: Cluster, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    url = cluster.url("wangge")
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
                json=_checkin(city.worker_a),
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

        cluster.ctl("stop")
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
            cluster.ctl("start")
        cluster.wait_up()

        # The same app, not restarted, serves again: its pool replaces the dead connections.
        for name, (call, ok) in calls.items():
            deadline = time.monotonic() + RECOVERY_BOUND_S
            while (response := call(http)).status_code != ok:
                assert response.status_code == 503, (name, response.text)
                assert time.monotonic() < deadline, f"{name} did not recover"
                time.sleep(0.2)
