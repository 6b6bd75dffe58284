"""Query parameters of OGC API - Features, read the way the standard wants them refused.

The standard asks for 400 (not FastAPI's 422) for an invalid value and for any query
parameter the API definition does not name, so the OGC routes use `OgcRoute` and the
`only(...)` guard, and everything here raises `bad_parameter`.
"""

import math
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, NoReturn
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from geodata.compliance.weeks import check_supported_time
from geodata.db.features import BBox, SortKey, TimeInterval

CRS84: Final = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_4326: Final = "http://www.opengis.net/def/crs/EPSG/0/4326"
EPSG_4490: Final = "http://www.opengis.net/def/crs/EPSG/0/4490"
SUPPORTED_CRS: Final = (CRS84, EPSG_4490, EPSG_4326)
"""CRS84 is how the data is stored; CGCS2000 is WGS84 at this precision (docs/EVENTS.md)."""

LAT_LON_CRS: Final = frozenset({EPSG_4326, EPSG_4490})
"""CRSs whose axis order is latitude first, so coordinates and bbox are swapped."""

DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 1000

Format = Literal["json", "geojson"]


def bad_parameter(detail: str, code: str = "invalid_parameter") -> NoReturn:
    """Refuse the request with 400 and a stable code, as the standard asks."""
    raise HTTPException(status_code=400, detail={"code": code, "detail": detail})


class OgcRoute(APIRoute):
    """A route whose invalid query values answer 400 instead of FastAPI's 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, with a validation error turned into a 400."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                problems = [
                    f"{'.'.join(str(part) for part in error.get('loc', ()))}: "
                    f"{error.get('msg', '')}"
                    for error in exc.errors()
                ]
                bad_parameter("; ".join(problems))

        return handle


def only(*allowed: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """Dependency: 400 for a query parameter not in `allowed`, or one given twice."""
    names = frozenset(allowed)

    # Async although it does no I/O: FastAPI sends a sync dependency to the thread pool, a
    # hop that costs more than this check (and every OGC read has it).
    async def check(request: Request) -> None:
        seen: set[str] = set()
        for name, _value in request.query_params.multi_items():
            if name not in names:
                known = ", ".join(sorted(names)) or "none"
                bad_parameter(
                    f"unknown query parameter {name!r}; this resource takes: {known}",
                    code="unknown_parameter",
                )
            if name in seen:
                bad_parameter(f"query parameter {name!r} given more than once")
            seen.add(name)

    return check


def parse_crs(value: str | None, parameter: str = "crs") -> str:
    """The CRS URI of `value` (a URI, `[EPSG:4490]` or `EPSG:4490`); CRS84 when absent."""
    if value is None:
        return CRS84
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    shorthand = {"OGC:CRS84": CRS84, "EPSG:4326": EPSG_4326, "EPSG:4490": EPSG_4490}
    uri = shorthand.get(text.upper(), text.replace("https://", "http://", 1))
    if uri not in SUPPORTED_CRS:
        bad_parameter(f"{parameter} {value!r} is not one of {', '.join(SUPPORTED_CRS)}")
    return uri


def parse_bbox(value: str | None, crs: str = CRS84) -> BBox | None:
    """`minx,miny,maxx,maxy` (or 6 numbers with heights) in `crs`, as a lon/lat box."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        bad_parameter(f"bbox takes 4 or 6 comma-separated numbers, got {value!r}")
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        bad_parameter(f"bbox takes numbers, got {value!r}")
    if not all(math.isfinite(number) for number in numbers):
        bad_parameter(f"bbox takes finite numbers, got {value!r}")
    if len(numbers) == 6:  # heights are ignored: every geometry here is 2D
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    x0, y0, x1, y1 = numbers
    if crs in LAT_LON_CRS:
        x0, y0, x1, y1 = y0, x0, y1, x1
    if y0 > y1:
        bad_parameter(f"bbox's lower latitude is above its upper one: {value!r}")
    if not (-90 <= y0 <= 90 and -90 <= y1 <= 90 and -180 <= x0 <= 180 and -180 <= x1 <= 180):
        bad_parameter(f"bbox lies outside [-180, 180] x [-90, 90]: {value!r}")
    # min_lon > max_lon stays: the standard's box across the antimeridian.
    return BBox(x0, y0, x1, y1)


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        bad_parameter(f"datetime {text!r} is not RFC 3339, such as 2020-09-07T10:00:00+08:00")
    if moment.tzinfo is None or ("T" not in text.upper() and " " not in text):
        bad_parameter(f"datetime {text!r} needs a time with an offset, such as Z or +08:00")
    try:
        return check_supported_time(moment, "datetime")
    except ValueError as exc:
        bad_parameter(str(exc))


def parse_datetime(value: str | None) -> TimeInterval | None:
    """An instant, or an interval `start/end` where `..` or nothing leaves a side open."""
    if value is None:
        return None
    if "/" not in value:
        moment = _instant(value)
        return TimeInterval(moment, moment)
    start_text, _, end_text = value.partition("/")
    if "/" in end_text:
        bad_parameter(f"datetime takes one instant or one interval, got {value!r}")
    start = None if start_text in ("", "..") else _instant(start_text)
    end = None if end_text in ("", "..") else _instant(end_text)
    if start is not None and end is not None and start > end:
        bad_parameter(f"datetime interval ends before it starts: {value!r}")
    return TimeInterval(start, end)


def parse_sortby(value: str | None) -> tuple[SortKey, ...]:
    """`sortby=-households,code`: properties in order, `-` descending, `+` or none ascending."""
    if value is None:
        return ()
    keys: list[SortKey] = []
    for part in value.split(","):
        # An unescaped `+` arrives as a space, so a leading space means ascending too.
        name = part.strip()
        descending = name.startswith("-")
        if name[:1] in ("-", "+"):
            name = name[1:]
        if not name:
            bad_parameter(f"sortby takes comma-separated property names, got {value!r}")
        keys.append(SortKey(name, descending))
    return tuple(keys)


def parse_properties(value: str | None) -> tuple[str, ...] | None:
    """`properties=name,households`: only these in each feature; empty: none at all."""
    if value is None:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())


def effective_limit(limit: int) -> int:
    """The page size served: as asked, but at most MAX_LIMIT (the standard says clamp)."""
    return min(limit, MAX_LIMIT)


@dataclass(frozen=True)
class MediaType:
    """A representation the items and feature resources can be asked for with `f`."""

    f: Format
    media_type: str


GEOJSON: Final = MediaType("geojson", "application/geo+json")
JSON: Final = MediaType("json", "application/json")


def feature_format(f: Format | None) -> tuple[MediaType, MediaType]:
    """The representation asked for (GeoJSON by default) and the alternate one."""
    return (JSON, GEOJSON) if f == "json" else (GEOJSON, JSON)


def quoted_items(pairs: Iterable[tuple[str, str]]) -> str:
    """A query string that keeps bbox commas and times readable, and `+` escaped."""
    return "&".join(f"{quote(key, safe='-')}={quote(value, safe=',:/')}" for key, value in pairs)
