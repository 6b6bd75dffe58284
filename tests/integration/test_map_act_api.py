"""The map's act routes over the real app and PostGIS: the compliance export (CSV and XLSX)
holds the API's numbers, and a call to a worker reaches a real webhook after it failed."""

import csv
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from geodata.notify import NotifyConfig
from grid_service.app import ApiConfig, create_app
from grid_service.compliance_export import COLUMNS
from tests.integration.live_support import query
from tests.integration.notify_support import Receiver, receiver
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

WEEK = "2020-W37"
AS_OF = "2020-09-11T18:00:00+08:00"


@dataclass
class Env:
    """The app with a notify webhook, a supervisor of one district and its token."""

    client: TestClient
    database_url: str
    district: str
    headers: dict[str, str]
    receiver: Receiver


@pytest.fixture(scope="module")
def env(reference_database_factory: Callable[[], str]) -> Iterator[Env]:
    """One app over a fresh reference city; its webhook fails twice, then accepts."""
    database_url = reference_database_factory()
    (row,) = query(database_url, "SELECT min(code) AS code FROM districts")
    district = str(row.code)
    token = add_user(database_url, "sup-act", "supervisor", district, None)
    with receiver(failures=2) as hook:
        notify = NotifyConfig(webhook_url=hook.url, retry_base_s=0.1, retry_max_s=0.2, poll_s=0.1)
        app = create_app(ApiConfig(database_url, "127.0.0.1:9", notify=notify))
        with TestClient(app) as client:
            yield Env(client, database_url, district, {"Authorization": f"Bearer {token}"}, hook)


def api_rows(env: Env, **params: str) -> list[list[str]]:
    """GET /api/v1/compliance?level=grid flattened as the export's rows (text)."""
    answer = env.client.get(
        "/api/v1/compliance", params={"level": "grid", **params}, headers=env.headers
    ).json()
    return [
        [
            answer["week"],
            grid["grid_code"],
            grid["name"] or "",
            w["worker_id"],
            w["name"],
            str(w["required"]),
            str(w["counted"]),
            w["status"],
            " ".join(w["counted_days"]),
        ]
        for grid in answer["items"]
        for w in grid["workers"]
    ]


def _without_as_of(row: list[Any]) -> list[str]:
    return [str(v) for i, v in enumerate(row) if COLUMNS[i] != "as_of"]


def test_the_csv_and_xlsx_exports_hold_the_apis_rows(env: Env) -> None:
    params = {"week": WEEK, "as_of": AS_OF}
    expected = api_rows(env, **params)
    assert expected
    assert all(row[0] == WEEK for row in expected)

    csv_answer = env.client.get("/api/v1/compliance/export", params=params, headers=env.headers)
    assert csv_answer.status_code == 200, csv_answer.text
    assert csv_answer.headers["content-type"].startswith("text/csv")
    assert f"compliance-{WEEK}-{env.district}.csv" in csv_answer.headers["content-disposition"]
    assert csv_answer.content.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 with a BOM
    header, *rows = csv.reader(io.StringIO(csv_answer.content.decode("utf-8-sig")))
    assert tuple(header) == COLUMNS
    assert {row[1] for row in rows} == {"2020-09-11T18:00:00+08:00"}
    assert [_without_as_of(row) for row in rows] == expected

    xlsx = env.client.get(
        "/api/v1/compliance/export", params={**params, "format": "xlsx"}, headers=env.headers
    )
    assert xlsx.status_code == 200, xlsx.text
    sheet = load_workbook(io.BytesIO(xlsx.content), read_only=True).active
    assert sheet is not None
    header_row, *xlsx_rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert tuple(header_row) == COLUMNS
    assert all(isinstance(r[COLUMNS.index("counted")], int) for r in xlsx_rows)
    assert [_without_as_of(["" if v is None else v for v in r]) for r in xlsx_rows] == expected


def test_an_export_outside_the_area_is_refused_like_the_api(env: Env) -> None:
    (other,) = query(
        env.database_url, f"SELECT max(code) AS code FROM districts WHERE code <> '{env.district}'"
    )
    params = {"week": WEEK, "code": str(other.code)}
    answer = env.client.get("/api/v1/compliance/export", params=params, headers=env.headers)
    assert (answer.status_code, answer.json()["code"]) == (403, "outside_area")
    bad = env.client.get(
        "/api/v1/compliance/export", params={"week": "2020-W99"}, headers=env.headers
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_week")


def test_a_call_is_retried_until_the_receiver_accepts_and_every_attempt_is_kept(
    env: Env,
) -> None:
    (row,) = query(
        env.database_url,
        "SELECT min(worker_id) AS w FROM worker_assignments"
        f" WHERE grid_code LIKE '{env.district}%'",
    )
    worker = str(row.w)
    answer = env.client.post(
        f"/api/v1/workers/{worker}/notify",
        json={"week": WEEK, "status": "missed", "message": "请今天补巡 · patrol today"},
        headers=env.headers,
    )
    assert answer.status_code == 202, answer.text
    call = answer.json()
    assert (call["state"], call["requested_by"]) == ("pending", "sup-act")

    env.receiver.wait_for(3)
    statuses = [status for status, _, _ in env.receiver.received]
    assert statuses == [503, 503, 200]
    bodies = [body for _, _, body in env.receiver.received]
    assert all(b == bodies[0] for b in bodies)  # the same call, the same delivery_id
    assert bodies[0]["delivery_id"] == call["delivery_id"]
    assert (bodies[0]["worker_id"], bodies[0]["status"]) == (worker, "missed")
    assert bodies[0]["message"] == "请今天补巡 · patrol today"
    assert env.receiver.received[0][1]["X-Wangge-Delivery"] == call["delivery_id"]

    def listed() -> dict[str, Any]:
        calls = env.client.get(f"/api/v1/workers/{worker}/notify", headers=env.headers).json()
        return dict(calls["calls"][0])

    # The attempt is recorded just after the receiver answered: poll with a deadline.
    deadline = time.monotonic() + 10
    while listed()["state"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.05)
    final = listed()
    assert (final["state"], final["attempts"], final["last_error"]) == ("delivered", 3, None)
    attempts = query(
        env.database_url,
        "SELECT a.attempt, a.http_status, a.error FROM notify_attempts a"
        " JOIN notify_deliveries d ON d.id = a.delivery_id"
        f" WHERE d.delivery_id = '{call['delivery_id']}' ORDER BY a.attempt",
    )
    assert [tuple(a) for a in attempts] == [
        (1, 503, "HTTP 503"),
        (2, 503, "HTTP 503"),
        (3, 200, None),
    ]


def test_a_call_outside_the_area_or_with_a_bad_week_is_refused(env: Env) -> None:
    (row,) = query(
        env.database_url,
        "SELECT min(worker_id) AS w FROM worker_assignments"
        f" WHERE worker_id NOT IN (SELECT worker_id FROM worker_assignments"
        f" WHERE grid_code LIKE '{env.district}%')",
    )
    outside = env.client.post(f"/api/v1/workers/{row.w}/notify", json={}, headers=env.headers)
    assert (outside.status_code, outside.json()["code"]) == (403, "outside_area")
    unknown = env.client.post("/api/v1/workers/W99999/notify", json={}, headers=env.headers)
    assert (unknown.status_code, unknown.json()["code"]) == (403, "outside_area")
    week = env.client.post(
        f"/api/v1/workers/{row.w}/notify", json={"week": "2020-W60"}, headers=env.headers
    )
    assert week.status_code == 422
