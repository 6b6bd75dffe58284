"""The workers' app at /app as a worker uses it: Debian's chromium on a 360-px phone screen,
the real API, the real consumers, PostGIS and the broker.

The phone's GPS is the test's: the context has the geolocation permission and the test
sets each position along a walk inside the worker's real grid of the reference city; the
page's clock is the test's too (Playwright's clock), so 12 minutes walk in seconds.
Workers sign in with their name and password, the normal way; the incidents test signs in
with a pasted token, the second way (test_worker_app_sign_in.py tests the sign-in itself).
"""

import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from PIL import Image
from PIL.ExifTags import IFD

from geodata.attachments import AttachmentConfig
from geodata.contract import Topics
from grid_service.app import ApiConfig
from tests.integration.live_support import serving
from tests.integration.pipeline_support import ConsumerProcess, keep_assigned_only, wait_until
from tests.integration.session_support import give_passwords, password_of
from tests.integration.worker_app_support import (
    Walker,
    open_app,
    phone_context,
    screenshot,
    screenshot_dir,
    staffed_grids,
    walk,
)
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

PHOTO_LIMIT = 2 * 2**20
"""The deployment's upload limit in these tests (WANGGE_ATTACHMENT_MAX_BYTES)."""
GPS = {1: "N", 2: (34.0, 22.0, 1.5), 3: "E", 4: (107.0, 9.0, 2.0)}


@dataclass(frozen=True)
class City:
    """The served city: its database, the API's base URL, two walkers and supervisors."""

    database_url: str
    base: str
    walkers: tuple[Walker, Walker]
    supervisor: str  # of the walkers' district
    other_supervisor: str  # of another district
    attachments_dir: Path


@pytest.fixture(scope="module")
def city(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[City]:
    """The API (in a thread) and both consumer stages over a fresh reference city."""
    database_url = reference_database_factory()
    topics = module_topic_factory(partitions=3)
    found = staffed_grids(database_url, 2)
    # Only the walkers stay assigned: the compliance stage re-evaluates everyone assigned at
    # each local midnight, which would be all 2,381 workers of the city.
    keep_assigned_only(database_url, [w["worker_id"] for w in found])
    walkers = tuple(
        Walker(
            name=f"walker-{w['worker_id']}",
            password=password_of(f"walker-{w['worker_id']}"),
            token=add_user(
                database_url, f"walker-{w['worker_id']}", "worker", None, w["worker_id"]
            ),
            **w,
        )
        for w in found
    )
    # Workers sign in with their passwords; the token stays for the token-based test.
    give_passwords(database_url, [w.name for w in walkers])
    district = walkers[0].grid_code[:6]
    with psycopg.connect(database_url) as conn:
        (other,) = conn.execute(
            "SELECT min(code) FROM districts WHERE code <> %s", (district,)
        ).fetchone() or (None,)
    attachments_dir = tmp_path_factory.mktemp("attachments")
    config = ApiConfig(
        database_url,
        kafka_bootstrap,
        topics,
        attachments=AttachmentConfig(attachments_dir, max_bytes=PHOTO_LIMIT),
    )
    log_dir = tmp_path_factory.mktemp("consumers")
    consumers = ConsumerProcess(database_url, kafka_bootstrap, topics, "app", log_dir).start()
    try:
        with serving(config) as base:
            yield City(
                database_url,
                base,
                (walkers[0], walkers[1]),
                add_user(database_url, "district-desk", "supervisor", district, None),
                add_user(database_url, "other-desk", "supervisor", str(other), None),
                attachments_dir,
            )
    finally:
        consumers.stop()


@pytest.fixture
def phone(city: City) -> Iterator[Any]:
    """A phone-sized browser context with the geolocation permission granted."""
    with phone_context(city.walkers[0]) as context:
        yield context


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go (WANGGE_SCREENSHOT_DIR, else a temporary folder)."""
    return screenshot_dir(tmp_path_factory.mktemp("screenshots"))


def _get(city: City, path: str, token: str) -> httpx.Response:
    return httpx.get(f"{city.base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_twelve_minute_patrol_shows_in_the_patrols_and_counts_one_of_three(
    city: City, phone: Any, screenshots: Path
) -> None:
    walker = city.walkers[0]
    errors: list[str] = []
    page = open_app(phone, city.base, walker, errors)
    page.click("#patrol-button")
    page.wait_for_selector('body[data-patrol="on"][data-kept="1"]')
    walk(phone, page, walker, steps=24, kept_before=1)  # 24 steps of 30 s: 12 minutes
    assert page.inner_text("#elapsed").startswith("12:")  # the clock also ran on meanwhile
    assert page.inner_text("#fixes") == "25"
    screenshot(page, screenshots, "app-patrol.png")
    page.click("#patrol-button")
    page.wait_for_selector('body[data-patrol="off"][data-waiting="0"]', timeout=30_000)

    week = page.inner_text("#week-name") or None

    def counted() -> bool:
        query = f"?week={week}" if week else ""
        answer = _get(city, f"/api/v1/workers/{walker.worker_id}/patrols{query}", walker.token)
        patrols = [p for g in answer.json()["grids"] for p in g["patrols"]]
        return any(p["counted"] and p["checkin_count"] == 25 for p in patrols)

    # The compliance stage's own pace: well under a minute, but this machine is shared.
    wait_until(counted, 120, "the walk became a counted patrol of 25 check-ins")
    page.click('nav button[data-tab="week"]')
    page.wait_for_selector('#week-count[data-counted="1"][data-required="3"]', timeout=20_000)
    assert page.inner_text("#week-count") == "1 / 3"
    assert "已计入" in page.inner_text("#patrols")
    screenshot(page, screenshots, "app-week.png")
    page.click("#lang")  # English, a tap away
    page.wait_for_selector('html[lang="en"]')
    assert page.inner_text('nav button[data-tab="week"]') == "Week"
    page.wait_for_selector('#patrols .why:has-text("counted")')
    page.click("#lang")
    page.wait_for_selector('html[lang="zh-CN"]')
    assert not errors, errors


def _photo_with_gps(path: Path) -> Path:
    """A camera's photo: 3000 x 2000, with a GPS position in its EXIF."""
    image = Image.new("RGB", (3000, 2000), (90, 140, 60))
    image.paste((230, 230, 230), (1200, 800, 1800, 1200))
    exif = Image.Exif()
    exif[IFD.GPSInfo] = GPS
    image.save(path, "JPEG", exif=exif, quality=92)
    assert Image.open(path).getexif().get_ifd(IFD.GPSInfo)
    return path


def _count(city: City, sql: str, *args: object) -> tuple[Any, ...]:
    with psycopg.connect(city.database_url) as conn:
        return conn.execute(sql, args).fetchone() or ()


def test_offline_fixes_and_a_report_with_a_photo_arrive_once_after_a_reload(
    city: City, phone: Any, tmp_path: Path, screenshots: Path
) -> None:
    walker = city.walkers[1]
    errors: list[str] = []
    page = open_app(phone, city.base, walker, errors)
    page.wait_for_selector('body[data-sw="controlled"]', timeout=20_000)

    phone.set_offline(True)
    page.wait_for_selector('body[data-online="false"]')
    page.click("#patrol-button")
    page.wait_for_selector('body[data-kept="1"]')
    walk(phone, page, walker, steps=19, kept_before=1)
    page.click("#patrol-button")  # standing where the last fix was kept: no 21st
    page.wait_for_selector('body[data-patrol="off"][data-waiting="20"]')

    page.click('nav button[data-tab="report"]')
    page.select_option("#category", "public_facilities.manhole_cover")
    page.fill("#note", "井盖缺失 manhole cover missing")
    page.set_input_files("#photos", str(_photo_with_gps(tmp_path / "camera.jpg")))
    page.wait_for_selector('body[data-photos="1"]', timeout=20_000)
    screenshot(page, screenshots, "app-report.png")
    page.click("#report-form button[type=submit]")
    page.wait_for_selector('body[data-waiting="21"]')

    page.reload()  # offline: the service worker answers with the app
    page.wait_for_selector('body[data-map="1"][data-waiting="21"]', timeout=60_000)
    assert _count(city, "SELECT count(*) FROM checkins WHERE worker_id = %s", walker.worker_id) == (
        0,
    )

    phone.set_offline(False)
    page.wait_for_selector('body[data-waiting="0"]', timeout=60_000)

    def stored() -> bool:
        (fixes,) = _count(
            city, "SELECT count(*) FROM checkins WHERE worker_id = %s", walker.worker_id
        )
        (reports,) = _count(
            city, "SELECT count(*) FROM incidents WHERE reporter_id = %s", walker.worker_id
        )
        return bool(fixes >= 20 and reports >= 1)

    wait_until(stored, 60, "the 20 fixes and the report reached PostGIS")
    time.sleep(3)  # anything sent twice would land by now
    assert _count(
        city,
        "SELECT count(*), count(DISTINCT event_id) FROM checkins WHERE worker_id = %s",
        walker.worker_id,
    ) == (20, 20)
    incident_id, photos = _count(
        city,
        "SELECT i.incident_id, array_agg(a.content_id) FROM incidents i"
        " JOIN incident_attachments a USING (incident_id) WHERE i.reporter_id = %s"
        " GROUP BY i.incident_id",
        walker.worker_id,
    )
    assert _count(
        city, "SELECT count(*) FROM incidents WHERE reporter_id = %s", walker.worker_id
    ) == (1,)
    (content_id,) = photos
    path = f"/api/v1/incidents/{incident_id}/attachments/{content_id}"

    downloaded = _get(city, path, city.supervisor)
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.headers["content-type"] == "image/jpeg"
    assert len(downloaded.content) <= PHOTO_LIMIT
    image = Image.open(io.BytesIO(downloaded.content))
    assert max(image.size) == 1600  # resized on the phone
    assert not image.getexif().get_ifd(IFD.GPSInfo)
    assert not image.getexif()

    refused = _get(city, path, city.other_supervisor)
    assert refused.status_code == 403
    assert refused.json()["code"] == "outside_area"
    assert _get(city, path, walker.token).status_code == 200  # its reporter reads it
    # The browser logs each request it could not send while offline: those are expected.
    unexpected = [e for e in errors if "ERR_INTERNET_DISCONNECTED" not in e]
    assert not unexpected, unexpected


def _upload(city: City, token: str, data: bytes, media_type: str) -> httpx.Response:
    return httpx.post(
        f"{city.base}/api/v1/attachments",
        content=data,
        headers={"Content-Type": media_type}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
        timeout=30,
    )


def test_an_uploaded_photo_is_stored_without_its_gps_and_within_the_limit(
    city: City, tmp_path: Path
) -> None:
    walker = city.walkers[0]
    original = _photo_with_gps(tmp_path / "camera.jpg").read_bytes()
    answer = _upload(city, walker.token, original, "image/jpeg")
    assert answer.status_code == 201, answer.text
    content_id = answer.json()["content_id"]
    stored = (city.attachments_dir / content_id[:2] / content_id).read_bytes()
    assert answer.json()["size_bytes"] == len(stored)
    assert not Image.open(io.BytesIO(stored)).getexif().get_ifd(IFD.GPSInfo)
    assert (answer.json()["width"], answer.json()["height"]) == (3000, 2000)
    assert _upload(city, walker.token, original, "image/jpeg").json()["content_id"] == content_id

    too_large = _upload(city, walker.token, os.urandom(PHOTO_LIMIT + 1), "image/jpeg")
    assert too_large.status_code == 413
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    assert _upload(city, walker.token, gif.getvalue(), "image/gif").status_code == 415
    not_jpeg = _upload(city, walker.token, gif.getvalue(), "image/jpeg")
    assert (not_jpeg.status_code, not_jpeg.json()["code"]) == (415, "unsupported_image")
    broken = _upload(city, walker.token, original[:5000], "image/jpeg")
    assert (broken.status_code, broken.json()["code"]) == (422, "invalid_image")
    assert _upload(city, "", original, "image/jpeg").status_code == 401


def test_the_assignee_starts_and_resolves_an_incident_with_a_photo_of_the_fix(
    city: City, phone: Any, tmp_path: Path
) -> None:
    walker = city.walkers[0]
    headers = {"Authorization": f"Bearer {walker.token}"}
    reported = httpx.post(
        f"{city.base}/api/v1/incidents",
        json={
            "category": "environment.garbage",
            "description": "垃圾堆放",
            "lon": walker.lon,
            "lat": walker.lat,
            "reported_at": datetime.now().astimezone().isoformat(),
            "source": "worker",
            "reporter_id": walker.worker_id,
        },
        headers=headers,
        timeout=10,
    )
    assert reported.status_code == 202, reported.text
    incident_id = reported.json()["incident_id"]
    path = f"/api/v1/incidents/{incident_id}"
    wait_until(lambda: _get(city, path, city.supervisor).status_code == 200, 30, "stored")
    dispatched = httpx.patch(
        f"{city.base}{path}",
        json={"action": "dispatch", "assignee": walker.worker_id},
        headers={"Authorization": f"Bearer {city.supervisor}", "If-Match": '"1"'},
        timeout=10,
    )
    assert dispatched.status_code == 200, dispatched.text

    errors: list[str] = []
    page = open_app(phone, city.base, walker, errors, by="token")
    page.click('nav button[data-tab="incidents"]')
    page.click("#incidents .actions button")  # start
    page.wait_for_selector("#incidents .actions input[type=text]")
    page.fill("#incidents .actions input[type=text]", "已清理")
    page.set_input_files(
        "#incidents .actions input[type=file]", str(_photo_with_gps(tmp_path / "fixed.jpg"))
    )
    page.click("#incidents .actions button")  # resolve
    wait_until(
        lambda: _get(city, path, walker.token).json()["properties"]["status"] == "resolved",
        20,
        "the incident was resolved from the app",
    )
    detail = _get(city, path, walker.token).json()["properties"]
    assert [h["action"] for h in detail["history"]][-2:] == ["start", "resolve"]
    assert detail["history"][-1]["note"] == "已清理"
    photos = _get(city, f"{path}/attachments", city.supervisor).json()
    assert [p["purpose"] for p in photos] == ["resolution"]
    assert _get(city, photos[0]["href"], city.supervisor).status_code == 200
    assert _get(city, photos[0]["href"], city.other_supervisor).status_code == 403
    # A worker who does not hold it may not add a photo to it.
    other = city.walkers[1]
    added = httpx.post(
        f"{city.base}{path}/attachments",
        json={"content_id": photos[0]["content_id"]},
        headers={"Authorization": f"Bearer {other.token}"},
        timeout=10,
    )
    assert added.status_code == 403
    assert not errors, errors
