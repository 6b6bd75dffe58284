"""OGC API - Features under /ogc: Part 1 Core with GeoJSON, Part 2 (crs, bbox-crs) and
Part 3 (queryables, CQL2 `filter`), with `sortby` and `properties`.

Every path answers with and without a trailing slash, since clients such as GDAL build
URLs from whatever root they were given. Every response is JSON with an explicit media
type, because GDAL's OAPIF driver refuses a body whose Content-Type it did not ask for.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geodata.cql2 import parse_filter
from geodata.db.features import (
    COLLECTIONS,
    Collection,
    FeatureQuery,
    collection_extent,
    get_feature,
    query_features,
    queryables,
)
from geodata.db.grid_cache import GridSnapshot, GridSnapshotCache
from grid_service.auth import OptionalPrincipal, Principal
from grid_service.deps import EngineDep
from grid_service.ogc import documents
from grid_service.ogc.access import area_filter, may_read
from grid_service.ogc.grid_features import GRIDS, grid_in_force, grids_in_force_page
from grid_service.ogc.params import (
    DEFAULT_LIMIT,
    LAT_LON_CRS,
    OgcRoute,
    bad_parameter,
    effective_limit,
    feature_format,
    only,
    parse_bbox,
    parse_crs,
    parse_datetime,
    parse_properties,
    parse_sortby,
    quoted_items,
)
from grid_service.ogc.queries import (
    BboxCrsQuery,
    BboxQuery,
    CollectionId,
    CrsQuery,
    DatetimeQuery,
    FeatureFormat,
    FilterCrsQuery,
    FilterLangQuery,
    FilterQuery,
    LimitQuery,
    MetadataFormat,
    OffsetQuery,
    PropertiesQuery,
    SortbyQuery,
)

router = APIRouter(prefix="/ogc", tags=["ogc"], route_class=OgcRoute)

_JSON: Final = documents.JSON_MEDIA_TYPE
_GEOJSON: Final = documents.GEOJSON_MEDIA_TYPE
_ITEMS_PARAMETERS: Final = (
    "bbox",
    "bbox-crs",
    "datetime",
    "limit",
    "offset",
    "crs",
    "f",
    "filter",
    "filter-lang",
    "filter-crs",
    "sortby",
    "properties",
)

_ERROR: Final[dict[str, Any]] = {
    "content": {
        _JSON: {
            "schema": {
                "type": "object",
                "required": ["code", "detail"],
                "properties": {"code": {"type": "string"}, "detail": {"type": "string"}},
            }
        }
    }
}

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _get(path: str, name: str, media_type: str, **kwargs: Any) -> Callable[[Endpoint], Endpoint]:
    """Register a GET route at `path` and, hidden from the API definition, `path/`."""

    def register(endpoint: Endpoint) -> Endpoint:
        responses: dict[int | str, dict[str, Any]] = {
            200: {"content": {media_type: {}}},
            400: {"description": "An unknown query parameter or an invalid value", **_ERROR},
            # Declaring a default also keeps FastAPI from documenting a 422 never sent.
            "default": {"description": "401, 403 (incidents) or 404, as described", **_ERROR},
        }
        router.add_api_route(
            path, endpoint, methods=["GET"], name=name, responses=responses, **kwargs
        )
        router.add_api_route(
            f"{path}/",
            endpoint,
            methods=["GET"],
            name=f"{name}_slash",
            include_in_schema=False,
            **kwargs,
        )
        return endpoint

    return register


def _json(
    document: dict[str, Any], media_type: str = _JSON, crs: str | None = None
) -> JSONResponse:
    headers = {"Content-Crs": f"<{crs}>"} if crs is not None else None
    return JSONResponse(document, media_type=media_type, headers=headers)


def _collection(collection_id: str) -> Collection:
    collection = COLLECTIONS.get(collection_id)
    if collection is None:
        raise HTTPException(
            status_code=404,
            detail={
                "code": "collection_not_found",
                "detail": f"no collection {collection_id!r}; see {', '.join(COLLECTIONS)}",
            },
        )
    return collection


def _url_with(request: Request, **changes: str | None) -> str:
    """This request's URL with some query parameters replaced (None drops one)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    added = [(k, v) for k, v in changes.items() if v is not None]
    query = quoted_items(kept + added)
    base = str(request.url.replace(query=""))
    return f"{base}?{query}" if query else base


def _root_url(request: Request, path: str | None) -> str | None:
    # The app's own documents (OpenAPI, docs) live outside this router, under root_path.
    if path is None:
        return None
    return f"{str(request.base_url).rstrip('/')}{path}"


@_get("", "ogc_landing", _JSON, summary="Landing page")
def landing(
    request: Request, _only: Annotated[None, Depends(only("f"))], f: MetadataFormat = None
) -> JSONResponse:
    """The landing page: links to the API definition, conformance and the collections."""
    return _json(
        documents.landing_page(
            self_url=str(request.url_for("ogc_landing")),
            conformance_url=str(request.url_for("ogc_conformance")),
            collections_url=str(request.url_for("ogc_collections")),
            openapi_url=_root_url(request, request.app.openapi_url),
            docs_url=_root_url(request, request.app.docs_url),
        )
    )


@_get("/conformance", "ogc_conformance", _JSON, summary="Conformance classes")
def conformance(
    _only: Annotated[None, Depends(only("f"))], f: MetadataFormat = None
) -> JSONResponse:
    """The conformance classes implemented: Part 1 core, oas30, geojson, and Part 2 crs."""
    return _json(documents.conformance())


def _collection_document(
    request: Request, engine: Engine, collection: Collection, area_prefix: str | None
) -> dict[str, Any]:
    extent = collection_extent(engine, collection, area_prefix=area_prefix)
    return documents.collection_document(
        collection,
        extent,
        self_url=str(request.url_for("ogc_collection", collectionId=collection.id)),
        items_url=str(request.url_for("ogc_items", collectionId=collection.id)),
        schema_url=str(request.url_for("ogc_schema", collectionId=collection.id)),
        queryables_url=str(request.url_for("ogc_queryables", collectionId=collection.id)),
    )


@_get("/collections", "ogc_collections", _JSON, summary="Feature collections")
def collections(
    request: Request,
    engine: EngineDep,
    caller: OptionalPrincipal,
    _only: Annotated[None, Depends(only("f"))],
    f: MetadataFormat = None,
) -> JSONResponse:
    """The collections the caller may read (incidents only for supervisors and admins)."""
    readable = [c for c in COLLECTIONS.values() if may_read(c, caller)]
    return _json(
        documents.collections_document(
            [_collection_document(request, engine, c, area_filter(c, caller)) for c in readable],
            self_url=str(request.url_for("ogc_collections")),
        )
    )


@_get("/collections/{collectionId}", "ogc_collection", _JSON, summary="A feature collection")
def collection(
    request: Request,
    engine: EngineDep,
    caller: OptionalPrincipal,
    collection_id: CollectionId,
    _only: Annotated[None, Depends(only("f"))],
    f: MetadataFormat = None,
) -> JSONResponse:
    """One collection: its spatial (and temporal) extent, CRSs and items links.

    Errors: `collection_not_found` (404); for incidents, `unauthorized` (401) or
    `forbidden` (403) unless the caller is a supervisor or an admin.
    """
    chosen = _collection(collection_id)
    area_prefix = area_filter(chosen, caller)
    return _json(_collection_document(request, engine, chosen, area_prefix))


@_get(
    "/collections/{collectionId}/schema",
    "ogc_schema",
    documents.SCHEMA_MEDIA_TYPE,
    summary="Schema of a collection's features",
)
def schema(
    request: Request,
    caller: OptionalPrincipal,
    collection_id: CollectionId,
    _only: Annotated[None, Depends(only("f"))],
    f: MetadataFormat = None,
) -> JSONResponse:
    """The JSON Schema of the collection's features: their properties and types.

    Errors as for the collection.
    """
    return _schema_response(request, caller, collection_id, "ogc_schema", documents.feature_schema)


@_get(
    "/collections/{collectionId}/queryables",
    "ogc_queryables",
    documents.SCHEMA_MEDIA_TYPE,
    summary="What a filter may name",
)
def collection_queryables(
    request: Request,
    caller: OptionalPrincipal,
    collection_id: CollectionId,
    _only: Annotated[None, Depends(only("f"))],
    f: MetadataFormat = None,
) -> JSONResponse:
    """The queryables of the collection (JSON Schema): the properties `filter` and `sortby`
    may name, with their types, and `geometry`.

    Errors as for the collection.
    """
    return _schema_response(
        request, caller, collection_id, "ogc_queryables", documents.queryables_document
    )


def _schema_response(
    request: Request,
    caller: Principal | None,
    collection_id: str,
    route: str,
    build: Callable[..., documents.Document],
) -> JSONResponse:
    """A JSON Schema about a collection, which the caller must be allowed to read."""
    chosen = _collection(collection_id)
    area_filter(chosen, caller)
    document = build(chosen, self_url=str(request.url_for(route, collectionId=chosen.id)))
    return _json(document, documents.SCHEMA_MEDIA_TYPE)


@_get("/collections/{collectionId}/items", "ogc_items", _GEOJSON, summary="Features")
async def items(
    request: Request,
    engine: EngineDep,
    caller: OptionalPrincipal,
    collection_id: CollectionId,
    _only: Annotated[None, Depends(only(*_ITEMS_PARAMETERS))],
    bbox: BboxQuery = None,
    bbox_crs: BboxCrsQuery = None,
    datetime_: DatetimeQuery = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    offset: OffsetQuery = 0,
    crs: CrsQuery = None,
    f: FeatureFormat = None,
    filter_: FilterQuery = None,
    filter_lang: FilterLangQuery = None,
    filter_crs: FilterCrsQuery = None,
    sortby: SortbyQuery = None,
    properties: PropertiesQuery = None,
) -> JSONResponse:
    """Features of a collection as GeoJSON, paged, with numberMatched and next links.

    Errors (400): `unknown_parameter`, `invalid_parameter` (bbox, datetime, limit, offset,
    crs, filter-lang, filter-crs, sortby; datetime on a collection without time),
    `invalid_filter` (a filter that does not parse, with the parser's message, or that
    compares unlike values), `unknown_property` (in filter, sortby or properties).
    `collection_not_found` (404); incidents need a supervisor's (their area only) or an
    admin's token (401, 403).

    A page of the grids in force (no filter, sortby or datetime; a bbox allowed) is
    answered from the grid snapshot, as one grid by id is, and so within the same
    interval of a boundary import; other queries ask PostGIS.
    """
    chosen = _collection(collection_id)
    area_prefix = area_filter(chosen, caller)
    output_crs = parse_crs(crs)
    interval = parse_datetime(datetime_)
    if interval is not None and chosen.temporal is None:
        bad_parameter(f"collection {chosen.id} has no time, so it takes no datetime")
    page_size = effective_limit(limit)
    checked = None
    if filter_ is not None:
        checked = parse_filter(
            filter_,
            filter_lang or "cql2-text",
            queryables(chosen),
            lat_lon=parse_crs(filter_crs, "filter-crs") in LAT_LON_CRS,
        )
    query = FeatureQuery(
        bbox=parse_bbox(bbox, parse_crs(bbox_crs, "bbox-crs")),
        interval=interval,
        limit=page_size,
        offset=offset,
        area_prefix=area_prefix,
        lat_lon=output_crs in LAT_LON_CRS,
        filter=checked,
        sortby=parse_sortby(sortby),
        properties=parse_properties(properties),
    )
    page = None
    if chosen is GRIDS:
        snapshot = await _checked_grids(request)
        if snapshot is not None:
            page = grids_in_force_page(snapshot, datetime.now(UTC), query)
    if page is None:
        page = await run_in_threadpool(query_features, engine, chosen, query)
    served, alternate = feature_format(f)
    links = [
        documents.link(str(request.url), "self", served.media_type, "This page"),
        documents.link(
            _url_with(request, f=alternate.f), "alternate", alternate.media_type, "This page"
        ),
    ]
    returned = len(page.features)
    if offset + returned < page.number_matched:
        after = _url_with(request, offset=str(offset + returned), limit=str(page_size))
        links.append(documents.link(after, "next", served.media_type, "The next page"))
    if offset > 0:
        before = _url_with(request, offset=str(max(offset - page_size, 0)), limit=str(page_size))
        links.append(documents.link(before, "prev", served.media_type, "The previous page"))
    links.append(
        documents.link(
            str(request.url_for("ogc_collection", collectionId=chosen.id)),
            "collection",
            _JSON,
            chosen.title,
        )
    )
    document = documents.items_document(page, links=links, now=datetime.now(UTC))
    return _json(document, served.media_type, output_crs)


@_get("/collections/{collectionId}/items/{featureId}", "ogc_item", _GEOJSON, summary="A feature")
async def item(
    request: Request,
    engine: EngineDep,
    caller: OptionalPrincipal,
    collection_id: CollectionId,
    feature_id: Annotated[
        str,
        Path(
            alias="featureId",
            description="A code (districts to grids), a poi_id, or an incident_id.",
        ),
    ],
    _only: Annotated[None, Depends(only("crs", "f", "properties"))],
    crs: CrsQuery = None,
    f: FeatureFormat = None,
    properties: PropertiesQuery = None,
) -> JSONResponse:
    """One feature as GeoJSON; for a grid, its version in force (else its latest).

    A grid in force is answered from the grid snapshot locate reads, used only while
    checked against the database within its interval (2 s by default), so that a
    boundary import shows here within it, as in locate and the tiles.

    Errors: `feature_not_found`, `collection_not_found` (404); 400 as for items.
    """
    chosen = _collection(collection_id)
    area_prefix = area_filter(chosen, caller)
    output_crs = parse_crs(crs)
    lat_lon = output_crs in LAT_LON_CRS
    chosen_properties = parse_properties(properties)
    feature = None
    if chosen is GRIDS:
        # Async, so that a grid in force costs neither a thread-pool hop nor a statement.
        snapshot = await _checked_grids(request)
        if snapshot is not None:
            feature = grid_in_force(
                snapshot,
                feature_id,
                datetime.now(UTC),
                lat_lon=lat_lon,
                properties=chosen_properties,
            )
    if feature is None:
        feature = await run_in_threadpool(
            get_feature,
            engine,
            chosen,
            feature_id,
            area_prefix=area_prefix,
            lat_lon=lat_lon,
            properties=chosen_properties,
        )
    if feature is None:
        raise HTTPException(
            status_code=404,
            detail={
                "code": "feature_not_found",
                "detail": f"no feature {feature_id!r} in collection {chosen.id}",
            },
        )
    served, alternate = feature_format(f)
    document = documents.feature_document(
        feature,
        self_url=str(request.url),
        alternate_url=_url_with(request, f=alternate.f),
        collection_url=str(request.url_for("ogc_collection", collectionId=chosen.id)),
        served=served,
        alternate=alternate,
    )
    return _json(document, served.media_type, output_crs)


async def _checked_grids(request: Request) -> GridSnapshot | None:
    """The grid snapshot if checked against the database within its interval, else None.

    The first request loads it (as locate's first does); a due check runs in the
    background meanwhile, and until it ends the database answers.
    """
    cache: GridSnapshotCache = request.app.state.grid_snapshots
    if cache.current() is None:
        await run_in_threadpool(cache.snapshot)
    return cache.fresh()
