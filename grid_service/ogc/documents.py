"""The JSON documents of OGC API - Features: landing page, conformance, collections, items.

Pure functions from what was read and the URLs to link to; the routes supply both.
"""

from datetime import UTC, datetime
from typing import Any, Final

from geodata.db.features import (
    Collection,
    Extent,
    Feature,
    FeaturePage,
    PropertyType,
    queryables,
)
from grid_service.ogc.params import CRS84, SUPPORTED_CRS, MediaType

OPENAPI_MEDIA_TYPE: Final = "application/vnd.oai.openapi+json;version=3.0"
JSON_MEDIA_TYPE: Final = "application/json"
GEOJSON_MEDIA_TYPE: Final = "application/geo+json"
SCHEMA_MEDIA_TYPE: Final = "application/schema+json"

CONFORMANCE_CLASSES: Final = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/sorting",
)
"""Part 1 Core with OpenAPI 3.0 and GeoJSON, Part 2 (crs, bbox-crs), Part 3 (queryables,
`filter` in CQL2 text and JSON: comparisons, LIKE, BETWEEN, IN, CASEI, the S_* spatial
functions), and `sortby` as OGC API - Records defines it."""

QUERYABLES_REL: Final = "http://www.opengis.net/def/rel/ogc/1.0/queryables"

GREGORIAN: Final = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"

Link = dict[str, str]
Document = dict[str, Any]


def link(href: str, rel: str, media_type: str, title: str | None = None) -> Link:
    """One link object as the standard shapes it."""
    result = {"href": href, "rel": rel, "type": media_type}
    if title is not None:
        result["title"] = title
    return result


def rfc3339(moment: datetime) -> str:
    """A UTC time as RFC 3339 with `Z`."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def landing_page(
    *,
    self_url: str,
    conformance_url: str,
    collections_url: str,
    openapi_url: str | None,
    docs_url: str | None,
) -> Document:
    """The landing page: what this API is and where its parts are."""
    links = [link(self_url, "self", JSON_MEDIA_TYPE, "This document")]
    if openapi_url is not None:
        links.append(link(openapi_url, "service-desc", OPENAPI_MEDIA_TYPE, "The API definition"))
    if docs_url is not None:
        links.append(link(docs_url, "service-doc", "text/html", "The API documentation"))
    links += [
        link(conformance_url, "conformance", JSON_MEDIA_TYPE, "Conformance classes implemented"),
        link(collections_url, "data", JSON_MEDIA_TYPE, "The feature collections"),
    ]
    return {
        "title": "wangge: Baoji's urban grids",
        "description": (
            "OGC API - Features over the grid hierarchy of Baoji (districts, street "
            "offices, communities, 1,138 grids), its points of interest and, for "
            "supervisors, its incidents."
        ),
        "links": links,
    }


def conformance() -> Document:
    """The conformance declaration."""
    return {"conformsTo": list(CONFORMANCE_CLASSES)}


def collection_document(
    collection: Collection,
    extent: Extent,
    *,
    self_url: str,
    items_url: str,
    schema_url: str,
    queryables_url: str,
) -> Document:
    """One collection's description: extent, CRSs and links to its items."""
    document: Document = {
        "id": collection.id,
        "title": collection.title,
        "description": collection.description,
        "itemType": "feature",
        "crs": list(SUPPORTED_CRS),
        "storageCrs": CRS84,
        "links": [
            link(self_url, "self", JSON_MEDIA_TYPE, collection.title),
            link(items_url, "items", GEOJSON_MEDIA_TYPE, f"{collection.title} as GeoJSON"),
            link(f"{items_url}?f=json", "items", JSON_MEDIA_TYPE, f"{collection.title} as JSON"),
            link(schema_url, "describedby", SCHEMA_MEDIA_TYPE, "The schema of its features"),
            link(queryables_url, QUERYABLES_REL, SCHEMA_MEDIA_TYPE, "What a filter may name"),
        ],
    }
    spatial_temporal: Document = {}
    if extent.bbox is not None:
        box = extent.bbox
        spatial_temporal["spatial"] = {
            "bbox": [[box.min_lon, box.min_lat, box.max_lon, box.max_lat]],
            "crs": CRS84,
        }
    if collection.temporal is not None:
        interval = extent.interval
        start = interval.start if interval is not None else None
        end = interval.end if interval is not None else None
        spatial_temporal["temporal"] = {
            "interval": [
                [
                    rfc3339(start) if start is not None else None,
                    rfc3339(end) if end is not None else None,
                ]
            ],
            "trs": GREGORIAN,
        }
    if spatial_temporal:
        document["extent"] = spatial_temporal
    return document


_PROPERTY_SCHEMAS: Final[dict[PropertyType, Document]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "date-time": {"type": "string", "format": "date-time"},
    "string-list": {"type": "array", "items": {"type": "string"}},
}


def feature_schema(collection: Collection, *, self_url: str) -> Document:
    """The JSON Schema of the collection's GeoJSON features, so clients type its fields."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": self_url,
        "title": collection.title,
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": "string"},
            "geometry": {"$ref": f"https://geojson.org/schema/{collection.geometry_type}.json"},
            "properties": {
                "type": "object",
                "properties": {
                    name: _PROPERTY_SCHEMAS[kind] for name, kind in collection.properties.items()
                },
            },
        },
    }


def queryables_document(collection: Collection, *, self_url: str) -> Document:
    """The queryables of a collection as OGC API - Features Part 3 shapes them (JSON Schema)."""
    properties: Document = {}
    for name, kind in queryables(collection).items():
        if kind == "geometry":
            properties[name] = {
                "title": "The feature's geometry",
                "format": f"geometry-{collection.geometry_type.lower()}",
                "x-ogc-role": "primary-geometry",
            }
            continue
        schema: Document = {"title": name, **_PROPERTY_SCHEMAS[kind]}
        if name == collection.id_column:
            schema["x-ogc-role"] = "id"
        properties[name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": self_url,
        "title": collection.title,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }


def collections_document(documents: list[Document], *, self_url: str) -> Document:
    """The list of collections the caller may read."""
    return {
        "links": [link(self_url, "self", JSON_MEDIA_TYPE, "The feature collections")],
        "collections": documents,
    }


def feature_object(feature: Feature) -> Document:
    """A GeoJSON Feature without links, as items lists it."""
    return {
        "type": "Feature",
        "id": feature.id,
        "geometry": feature.geometry,
        "properties": feature.properties,
    }


def items_document(
    page: FeaturePage,
    *,
    links: list[Link],
    now: datetime,
) -> Document:
    """A GeoJSON FeatureCollection page with the standard's counts and links."""
    return {
        "type": "FeatureCollection",
        "features": [feature_object(feature) for feature in page.features],
        "links": links,
        "timeStamp": rfc3339(now),
        "numberMatched": page.number_matched,
        "numberReturned": len(page.features),
    }


def feature_document(
    feature: Feature,
    *,
    self_url: str,
    alternate_url: str,
    collection_url: str,
    served: MediaType,
    alternate: MediaType,
) -> Document:
    """One GeoJSON Feature with its self, alternate and collection links."""
    document = feature_object(feature)
    document["links"] = [
        link(self_url, "self", served.media_type, "This feature"),
        link(alternate_url, "alternate", alternate.media_type, f"This feature as {alternate.f}"),
        link(collection_url, "collection", JSON_MEDIA_TYPE, "The collection"),
    ]
    return document
