"""`GET /map`: the supervisors' live map, one page served with its assets by this process.

No CDN and no online basemap: the page, its script and MapLibre GL JS come from
`grid_service/static` (MapLibre copied into `static/vendor` by scripts/bootstrap.sh from
the npm package pinned in `map_assets/package-lock.json`); the map draws our own vector
tiles. The page holds no data and no secret: it asks for a bearer token and sends it in
headers, never in a URL.
"""

import logging
import mimetypes
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

logger = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
MAPLIBRE: Final = STATIC_DIR / "vendor" / "maplibre-gl" / "maplibre-gl.mjs"
ASSETS_PATH: Final = "/map/assets"

# Browsers run an ES module only with a JavaScript media type; Python 3.11's table may
# not know .mjs and would answer application/octet-stream.
mimetypes.add_type("text/javascript", ".mjs")

# Everything from this origin: the page cannot load or leak to anywhere else.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; worker-src 'self' blob:; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

_MISSING_ASSETS: Final = """<!doctype html><meta charset="utf-8"><title>wangge map</title>
<h1>地图资源缺失 · The map's assets are missing</h1>
<p>MapLibre GL JS is installed by <code>./scripts/bootstrap.sh</code> (npm ci in
grid_service/map_assets); run it on this machine, then reload.</p>"""

router = APIRouter(tags=["map"])


@router.get(
    "/map",
    response_class=HTMLResponse,
    responses={503: {"description": "MapLibre GL JS is not installed (run bootstrap)."}},
)
def get_map() -> Response:
    """The supervisors' live map (HTML): grids coloured by this week's patrol compliance,
    live check-ins and incidents, counts and the workers at risk. Asks for a supervisor's
    or an admin's token, kept in the tab's sessionStorage."""
    if not MAPLIBRE.is_file():
        logger.error("GET /map: %s is missing; run scripts/bootstrap.sh", MAPLIBRE)
        return HTMLResponse(_MISSING_ASSETS, status_code=503, headers=_PAGE_HEADERS)
    return FileResponse(STATIC_DIR / "map.html", media_type="text/html", headers=_PAGE_HEADERS)


PANELS_DIR: Final = STATIC_DIR / "panels"


class MapPanels(BaseModel):
    """The workbench's panels, each an ES module in `static/panels/` that the map installs
    once the user is signed in, in this order."""

    panels: list[str]


@router.get("/map/panels.json", response_model=MapPanels)
def get_map_panels() -> MapPanels:
    """The map's panels (file names under `/map/assets/panels/`), sorted: a feature of the
    workbench is added by adding its module, never by editing the page."""
    names = sorted(path.name for path in PANELS_DIR.glob("*.js")) if PANELS_DIR.is_dir() else []
    return MapPanels(panels=names)


def install_map(app: FastAPI) -> None:
    """Add `/map` and its static assets to `app`; call it once in the app factory."""
    app.include_router(router)
    # check_dir=False: the app starts without the assets; /map then says what is missing.
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR, check_dir=False), name="map_assets")
