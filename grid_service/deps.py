"""What many routers share: the app's engine as a dependency, and a capped body reader."""

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from geodata.query_limits import PayloadTooLarge


# Async although it does no I/O: FastAPI runs an async dependency on the event loop, while
# a sync one would cost a thread-pool hop, more than the attribute read it wraps.
async def get_engine(request: Request) -> Engine:
    """Dependency: the engine made in the app's lifespan (`app.state.engine`)."""
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The request body, or PayloadTooLarge as soon as it is known to exceed `limit` bytes.

    Streamed with the cap, so that an oversized body is refused without being held in
    memory, whether it declares its Content-Length or not.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{declared} bytes, more than {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"more than {limit} bytes")
    return bytes(body)
