"""What many routers share: the app's engine, a JSON body reader, checked text and times."""

from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Final

from fastapi import Depends, Request
from pydantic import AfterValidator, AwareDatetime
from sqlalchemy import Engine

from geodata.compliance.weeks import check_supported_time
from geodata.query_limits import PayloadTooLarge
from grid_service.errors import UnsupportedMediaType


def _without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not hold a NUL character")
    return value


StoredText = Annotated[str, AfterValidator(_without_nul)]
"""A string of a request that may reach PostgreSQL, whose text cannot hold NUL (U+0000)."""


def _supported_time(t: datetime) -> datetime:
    return check_supported_time(t, "the time")


SupportedTime = Annotated[AwareDatetime, AfterValidator(_supported_time)]
"""A query's RFC 3339 time: with an offset, and within the span the domain supports
(1970 to 9000, so that it converts to UTC and to PostgreSQL); else 422 invalid_request."""


# Async although it does no I/O: FastAPI runs an async dependency on the event loop, while
# a sync one would cost a thread-pool hop, more than the attribute read it wraps.
async def get_engine(request: Request) -> Engine:
    """Dependency: the engine made in the app's lifespan (`app.state.engine`)."""
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


JSON_MEDIA_TYPES: Final = ("application/json",)
GEOJSON_MEDIA_TYPES: Final = ("application/json", "application/geo+json")
"""What a route taking a GeoJSON body accepts: RFC 7946's type, or plain JSON."""


def check_media_type(request: Request, accepted: Collection[str]) -> None:
    """Raise UnsupportedMediaType unless the body is declared one of `accepted`, in UTF-8.

    JSON is UTF-8 (RFC 8259), so a charset parameter may only say so; a missing
    Content-Type is refused too, rather than guessed at.
    """
    declared = request.headers.get("content-type")
    if declared is None:
        raise UnsupportedMediaType(f"declare the body's Content-Type: {' or '.join(accepted)}")
    media_type, *parameters = (part.strip() for part in declared.split(";"))
    if media_type.lower() not in accepted:
        raise UnsupportedMediaType(
            f"the body must be {' or '.join(accepted)}, not {media_type[:60]!r}"
        )
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset != "utf-8":
            raise UnsupportedMediaType(f"JSON is UTF-8; charset {charset[:30]!r} is not taken")


async def read_capped_body(
    request: Request, limit: int, media_types: Collection[str] = JSON_MEDIA_TYPES
) -> bytes:
    """The request body, checked to be one of `media_types` (UnsupportedMediaType), or
    PayloadTooLarge as soon as it is known to exceed `limit` bytes.

    Streamed with the cap, so that an oversized body is refused without being held in
    memory, whether it declares its Content-Length or not.
    """
    check_media_type(request, media_types)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{declared} bytes, more than {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"more than {limit} bytes")
    return bytes(body)
