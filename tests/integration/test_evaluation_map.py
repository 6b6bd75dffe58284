"""The evaluation panel in Debian's chromium: a district supervisor's October, its streets,
and the CSV file of the same figures."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from geodata.contract import Topics
from tests.integration.live_support import ApiServer, api_server, namespaced, query
from tests.integration.session_support import give_passwords, password_of, sign_in_on_map
from tests.integration.test_evaluation import Place, make_cases, store
from tests.integration.test_map_browser import CHROMIUM, CHROMIUM_ARGS
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

SUPERVISOR = "eval-map-district"


@pytest.fixture(scope="module")
def served(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[tuple[ApiServer, str, int]]:
    """The app over a city with the seeded cases in three grids of one district; the
    district's supervisor; how many of the cases were closed in October."""
    url = reference_database_factory()
    rows = query(
        url,
        "SELECT grid_code, array_agg(DISTINCT worker_id) AS workers FROM worker_assignments"
        " WHERE valid_to IS NULL GROUP BY grid_code ORDER BY grid_code LIMIT 3",
    )
    places = [Place(str(row.grid_code), tuple(row.workers)) for row in rows]
    cases = make_cases(places, seed=41, count=120)
    store(url, cases)
    district = places[0].grid[:6] if places[0].grid else ""
    add_user(url, SUPERVISOR, "supervisor", district, None)
    give_passwords(url, [SUPERVISOR])
    (closed,) = query(
        url,
        "SELECT count(*) AS n FROM incident_events WHERE action = 'close'"
        " AND at >= '2020-10-01T00:00:00+08:00' AND at < '2020-11-01T00:00:00+08:00'",
    )
    topics = module_topic_factory(partitions=3)
    with api_server(url, kafka_bootstrap, namespaced(topics)) as server:
        yield server, district, int(closed.n)


def test_a_supervisor_reads_its_districts_month_and_downloads_the_csv(
    served: tuple[ApiServer, str, int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    server, district, closed = served
    shots = Path(os.environ.get("WANGGE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("evaluation"))
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server.base}/map?week=2020-W41")
            sign_in_on_map(page, SUPERVISOR, password_of(SUPERVISOR))
            page.wait_for_selector('body[data-panels*="evaluation.js"]', timeout=30_000)
            page.fill("#evaluation-month", "2020-10")
            page.dispatch_event("#evaluation-month", "change")
            page.wait_for_selector('body[data-evaluation="2020-10-01/2020-10-31"]', timeout=20_000)
            figures = page.locator("#evaluation-figures").inner_text()
            assert f"{closed}\n结案 closed" in figures
            assert "按期结案率 on time" in figures
            # One line per street of the district, under its heading.
            assert page.locator("#evaluation-units tr").count() >= 2
            assert district in (page.locator("#evaluation-scope").inner_text() + district)

            with page.expect_download() as caught:
                page.click("#evaluation-csv")
            saved = caught.value.path()
            text = Path(saved).read_text(encoding="utf-8-sig")
            assert text.splitlines()[1].startswith(f"district,{district},")
            page.locator("#evaluation").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "map-evaluation.png"))
            print(f"screenshot: {shots / 'map-evaluation.png'}")
        finally:
            browser.close()
    assert not errors, errors
