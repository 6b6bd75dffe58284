"""Vector tiles over HTTP: `/tiles/{layer}/{z}/{x}/{y}.pbf` and a TileJSON per layer.

A thin adapter over `geodata.db.tiles`. Every answer carries an ETag, so a map
revalidating a tile it holds gets a bodiless 304. For public layers the ETag comes from
the layer's data stamp, which the app keeps in memory (`geodata.db.tile_memory`, re-read
in the background), with the tiles it has rendered: a 304 or a tile served before
touches no database. The incidents layer (supervisors and admins only) is rendered every
time and tagged by its bytes, because its table grows without bound and changes by the
second. Without a fresh stamp in memory (none kept, or the database away) a route reads
the stamp from the database, as it does for an app built without the memory.
"""

import asyncio
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geodata.accounts import MissingToken, PermissionDenied, Role
from geodata.db.tile_memory import TileMemory
from geodata.db.tiles import (
    LAYERS,
    MAX_ZOOM,
    Bounds,
    TileLayer,
    check_tile,
    content_version,
    data_stamp,
    fitting_zoom,
    get_layer,
    layer_bounds,
    render_stamped_tile,
    render_tile,
    tile_version,
    tilejson_version,
)
from grid_service.auth import OptionalPrincipal, Principal, resolve_principal
from grid_service.deps import EngineDep

MVT_MEDIA_TYPE: Final = "application/vnd.mapbox-vector-tile"
#: How long a browser may reuse a public tile without asking; after that it revalidates
#: with If-None-Match, which costs a 304. Boundaries change rarely, but a supervisor should
#: see an import within a minute.
PUBLIC_MAX_AGE_S: Final = 60
TILEJSON_VERSION: Final = "3.0.0"

router = APIRouter(prefix="/tiles", tags=["tiles"])


# No I/O: async, so FastAPI runs it on the event loop rather than sending it to the
# thread pool, a hop that costs more than it does.
async def _layer(
    layer: Annotated[str, Path(description=", ".join(LAYERS))],
) -> TileLayer:
    """Dependency: the tile layer named in the path, or 404 `layer_not_found`."""
    return get_layer(layer)


LayerDep = Annotated[TileLayer, Depends(_layer)]
IfNoneMatch = Annotated[
    str | None, Header(description="ETags of copies the client holds; a match answers 304")
]


_ADDRESS: Final = (
    ("z", f"zoom, 0..{MAX_ZOOM}"),
    ("x", "column, 0..2^z-1, from the west"),
    ("y", "row, 0..2^z-1, from the north (XYZ scheme)"),
)
_TILE_PARAMETERS: Final[list[dict[str, Any]]] = [
    {"name": "layer", "in": "path", "required": True, "description": ", ".join(LAYERS),
     "schema": {"type": "string", "title": "Layer"}},
    *({"name": name, "in": "path", "required": True, "description": description,
       "schema": {"type": "integer", "title": name.upper()}} for name, description in _ADDRESS),
    {"name": "if-none-match", "in": "header", "required": False,
     "description": "ETags of copies the client holds; a match answers 304",
     "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "If-None-Match"}},
]  # fmt: skip
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")


def _tile_address(path_params: dict[str, Any]) -> tuple[str, int, int, int]:
    """The layer name and z, x, y of a tile's path; a non-integer is refused as FastAPI's
    own validation would (422 `invalid_request`)."""
    numbers = []
    for name, _description in _ADDRESS:
        value = str(path_params[name])
        if not _INTEGER.fullmatch(value):
            raise RequestValidationError(
                [{"type": "int_parsing", "loc": ("path", name), "input": value,
                  "msg": "Input should be a valid integer, unable to parse string as an integer"}]
            )  # fmt: skip
        numbers.append(int(value))
    z, x, y = numbers
    return str(path_params["layer"]), z, x, y


def _area_prefix(layer: TileLayer, principal: Principal | None) -> str | None:
    """The area a restricted layer is cut to for the caller (None: all); 401/403 if none."""
    if not layer.restricted:
        return None
    if principal is None:
        raise MissingToken(f"layer {layer.name} needs a supervisor's or an admin's token")
    if principal.role is Role.ADMIN:
        return None
    if principal.role is Role.SUPERVISOR and principal.area_prefix:
        return principal.area_prefix
    raise PermissionDenied(f"layer {layer.name} is for supervisors and admins only")


def _cache_headers(layer: TileLayer, etag: str) -> dict[str, str]:
    if layer.restricted:
        # Scoped data: stored by no cache, the browser's included (the ETag still lets a
        # client that keeps its own copy revalidate it).
        return {"ETag": etag, "Cache-Control": "no-store", "Vary": "Authorization"}
    return {"ETag": etag, "Cache-Control": f"public, max-age={PUBLIC_MAX_AGE_S}"}


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): `*`, or any listed tag equal."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


def _not_modified(layer: TileLayer, etag: str) -> Response:
    return Response(status_code=304, headers=_cache_headers(layer, etag))


@router.get(
    "/{layer}/{z}/{x}/{y}.pbf",
    name="tile",
    response_class=Response,
    # The incidents layer's token (optional) and the parameters the route reads itself.
    openapi_extra={"security": [{"bearer": []}, {}], "parameters": _TILE_PARAMETERS},
    responses={
        200: {
            "content": {MVT_MEDIA_TYPE: {}},
            "description": "The tile; an empty body is a tile with no features there.",
        },
        304: {"description": "The client's copy (If-None-Match) is current."},
        401: {"description": "incidents without a token (`missing_token`)."},
        403: {"description": "incidents with a worker's token (`forbidden`)."},
        404: {"description": "Unknown layer (`layer_not_found`)."},
        422: {"description": "z, x or y outside the tile pyramid (`invalid_tile`)."},
    },
)
async def get_tile(request: Request) -> Response:
    """A Mapbox Vector Tile (extent 4096, buffer 64) of one layer, with an ETag.

    Layers: districts, streets, communities, grids (versions in force), pois, and
    incidents (a supervisor's or an admin's token; a supervisor sees its area only).
    A tile where the layer has nothing is an empty 200, not a 204: zero bytes are a valid
    tile of no layers, and the empty tile is cached and revalidated like any other.
    """
    # The busiest route of all, and FastAPI's solving of parameters and dependencies cost
    # more than an answer from memory: the route reads its parameters itself (documented
    # in `_TILE_PARAMETERS`, refused as FastAPI would), and resolves the caller only for
    # the layer that needs one.
    layer_name, z, x, y = _tile_address(request.path_params)
    if_none_match = request.headers.get("if-none-match")
    layer = get_layer(layer_name)
    check_tile(z, x, y)  # first, so that `If-None-Match: *` cannot 304 a bad address
    principal = await resolve_principal(request) if layer.restricted else None
    area_prefix = _area_prefix(layer, principal)
    engine: Engine = request.app.state.engine
    memory: TileMemory | None = getattr(request.app.state, "tile_memory", None)
    stamp = None if memory is None else memory.stamp(layer)
    draws: asyncio.Semaphore = request.app.state.tile_draws
    if memory is None or stamp is None:
        async with draws:
            return await run_in_threadpool(
                _tile_from_database, engine, layer, z, x, y, area_prefix, if_none_match
            )
    # From memory, on the event loop: the 304 and a kept tile touch no database.
    etag = f'"{tile_version(layer, z, x, y, stamp)}"'
    if _etag_matches(if_none_match, etag):
        return _not_modified(layer, etag)
    tile = memory.tiles.get((layer.name, z, x, y, stamp))
    if tile is None:
        # Drawn with the stamp of the rows it was drawn from (one statement), and kept
        # under that stamp: newer than the one in memory if the data has just changed.
        async with draws:
            drawn_at, drawn = await run_in_threadpool(
                _render_stamped, engine, layer, z, x, y, memory.now()
            )
        memory.tiles.put((layer.name, z, x, y, drawn_at), drawn)
        etag = f'"{tile_version(layer, z, x, y, drawn_at)}"'
        if _etag_matches(if_none_match, etag):
            return _not_modified(layer, etag)
        tile = drawn
    return Response(tile, media_type=MVT_MEDIA_TYPE, headers=_cache_headers(layer, etag))


def _render_stamped(
    engine: Engine, layer: TileLayer, z: int, x: int, y: int, now: datetime
) -> tuple[str, bytes]:
    with engine.connect() as connection:
        return render_stamped_tile(connection, layer, z, x, y, now=now)


def _tile_from_database(
    engine: Engine,
    layer: TileLayer,
    z: int,
    x: int,
    y: int,
    area_prefix: str | None,
    if_none_match: str | None,
) -> Response:
    """The tile and its ETag read from the database: the incidents layer, and any layer
    while no stamp in memory is fresh (none kept, or the database was away)."""
    now = datetime.now(UTC)  # one instant for the stamp and the tile: the same versions
    with engine.connect() as connection:
        if layer.restricted:
            tile = render_tile(connection, layer, z, x, y, area_prefix=area_prefix)
            etag = f'"{content_version(tile)}"'
            if _etag_matches(if_none_match, etag):
                return _not_modified(layer, etag)
            return Response(tile, media_type=MVT_MEDIA_TYPE, headers=_cache_headers(layer, etag))
        if if_none_match is None:
            # Nothing to revalidate: the stamp and the tile in one round trip.
            stamp, tile = render_stamped_tile(connection, layer, z, x, y, now=now)
            etag = f'"{tile_version(layer, z, x, y, stamp)}"'
            return Response(tile, media_type=MVT_MEDIA_TYPE, headers=_cache_headers(layer, etag))
        # The stamp is read before the tile: if a change lands in between, the tile is
        # newer than its ETag, so the next revalidation misses and refetches; never the
        # reverse, which could pin a stale tile in a cache.
        etag = f'"{tile_version(layer, z, x, y, data_stamp(connection, layer, now))}"'
        if _etag_matches(if_none_match, etag):
            return _not_modified(layer, etag)
        tile = render_tile(connection, layer, z, x, y, now=now)
    return Response(tile, media_type=MVT_MEDIA_TYPE, headers=_cache_headers(layer, etag))


@router.get(
    "/{layer}.json",
    name="tilejson",
    responses={
        200: {"description": "TileJSON 3.0.0 of the layer."},
        304: {"description": "The client's copy (If-None-Match) is current."},
        401: {"description": "incidents without a token (`missing_token`)."},
        403: {"description": "incidents with a worker's token (`forbidden`)."},
        404: {"description": "Unknown layer (`layer_not_found`)."},
    },
)
async def get_tilejson(
    layer: LayerDep,
    engine: EngineDep,
    principal: OptionalPrincipal,
    request: Request,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The layer's TileJSON 3.0.0: absolute tile URL, zooms, bounds, center and fields."""
    area_prefix = _area_prefix(layer, principal)
    # url_for keeps the {z}/{x}/{y} placeholders and honours root_path and the prefix
    # the router is mounted under, so the template works behind a proxy path too.
    template = str(request.url_for("tile", layer=layer.name, z="{z}", x="{x}", y="{y}"))
    memory: TileMemory | None = getattr(request.app.state, "tile_memory", None)
    stamp = None if memory is None else memory.stamp(layer)
    if stamp is not None:
        # A revalidation from memory; the bounds of a changed layer need the database.
        etag = f'"{tilejson_version(layer, f"{stamp}|{area_prefix}", template)}"'
        if _etag_matches(if_none_match, etag):
            return _not_modified(layer, etag)
    return await run_in_threadpool(
        _tilejson_from_database, engine, layer, area_prefix, template, if_none_match
    )


def _tilejson_from_database(
    engine: Engine,
    layer: TileLayer,
    area_prefix: str | None,
    template: str,
    if_none_match: str | None,
) -> Response:
    now = datetime.now(UTC)
    with engine.connect() as connection:
        stamp = f"{data_stamp(connection, layer, now)}|{area_prefix}"
        etag = f'"{tilejson_version(layer, stamp, template)}"'
        if _etag_matches(if_none_match, etag):
            return _not_modified(layer, etag)
        bounds = layer_bounds(connection, layer, area_prefix, now)
    document = _tilejson(layer, template, bounds)
    return JSONResponse(document, headers=_cache_headers(layer, etag))


def _tilejson(layer: TileLayer, template: str, bounds: Bounds) -> dict[str, Any]:
    """The TileJSON document of one layer."""
    # Rounded outwards to 6 decimals (0.1 m), so the bounds still hold every feature.
    west, south = (math.floor(value * 1e6) / 1e6 for value in bounds[:2])
    east, north = (math.ceil(value * 1e6) / 1e6 for value in bounds[2:])
    return {
        "tilejson": TILEJSON_VERSION,
        "name": layer.name,
        "description": layer.description,
        "scheme": "xyz",
        "tiles": [template],
        "minzoom": layer.minzoom,
        "maxzoom": layer.maxzoom,
        "bounds": [west, south, east, north],
        "center": [
            round((west + east) / 2, 6),
            round((south + north) / 2, 6),
            fitting_zoom(bounds, layer),
        ],
        "vector_layers": [
            {
                "id": layer.name,
                "description": layer.description,
                "minzoom": layer.minzoom,
                "maxzoom": layer.maxzoom,
                "fields": layer.field_types(),
            }
        ],
    }
