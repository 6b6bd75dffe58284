"""GET /metrics, and the API's own metrics: HTTP requests and the gateway's refusals.

Under `wangge up` every process writes its samples to a shared directory
(PROMETHEUS_MULTIPROC_DIR) and /metrics adds them up; prometheus-client picks that store
when it is first imported, so the variable must be set before the process starts.
"""

import os
import re
import time
from collections.abc import Callable
from typing import Final

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic_core import from_json
from starlette.routing import Mount, Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS: Final = Histogram(
    "wangge_http_request_duration_seconds",
    "HTTP requests by method, route template and status, with their latency",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GATEWAY_REFUSALS: Final = Counter(
    "wangge_gateway_refusals_total",
    "Posted events refused by the gateway, by route, status and stable code",
    ["route", "status", "reason"],
)

GATEWAY_ROUTES: Final = frozenset(
    {
        "/api/v1/checkins",
        "/api/v1/incidents",
        "/api/v1/trackers/osmand/{device_secret}",
        "/api/v1/trackers/owntracks/{device_secret}",
    }
)
"""The routes whose refusals are counted by reason."""

UNMATCHED: Final = "<unmatched>"
"""The route label of a request no route took: never the raw URL, whose values are many."""

_MAX_ERROR_BODY: Final = 16384
"""Most bytes of an error body read for its code; error bodies are a few hundred."""

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus metrics: events in, assigned, refused by reason, duplicates, lag, latency;
    the API's requests by route and status, and the gateway's refusals by reason.

    Under `wangge up` every consumer process writes its samples to a shared directory
    (PROMETHEUS_MULTIPROC_DIR) and this adds them up.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


Template = tuple[re.Pattern[str], str, frozenset[str]]


def _templates(app: ASGIApp) -> list[Template]:
    """Every route's path pattern, template and methods, mounts included."""
    templates: list[Template] = []
    if isinstance(app, FastAPI):
        # The documented routes, by their OpenAPI paths: FastAPI keeps its included routers
        # behind private objects, while the schema lists every template as written.
        for path, operations in app.openapi().get("paths", {}).items():
            pattern, _, _ = compile_path(path)
            templates.append((pattern, path, frozenset(m.upper() for m in operations)))
    for route in getattr(app, "routes", ()):
        if isinstance(route, Mount):
            pattern, _, _ = compile_path(f"{route.path}/{{path:path}}")
            templates.append((pattern, f"{route.path}/{{path}}", frozenset()))
        elif isinstance(route, Route):  # undocumented ones, such as /openapi.json itself
            pattern, _, _ = compile_path(route.path)
            templates.append((pattern, route.path, frozenset(route.methods or ())))
    return templates


def _route_template(scope: Scope, templates: Callable[[], list[Template]]) -> str:
    """The path template of the route that took the request (`/grids/{code}`)."""
    route = scope.get("route")
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Answered before routing (a middleware refused it) or by no route: matched here.
    for pattern, template, methods in templates():
        if pattern.match(scope["path"]) and (not methods or scope["method"] in methods):
            return template
    return UNMATCHED


def _refusal_code(body: bytes) -> str:
    try:
        document = from_json(body)
    except ValueError:
        return "unknown"
    code = document.get("code") if isinstance(document, dict) else None
    return code if isinstance(code, str) and len(code) <= 64 else "unknown"


class HttpMetrics:
    """ASGI middleware: time and count every HTTP request; count the gateway's refusals."""

    def __init__(self, app: ASGIApp, root: ASGIApp | None = None) -> None:
        self.app = app
        self.root = root or app
        self._templates: list[Template] | None = None

    def _known_templates(self) -> list[Template]:
        if self._templates is None:
            try:
                self._templates = _templates(self.root)
            except Exception:  # a schema that cannot be built leaves requests unmatched
                self._templates = []
        return self._templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on and observe its answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before it answers
        error_body: bytearray | None = None

        async def observe(message: Message) -> None:
            nonlocal status, error_body
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status >= 400:
                    error_body = bytearray()
            elif message["type"] == "http.response.body" and error_body is not None:
                error_body += message.get("body", b"")[: _MAX_ERROR_BODY - len(error_body)]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = _route_template(scope, self._known_templates)
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).observe(elapsed)
            if route in GATEWAY_ROUTES and status >= 400:
                code = _refusal_code(bytes(error_body or b""))
                GATEWAY_REFUSALS.labels(route, str(status), code).inc()


def install_http_metrics(app: FastAPI) -> None:
    """Observe every request of `app`; install it last, so it is the outermost middleware."""
    app.add_middleware(HttpMetrics, root=app)
