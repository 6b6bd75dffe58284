"""The API's own Prometheus metrics: requests by route template and status, the gateway's
refusals by reason, in one process and in multiprocess mode."""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from geodata.contract import Topics
from geodata.events import CHECKIN_EXAMPLE
from grid_service.app import ApiConfig, create_app
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

REQUESTS = "wangge_http_request_duration_seconds"
REFUSALS = "wangge_gateway_refusals_total"


def sample(client: TestClient, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when it has none yet)."""
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def route_labels(client: TestClient) -> set[str]:
    """Every route label of the request histogram."""
    text = client.get("/metrics").text
    return {
        s.labels["route"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == f"{REQUESTS}_count"
    }


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def city(reference_database_factory: Callable[[], str]) -> tuple[str, str]:
    """A copy of the reference city and worker W00042's token (no test writes to it)."""
    url = reference_database_factory()
    return url, add_user(url, "w42", "worker", None, "W00042")


@pytest.fixture(scope="module")
def client(city: tuple[str, str]) -> Iterator[TestClient]:
    """The app, its broker away: posts that pass every check end as 503.

    One for the module: every test compares counts before and after its own requests (the
    registry is the process's anyway), and each app's shutdown waits out its probe of the
    absent broker, some 1.5 s.
    """
    url, token = city
    app = create_app(ApiConfig(url, f"127.0.0.1:{_closed_port()}", Topics()))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as test_client:
        yield test_client


def checkin(**changes: Any) -> dict[str, Any]:
    """W00042's check-in of a minute ago."""
    recorded = datetime.now(UTC) - timedelta(minutes=1)
    return CHECKIN_EXAMPLE | {"recorded_at": recorded.isoformat(), **changes}


def test_requests_are_counted_by_route_template_and_status_never_by_raw_url(
    client: TestClient,
) -> None:
    route = "/api/v1/grids/{code}"
    found_before = sample(client, f"{REQUESTS}_count", route=route, status="200", method="GET")
    missing_before = sample(client, f"{REQUESTS}_count", route=route, status="404")

    assert client.get("/api/v1/grids/610302001001001").status_code == 200
    assert client.get("/api/v1/grids/610302001002001").status_code == 200
    assert client.get("/api/v1/grids/610302999999999").status_code == 404
    assert client.get("/no/such/page/610302001001001").status_code == 404

    assert sample(client, f"{REQUESTS}_count", route=route, status="200") == found_before + 2
    assert sample(client, f"{REQUESTS}_count", route=route, status="404") == missing_before + 1
    assert sample(client, f"{REQUESTS}_sum", route=route, status="200") > 0
    labels = route_labels(client)
    assert "<unmatched>" in labels
    assert not [label for label in labels if "610302" in label]


@pytest.mark.parametrize(
    ("post", "status", "reason"),
    [
        (
            lambda c: c.post(
                "/api/v1/checkins",
                json=checkin(recorded_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()),
            ),
            "422",
            "future_timestamp",
        ),
        (
            lambda c: c.post(
                "/api/v1/checkins", json=checkin(), headers={"Authorization": "Bearer wg_nope"}
            ),
            "401",
            "invalid_token",
        ),
        (
            lambda c: c.post("/api/v1/checkins", json=checkin(worker_id="W00043")),
            "403",
            "worker_mismatch",
        ),
        (
            lambda c: c.post(
                "/api/v1/checkins",
                content=json.dumps(checkin()),
                headers={"content-type": "text/plain"},
            ),
            "415",
            "unsupported_media_type",
        ),
        (
            lambda c: c.post("/api/v1/checkins", json={"checkins": [checkin()] * 501}),
            "413",
            "batch_too_large",
        ),
        (lambda c: c.post("/api/v1/checkins", json=checkin()), "503", "broker_unavailable"),
    ],
)
def test_the_gateways_refusals_are_counted_by_reason(
    client: TestClient, post: Callable[[TestClient], Any], status: str, reason: str
) -> None:
    labels = {"route": "/api/v1/checkins", "status": status, "reason": reason}
    before = sample(client, REFUSALS, **labels)

    response = post(client)

    assert (str(response.status_code), response.json()["code"]) == (status, reason)
    assert sample(client, REFUSALS, **labels) == before + 1


def test_accepted_posts_and_other_routes_count_no_refusal(client: TestClient) -> None:
    before = {
        (s.labels["route"], s.labels["reason"])
        for f in text_string_to_metric_families(client.get("/metrics").text)
        for s in f.samples
        if s.name == REFUSALS
    }
    assert client.get("/api/v1/grids/610302999999999").status_code == 404
    after = {
        (s.labels["route"], s.labels["reason"])
        for f in text_string_to_metric_families(client.get("/metrics").text)
        for s in f.samples
        if s.name == REFUSALS
    }
    assert after == before


_MULTIPROCESS = """
import sys
from fastapi.testclient import TestClient
from grid_service.app import ApiConfig, create_app
app = create_app(ApiConfig(sys.argv[1], sys.argv[2]))
with TestClient(app, headers={"Authorization": "Bearer " + sys.argv[3]}) as client:
    client.get("/api/v1/grids/610302001001001")
    client.post("/api/v1/checkins", json={"worker_id": "W00042"})
    print(client.get("/metrics").text)
"""


def test_metrics_add_up_across_processes_in_multiprocess_mode(
    city: tuple[str, str], tmp_path: Path
) -> None:
    url, token = city
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    args = [sys.executable, "-c", _MULTIPROCESS, url, f"127.0.0.1:{_closed_port()}", token]
    runs = [
        subprocess.run(args, env=env, capture_output=True, text=True, timeout=120) for _ in "ab"
    ]

    assert all(run.returncode == 0 for run in runs), runs[-1].stderr[-2000:]
    families = {f.name: f for f in text_string_to_metric_families(runs[-1].stdout)}
    counts = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families[REQUESTS].samples
        if s.name == f"{REQUESTS}_count"
    }
    assert counts[("/api/v1/grids/{code}", "200")] == 2  # one from each process
    refusals = {(s.labels["reason"], s.value) for s in families["wangge_gateway_refusals"].samples}
    assert ("missing_field", 2) in refusals or ("invalid_field", 2) in refusals
