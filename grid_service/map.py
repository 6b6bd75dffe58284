"""`GET /map`: the supervisors' live map, one page served with its assets by this process.

No CDN: the page, its script and MapLibre GL JS come from `grid_service/static` (MapLibre
copied into `static/vendor` by scripts/bootstrap.sh from the npm package pinned in
`map_assets/package-lock.json`); the map draws our own vector tiles. A basemap is drawn
under them only when WANGGE_BASEMAP names one (docs/BASEMAP.md): then, and only then, the
page's content security policy allows that basemap's origins too. The page holds no data
and no secret: it asks for a bearer token and sends it in headers, never in a URL.
"""

import logging
import math
import mimetypes
from pathlib import Path
from typing import Annotated, Final, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.middleware.gzip import GZipMiddleware

from geodata.basemap import Basemap
from geodata.gcj02 import offset_grid
from geodata.query_limits import parse_bbox
from grid_service.auth import RequiredPrincipal
from grid_service.errors import ErrorBody
from grid_service.routing import add_routes

logger = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
MAPLIBRE: Final = STATIC_DIR / "vendor" / "maplibre-gl" / "maplibre-gl.mjs"
ASSETS_PATH: Final = "/map/assets"

# Browsers run an ES module only with a JavaScript media type; Python 3.11's table may
# not know .mjs and would answer application/octet-stream.
mimetypes.add_type("text/javascript", ".mjs")


def page_headers(basemap: Basemap | None) -> dict[str, str]:
    """The page's headers: everything from this origin, plus the basemap's origins for
    images and fetches (MapLibre fetches raster tiles), so the page loads or leaks to
    nowhere else."""
    extra = "".join(f" {origin}" for origin in basemap.origins()) if basemap else ""
    return {
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; worker-src 'self' blob:; "
            f"style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:{extra}; "
            f"connect-src 'self'{extra}; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }


_PAGE_HEADERS: Final = page_headers(None)

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
def get_map(request: Request) -> Response:
    """The supervisors' live map (HTML): grids coloured by this week's patrol compliance,
    live check-ins and incidents, counts and the workers at risk. Asks for a supervisor's
    or an admin's token, kept in the tab's sessionStorage."""
    if not MAPLIBRE.is_file():
        logger.error("GET /map: %s is missing; run scripts/bootstrap.sh", MAPLIBRE)
        return HTMLResponse(_MISSING_ASSETS, status_code=503, headers=_PAGE_HEADERS)
    headers = page_headers(_basemap_of(request))
    return FileResponse(STATIC_DIR / "map.html", media_type="text/html", headers=headers)


def _basemap_of(request: Request) -> Basemap | None:
    basemap: Basemap | None = getattr(request.app.state, "basemap", None)
    return basemap


class BasemapPublic(BaseModel):
    """The basemap as the map's panel draws it (docs/BASEMAP.md)."""

    kind: Literal["raster", "style"]
    name: str = Field(description="a provider's name, `custom` or `style`")
    crs: Literal["wgs84", "gcj02"] = Field(
        description="gcj02: the tiles are drawn in GCJ-02 and moved onto our WGS-84 data"
    )
    tiles: list[str] = Field(description="XYZ URL templates, one per host")
    label_tiles: list[str] = Field(description="a labels layer drawn over the tiles")
    scheme: Literal["xyz", "tms"]
    max_zoom: int
    attribution: str
    style_url: str | None


class MapConfig(BaseModel):
    """What the map's panels need to know of this server's settings."""

    basemap: BasemapPublic | None = Field(description="null: no basemap (WANGGE_BASEMAP=none)")


@router.get(
    "/map/config.json",
    response_model=MapConfig,
    responses={401: {"model": ErrorBody, "description": "Not signed in."}},
)
async def get_map_config(request: Request, _principal: RequiredPrincipal) -> MapConfig:
    """The map's settings: the basemap to draw under the grids, if any. Signed-in users
    only, since a provider's URLs may carry its browser key (Tianditu's tk)."""
    basemap = _basemap_of(request)
    if basemap is None:
        return MapConfig(basemap=None)
    return MapConfig(
        basemap=BasemapPublic(
            kind=basemap.kind,
            name=basemap.name,
            crs=basemap.crs,
            tiles=list(basemap.tiles),
            label_tiles=list(basemap.label_tiles),
            scheme=basemap.scheme,
            max_zoom=basemap.max_zoom,
            attribution=basemap.attribution,
            style_url=basemap.style_url,
        )
    )


GCJ02_STEP_DEG: Final = 0.03
"""Nodes of the offset table this far apart: within a metre of the formula (geodata.crs)."""
GCJ02_MAX_NODES: Final = 10_000
"""A larger box gets nodes further apart rather than a larger answer (~200 KB at most)."""
GCJ02_MAX_AREA_DEG2: Final = 3600.0  # China's bounding box is some 65° by 55°


class Gcj02Offsets(BaseModel):
    """GCJ-02 minus WGS-84 at the nodes of a grid over a box, row by row from the south:
    node (i, j) is at (west + i·step, south + j·step). Interpolated bilinearly, it moves a
    GCJ-02 basemap onto WGS-84 data (docs/BASEMAP.md)."""

    west: float
    south: float
    step: float = Field(description="degrees between nodes")
    columns: int
    rows: int
    dlon: list[list[float]] = Field(description="degrees of longitude, `rows` rows")
    dlat: list[list[float]] = Field(description="degrees of latitude, `rows` rows")


@router.get(
    "/map/gcj02-offsets.json",
    response_model=Gcj02Offsets,
    responses={422: {"model": ErrorBody, "description": "Not a usable bbox."}},
)
def get_gcj02_offsets(
    bbox: Annotated[
        str, Query(description="minlon,minlat,maxlon,maxlat (WGS-84), at most 3600 deg²")
    ],
) -> Response:
    """The GCJ-02 offset tabulated over a box, from the project's own conversion
    (geodata.crs), so the map's GCJ-02 basemap and our data agree within a metre or so.
    Nodes are 0.03° apart, further for a box that would need more than 10,000."""
    box = parse_bbox(bbox, max_area_deg2=GCJ02_MAX_AREA_DEG2)
    width, height = box.max_lon - box.min_lon, box.max_lat - box.min_lat
    step = max(GCJ02_STEP_DEG, math.sqrt(width * height / GCJ02_MAX_NODES))
    # A long thin box needs more: count the nodes, edges included.
    while (math.ceil(width / step) + 1) * (math.ceil(height / step) + 1) > GCJ02_MAX_NODES:
        step *= 1.25
    table = offset_grid(box.min_lon, box.min_lat, box.max_lon, box.max_lat, step)
    body = Gcj02Offsets(
        west=table.west,
        south=table.south,
        step=table.step,
        columns=table.columns,
        rows=table.rows,
        # 1e-9° is 0.1 mm: more digits would only lengthen the answer.
        dlon=[[round(v, 9) for v in row] for row in table.dlon],
        dlat=[[round(v, 9) for v in row] for row in table.dlat],
    )
    # The formula never changes: the browser may keep the answer for a day.
    return Response(
        body.model_dump_json(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=86400"},
    )


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


def install_map(app: FastAPI, basemap: Basemap | None = None) -> None:
    """Add `/map` and its static assets to `app`, drawing `basemap` under the grids (None:
    none); call it once in the app factory."""
    app.state.basemap = basemap
    add_routes(app, router)
    # check_dir=False: the app starts without the assets; /map then says what is missing.
    # Gzipped to a browser that takes it: MapLibre GL JS is 1.1 MB as it is and 0.3 MB
    # gzipped, the bulk of the map's first paint on a slow network.
    assets = StaticFiles(directory=STATIC_DIR, check_dir=False)
    app.mount(ASSETS_PATH, GZipMiddleware(assets, minimum_size=1024), name="map_assets")
