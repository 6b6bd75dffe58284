"""The map's basemap in a real browser: WANGGE_BASEMAP set to a raster tile set that this
test serves itself, drawn under the grids, and no request to any other host.

The tiles are rendered here, at request time, from the reference city's districts and
streets (shapely and Pillow), so they look like a map of the same place; Debian's chromium
runs the page as in tests/integration/test_map_browser.py.
"""

import contextlib
import io
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image, ImageDraw, ImageFont
from shapely import STRtree, box, from_wkb
from shapely.geometry.base import BaseGeometry

from geodata.contract import Topics
from grid_service.app import ApiConfig
from tests.integration.live_support import namespaced, query, serving
from tests.integration.test_map_browser import CHROMIUM, CHROMIUM_ARGS
from wangge.settings import BasemapSettings
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

TILE = 256
SCALE = 2  # drawn at twice the size, then reduced: smooth edges without antialiasing
LAND = (240, 236, 227)
DISTRICT_TINTS = [
    (246, 234, 214),
    (226, 239, 218),
    (222, 233, 244),
    (243, 225, 229),
    (236, 230, 245),
]
FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
TILE_PATH = re.compile(r"/(\d+)/(\d+)/(\d+)\.png")


@dataclass
class CityTiles:
    """Raster tiles of the reference city, drawn on request; the paths asked for."""

    districts: list[tuple[str, BaseGeometry]]
    streets: list[tuple[str, BaseGeometry]]
    requested: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._district_index = STRtree([geometry for _, geometry in self.districts])
        self._street_index = STRtree([geometry for _, geometry in self.streets])
        self._font = ImageFont.truetype(str(FONT), 12 * SCALE) if FONT.exists() else None

    def render(self, z: int, x: int, y: int) -> bytes:
        """The PNG of tile z/x/y (Web Mercator, rows from the north)."""
        n = 2**z
        size = TILE * SCALE

        def pixel(lon: float, lat: float) -> tuple[float, float]:
            sin = math.sin(math.radians(lat))
            my = 0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)
            return ((lon + 180) / 360 * n - x) * size, (my * n - y) * size

        west, east = x / n * 360 - 180, (x + 1) / n * 360 - 180
        north = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))
        south = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 1) / n))))
        extent = box(west, south, east, north).buffer((east - west) * 0.05)
        image = Image.new("RGB", (size, size), LAND)
        draw = ImageDraw.Draw(image)

        def rings(geometry: BaseGeometry) -> Iterator[list[tuple[float, float]]]:
            for polygon in getattr(geometry, "geoms", [geometry]):
                yield [pixel(*point) for point in polygon.exterior.coords]

        for i in self._district_index.query(extent):
            for ring in rings(self.districts[i][1]):
                draw.polygon(ring, fill=DISTRICT_TINTS[int(i) % len(DISTRICT_TINTS)])
        streets = self._street_index.query(extent)
        road = max(2, int(z * 0.9 - 5)) * SCALE
        for i in streets:  # street boundaries drawn as roads: grey casing, white top
            for ring in rings(self.streets[i][1]):
                draw.line(ring, fill=(200, 192, 178), width=road + 2 * SCALE, joint="curve")
        for i in streets:
            for ring in rings(self.streets[i][1]):
                draw.line(ring, fill=(255, 255, 255), width=road, joint="curve")
        for i in self._district_index.query(extent):
            for ring in rings(self.districts[i][1]):
                draw.line(ring, fill=(176, 140, 170), width=3 * SCALE, joint="curve")
        if self._font is not None and z >= 10:
            for i in streets:
                name, geometry = self.streets[i]
                point = geometry.representative_point()
                draw.text(
                    pixel(point.x, point.y), name, fill=(90, 84, 76), font=self._font, anchor="mm"
                )
        out = io.BytesIO()
        image.resize((TILE, TILE), Image.Resampling.LANCZOS).save(out, "PNG")
        return out.getvalue()


def _city_tiles(database_url: str) -> CityTiles:
    def shapes(table: str) -> list[tuple[str, BaseGeometry]]:
        rows = query(database_url, f"SELECT name, ST_AsBinary(geom) AS wkb FROM {table}")
        return [(row.name, from_wkb(bytes(row.wkb))) for row in rows]

    return CityTiles(shapes("districts"), shapes("streets"))


@contextlib.contextmanager
def tile_server(tiles: CityTiles) -> Iterator[str]:
    """The tiles over HTTP on a free loopback port, with CORS as tile hosts send it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            tiles.requested.append(self.path)
            match = TILE_PATH.fullmatch(self.path)
            if match is None:
                self.send_error(404)
                return
            body = tiles.render(*(int(part) for part in match.groups()))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            # The map cancels the tiles it no longer needs while it zooms.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[tuple[str, str, str, CityTiles]]:
    """The app with WANGGE_BASEMAP at a tile server of this test's; an admin's token."""
    database_url = reference_database_factory()
    token = add_user(database_url, "basemap-admin", "admin", None, None)
    tiles = _city_tiles(database_url)
    topics = namespaced(module_topic_factory(partitions=3))
    with tile_server(tiles) as tiles_base:
        setting = BasemapSettings(
            basemap=f"{tiles_base}/{{z}}/{{x}}/{{y}}.png",
            basemap_attribution="测试底图 test tiles · 宝鸡 reference city",
        )
        config = ApiConfig(
            database_url, kafka_bootstrap, Topics.under(topics), basemap=setting.basemap_config()
        )
        with serving(config) as base:
            yield base, token, tiles_base, tiles


def test_the_map_draws_the_configured_basemap_under_the_grids_and_asks_no_other_host(
    served: tuple[str, str, str, CityTiles], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run scripts/test-tools.sh"
    base, token, tiles_base, tiles = served
    hosts: set[str] = set()
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{base}/map")
            page.fill("#token", token)
            page.click("#login button[type=submit]")
            page.wait_for_selector('body[data-panels*="basemap.js"]', timeout=30_000)
            page.wait_for_selector('body[data-basemap-tiles]:not([data-grids-rendered="0"])')
            assert page.get_attribute("body", "data-basemap") == "custom"
            # The basemap is the layer just under our lowest one, above only the background.
            layers = page.evaluate("() => window.wanggeMap.getStyle().layers.map((l) => l.id)")
            assert layers[:3] == ["bg", "basemap", "districts-fill"]
            assert layers.index("basemap") < layers.index("grids-fill")
            assert "测试底图 test tiles" in page.inner_text(".maplibregl-ctrl-attrib")
            # Every source's tiles in, rather than "networkidle": the live stream stays open.
            deadline = time.monotonic() + 30
            while not page.evaluate("() => window.wanggeMap.areTilesLoaded()"):
                assert time.monotonic() < deadline, "the map's tiles did not all load"
                page.wait_for_timeout(100)
            page.wait_for_timeout(300)  # the last tiles' fade-in
            shots = Path(os.environ.get("WANGGE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("map"))
            page.screenshot(path=str(shots / "map-basemap.png"))
        finally:
            browser.close()
    assert not errors, errors
    assert any(TILE_PATH.fullmatch(path) for path in tiles.requested)
    # data: and blob: URLs have no host; everything else came from the app or the tiles.
    assert hosts - {""} == {urlsplit(base).netloc, urlsplit(tiles_base).netloc}
