"""Probable duplicates on the real gateway, consumer, PostGIS and broker: a report within
50 m and 24 h of an open case of its category is shown to its reporter at once and linked
at filing; 51 m, 25 h, another category or a closed case are not; a supervisor confirms
(cancelled, published once, its reporter follows the original) or splits."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from geodata.contract import Topics
from geodata.db import duplicate_store
from geodata.duplicates import DuplicateRule
from grid_service.app import ApiConfig, create_app
from tests.integration.incident_status_support import published_changes, unpublished
from tests.integration.incident_support import (
    URL,
    Env,
    accounts_of,
    open_env,
    pick_city,
    point_in,
    store_incident,
)
from tests.integration.pipeline_support import ConsumerProcess, count_rows, running, wait_until
from tests.integration.test_auth import bearer

pytestmark = pytest.mark.integration


def _projected(
    url: str, point: tuple[float, float], metres: float, azimuth_deg: int
) -> tuple[float, float]:
    """The point `metres` from `point` towards `azimuth_deg` on the ellipsoid (PostGIS)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT ST_X(p::geometry), ST_Y(p::geometry) FROM (SELECT ST_Project("
            "ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, radians(%s)) AS p) s",
            (*point, metres, azimuth_deg),
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def _report(
    point: tuple[float, float], reporter: str, at: datetime, category: str = "environment.garbage"
) -> dict[str, Any]:
    report_id = str(uuid.uuid4())
    return {
        "event_id": report_id,
        "incident_id": report_id,
        "category": category,
        "description": "楼道口堆放垃圾",
        "lon": point[0],
        "lat": point[1],
        "reported_at": at.isoformat(),
        "source": "worker",
        "reporter_id": reporter,
    }


def _link(url: str, incident_id: str) -> tuple[str | None, bool]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT duplicate_of::text, duplicate_confirmed FROM incidents WHERE incident_id = %s",
            (incident_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_reports_near_an_open_case_are_linked_shown_confirmed_and_split(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    url = reference_database_url
    city = pick_city(url)
    tokens = accounts_of(url, city)
    topics = topic_factory()
    centre = point_in(url, city.grid_a)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=26)
    # The open original (a hotline report nobody holds), and a closed one elsewhere.
    original = store_incident(url, city.grid_a, staff=None, point=centre, reported_at=start)
    closed_at = point_in(url, city.grid_b)
    closed = store_incident(
        url, city.grid_b, staff=None, point=closed_at, reported_at=start, status="closed"
    )
    # Placed so that no two of them are within 50 m of each other unless said: each is
    # judged against the original alone, whatever order the consumer files them in.
    hour = timedelta(hours=1)
    reports = {
        "at_49m": _report(_projected(url, centre, 49, 0), city.worker_a, start + hour),
        "at_51m": _report(_projected(url, centre, 51, 180), city.worker_a, start + hour),
        "after_23h": _report(_projected(url, centre, 30, 270), city.worker_a, start + 23 * hour),
        "after_25h": _report(_projected(url, centre, 30, 90), city.worker_a, start + 25 * hour),
        "other_category": _report(
            _projected(url, centre, 10, 45),
            city.worker_a,
            start + hour,
            "street_order.illegal_parking",
        ),
        "near_closed": _report(_projected(url, closed_at, 5, 0), city.worker_a, start + hour),
    }
    ids = {key: report["incident_id"] for key, report in reports.items()}
    app = create_app(ApiConfig(url, kafka_bootstrap, topics))
    consumer = ConsumerProcess(url, kafka_bootstrap, topics, "duplicates", tmp_path, ("incidents",))
    with TestClient(app) as client, running(consumer):
        env = Env(client, url, city, tokens)
        shown: dict[str, list[dict[str, Any]]] = {}
        for key, report in reports.items():
            posted = client.post(URL, json=report, headers=bearer(tokens["worker_a"]))
            assert posted.status_code == 202, posted.text
            shown[key] = posted.json()["probable_duplicate_of"]
        wait_until(
            lambda: count_rows(url, "SELECT count(*) FROM incidents") == len(reports) + 2,
            90,
            "the consumer filed the reports",
        )

        # Returned to the reporter at once: the original, with its distance.
        for key in ("at_49m", "after_23h"):
            assert [s["incident_id"] for s in shown[key]] == [original], key
        assert shown["at_49m"][0]["distance_m"] == pytest.approx(49, abs=0.2)
        for key in ("at_51m", "after_25h", "other_category", "near_closed"):
            assert original not in {s["incident_id"] for s in shown[key]}, key
            assert closed not in {s["incident_id"] for s in shown[key]}, key
        # Linked at filing, and only those.
        assert _link(url, ids["at_49m"]) == (original, False)
        assert _link(url, ids["after_23h"]) == (original, False)
        for key in ("at_51m", "after_25h", "other_category", "near_closed"):
            assert _link(url, ids[key]) == (None, False), key
        # Shown to the supervisor: the detail and the list.
        read = env.get("admin", f"/{ids['at_49m']}").json()["properties"]
        assert read["probable_duplicate_of"] == original
        assert read["duplicate_of"] is None
        listed = {
            f["id"]: f["properties"]["probable_duplicate_of"]
            for f in env.get("admin", limit=100).json()["features"]
        }
        assert listed[ids["after_23h"]] == original
        assert listed[ids["at_51m"]] is None
        # The reporter of a report does not read the original before a confirmation.
        assert env.get("worker_a", f"/{original}").status_code == 403

        # Only a linked report is confirmed or split; the version rules hold. (Reported a
        # day ago, the cases have passed due moments: the deadlines moved their versions.)
        def version(key: str) -> int:
            return int(env.get("admin", f"/{ids[key]}").headers["ETag"].strip('"'))

        refused = env.patch(
            "admin", ids["at_51m"], {"action": "confirm_duplicate"}, version("at_51m")
        )
        assert (refused.status_code, refused.json()["code"]) == (409, "illegal_transition")
        stale = env.patch("admin", ids["at_49m"], {"action": "confirm_duplicate"}, version=99)
        assert stale.status_code == 412
        unversioned = env.patch("admin", ids["at_49m"], {"action": "split"}, version=None)
        assert unversioned.status_code == 428

        # The deadlines may move a case between a read and its change, as they may under a
        # supervisor: on 412 read again and send again, as the answer says.
        def patch_current(key: str, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            for _ in range(5):
                read = env.get("admin", f"/{ids[key]}").json()["properties"]
                answer = env.patch("admin", ids[key], body, read["version"])
                if answer.status_code != 412:
                    return answer, read
            raise AssertionError(f"{key}: stale five times running: {answer.text}")

        confirmed, read_before = patch_current("at_49m", {"action": "confirm_duplicate"})
        before = int(read_before["version"])
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.headers["ETag"] == f'"{before + 1}"'
        properties = confirmed.json()["properties"]
        assert (properties["status"], properties["duplicate_of"]) == ("cancelled", original)
        assert properties["probable_duplicate_of"] is None
        split, before_split = patch_current("after_23h", {"action": "split"})
        assert split.status_code == 200, split.text
        after_split = split.json()["properties"]
        assert after_split["status"] == before_split["status"]
        assert after_split["version"] == before_split["version"] + 1
        assert after_split["probable_duplicate_of"] is None
        assert _link(url, ids["after_23h"]) == (None, False)
        again = env.patch("admin", ids["after_23h"], {"action": "split"}, version("after_23h"))
        assert again.status_code == 409

        # The original lists its follower, whose reporter now reads it.
        followed = env.get("worker_a", f"/{original}")
        assert followed.status_code == 200, followed.text
        assert followed.json()["properties"]["duplicates"] == [ids["at_49m"]]
        wait_until(lambda: unpublished(url) == 0, 60, "the intake stage published every change")

    changes = published_changes(kafka_bootstrap, topics.incident_status)
    confirming = [m for m in changes[ids["at_49m"]] if m["action"] == "confirm_duplicate"]
    assert len(confirming) == 1  # published once
    assert (confirming[0]["version"], confirming[0]["to_status"]) == (before + 1, "cancelled")
    assert changes[ids["at_49m"]][-1] == confirming[0]  # nothing moves a cancelled case
    splitting = [m for m in changes[ids["after_23h"]] if m["action"] == "split"]
    assert [(m["version"], m["from_status"], m["to_status"]) for m in splitting] == [
        (after_split["version"], after_split["status"], after_split["status"])
    ]


def test_a_batch_links_a_later_report_to_an_earlier_one_never_the_reverse(
    reference_database_url: str,
) -> None:
    with open_env(reference_database_url) as env:
        url = env.database_url
        centre = point_in(url, env.city.grid_a)
        now = datetime.now(UTC)
        earlier = store_incident(url, env.city.grid_a, staff=None, point=centre, reported_at=now)
        later = store_incident(
            url,
            env.city.grid_a,
            staff=None,
            point=_projected(url, centre, 20, 0),
            reported_at=now + timedelta(minutes=1),
        )
        reports = [
            duplicate_store.FiledReport(uuid.UUID(i), "environment.garbage", p[0], p[1], at)
            for i, p, at in (
                (later, _projected(url, centre, 20, 0), now + timedelta(minutes=1)),
                (earlier, centre, now),
            )
        ]
        with psycopg.connect(url) as conn:
            links = duplicate_store.link_filed_reports(conn, DuplicateRule(), reports)
        assert {str(k): str(v.incident_id) for k, v in links.items()} == {later: earlier}
        assert _link(url, earlier) == (None, False)
        assert _link(url, later) == (earlier, False)
