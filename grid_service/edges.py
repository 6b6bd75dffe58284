"""What every request is checked for, and every response given, whatever the route.

- A NUL character anywhere in the path or the query string is 422 `invalid_request`
  before any route sees it: PostgreSQL's text cannot hold NUL, and no identifier, code,
  week or filter of this API contains one.
- `Cache-Control: no-store` on every answer to a request with a token and on every
  route of scoped or personal data (incidents, compliance, patrols, the stream, admin),
  so that neither a browser nor a shared cache keeps a copy; public data (grids, tiles,
  OGC) keeps its own caching when it is asked for without a token.
"""

from typing import Final
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PRIVATE_PREFIXES: Final = (
    "/api/v1/incidents",
    "/api/v1/compliance",
    "/api/v1/workers/",
    "/api/v1/stream",
    "/api/v1/admin/",
    "/api/v1/checkins",
    "/tiles/incidents",
    "/ogc/collections/incidents",
)
"""Paths whose answers, errors included, are scoped or personal: never stored."""

NO_STORE: Final = "no-store"


def _has_nul(scope: Scope) -> bool:
    # The path arrives percent-decoded; the query string raw, so %00 is decoded here.
    return "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope["query_string"])


def _is_private(scope: Scope) -> bool:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.startswith(PRIVATE_PREFIXES) or any(
        name == b"authorization" for name, _ in scope["headers"]
    )


class EdgeGuard:
    """ASGI middleware: refuse NUL in the URL; mark private answers `no-store`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check an HTTP request's URL, then pass it on, its answer's headers amended."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = _is_private(scope)
        if _has_nul(scope):
            refusal = JSONResponse(
                {"code": "invalid_request", "detail": "the URL holds a NUL character (%00)"},
                status_code=422,
                headers={"Cache-Control": NO_STORE} if private else None,
            )
            await refusal(scope, receive, send)
            return
        if not private:
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Cache-Control"] = NO_STORE
            await send(message)

        await self.app(scope, receive, send_no_store)


def install_edges(app: FastAPI) -> None:
    """Add EdgeGuard outermost; call it in the app factory after every other middleware."""
    app.add_middleware(EdgeGuard)
