"""GET /api/v1/stream on the real app, the real broker and a copy of the reference city."""

import signal
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from geodata.contract import Topics
from tests.integration.live_support import (
    ApiServer,
    SseClient,
    api_server,
    grids_in_two_districts,
    namespaced,
    produce,
)
from tests.live_events import as_bytes, checkin_assignment, compliance_change, incident_assignment
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def city(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[tuple[ApiServer, Topics, dict[str, str], tuple[str, str]]]:
    """The app over a fresh reference database and topics; tokens by caller; two grids."""
    database_url = reference_database_factory()
    topics = module_topic_factory(partitions=3)
    grid_x, grid_y = grids_in_two_districts(database_url)
    tokens = {
        "sup_x": add_user(database_url, "sup-x", "supervisor", grid_x[:6], None),
        "sup_y": add_user(database_url, "sup-y", "supervisor", grid_y[:6], None),
        "admin": add_user(database_url, "admin", "admin", None, None),
        "worker": add_user(database_url, "worker", "worker", None, "W00001"),
    }
    with api_server(database_url, kafka_bootstrap, namespaced(topics)) as server:
        yield server, topics, tokens, (grid_x, grid_y)


def test_each_supervisor_receives_its_districts_events_and_an_admin_all(
    city: tuple[ApiServer, Topics, dict[str, str], tuple[str, str]], kafka_bootstrap: str
) -> None:
    server, topics, tokens, (grid_x, grid_y) = city
    url = f"{server.base}/api/v1/stream"
    clients = {name: SseClient(url, tokens[name]).start() for name in ("sup_x", "sup_y", "admin")}
    only_compliance = SseClient(url, tokens["sup_x"], {"types": "compliance"}).start()
    for client in (*clients.values(), only_compliance):
        client.wait_for("status", live=True)

    checkin_x = checkin_assignment(grid_x)
    incident_y = incident_assignment(grid_y)
    change_x = compliance_change(grid_x)
    nowhere = checkin_assignment(None)
    produce(
        kafka_bootstrap,
        [
            (topics.assignments, grid_x, as_bytes(checkin_x)),
            (topics.assignments, grid_y, as_bytes(incident_y)),
            (topics.compliance, change_x["worker_id"], as_bytes(change_x)),
            (topics.assignments, "outside", as_bytes(nowhere)),
        ],
    )

    admin = clients["admin"]
    assert admin.wait_for("checkin", event_id=checkin_x["event_id"])["grid_code"] == grid_x
    admin.wait_for("incident", event_id=incident_y["event_id"])
    admin.wait_for("compliance", event_id=change_x["event_id"])
    admin.wait_for("checkin", event_id=nowhere["event_id"])

    seen_x = clients["sup_x"].wait_for("checkin", event_id=checkin_x["event_id"])
    assert (seen_x["lon"], seen_x["lat"]) == (107.1523, 34.3671)
    clients["sup_x"].wait_for("compliance", event_id=change_x["event_id"], new_status="met")
    clients["sup_y"].wait_for("incident", event_id=incident_y["event_id"])
    only_compliance.wait_for("compliance", event_id=change_x["event_id"])

    # Everything was produced before the admin's last event: the others have theirs by now.
    ids = {name: {d.get("event_id") for _k, d in c.received()} for name, c in clients.items()}
    assert ids["sup_x"].isdisjoint({incident_y["event_id"], nowhere["event_id"]})
    assert ids["sup_y"].isdisjoint(
        {checkin_x["event_id"], change_x["event_id"], nowhere["event_id"]}
    )
    assert {kind for kind, _d in only_compliance.received()} == {"status", "compliance"}


@pytest.mark.parametrize(
    ("caller", "params", "status", "code"),
    [
        (None, {}, 401, "missing_token"),
        ("worker", {}, 403, "forbidden"),
        ("sup_x", {"code": "Y"}, 403, "outside_area"),
        ("sup_x", {"types": "checkin,tracks"}, 422, "invalid_types"),
        ("admin", {"code": "61x"}, 422, "invalid_code"),
    ],
)
def test_stream_refusals_carry_the_apis_error_codes(
    city: tuple[ApiServer, Topics, dict[str, str], tuple[str, str]],
    caller: str | None,
    params: dict[str, str],
    status: int,
    code: str,
) -> None:
    server, _topics, tokens, (_grid_x, grid_y) = city
    headers = {} if caller is None else {"Authorization": f"Bearer {tokens[caller]}"}
    query = {k: grid_y[:6] if v == "Y" else v for k, v in params.items()}
    response = httpx.get(f"{server.base}/api/v1/stream", headers=headers, params=query, timeout=10)
    assert (response.status_code, response.json()["code"]) == (status, code)


def test_sigterm_ends_open_streams_and_the_server_exits_cleanly(
    city: tuple[ApiServer, Topics, dict[str, str], tuple[str, str]],
) -> None:
    server, _topics, tokens, _grids = city
    client = SseClient(f"{server.base}/api/v1/stream", tokens["admin"]).start()
    client.wait_for("status", live=True)
    started = time.monotonic()
    # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean exit.
    assert server.stop(timeout_s=15) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 5, "the server waited on its open streams"
    assert client.ended.wait(5), "the stream stayed open after the server stopped"
