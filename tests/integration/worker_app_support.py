"""Helpers of the workers' app browser tests: walkers in real grids, a phone-sized chromium,
signing in to /app as a worker does, walking with the test's GPS and clock, screenshots."""

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
PHONE: "ViewportSize" = {"width": 360, "height": 740}


@dataclass(frozen=True)
class Walker:
    """A worker's account (name, token, password), its grid, and a circle inside it."""

    name: str
    password: str
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


def staffed_grids(database_url: str, limit: int) -> list[dict[str, Any]]:
    """Staffed grids of one district, each with its first worker and a circle to walk:
    half the largest circle inside the grid, at most 55 m (steps of 15 m or less)."""
    # PostGIS in degrees: a circle there stays inside, whatever its size in metres.
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
            ORDER BY g.code LIMIT %s
            """,
            (limit,),
        ).fetchall()
    return [
        {"grid_code": c, "worker_id": w, "lon": x, "lat": y, "radius_deg": min(r / 2, 55 / 111_320)}
        for c, w, x, y, r in rows
    ]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium, launched by Playwright, closed after the block."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_phone(browser: Any, at: Walker) -> Any:
    """A phone-sized context of `browser` with the geolocation permission, standing at `at`."""
    return browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        permissions=["geolocation"],
        geolocation={"longitude": at.lon, "latitude": at.lat},
        locale="zh-CN",
        service_workers="allow",
    )


@contextlib.contextmanager
def phone_context(at: Walker) -> Iterator[Any]:
    """A phone of its own chromium (see new_phone), closed after the block."""
    with chromium() as browser:
        yield new_phone(browser, at)


# Test instrumentation, not the app's: the last position the app's watch was handed,
# noted once its callback has run.
FIX_SEEN = """
(() => {
  const geolocation = navigator.geolocation;
  const watch = geolocation.watchPosition.bind(geolocation);
  geolocation.watchPosition = (onFix, ...rest) => watch((position) => {
    onFix(position);
    window.__fixSeen = [position.coords.longitude, position.coords.latitude];
  }, ...rest);
})();
"""
FIX_SEEN_AT = """([lon, lat]) => {
  const seen = window.__fixSeen;
  return !!seen && Math.abs(seen[0] - lon) < 1e-9 && Math.abs(seen[1] - lat) < 1e-9;
}"""


def new_page(context: Any, walker: Walker, errors: list[str]) -> Any:
    """A page of `context` whose errors land in `errors`, its clock 14 minutes behind (a
    12-minute walk ends before the server's now), standing on `walker`'s circle."""
    page = context.new_page()
    page.add_init_script(FIX_SEEN)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.clock.install(time=datetime.now() - timedelta(minutes=14))
    lon, lat = walker.around(24, 0)
    context.set_geolocation({"longitude": lon, "latitude": lat, "accuracy": 8})
    return page


def sign_in(page: Any, name: str, password: str) -> None:
    """Fill the app's sign-in form with a name and a password and press 登录."""
    page.wait_for_selector("#signin:not([hidden]) #username", timeout=20_000)
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#signin-submit")


def sign_in_with_token(page: Any, token: str) -> None:
    """The second way in: open 用令牌登录 and paste the token."""
    page.wait_for_selector("#signin:not([hidden])", timeout=20_000)
    page.click("#token-way summary")
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")


def open_app(
    context: Any,
    base: str,
    walker: Walker,
    errors: list[str],
    by: Literal["password", "token"] = "password",
) -> Any:
    """The app signed in as `walker` (by password, or by its token), its grid drawn."""
    page = new_page(context, walker, errors)
    page.goto(f"{base}/app/")
    if by == "password":
        sign_in(page, walker.name, walker.password)
    else:
        sign_in_with_token(page, walker.token)
    page.wait_for_selector('body[data-map="1"]', timeout=30_000)
    return page


def walk(context: Any, page: Any, walker: Walker, steps: int, kept_before: int) -> None:
    """Move one step every 30 s of the page's clock; the app keeps one fix per step."""
    for step in range(1, steps + 1):
        lon, lat = walker.around(24, step)
        context.set_geolocation({"longitude": lon, "latitude": lat, "accuracy": 8})
        # The position reaches the page on its own time: a clock moved on before it came
        # keeps the fix at the old spot, and the next step, 28 m on, keeps two.
        page.wait_for_function(FIX_SEEN_AT, arg=[lon, lat], timeout=30_000)
        page.clock.fast_forward(30_000)
        # A bound on a hang, not a timing.
        page.wait_for_selector(f'body[data-kept="{kept_before + step}"]', timeout=60_000)


def screenshot_dir(fallback: Path) -> Path:
    """WANGGE_SCREENSHOT_DIR (docs/screenshots holds the committed ones, taken so), else
    `fallback`, so that a test run changes no file."""
    folder = os.environ.get("WANGGE_SCREENSHOT_DIR")
    return Path(folder) if folder else fallback


def screenshot(page: Any, folder: Path, name: str) -> None:
    """Save the page as `folder/name` once it has settled."""
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)
    page.screenshot(path=str(folder / name))
    print(f"screenshot: {folder / name}")
