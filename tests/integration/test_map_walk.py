"""A worker's walk on /map, in Debian's chromium driven by Playwright.

A supervisor signs in with a password, finds a worker with a seeded week by name, and
sees the walk: the patrols listed as the patrols route has them (start, end, counted and
why), each drawn over as many fixes as it has check-ins, the flagged fixes counted, and a
time slider that replays the walk from its first fix. The at-risk list's event
`wangge:walk` opens the same walk.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from geodata.contract import Topics
from tests.integration.live_support import ApiServer, api_server, namespaced
from tests.integration.session_support import give_passwords, password_of, sign_in_on_map
from tests.integration.test_map_browser import CHROMIUM, CHROMIUM_ARGS
from wangge.benchmarks.walk_seed import SeededWalk, local_week_bounds, seed_walk_week
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

SUPERVISOR = "sup-walk"


@pytest.fixture(scope="module")
def served(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[tuple[ApiServer, SeededWalk, str]]:
    """The app over a city with a seeded week; a supervisor of the walk's district."""
    database_url = reference_database_factory()
    walk = seed_walk_week(database_url)
    add_user(database_url, SUPERVISOR, "supervisor", walk.grid_code[:6], None)
    give_passwords(database_url, [SUPERVISOR])
    # The same scope as the page's user, through a token: the API's answer to compare with.
    token = add_user(database_url, "walk-checker", "supervisor", walk.grid_code[:6], None)
    with api_server(database_url, kafka_bootstrap, namespaced(module_topic_factory())) as server:
        yield server, walk, token


def _api(server: ApiServer, walk: SeededWalk, token: str) -> tuple[dict[str, Any], list[Any]]:
    """The week's track and patrols as the API gives them."""
    headers = {"Authorization": f"Bearer {token}"}
    start, end = local_week_bounds(walk.week)
    base = f"{server.base}/api/v1/workers/{walk.worker_id}"
    track = httpx.get(
        f"{base}/track", params={"from": start.isoformat(), "to": end.isoformat()}, headers=headers
    ).json()
    patrols = httpx.get(f"{base}/patrols", params={"week": str(walk.week)}, headers=headers).json()
    listed = [p for grid in patrols["grids"] for p in grid["patrols"]]
    return track, sorted(listed, key=lambda p: p["started_at"])


def test_a_supervisor_finds_a_worker_and_sees_the_weeks_walk_with_its_patrols(
    served: tuple[ApiServer, SeededWalk, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    server, walk, token = served
    track, patrols = _api(server, walk, token)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{server.base}/map")
            sign_in_on_map(page, SUPERVISOR, password_of(SUPERVISOR))
            page.wait_for_selector('body:not([data-grids-rendered="0"])', timeout=30_000)
            page.wait_for_selector('body[data-panels*="walk.js"]', timeout=20_000)

            page.fill("#walk-week", str(walk.week))
            page.fill("#walk-query", track["name"])
            page.click(f'#walk-matches button[data-worker="{walk.worker_id}"]', timeout=10_000)
            page.wait_for_selector('#walk[data-state="ready"]', timeout=20_000)

            walk_panel = page.locator("#walk")
            assert walk_panel.get_attribute("data-fixes") == str(track["number_returned"])
            flagged = sum(1 for f in track["features"] if f["properties"]["flags"])
            assert walk_panel.get_attribute("data-flagged") == str(flagged) != "0"
            items = page.locator("#walk-patrols li")
            assert items.count() == len(patrols) == 7
            for i, patrol in enumerate(patrols):
                item = items.nth(i)
                assert item.get_attribute("data-started-at") == patrol["started_at"]
                assert item.get_attribute("data-ended-at") == patrol["ended_at"]
                assert item.get_attribute("data-counted") == str(patrol["counted"]).lower()
                assert item.get_attribute("data-reason") == patrol["reason"]
                # Each patrol is drawn over exactly the fixes the track says are its own.
                assert item.get_attribute("data-drawn") == str(patrol["checkin_count"])
            assert "当日已计 already counted today" in page.inner_text("#walk-patrols")

            # The slider replays the walk: Home is its first fix, End its last.
            first = track["features"][0]["properties"]["recorded_at"]
            last = track["features"][-1]["properties"]["recorded_at"]
            assert walk_panel.get_attribute("data-replay-at") == last
            page.focus("#walk-slider")
            page.keyboard.press("Home")
            page.wait_for_selector(f'#walk[data-replay-at="{first}"]', timeout=5_000)
            page.keyboard.press("End")
            page.wait_for_selector(f'#walk[data-replay-at="{last}"]', timeout=5_000)

            # Clicking a patrol highlights it and zooms to it; the shot shows the week.
            items.nth(0).click()
            page.wait_for_selector("#walk-patrols li.chosen", timeout=5_000)
            page.focus("#walk-slider")
            page.keyboard.press("Home")
            for _ in range(60):  # part-way through Monday morning's walk
                page.keyboard.press("ArrowRight")
            page.wait_for_timeout(1500)
            shots = Path(os.environ.get("WANGGE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("walk"))
            page.screenshot(path=str(shots / "map-walk.png"))
            print(f"screenshot: {shots / 'map-walk.png'}")

            # The at-risk and missed lists open a walk with this event.
            page.click("#walk-clear")
            page.wait_for_selector("#walk:not([data-state])", timeout=5_000)
            detail = {"worker_id": walk.worker_id, "week": str(walk.week)}
            page.evaluate(
                "d => window.dispatchEvent(new CustomEvent('wangge:walk', {detail: d}))", detail
            )
            page.wait_for_selector('#walk[data-state="ready"]', timeout=20_000)
            assert walk_panel.get_attribute("data-patrols") == "7"
        finally:
            browser.close()
    assert not errors, errors
