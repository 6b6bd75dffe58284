"""GET /map in a real browser: Debian's chromium driven by Playwright, never a downloaded one.

A supervisor pastes a token, the grids render coloured by compliance, and a check-in and a
status change produced to the broker show up on the map and in the counters.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from geodata.contract import Topics
from tests.integration.live_support import ApiServer, api_server, namespaced, produce, query
from tests.live_events import (
    as_bytes,
    checkin_assignment,
    compliance_change,
    incident_assignment,
)
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# Headless chromium has no GPU: WebGL (MapLibre) runs on SwiftShader, which chromium
# offers to pages only when asked.
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def _staffed_grid(database_url: str) -> dict[str, Any]:
    """The first grid with staff, one of its workers and a point inside it."""
    (row,) = query(
        database_url,
        "SELECT g.code, min(a.worker_id) AS worker_id, ST_X(ST_PointOnSurface(g.geom)) AS lon,"
        " ST_Y(ST_PointOnSurface(g.geom)) AS lat"
        " FROM grids g JOIN worker_assignments a ON a.grid_code = g.code"
        " WHERE g.valid_to IS NULL GROUP BY g.code, g.geom ORDER BY g.code LIMIT 1",
    )
    return dict(row._mapping)


@pytest.fixture(scope="module")
def served_city(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[tuple[ApiServer, Topics, str, dict[str, Any]]]:
    """The app over a fresh reference city; a supervisor's token of one district; a grid."""
    database_url = reference_database_factory()
    topics = module_topic_factory(partitions=3)
    grid = _staffed_grid(database_url)
    token = add_user(database_url, "wall-screen", "supervisor", grid["code"][:6], None)
    with api_server(database_url, kafka_bootstrap, namespaced(topics)) as server:
        yield server, topics, token, grid


def test_supervisor_sees_grids_by_compliance_and_live_checkins(
    served_city: tuple[ApiServer, Topics, str, dict[str, Any]],
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    server, topics, token, grid = served_city
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{server.base}/map")
            page.fill("#token", token)
            page.click("#login button[type=submit]")
            # Waits by selector: the page's CSP forbids eval, so no wait_for_function.
            page.wait_for_selector('body:not([data-grids-rendered="0"])', timeout=30_000)
            page.wait_for_selector('body[data-live="true"]', timeout=20_000)
            assert int(page.inner_text("#total")) > 0  # the district's workers this week
            met_before = int(page.inner_text("#n-met"))

            code = grid["code"]
            checkin = checkin_assignment(code, lon=grid["lon"], lat=grid["lat"])
            incident = incident_assignment(code, lon=grid["lon"] + 0.003, lat=grid["lat"])
            change = compliance_change(code, grid["worker_id"], week=page.input_value("#week"))
            produce(
                kafka_bootstrap,
                [
                    (topics.assignments, code, as_bytes(checkin)),
                    (topics.assignments, code, as_bytes(incident)),
                    (topics.compliance, grid["worker_id"], as_bytes(change)),
                ],
            )
            page.wait_for_selector('body[data-checkins="1"][data-incidents="1"]', timeout=20_000)
            page.wait_for_selector('body:not([data-live-rendered="0"])', timeout=10_000)
            page.wait_for_selector('body[data-changes="1"]', timeout=10_000)
            assert page.inner_text("#checkins") == "1"
            assert int(page.inner_text("#n-met")) == met_before + 1

            page.click("#map", position={"x": 720, "y": 450})
            screenshot_dir = Path(
                os.environ.get("WANGGE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("map")
            )
            page.wait_for_timeout(500)
            page.screenshot(path=str(screenshot_dir / "map.png"))
            print(f"screenshot: {screenshot_dir / 'map.png'}")
        finally:
            browser.close()
    assert not errors, errors
