"""The coverage panel in Debian's chromium: a grid seeded as unvisited is listed and marked."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from geodata.contract import Topics
from geodata.db.engine import create_db_engine
from tests.integration.live_support import ApiServer, api_server, namespaced, query
from tests.integration.session_support import give_passwords, password_of, sign_in_on_map
from tests.integration.test_map_browser import CHROMIUM, CHROMIUM_ARGS
from wangge.benchmarks.coverage_seed import seed_week
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

SUPERVISOR = "cov-map-district"


@pytest.fixture(scope="module")
def served(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[tuple[ApiServer, str, str]]:
    """The app over a city with six workers' walked 2020-W37; a supervisor of the district
    with the most walked grids; one of its grids walked and one never walked."""
    url = reference_database_factory()
    engine = create_db_engine(url)
    try:
        seed_week(engine, url, workers=6)  # one district with a walked and an unwalked grid
    finally:
        engine.dispose()
    (walked,) = query(
        url,
        "SELECT left(grid_code, 6) AS district, min(grid_code) AS code FROM patrols"
        " WHERE counted GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    )
    (unvisited,) = query(
        url,
        "SELECT min(code) AS code FROM grids WHERE left(code, 6) ="
        f" '{int(walked.district)}'"  # six digits, from the database
        " AND code NOT IN (SELECT grid_code FROM patrols WHERE counted)",
    )
    add_user(url, SUPERVISOR, "supervisor", walked.district, None)
    give_passwords(url, [SUPERVISOR])
    topics = module_topic_factory(partitions=3)
    with api_server(url, kafka_bootstrap, namespaced(topics)) as server:
        yield server, str(walked.code), str(unvisited.code)


def test_a_grid_seeded_as_unvisited_is_listed_and_marked_on_the_map(
    served: tuple[ApiServer, str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    server, walked, unvisited = served
    shots = Path(os.environ.get("WANGGE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("coverage"))
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server.base}/map?week=2020-W37")
            sign_in_on_map(page, SUPERVISOR, password_of(SUPERVISOR))
            page.wait_for_selector('body[data-panels*="coverage.js"]', timeout=30_000)
            page.wait_for_selector('body[data-coverage-week="2020-W37"]', timeout=20_000)

            # Listed as never visited; the walked grid (visited within the 7 days) is not.
            page.fill("#coverage-days", "7")
            item = page.locator(f'#coverage-list li[data-grid="{unvisited}"]')
            assert "never" in item.inner_text()
            assert page.locator(f'#coverage-list li[data-grid="{walked}"]').count() == 0

            page.check("#coverage-toggle")
            page.wait_for_selector('body[data-coverage-layer="on"]')
            item.click()  # the map goes to the grid
            page.wait_for_selector(
                f'body[data-coverage-never-rendered~="{unvisited}"]',
                timeout=20_000,
                state="attached",
            )
            marked = page.get_attribute("body", "data-coverage-never-rendered") or ""
            assert walked not in marked.split()
            page.screenshot(path=str(shots / "map-coverage.png"))
            print(f"screenshot: {shots / 'map-coverage.png'}")
        finally:
            browser.close()
    assert not errors, errors
