"""`wangge bench map`: the supervisors' map's first paint of the city's grids.

The real app on a fresh copy of the reference city; a city-wide account (an admin: a
supervisor's area is a district at the widest) with a password it chose itself. Each run
is a new browser context (Debian's chromium through Playwright, nothing cached) that
opens /map, signs in on the page's form as a person does, and sees the city's grids;
then, its HTTP cache emptied and its session kept, opens /map again: a supervisor
coming back to the map. Measured on that second load: the time from the navigation to
the first paint with grids (MapLibre's `idle` with grids drawn, when the page sets
`document.body.dataset.gridsRendered`), the bytes received by then by kind (MapLibre,
tiles, API JSON, panels, the page itself), how many grid tiles were asked for, and which
panels were installed before the paint. Beside it, on the first visit, the time from
pressing "sign in" to the same paint.

Two profiles: a desktop (1280 x 800) unthrottled, and the same screen under the profile
of `wangge bench app` (Chrome DevTools' "Fast 3G" and the CPU slowed 4 times). The target
is the issue's: the first paint within 2 s on the test's machine.
"""

import argparse
import contextlib
import os
import secrets
import statistics
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from wangge.benchmarks.app_load import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CPU_SLOWDOWN,
    FAST_3G,
    TIMEOUT_MS,
)
from wangge.benchmarks.harness import reference_database, report_console
from wangge.benchmarks.rows import BenchmarkRow, add_json_option, write_rows
from wangge.benchmarks.servers import API_FACTORY, serve

DESKTOP: Final = {"width": 1280, "height": 800}
TARGET_S: Final = 2.0
GRIDS_DRAWN: Final = 'body:not([data-grids-rendered="0"])'
KINDS: Final = ("maplibre", "tiles", "api", "panels", "page")

# The page has no mark of its own: the moment the grids are first drawn is when its test
# attribute leaves "0", marked by an observer set up before the page's scripts; the panels
# installed by then are kept beside the mark. A press of "sign in" is marked too.
PAINT_OBSERVER: Final = (
    "new MutationObserver((_, observer) => {"
    " const body = document.body;"
    " if (body && body.dataset.gridsRendered && body.dataset.gridsRendered !== '0') {"
    " performance.mark('wangge-grids'); window.wanggePanelsAtPaint = body.dataset.panels || '';"
    " observer.disconnect(); } })"
    ".observe(document, {attributes: true, subtree: true});"
    "document.addEventListener('submit', () => performance.mark('wangge-sign-in'), true);"
)


@dataclass(frozen=True)
class Profile:
    """A screen and, when throttled, app_load's network and CPU conditions."""

    name: str
    throttled: bool


PROFILES: Final = (Profile("desktop", False), Profile("Fast 3G + 4x CPU", True))


@dataclass(frozen=True)
class Paint:
    """One load of /map up to its first grids: when, and what crossed the network by then."""

    seconds: float
    bytes_by_kind: dict[str, int]
    requests: int
    grid_tiles: int
    tiles_by_layer: dict[str, int]
    panels_at_paint: tuple[str, ...]
    grids_drawn: int
    sign_in_seconds: float | None = None
    """On the first visit: from the press of "sign in" to the paint."""

    @property
    def bytes_received(self) -> int:
        """All bytes received by the paint."""
        return sum(self.bytes_by_kind.values())


def kind_of(url: str) -> str:
    """Which of KINDS a request of the map page is, by its path."""
    path = urlsplit(url).path
    if "/vendor/maplibre-gl/" in path:
        return "maplibre"
    if path.startswith("/tiles/"):
        return "tiles"  # the TileJSON documents and the .pbf tiles
    if path.startswith(("/api/", "/ogc/")):
        return "api"
    if path.startswith("/map/assets/panels/") or path == "/map/panels.json":
        return "panels"
    return "page"


@dataclass
class NetworkLog:
    """The requests a page made, its MapLibre workers' tiles among them (Playwright reports
    a dedicated worker's requests with its page's; Chrome DevTools' page target does not)."""

    requests: list[Any] = field(default_factory=list)

    def follow(self, page: Any) -> None:
        """Record `page`'s finished requests from now on."""
        page.on("requestfinished", self._finished)

    def _finished(self, request: Any) -> None:
        # A bound method: Playwright marks its handlers, which a builtin cannot carry.
        self.requests.append(request)

    def clear(self) -> None:
        """Forget what was recorded (a second load of the same page)."""
        self.requests.clear()

    def paint(self, page: Any, sign_in_seconds: float | None = None) -> Paint:
        """The figures of the page's load up to its grids mark: what had arrived by then."""
        origin = float(page.evaluate("performance.timeOrigin"))
        seconds = float(page.evaluate("performance.getEntriesByName('wangge-grids')[0].startTime"))
        by_then = [
            request
            for request in list(self.requests)
            # Not the first visit's stragglers: only what this load asked and had by the paint.
            if origin <= request.timing["startTime"]
            and request.timing["startTime"] + request.timing["responseEnd"] <= origin + seconds
        ]
        by_kind = dict.fromkeys(KINDS, 0)
        for request in by_then:
            sizes = request.sizes()
            # A response from the memory cache reports -1 sizes: nothing crossed the network.
            received = max(sizes["responseBodySize"], 0) + max(sizes["responseHeadersSize"], 0)
            by_kind[kind_of(request.url)] += received
        paths = [urlsplit(request.url).path for request in by_then]
        tiles = Counter(path.split("/")[2] for path in paths if _is_tile(path))
        panels = page.evaluate("window.wanggePanelsAtPaint")
        return Paint(
            seconds=seconds / 1000,
            bytes_by_kind=by_kind,
            requests=len(by_then),
            grid_tiles=tiles["grids"],
            tiles_by_layer=dict(sorted(tiles.items())),
            panels_at_paint=tuple(str(panels).split()),
            grids_drawn=int(page.get_attribute("body", "data-grids-rendered") or 0),
            sign_in_seconds=sign_in_seconds,
        )


def _is_tile(path: str) -> bool:
    return path.startswith("/tiles/") and path.endswith(".pbf")


def _sign_in_seconds(page: Any) -> float:
    return float(
        page.evaluate(
            "performance.getEntriesByName('wangge-grids')[0].startTime"
            " - performance.getEntriesByName('wangge-sign-in')[0].startTime"
        )
        / 1000
    )


def load_map(browser: Any, base: str, name: str, password: str, profile: Profile) -> Paint:
    """One run: a cold first visit signed in on the form, then /map again with the
    session kept and the HTTP cache emptied; the second load's figures."""
    context = browser.new_context(viewport=DESKTOP)
    try:
        context.add_init_script(PAINT_OBSERVER)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        if profile.throttled:
            cdp.send("Network.emulateNetworkConditions", FAST_3G)
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": CPU_SLOWDOWN})
        log = NetworkLog()
        log.follow(page)
        page.goto(f"{base}/map", wait_until="commit", timeout=TIMEOUT_MS)
        page.wait_for_selector("#login[open] #username", timeout=TIMEOUT_MS)
        page.fill("#username", name)
        page.fill("#password", password)
        page.click("#login-submit")
        page.wait_for_selector(GRIDS_DRAWN, state="attached", timeout=TIMEOUT_MS)
        signing_in = _sign_in_seconds(page)

        cdp.send("Network.clearBrowserCache")
        log.clear()
        page.goto(f"{base}/map", wait_until="commit", timeout=TIMEOUT_MS)
        page.wait_for_selector(GRIDS_DRAWN, state="attached", timeout=TIMEOUT_MS)
        return log.paint(page, signing_in)
    finally:
        context.close()


def _choose_password(base: str, name: str, one_time: str) -> str:
    """Replace the account's one-time password as its holder does on a first sign-in."""
    import httpx

    chosen = f"bench-{secrets.token_urlsafe(12)}"
    httpx.post(
        f"{base}/api/v1/session/password",
        json={"username": name, "password": one_time, "new_password": chosen},
        headers={"X-Requested-With": "wangge"},
        timeout=60,
    ).raise_for_status()
    return chosen


def _prime(base: str, name: str, password: str) -> None:
    """Ask once, unthrottled, what the page asks: a running API has its snapshot, its
    compliance cache and its connections ready before a supervisor opens the map."""
    import httpx

    with httpx.Client(base_url=base, headers={"X-Requested-With": "wangge"}, timeout=60) as http:
        http.post("/api/v1/session", json={"username": name, "password": password})
        for path in ("/api/v1/compliance?level=grid", "/tiles/grids.json", "/map/panels.json"):
            http.get(path).raise_for_status()
        http.delete("/api/v1/session")


@contextlib.contextmanager
def served_city(
    database_url: str, bootstrap: str, reference_database_url: str | None = None
) -> Iterator[tuple[str, str, str]]:
    """The API on a fresh reference city (a copy of `reference_database_url`'s if given):
    its base URL, the admin's name and password."""
    from wangge.users_cli import add_user, reset_password

    name = f"bench-city-{secrets.token_hex(3)}"
    with (
        reference_database(database_url, reference_database_url) as url,
        tempfile.TemporaryDirectory(prefix="wangge-bench-map-") as folder,
    ):
        add_user(url, name, "admin", None, None)
        one_time = reset_password(url, name)
        env = {
            **os.environ,
            "WANGGE_DATABASE_URL": url,
            "WANGGE_KAFKA_BOOTSTRAP": bootstrap,
            "WANGGE_ATTACHMENTS_DIR": folder,
            # One sign-in per load from one address: the default rate (10 a minute) is
            # for people, and a refused sign-in would end the run, not slow it.
            "WANGGE_SIGN_IN_PER_MINUTE": "1000",
        }
        with serve(API_FACTORY, env) as port:
            base = f"http://127.0.0.1:{port}"
            password = _choose_password(base, name, one_time)
            _prime(base, name, password)
            yield base, name, password


def run_map_load(
    database_url: str,
    bootstrap: str,
    runs: int,
    *,
    profiles: Sequence[Profile] = PROFILES,
    reference_database_url: str | None = None,
) -> dict[str, list[Paint]]:
    """`runs` loads under each profile, alternating; the paints by profile name."""
    from playwright.sync_api import sync_playwright

    from wangge.benchmarks.app_load import _warm_up

    paints: dict[str, list[Paint]] = {profile.name: [] for profile in profiles}
    with (
        served_city(database_url, bootstrap, reference_database_url) as (base, name, password),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            _warm_up(browser)
            for _ in range(runs):
                for profile in profiles:
                    paints[profile.name].append(load_map(browser, base, name, password, profile))
        finally:
            browser.close()
    return paints


def _kib(size: float) -> str:
    return f"{size / 1024:,.0f} KiB"


def describe(paints: list[Paint]) -> str:
    """The runs of one profile in words: times, bytes by kind, tiles and panels."""
    median_kinds = {
        kind: statistics.median(p.bytes_by_kind[kind] for p in paints) for kind in KINDS
    }
    last = paints[-1]
    return (
        "runs "
        + ", ".join(f"{p.seconds:.2f} s / {_kib(p.bytes_received)}" for p in paints)
        + "; median bytes by kind: "
        + ", ".join(f"{kind} {_kib(size)}" for kind, size in median_kinds.items())
        + f"; requests {[p.requests for p in paints]}; tiles asked {last.tiles_by_layer}"
        + f"; grids drawn {[p.grids_drawn for p in paints]}"
        + f"; panels installed before the paint: {' '.join(last.panels_at_paint) or 'none'}"
        + "; sign-in press to paint "
        + ", ".join(f"{p.sign_in_seconds:.2f} s" for p in paints if p.sign_in_seconds is not None)
    )


def as_rows(paints: dict[str, list[Paint]]) -> list[BenchmarkRow]:
    """Per profile: the median time to the first grids (worst beside it), and the bytes."""
    rows = []
    for profile, runs in paints.items():
        median = statistics.median(p.seconds for p in runs)
        worst = max(p.seconds for p in runs)
        rows.append(
            BenchmarkRow(
                f"/map first paint of the city's grids, {profile} (median)",
                median,
                "s",
                worst,
                "worst run",
                None,
                f"<= {TARGET_S:g} s",
                median <= TARGET_S,
                describe(runs),
            )
        )
        rows.append(
            BenchmarkRow(
                f"/map bytes received by the first paint, {profile} (median)",
                statistics.median(p.bytes_received for p in runs) / 1024,
                "KiB",
                max(p.bytes_received for p in runs) / 1024,
                "largest run",
                None,
                "—",
                None,
                ", ".join(
                    f"{kind} {_kib(statistics.median(p.bytes_by_kind[kind] for p in runs))}"
                    for kind in KINDS
                ),
            )
        )
    return rows


def main() -> None:
    """`python -m wangge.benchmarks.map_load [--runs N]`: run on the configured services."""
    from wangge import services
    from wangge.settings import DatabaseSettings, KafkaSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="loads under each profile")
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
    database = DatabaseSettings()
    services.ensure_postgis(database, log=console.print)
    paints = run_map_load(database.url, KafkaSettings().bootstrap, args.runs)
    for row in as_rows(paints):
        console.print(
            f"{row.name}: {row.ours:.2f} {row.unit} (target {row.target}); "
            f"{row.peer_name}: {row.peer:.2f} {row.unit}; {row.detail}"
        )
    if args.json:
        write_rows(args.json, "map", rows=as_rows(paints))


if __name__ == "__main__":
    main()
