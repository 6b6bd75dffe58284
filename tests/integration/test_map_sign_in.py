"""Signing in to /map with a name and a password, in Debian's chromium driven by Playwright.

A supervisor imported with a one-time password opens the map, is asked to choose a
password in the same dialog, and sees its district's grids; signing out ends the session,
and the chosen password signs in again. The session cookie is HttpOnly and SameSite=Strict.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from geodata.contract import Topics
from tests.integration.live_support import ApiServer, api_server, namespaced, query
from tests.integration.test_map_browser import CHROMIUM, CHROMIUM_ARGS
from wangge.users_cli import add_user, reset_password

pytestmark = pytest.mark.integration

CHOSEN = "Weibin-grids-every-week"


@pytest.fixture(scope="module")
def served(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[tuple[ApiServer, str, str]]:
    """The app over a fresh reference city; a supervisor of one district, one-time password."""
    database_url = reference_database_factory()
    (row,) = query(database_url, "SELECT min(code) AS code FROM districts")
    district = str(row.code)
    add_user(database_url, "sup-weibin", "supervisor", district, None)
    one_time = reset_password(database_url, "sup-weibin")
    topics = module_topic_factory(partitions=3)
    with api_server(database_url, kafka_bootstrap, namespaced(topics)) as server:
        yield server, one_time, district


def _unexpected(message: Any) -> bool:
    # The page asks GET /api/v1/session before anyone signed in (401) and is told that a
    # one-time password must be changed (403): chromium logs both as failed loads.
    text = str(message.text)
    return message.type == "error" and not (
        "Failed to load resource" in text and ("401" in text or "403" in text)
    )


def test_a_supervisor_signs_in_with_a_password_and_sees_the_grids(
    served: tuple[ApiServer, str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    server, one_time, district = served
    shots = Path(os.environ.get("WANGGE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("sign-in"))
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if _unexpected(m) else None)
            page.goto(f"{server.base}/map")
            page.wait_for_selector("#login[open] #username", timeout=20_000)
            page.screenshot(path=str(shots / "sign-in.png"))

            page.fill("#username", "sup-weibin")
            page.fill("#password", "not-the-password")
            page.click("#login-submit")
            page.wait_for_selector("#login-error:has-text('wrong name or password')")

            page.fill("#password", one_time)
            page.click("#login-submit")
            page.wait_for_selector("#new-password-fields:not([hidden])", timeout=10_000)
            assert "one-time" in page.inner_text("#login-error")
            page.fill("#new-password", CHOSEN)
            page.fill("#new-password-again", CHOSEN + "x")
            page.click("#login-submit")
            page.wait_for_selector("#login-error:has-text('differ')")
            page.fill("#new-password-again", CHOSEN)
            page.screenshot(path=str(shots / "sign-in-new-password.png"))
            page.click("#login-submit")

            page.wait_for_selector('body:not([data-grids-rendered="0"])', timeout=30_000)
            assert page.get_attribute("body", "data-signed-in") == "sup-weibin"
            assert "sup-weibin" in page.inner_text("#who")
            assert int(page.inner_text("#total")) > 0
            assert district in page.inner_text("#area")
            (cookie,) = [c for c in context.cookies() if c["name"] == "wangge_session"]
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"
            assert cookie["value"].startswith("ws_")
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "signed-in.png"))

            page.click("#logout")
            page.wait_for_selector("#login[open] #username", timeout=20_000)
            assert not [c for c in context.cookies() if c["name"] == "wangge_session"]
            page.fill("#username", "sup-weibin")
            page.fill("#password", CHOSEN)
            page.click("#login-submit")
            page.wait_for_selector('body:not([data-grids-rendered="0"])', timeout=30_000)
            print(f"screenshots: {shots}")
        finally:
            browser.close()
    assert not errors, errors
