"""Cloud lockers end to end: `wangge lockers import`, drop-offs produced to Kafka, a real
`wangge consume` of the intake stage, the API's transitions and the Open311 read.

A drop-off becomes a task for the worker of the locker's grid with its due time; that
worker's pick-up and return move it (another worker gets 403); Open311 shows each step
without anything personal; malformed drop-offs reach the dead letters with a reason; a
redelivered drop-off files nothing twice.
"""

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from geodata.contract import Topics
from geodata.db import deadline_store
from geodata.records import (
    DEADLETTER_DETAIL_HEADER,
    DEADLETTER_REASON_HEADER,
    DEADLETTER_SOURCE_HEADERS,
)
from grid_service.app import ApiConfig, create_app
from tests.integration.incident_status_support import published_changes, unpublished
from tests.integration.pipeline_support import (
    ConsumerProcess,
    count_rows,
    produce,
    read_topic,
    running,
    wait_until,
)
from tests.integration.test_auth import bearer
from wangge.cli import app as wangge_cli
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

V2 = "/open311/v2"
INCIDENTS = "/api/v1/incidents"
# A vendor's extra field with a resident's phone: accepted on the topic, carried nowhere.
PHONE = "13900001234"


def wangge(database_url: str, *args: str) -> Result:
    """`wangge ARGS` in this process, as an admin would run it (a new one costs seconds of
    imports)."""
    env = {"WANGGE_DATABASE_URL": database_url, "COLUMNS": "200"}
    return CliRunner().invoke(wangge_cli, list(args), env=env)


def dropoff(locker_id: str, compartment: object = 7, **extra: object) -> dict[str, Any]:
    """A drop-off of a minute ago at `locker_id`."""
    return {
        "event_id": str(uuid.uuid4()),
        "locker_id": locker_id,
        "compartment": compartment,
        "document_kind": "residence_certificate",
        "dropped_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        **extra,
    }


def message(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """The drop-off as a locker sends it: keyed by locker id, JSON value."""
    return str(event["locker_id"]).encode(), json.dumps(event).encode()


@dataclass
class Lockers:
    """A city whose lockers were imported, one drop-off filed, and the app."""

    client: TestClient
    database_url: str
    bootstrap: str
    topics: Topics
    locker_id: str
    grid_code: str
    worker: str
    tokens: dict[str, str]
    task_id: str
    dropped: dict[str, Any]
    listed: str


@pytest.fixture(scope="module")
def lockers(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Lockers]:
    """The reference city's lockers imported; a valid drop-off, a redelivery of it, and two
    bad ones produced; a `wangge consume` of lockers and incidents running throughout."""
    url = reference_database_factory()
    topics = module_topic_factory(partitions=1)
    consumer = ConsumerProcess(
        url,
        kafka_bootstrap,
        topics,
        "lockers",
        tmp_path_factory.mktemp("consumer"),
        names=("incidents", "lockers"),
    )
    # Started first: it starts while the lockers are imported, and waits for drop-offs.
    with running(consumer):
        yield from _filed(url, kafka_bootstrap, topics)


def _filed(url: str, kafka_bootstrap: str, topics: Topics) -> Iterator[Lockers]:
    """Import the lockers, produce the drop-offs, and wait until the valid one is filed."""
    done = wangge(url, "lockers", "import")
    assert done.exit_code == 0, done.output
    listed = wangge(url, "lockers", "list")
    assert listed.exit_code == 0, listed.output
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT l.locker_id, l.grid_code, min(a.worker_id) FROM lockers l"
            " JOIN worker_assignments a ON a.grid_code = l.grid_code AND a.valid_to IS NULL"
            " GROUP BY l.locker_id, l.grid_code ORDER BY l.locker_id LIMIT 1"
        ).fetchone()
        other = conn.execute(
            "SELECT min(worker_id) FROM worker_assignments WHERE grid_code <> %s",
            (row[1] if row else "",),
        ).fetchone()
    assert row is not None
    assert other is not None
    locker_id, grid_code, worker = row
    tokens = {
        "worker": add_user(url, "locker-worker", "worker", None, worker),
        "other": add_user(url, "other-worker", "worker", None, other[0]),
    }
    dropped = dropoff(locker_id, phone=PHONE)
    produce(
        kafka_bootstrap,
        topics.locker_dropoffs,
        [
            message(dropped),
            message(dropoff(locker_id, compartment="seven")),
            message(dropoff("NO-SUCH-LOCKER")),
            message(dropoff(locker_id, compartment=199)),
        ],
    )
    app = create_app(ApiConfig(url, kafka_bootstrap, topics))
    with TestClient(app) as client:
        wait_until(
            lambda: count_rows(url, "SELECT count(*) FROM incidents") == 1,
            90,
            "the drop-off was filed as a task",
        )
        yield Lockers(
            client,
            url,
            kafka_bootstrap,
            topics,
            locker_id,
            grid_code,
            worker,
            tokens,
            dropped["event_id"],
            dropped,
            listed.output,
        )


def _open311(lockers: Lockers) -> dict[str, Any]:
    response = lockers.client.get(f"{V2}/requests/{lockers.task_id}.json")
    assert response.status_code == 200, response.text
    [document] = response.json()
    assert isinstance(document, dict)
    return document


def _patch(lockers: Lockers, caller: str, action: str, version: int) -> Any:
    headers = bearer(lockers.tokens[caller]) | {"If-Match": f'"{version}"'}
    return lockers.client.patch(
        f"{INCIDENTS}/{lockers.task_id}", json={"action": action}, headers=headers
    )


def test_the_registry_holds_the_40_lockers_of_high_tech_zone_each_in_its_grid(
    lockers: Lockers,
) -> None:
    with psycopg.connect(lockers.database_url) as conn:
        rows = conn.execute(
            "SELECT l.grid_code, g.code FROM lockers l LEFT JOIN grids g"
            " ON g.valid_to IS NULL AND ST_Contains(g.geom, l.geom)"
        ).fetchall()
    assert len(rows) == 40
    # Located by the snapshot, as PostGIS locates them; all in 高新区 (610371, synthetic).
    assert all(snapshot_grid == postgis_grid for snapshot_grid, postgis_grid in rows)
    assert len({code[:6] for code, _ in rows}) == 1
    assert lockers.locker_id in lockers.listed
    assert "40 lockers" in lockers.listed


def test_a_dropoff_becomes_a_task_for_the_worker_of_the_lockers_grid_with_its_due_time(
    lockers: Lockers,
) -> None:
    with psycopg.connect(lockers.database_url) as conn:
        row = conn.execute(
            "SELECT status, source, category, grid_code, staff_id, reported_at, due_at,"
            " payload::text FROM incidents WHERE incident_id = %s",
            (lockers.task_id,),
        ).fetchone()
        table = deadline_store.load_table(conn)
    assert row is not None
    status, source, category, grid_code, staff, reported_at, due_at, payload = row
    assert (status, source, category) == ("reported", "locker", "locker.documents")
    assert (grid_code, staff) == (lockers.grid_code, lockers.worker)
    # Pick-up within 4 working hours of the drop-off (migration 0016's row).
    expected = table.calendar.add_working_time(reported_at, timedelta(hours=4))
    assert due_at == expected
    assert "locker.documents" in {c for c, _ in table.rows}
    assert PHONE not in payload


def test_open311_shows_the_task_from_drop_off_to_return_and_nothing_personal(
    lockers: Lockers,
) -> None:
    first = _open311(lockers)
    assert first["service_code"] == "locker.documents"
    assert (first["status"], first["status_notes"]) == ("open", "已存入云柜，已通知网格员取件")
    assert "7 号格" in first["description"]
    raw = lockers.client.get(f"{V2}/requests/{lockers.task_id}.json").text
    assert PHONE not in raw
    by_id = lockers.client.get(
        f"{V2}/requests.json", params={"service_request_id": first["service_request_id"]}
    )
    assert [d["service_request_id"] for d in by_id.json()] == [lockers.task_id]
    # Not in the public listing: a resident's errand is followed by its id only.
    listing = lockers.client.get(f"{V2}/requests.json").json()
    assert lockers.task_id not in {d["service_request_id"] for d in listing}
    posted = lockers.client.post(
        f"{V2}/requests.json",
        data={"service_code": "locker.documents", "lat": "34.3", "long": "107.2"},
    )
    assert posted.status_code in (400, 403)


def test_another_worker_gets_403_and_the_holder_picks_up_and_returns(lockers: Lockers) -> None:
    refused = _patch(lockers, "other", "pick_up", 1)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "worker_mismatch"
    not_a_case = _patch(lockers, "worker", "start", 1)
    assert not_a_case.status_code == 409, not_a_case.text

    picked = _patch(lockers, "worker", "pick_up", 1)
    assert picked.status_code == 200, picked.text
    assert picked.json()["properties"]["status"] == "in_progress"
    assert _open311(lockers)["status_notes"] == "网格员已取件，正在社区办理"

    returned = _patch(lockers, "worker", "return", 2)
    assert returned.status_code == 200, returned.text
    assert returned.json()["properties"]["status"] == "closed"
    final = _open311(lockers)
    assert (final["status"], final["status_notes"]) == (
        "closed",
        "办理结果已放回云柜，请凭取件码取回",
    )

    wait_until(lambda: unpublished(lockers.database_url) == 0, 30, "the changes were published")
    changes = published_changes(lockers.bootstrap, lockers.topics.incident_status)
    assert [c["action"] for c in changes[lockers.task_id]] == ["report", "pick_up", "return"]


def test_malformed_and_unknown_dropoffs_reach_the_dead_letters_with_a_reason(
    lockers: Lockers,
) -> None:
    letters: list[Any] = read_topic(lockers.bootstrap, lockers.topics.deadletter)
    assert {dict(r.headers)[DEADLETTER_SOURCE_HEADERS[0]] for r in letters} == {
        lockers.topics.locker_dropoffs.encode()
    }
    reasons = sorted(dict(r.headers)[DEADLETTER_REASON_HEADER].decode() for r in letters)
    assert reasons == ["invalid_field", "invalid_field", "invalid_field"]
    details = " ".join(dict(r.headers)[DEADLETTER_DETAIL_HEADER].decode() for r in letters)
    assert "NO-SUCH-LOCKER" in details
    assert "has 24 compartments" in details


def test_a_redelivered_dropoff_files_nothing_twice(lockers: Lockers) -> None:
    sentinel = dropoff(lockers.locker_id, compartment=3)
    produce(
        lockers.bootstrap,
        lockers.topics.locker_dropoffs,
        [message(lockers.dropped), message(sentinel)],
    )
    wait_until(
        lambda: (
            count_rows(
                lockers.database_url,
                f"SELECT count(*) FROM incidents WHERE incident_id = '{sentinel['event_id']}'",
            )
            == 1
        ),
        60,
        "the drop-off after the redelivery was filed",
    )
    assert count_rows(lockers.database_url, "SELECT count(*) FROM incidents") == 2
    assert count_rows(lockers.database_url, "SELECT count(*) FROM locker_dropoffs") == 2
