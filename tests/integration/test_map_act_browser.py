"""Acting from /map in Debian's chromium, on a 1024 x 768 tablet viewport, as a supervisor
signed in with a password: dispatch an incident, meet a stale version, close it; export the
week's table; call a missed worker through a real local webhook; walk and as-of events.

One page session for the whole story (the browser and the server are the slow parts).
"""

import csv
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from geodata.contract import Topics
from geodata.notify import NotifyConfig
from grid_service.app import ApiConfig
from tests.integration.incident_support import store_incident
from tests.integration.live_support import query, serving
from tests.integration.notify_support import Receiver, receiver
from tests.integration.session_support import give_passwords, password_of, sign_in_on_map
from tests.integration.test_map_act_api import _without_as_of
from tests.integration.test_map_browser import CHROMIUM, CHROMIUM_ARGS
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

WEEK = "2020-W37"
AS_OF = "2020-09-13T22:00:00+08:00"  # Sunday night: whoever walked nothing has missed
SCREENSHOT = Path(__file__).parents[2] / "docs" / "screenshots" / "map-incident.png"


@dataclass
class Served:
    """The app, its city and the accounts of the story."""

    base: str
    database_url: str
    grid: str
    worker: str
    incident: str
    supervisor_token: str
    worker_token: str
    hook: Receiver


@pytest.fixture(scope="module")
def served(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[Served]:
    """A fresh city; a supervisor of one district (password), a worker of one of its
    grids (token), a report in that grid, and a webhook that fails once, then accepts."""
    database_url = reference_database_factory()
    (row,) = query(
        database_url,
        "SELECT grid_code, worker_id FROM worker_assignments WHERE valid_to IS NULL"
        " ORDER BY grid_code, worker_id LIMIT 1",
    )
    grid, worker = str(row.grid_code), str(row.worker_id)
    supervisor_token = add_user(database_url, "sup-act", "supervisor", grid[:6], None)
    worker_token = add_user(database_url, "worker-act", "worker", None, worker)
    give_passwords(database_url, ["sup-act"])
    incident = store_incident(database_url, grid, staff=worker, reporter=worker)
    with receiver(failures=1) as hook:
        notify = NotifyConfig(webhook_url=hook.url, retry_base_s=0.2, retry_max_s=0.5, poll_s=0.2)
        config = ApiConfig(database_url, kafka_bootstrap, module_topic_factory(), notify=notify)
        with serving(config) as base:
            yield Served(
                base, database_url, grid, worker, incident, supervisor_token, worker_token, hook
            )


def _patch_as_worker(served: Served, version: int, body: dict[str, Any]) -> int:
    answer = httpx.patch(
        f"{served.base}/api/v1/incidents/{served.incident}",
        json=body,
        headers={"Authorization": f"Bearer {served.worker_token}", "If-Match": f'"{version}"'},
    )
    assert answer.status_code == 200, answer.text
    return int(answer.json()["properties"]["version"])


def _api_rows(served: Served) -> list[list[str]]:
    answer = httpx.get(
        f"{served.base}/api/v1/compliance",
        params={"level": "grid", "week": WEEK, "as_of": AS_OF},
        headers={"Authorization": f"Bearer {served.supervisor_token}"},
    ).json()
    return [
        [answer["week"], g["grid_code"], g["name"] or "", w["worker_id"], w["name"],
         str(w["required"]), str(w["counted"]), w["status"], " ".join(w["counted_days"])]
        for g in answer["items"]
        for w in g["workers"]
    ]  # fmt: skip


OWN_LAYERS = ("districts-", "grids-", "communities-", "streets-", "live-", "incidents-")
"""The layers map.js adds; another panel's layer is that panel's tests' business."""


def _unexpected(message: Any) -> bool:
    # Before sign-in the page asks GET /api/v1/session (401), and the stale PATCH is a
    # 412 the page handles: chromium logs both as failed loads.
    text = str(message.text)
    if message.type != "error":
        return False
    if "Failed to load resource" in text and any(code in text for code in ("401", "412")):
        return False
    layers = re.findall(r'layers\.([\w-]+)|layer "([\w-]+)"', text)
    named = [a or b for a, b in layers]
    return not (named and not any(n.startswith(OWN_LAYERS) for n in named))


def test_a_supervisor_acts_on_an_incident_a_worker_and_the_week_from_a_tablet(
    served: Served,
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1024, "height": 768})
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if _unexpected(m) else None)
            page.add_init_script(
                "window.__events = [];"
                "for (const t of ['wangge:walk', 'wangge:as-of'])"
                " window.addEventListener(t, (e) => window.__events.push([t, e.detail]));"
            )
            page.goto(f"{served.base}/map?week={WEEK}&as_of={AS_OF.replace('+', '%2B')}")
            sign_in_on_map(page, "sup-act", password_of("sup-act"))

            # Sunday night of the seeded week: the grid's worker has missed.
            missed = f"#attention li.missed[data-worker-id='{served.worker}']"
            page.wait_for_selector(missed, timeout=30_000)
            assert page.input_value("#as-of") == "2020-09-13T22:00"

            # Dispatch from the incident's card.
            item = f"#incident-list li[data-incident-id='{served.incident}']"
            page.click(item, timeout=20_000)
            page.wait_for_selector("#incident-detail[data-version='1'] [data-act='dispatch']")
            page.click("#incident-detail [data-act='dispatch']")
            page.select_option("#incident-detail select[name='assignee']", served.worker)
            page.click("#incident-detail .act-form button[type='submit']")
            page.wait_for_selector("#incident-detail[data-status='dispatched'][data-version='2']")
            page.wait_for_selector(f"{item}[data-status='dispatched']")

            # Meanwhile the worker starts and resolves it: the card still shows version 2.
            version = _patch_as_worker(served, 2, {"action": "start"})
            _patch_as_worker(served, version, {"action": "resolve", "note": "已清理 cleaned"})
            page.click("#incident-detail [data-act='cancel']")
            page.fill("#incident-detail textarea[name='note']", "重复上报 duplicate")
            page.click("#incident-detail .act-form button[type='submit']")
            page.wait_for_selector("#incident-detail[data-status='resolved'][data-version='4']")
            assert page.get_attribute("#incident-detail", "data-stale") == "true"
            assert "changed meanwhile" in page.inner_text("#card-notice")

            # Close it, as it now stands; its history shows both of the supervisor's moves.
            page.click("#incident-detail [data-act='close']")
            page.click("#incident-detail .act-form button[type='submit']")
            page.wait_for_selector("#incident-detail[data-status='closed'][data-version='5']")
            history = page.locator("#incident-detail .history li")
            actions = [history.nth(i).get_attribute("data-action") for i in range(history.count())]
            assert actions == ["dispatch", "start", "resolve", "close"]
            for action in ("dispatch", "close"):
                assert "sup-act" in page.inner_text(f"#incident-detail li[data-action='{action}']")
            page.wait_for_timeout(300)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))

            # The export downloads the API's rows for this week and moment.
            with page.expect_download() as download_info:
                page.click("#export-csv")
            download = download_info.value
            assert download.suggested_filename == f"compliance-{WEEK}-{served.grid[:6]}.csv"
            text = Path(download.path()).read_bytes().decode("utf-8-sig")
            _, *rows = csv.reader(io.StringIO(text))
            assert [_without_as_of(row) for row in rows] == _api_rows(served)

            # The worker's walk, and a call that reaches the webhook after one failure.
            page.click(f"{missed} button.walk")
            page.click(f"{missed} button.notify")
            page.wait_for_selector(f"{missed}[data-call='delivered']", timeout=20_000)
            assert [status for status, _, _ in served.hook.received] == [503, 200]
            body = served.hook.received[-1][2]
            assert (body["worker_id"], body["week"], body["status"]) == (
                served.worker,
                WEEK,
                "missed",
            )

            # Back to now: the as-of event fires and the URL forgets the moment.
            page.click("#as-of-now")
            page.wait_for_function("!new URL(location.href).searchParams.has('as_of')")
            events = page.evaluate("window.__events")
            assert ["wangge:walk", {"worker_id": served.worker, "week": WEEK}] in events
            assert ["wangge:as-of", {"as_of": None}] in events
            if os.environ.get("WANGGE_SCREENSHOT_DIR"):
                page.screenshot(path=str(Path(os.environ["WANGGE_SCREENSHOT_DIR"]) / "act.png"))
        finally:
            browser.close()
    assert not errors, errors
