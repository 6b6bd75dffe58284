"""The workers' app at /app as a worker uses it: Debian's chromium on a 360-px phone screen,
the real API, the real consumers, PostGIS and the broker.

The phone's GPS is the test's: the context has the geolocation permission and the test
sets each position along a walk inside the worker's real grid of the reference city; the
page's clock is the test's too (Playwright's clock), so 12 minutes walk in seconds.
"""

import io
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from wangge.users_cli import add_user

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
PHONE: "ViewportSize" = {"width": 360, "height": 740}
PHOTO_LIMIT = 2 * 2**20
"""The deployment's upload limit in these tests (WANGGE_ATTACHMENT_MAX_BYTES)."""
GPS = {1: "N", 2: (34.0, 22.0, 1.5), 3: "E", 4: (107.0, 9.0, 2.0)}


@dataclass(frozen=True)
class Walker:
    """A worker with its token, its grid, and a circle inside the grid to walk."""

    worker_id: str
    token: str
    grid_code: str
    lon: float
    lat: float
    radius_deg: float

    def around(self, steps: int, step: int) -> tuple[float, float]:
        """The `step`-th of `steps` points on the circle, starting east of the centre."""
        angle = 2 * math.pi * step / steps
        return (
            self.lon + self.radius_deg * math.cos(angle) / math.cos(math.radians(self.lat)),
            self.lat + self.radius_deg * math.sin(angle),
        )


@dataclass(frozen=True)
class City:
    """The served city: its database, the API's base URL, two walkers and supervisors."""

    database_url: str
    base: str
    walkers: tuple[Walker, Walker]
    supervisor: str  # of the walkers' district
    other_supervisor: str  # of another district
    attachments_dir: Path


def _walkers(database_url: str) -> list[dict[str, Any]]:
    # Two staffed grids of one district, each with its first worker and the largest circle
    # inside it (PostGIS in degrees: a circle there stays inside, whatever its size in m).
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT g.code, a.worker_id, ST_X(c.center), ST_Y(c.center), c.radius
            FROM grids g
            JOIN LATERAL (SELECT min(worker_id) AS worker_id FROM worker_assignments wa
                          WHERE wa.grid_code = g.code AND wa.valid_to IS NULL) a ON true
            CROSS JOIN LATERAL ST_MaximumInscribedCircle(g.geom) c
            WHERE g.valid_to IS NULL AND a.worker_id IS NOT NULL
              AND left(g.code, 6) = (SELECT min(left(code, 6)) FROM grids)
            ORDER BY g.code LIMIT 2
            """
        ).fetchall()
    return [
        {"grid_code": c, "worker_id": w, "lon": x, "lat": y, "radius_deg": r}
        for c, w, x, y, r in rows
    ]


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
    found = _walkers(database_url)
    # Only the walkers stay assigned: the compliance stage re-evaluates everyone assigned at
    # each local midnight, which would be all 2,381 workers of the city.
    keep_assigned_only(database_url, [w["worker_id"] for w in found])
    walkers = tuple(
        Walker(
            token=add_user(
                database_url, f"walker-{w['worker_id']}", "worker", None, w["worker_id"]
            ),
            # Half the largest inscribed circle, at most 55 m: steps of 15 m or less.
            **{**w, "radius_deg": min(w["radius_deg"] / 2, 55 / 111_320)},
        )
        for w in found
    )
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
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport=PHONE,
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
                permissions=["geolocation"],
                geolocation={"longitude": city.walkers[0].lon, "latitude": city.walkers[0].lat},
                locale="zh-CN",
                service_workers="allow",
            )
            yield context
        finally:
            browser.close()


def _open_app(context: Any, city: City, walker: Walker, errors: list[str]) -> Any:
    """The app signed in as `walker`, its grid drawn; the page's clock starts 14 minutes
    ago, so that a 12-minute walk ends before the server's now."""
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.clock.install(time=datetime.now() - timedelta(minutes=14))
    lon, lat = walker.around(24, 0)
    context.set_geolocation({"longitude": lon, "latitude": lat, "accuracy": 8})
    page.goto(f"{city.base}/app/")
    page.fill("#token", walker.token)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector('body[data-map="1"]', timeout=30_000)
    return page


def _walk(context: Any, page: Any, walker: Walker, steps: int, kept_before: int) -> None:
    """Move one step every 30 s of the page's clock; the app keeps one fix per step."""
    for step in range(1, steps + 1):
        lon, lat = walker.around(24, step)
        context.set_geolocation({"longitude": lon, "latitude": lat, "accuracy": 8})
        page.clock.fast_forward(30_000)
        page.wait_for_selector(f'body[data-kept="{kept_before + step}"]', timeout=10_000)


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: WANGGE_SCREENSHOT_DIR (docs/screenshots holds the committed
    ones, taken so), else a temporary folder, so that a test run changes no file."""
    folder = os.environ.get("WANGGE_SCREENSHOT_DIR")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


def _screenshot(page: Any, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)
    page.screenshot(path=str(folder / name))
    print(f"screenshot: {folder / name}")


def _get(city: City, path: str, token: str) -> httpx.Response:
    return httpx.get(f"{city.base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_twelve_minute_patrol_shows_in_the_patrols_and_counts_one_of_three(
    city: City, phone: Any, screenshots: Path
) -> None:
    walker = city.walkers[0]
    errors: list[str] = []
    page = _open_app(phone, city, walker, errors)
    page.click("#patrol-button")
    page.wait_for_selector('body[data-patrol="on"][data-kept="1"]')
    _walk(phone, page, walker, steps=24, kept_before=1)  # 24 steps of 30 s: 12 minutes
    assert page.inner_text("#elapsed").startswith("12:")  # the clock also ran on meanwhile
    assert page.inner_text("#fixes") == "25"
    _screenshot(page, screenshots, "app-patrol.png")
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
    _screenshot(page, screenshots, "app-week.png")
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
    page = _open_app(phone, city, walker, errors)
    page.wait_for_selector('body[data-sw="controlled"]', timeout=20_000)

    phone.set_offline(True)
    page.wait_for_selector('body[data-online="false"]')
    page.click("#patrol-button")
    page.wait_for_selector('body[data-kept="1"]')
    _walk(phone, page, walker, steps=19, kept_before=1)
    page.click("#patrol-button")  # standing where the last fix was kept: no 21st
    page.wait_for_selector('body[data-patrol="off"][data-waiting="20"]')

    page.click('nav button[data-tab="report"]')
    page.select_option("#category", "public_facilities.manhole_cover")
    page.fill("#note", "井盖缺失 manhole cover missing")
    page.set_input_files("#photos", str(_photo_with_gps(tmp_path / "camera.jpg")))
    page.wait_for_selector('body[data-photos="1"]', timeout=20_000)
    _screenshot(page, screenshots, "app-report.png")
    page.click("#report-form button[type=submit]")
    page.wait_for_selector('body[data-waiting="21"]')

    page.reload()  # offline: the service worker answers with the app
    page.wait_for_selector('body[data-map="1"][data-waiting="21"]', timeout=20_000)
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
    page = _open_app(phone, city, walker, errors)
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
