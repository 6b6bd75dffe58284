"""Incident status changes on GET /api/v1/stream and on the map: a move made through the
real API, published from the outbox, reaches the supervisors of the incident's area (and
not another area's) and recolours the incident on the supervisors' map in a browser."""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from event_consumers.outbox import INCIDENT_STATUS_OUTBOX, OutboxPublisher
from geodata.contract import Topics
from tests.integration.incident_support import City, accounts_of, pick_city, store_incident
from tests.integration.live_support import ApiServer, SseClient, api_server, namespaced
from tests.integration.test_auth import bearer
from tests.integration.test_map_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.integration


@dataclass
class Served:
    """The API in a process of its own over a fresh city, and what the tests need of it."""

    server: ApiServer
    database_url: str
    bootstrap: str
    topics: Topics
    city: City
    tokens: dict[str, str]

    def move(self, incident_id: str, body: dict[str, Any], version: int) -> None:
        """PATCH as the admin, then publish the outbox as the intake stage would."""
        response = httpx.patch(
            f"{self.server.base}/api/v1/incidents/{incident_id}",
            json=body,
            headers={**bearer(self.tokens["admin"]), "If-Match": f'"{version}"'},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        publisher = OutboxPublisher(
            self.database_url, self.bootstrap, self.topics.incident_status, INCIDENT_STATUS_OUTBOX
        )
        try:
            assert publisher.publish_pending() >= 1
        finally:
            publisher.close()

    def stream(self, caller: str) -> SseClient:
        """A stream of `caller`'s, live."""
        client = SseClient(f"{self.server.base}/api/v1/stream", self.tokens[caller]).start()
        client.wait_for("status", live=True)
        return client


def _unexpected(message: Any) -> bool:
    # The page asks GET /api/v1/session before it knows who signs in: a 401 that chromium
    # logs as a failed load, and the page's way of learning that nobody has yet.
    text = str(message.text)
    return message.type == "error" and not ("Failed to load resource" in text and "401" in text)


@pytest.fixture(scope="module")
def served(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[Served]:
    """The app over a fresh reference city, with the incident workflow's callers."""
    database_url = reference_database_factory()
    topics = module_topic_factory(partitions=3)
    city = pick_city(database_url)
    tokens = accounts_of(database_url, city)
    with api_server(database_url, kafka_bootstrap, namespaced(topics)) as server:
        yield Served(server, database_url, kafka_bootstrap, topics, city, tokens)


def test_a_move_reaches_the_supervisors_of_its_area_and_no_other(served: Served) -> None:
    city = served.city
    in_x = store_incident(served.database_url, city.grid_a, staff=None)
    in_y = store_incident(served.database_url, city.grid_b, staff=None)
    streams = {name: served.stream(name) for name in ("sup_x", "sup_c", "sup_y", "admin")}

    served.move(in_x, {"action": "dispatch", "assignee": city.worker_a}, 1)
    served.move(in_y, {"action": "cancel", "note": "重复"}, 1)

    seen = streams["sup_x"].wait_for("incident_status", incident_id=in_x)
    assert (seen["from_status"], seen["to_status"], seen["version"]) == (
        "reported",
        "dispatched",
        2,
    )
    assert seen["assignee"] == city.worker_a
    assert seen["grid_code"] == city.grid_a
    streams["sup_c"].wait_for("incident_status", incident_id=in_x, to_status="dispatched")
    streams["sup_y"].wait_for("incident_status", incident_id=in_y, to_status="cancelled")
    streams["admin"].wait_for("incident_status", incident_id=in_x)
    # The admin's last event came after both: the others have all of theirs by now.
    streams["admin"].wait_for("incident_status", incident_id=in_y)

    def incidents_seen(name: str) -> set[str]:
        return {
            data["incident_id"]
            for kind, data in streams[name].received()
            if kind == "incident_status"
        }

    assert incidents_seen("sup_x") == incidents_seen("sup_c") == {in_x}
    assert incidents_seen("sup_y") == {in_y}


def test_the_map_shows_an_incidents_moves_as_they_happen(
    served: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    city = served.city
    ours = store_incident(served.database_url, city.grid_a, staff=None)
    theirs = store_incident(served.database_url, city.grid_b, staff=None)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if _unexpected(m) else None)
            page.goto(f"{served.server.base}/map")
            page.fill("#token", served.tokens["sup_x"])
            page.click("#login button[type=submit]")
            # The open incidents of the district are listed when the map opens.
            item = f'#incident-list li[data-incident-id="{ours}"]'
            page.wait_for_selector(f'{item}[data-status="reported"]', timeout=30_000)
            assert page.query_selector(f'#incident-list li[data-incident-id="{theirs}"]') is None
            page.wait_for_selector('body[data-live="true"]', timeout=20_000)
            open_before = int(page.inner_text("#n-open"))

            served.move(theirs, {"action": "dispatch", "assignee": city.worker_b}, 1)
            served.move(ours, {"action": "dispatch", "assignee": city.worker_a}, 1)
            page.wait_for_selector(f'{item}[data-status="dispatched"][data-version="2"]')
            assert "W" in page.inner_text(item)  # the assignee's id is shown
            served.move(ours, {"action": "cancel", "note": "重复上报"}, 2)
            page.wait_for_selector(f'{item}[data-status="cancelled"]', timeout=10_000)
            page.wait_for_selector('body[data-statuses="2"]', timeout=10_000)
            assert int(page.inner_text("#n-open")) == open_before - 1
            # Another district's move never reached this supervisor's page.
            assert page.query_selector(f'#incident-list li[data-incident-id="{theirs}"]') is None

            screenshot_dir = Path(
                os.environ.get("WANGGE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("map")
            )
            page.screenshot(path=str(screenshot_dir / "map-incidents.png"))
            print(f"screenshot: {screenshot_dir / 'map-incidents.png'}")
        finally:
            browser.close()
    assert not errors, errors
