"""Signing in to the workers' app at /app with a name and a password, as a worker does:
Debian's chromium on a 360-px phone screen against the real API over PostGIS and the broker.

A worker made with a one-time password chooses its own and sees its grid; wrong
passwords, a lock-out and the rate limit are said in the worker's language; a session
that ended while the phone was offline asks for a sign-in and keeps the queue, which then
drains with the session cookie; the service worker keeps no answer of the API; signing
out ends the session and leaves nothing of the worker to read.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from geodata.contract import Topics
from geodata.passwords import SignInPolicy
from grid_service.app import ApiConfig
from grid_service.auth import AuthConfig
from grid_service.session_cookie import COOKIE_NAME
from tests.integration.live_support import serving
from tests.integration.session_support import FETCH, give_passwords, password_of
from tests.integration.worker_app_support import (
    Walker,
    chromium,
    new_page,
    new_phone,
    open_app,
    screenshot,
    screenshot_dir,
    sign_in,
    staffed_grids,
    walk,
)
from wangge.users_cli import add_user, reset_password

pytestmark = pytest.mark.integration

CHOSEN = "Weibin-patrols-thrice"
LOCK_AFTER = 3
"""Failures in a row that lock a name in these tests (WANGGE_SIGN_IN_MAX_FAILURES)."""
SIGN_IN_BURST = 24
"""Sign-in attempts this module's client address may make at once; the rate test spends
the rest. The refill (one per 10 minutes) gives nothing back within a run."""


@dataclass(frozen=True)
class Served:
    """The API's base URL, a worker with a one-time password and its one-time password, a
    worker with a chosen password, and an account to lock."""

    base: str
    newcomer: Walker
    one_time: str
    walker: Walker
    to_lock: str


@pytest.fixture(scope="module")
def served(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[Served]:
    """The API alone (no consumers: what is asked of it here ends at the gateway)."""
    database_url = reference_database_factory()
    topics = module_topic_factory(partitions=1)
    walkers = []
    for grid in staffed_grids(database_url, 2):
        name = f"walker-{grid['worker_id']}"
        token = add_user(database_url, name, "worker", None, grid["worker_id"])
        walkers.append(Walker(name=name, password=password_of(name), token=token, **grid))
    newcomer, walker = walkers
    one_time = reset_password(database_url, newcomer.name)
    to_lock = "desk-forgetful"
    add_user(database_url, to_lock, "supervisor", newcomer.grid_code[:6], None)
    give_passwords(database_url, [walker.name, to_lock])
    auth = AuthConfig(
        sign_in=SignInPolicy(max_failures=LOCK_AFTER),
        sign_in_rate_per_s=1 / 600,
        sign_in_burst=SIGN_IN_BURST,
    )
    with serving(ApiConfig(database_url, kafka_bootstrap, topics, auth=auth)) as base:
        yield Served(base, newcomer, one_time, walker, to_lock)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for the module; each test has its own phone (context)."""
    with chromium() as launched:
        yield launched


def _unexpected(errors: list[str]) -> list[str]:
    # Refusals the page asks for and shows (401, 403, 422, 429) and requests it could not
    # send offline: chromium logs each as an error.
    expected = ("status of 401", "status of 403", "status of 422", "status of 429")
    return [
        e
        for e in errors
        if not any(code in e for code in expected) and "ERR_INTERNET_DISCONNECTED" not in e
    ]


def _session_cookie(context: Any) -> str | None:
    found = [c for c in context.cookies() if c["name"] == COOKIE_NAME]
    return found[0]["value"] if found else None


def _who(base: str, session_id: str) -> httpx.Response:
    return httpx.get(f"{base}/api/v1/session", cookies={COOKIE_NAME: session_id}, timeout=10)


def test_a_worker_with_a_one_time_password_chooses_its_own_and_sees_its_grid(
    served: Served, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    worker = served.newcomer
    shots = screenshot_dir(tmp_path_factory.mktemp("screenshots"))
    errors: list[str] = []
    phone = new_phone(browser, worker)
    page = new_page(phone, worker, errors)
    page.goto(f"{served.base}/app/")
    sign_in(page, worker.name, "not-my-password")
    page.wait_for_selector("#signin-error:has-text('用户名或密码错误')")
    screenshot(page, shots, "app-sign-in.png")

    sign_in(page, worker.name, served.one_time)
    page.wait_for_selector('body[data-signin-mode="change"] #new-password:visible')
    assert "一次性密码" in page.inner_text("#signin")
    page.fill("#new-password", CHOSEN)
    page.fill("#new-password-again", CHOSEN + "!")
    page.click("#signin-submit")
    page.wait_for_selector("#signin-error:has-text('两次输入的新密码不一致')")
    page.fill("#new-password", worker.name + "-2024")  # contains the name: refused
    page.fill("#new-password-again", worker.name + "-2024")
    page.click("#signin-submit")
    page.wait_for_selector("#signin-error:has-text('新密码不符合要求')")
    page.fill("#new-password", CHOSEN)
    page.fill("#new-password-again", CHOSEN)
    page.click("#signin-submit")

    page.wait_for_selector('body[data-map="1"]', timeout=30_000)
    assert worker.worker_id in page.inner_text("#worker-name")
    assert page.locator("#map .grid").count() >= 1
    (cookie,) = [c for c in phone.cookies() if c["name"] == COOKIE_NAME]
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    who = _who(served.base, cookie["value"]).json()
    assert (who["via"], who["worker_id"]) == ("session", worker.worker_id)
    # The page keeps no secret: no token, and the cookie is out of its scripts' reach.
    stored = page.evaluate("JSON.stringify(localStorage) + document.cookie")
    assert "wg_" not in stored
    assert cookie["value"] not in stored

    page.click('nav button[data-tab="week"]')
    page.click("#sign-out")
    page.wait_for_selector("#signin:not([hidden])")
    assert _session_cookie(phone) is None
    assert _who(served.base, cookie["value"]).status_code == 401  # ended on the server
    assert page.evaluate("localStorage.getItem('wangge.app.me')") is None
    assert page.input_value("#username") == worker.name  # only the name is remembered
    sign_in(page, worker.name, CHOSEN)
    page.wait_for_selector('body[data-map="1"]', timeout=30_000)
    phone.close()
    assert not _unexpected(errors), errors


def test_a_session_ended_while_offline_asks_for_a_sign_in_and_the_queue_then_drains(
    served: Served, browser: Any
) -> None:
    walker = served.walker
    errors: list[str] = []
    phone = new_phone(browser, walker)
    page = open_app(phone, served.base, walker, errors)
    page.wait_for_selector('body[data-sw="controlled"]', timeout=20_000)
    posts: list[Any] = []
    page.on(
        "response",
        lambda r: (
            posts.append(r)
            if r.request.method == "POST" and r.url.endswith("/api/v1/checkins")
            else None
        ),
    )
    phone.set_offline(True)
    page.wait_for_selector('body[data-online="false"]')
    page.click("#patrol-button")
    page.wait_for_selector('body[data-kept="1"]')
    walk(phone, page, walker, steps=2, kept_before=1)
    page.click("#patrol-button")
    page.wait_for_selector('body[data-patrol="off"][data-waiting="3"]')

    first = _session_cookie(phone)
    assert first is not None
    ended = httpx.delete(
        f"{served.base}/api/v1/session", cookies={COOKIE_NAME: first}, headers=FETCH, timeout=10
    )
    assert ended.status_code == 204  # e.g. its 12 hours ran out while the phone was away
    phone.set_offline(False)
    page.wait_for_selector("#signin:not([hidden])", timeout=20_000)
    assert "登录已过期" in page.inner_text("#signin-error")
    assert "3" in page.inner_text("#signin-error")
    assert page.get_attribute("body", "data-waiting") == "3"  # kept on the phone
    assert [p.status for p in posts] == [401]

    sign_in(page, walker.name, walker.password)
    page.wait_for_selector('body[data-map="1"][data-waiting="0"]', timeout=30_000)
    second = _session_cookie(phone)
    assert second is not None
    assert second != first
    queued = [e["event_id"] for e in posts[0].request.post_data_json["checkins"]]
    accepted = [p for p in posts if p.status == 202]
    sent = [e["event_id"] for p in accepted for e in p.request.post_data_json["checkins"]]
    assert len(set(queued)) == 3
    assert sorted(sent) == sorted(queued)
    for post in accepted:
        headers = post.request.all_headers()
        assert headers["x-requested-with"] == "wangge"
        assert "authorization" not in headers
        assert f"{COOKIE_NAME}={second}" in headers["cookie"]

    # What the worker read while signed in stays out of the service worker's cache.
    page.click('nav button[data-tab="week"]')
    page.wait_for_selector('#week-count[data-required="3"]', timeout=20_000)
    cached = page.evaluate(
        """async () => {
          const urls = [];
          for (const name of await caches.keys()) {
            for (const request of await (await caches.open(name)).keys()) urls.push(request.url);
          }
          return urls;
        }"""
    )
    paths = {httpx.URL(url).path for url in cached}
    assert "/app/app.js" in paths
    assert all(path.startswith("/app/") for path in paths), paths
    phone.close()
    assert not _unexpected(errors), errors


def test_wrong_passwords_lock_the_name_and_too_many_tries_are_slowed_in_english(
    served: Served, browser: Any
) -> None:
    errors: list[str] = []
    phone = new_phone(browser, served.walker)
    page = new_page(phone, served.walker, errors)
    page.goto(f"{served.base}/app/")
    page.wait_for_selector("#signin:not([hidden])")
    page.click("#lang")
    page.wait_for_selector('html[lang="en"]')
    said = []
    for _ in range(LOCK_AFTER + 1):
        sign_in(page, served.to_lock, "not-the-password")
        page.wait_for_selector("#signin-error:not(:empty)")
        said.append(page.inner_text("#signin-error"))
        page.evaluate("document.querySelector('#signin-error').textContent = ''")
    assert said[0] == "Wrong name or password."
    assert said[-1].startswith("Locked after repeated wrong passwords: try again in 15 min")
    sign_in(page, served.to_lock, password_of(served.to_lock))  # right, but locked
    page.wait_for_selector("#signin-error:has-text('Locked')")

    # Spend what is left of this address's attempts, then the form says to wait.
    left = page.evaluate(
        """async (burst) => {
          for (let i = 0; i < burst; i++) {
            const r = await fetch("/api/v1/session", {
              method: "POST",
              headers: {"X-Requested-With": "t", "Content-Type": "application/json"},
              body: JSON.stringify({username: "nobody-here", password: "x"}) });
            if ((await r.json()).code === "rate_limited") return i;
          }
          return -1;
        }""",
        SIGN_IN_BURST,
    )
    assert left >= 0
    sign_in(page, served.walker.name, served.walker.password)
    page.wait_for_selector("#signin-error:has-text('Too many attempts: try again in')")
    assert page.is_hidden("#main")
    phone.close()
    assert not _unexpected(errors), errors
