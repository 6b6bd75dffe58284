"""`GET /api/v1/stream`: the live map's server-sent events, filtered per caller.

A thin adapter: `geodata.live` decides what a message holds and who gets it, the
`LiveFeed` reads Kafka, the `LiveHub` fans out. This module authorizes the caller, picks
its filter and writes its queue out as SSE, with pings so that proxies and the page can
tell a quiet city from a dead connection.

Events: `checkin`, `incident`, `compliance`, `incident_status` (JSON, `id` = the
event's `event_id`, a status change's `change_id`);
`status` (`{"live": bool, "detail": ...}`) first and whenever the broker comes or goes;
`dropped` when the client fell too far behind, after which the stream ends.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

import anyio
from fastapi import APIRouter, Depends, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from geodata.accounts import Principal, Role
from geodata.contract import Topics
from geodata.live import LiveKind, MapMessage, StreamFilter, stream_filter
from grid_service.auth import require_roles
from grid_service.errors import ErrorBody
from grid_service.live_feed import LiveFeed
from grid_service.live_hub import Closed, Dropped, FeedStatus, LiveHub

PING_S: Final = 15
"""Seconds between keep-alive comments: under the usual 30-60 s proxy idle timeouts."""
SEND_TIMEOUT_S: Final = 30
"""A send stuck longer than this (a client that stopped reading) ends the stream."""
RECONNECT_MS: Final = 3000
SHUTDOWN_GRACE_S: Final = 1.0
"""How long a stream may take to end on its own when the server stops."""

router = APIRouter(prefix="/api/v1", tags=["live"])

LiveReader = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR, Role.ADMIN))]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden (a worker) or outside_area"},
    422: {"model": ErrorBody, "description": "invalid_code or invalid_types"},
}


@dataclass(frozen=True)
class LiveStream:
    """The app's hub and its Kafka reader (`app.state.live`)."""

    hub: LiveHub
    feed: LiveFeed

    async def aclose(self) -> None:
        """Stop the reader (off the loop: it finishes a poll) and end every client's stream."""
        await asyncio.to_thread(self.feed.stop)
        self.hub.close()


def open_live_stream(bootstrap: str, topics: Topics) -> LiveStream:
    """A hub on the running loop and its reader, started by the first client; in a lifespan."""
    hub = LiveHub(asyncio.get_running_loop())
    return LiveStream(hub, LiveFeed(bootstrap, topics, hub))


def _live_stream(request: Request) -> LiveStream:
    live = getattr(request.app.state, "live", None)
    if not isinstance(live, LiveStream):
        raise RuntimeError("the app has no live stream: open_live_stream in its lifespan")
    return live


def _status_event(status: FeedStatus) -> ServerSentEvent:
    body = json.dumps({"live": status.live, "detail": status.detail})
    return ServerSentEvent(data=body, event="status", retry=RECONNECT_MS)


async def _events(
    hub: LiveHub, chosen: StreamFilter, name: str, shutdown: anyio.Event
) -> AsyncIterator[ServerSentEvent]:
    # Subscribed once the response streams, so the finally below always unsubscribes.
    subscriber = hub.subscribe(chosen, name)

    async def end_on_shutdown() -> None:
        # The server is stopping: end the stream as a finished response, not a cancelled
        # one, so that the client reads a clean end and the server logs no error.
        await shutdown.wait()
        hub.end(subscriber)

    watcher = asyncio.create_task(end_on_shutdown())
    try:
        while True:
            item = await subscriber.queue.get()
            if isinstance(item, MapMessage):
                yield ServerSentEvent(data=item.data, event=item.kind.value, id=item.event_id)
            elif isinstance(item, FeedStatus):
                yield _status_event(item)
            elif isinstance(item, Dropped):
                detail = f"the client fell {item.behind} events behind; reconnect"
                yield ServerSentEvent(
                    data=json.dumps({"code": "too_slow", "detail": detail}), event="dropped"
                )
                return
            elif isinstance(item, Closed):
                return
    finally:
        watcher.cancel()
        hub.unsubscribe(subscriber)


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream."},
        **_ERRORS,
    },
)
async def get_stream(
    request: Request,
    principal: LiveReader,
    code: Annotated[
        str | None,
        Query(
            description="only events under this area code prefix, inside the caller's area "
            "(default: the caller's area: a supervisor's prefix, all for an admin)",
            examples=["610302"],
        ),
    ] = None,
    types: Annotated[
        str | None,
        Query(
            description="comma-separated kinds: "
            + ", ".join(kind.value for kind in LiveKind)
            + " (default: all)",
            examples=["checkin,compliance"],
        ),
    ] = None,
) -> EventSourceResponse:
    """Server-sent events for the live map, from now on: check-ins, incidents, compliance,
    incident status changes.

    `checkin` and `incident` come from the assignments topic once an event has its grid:
    ids, grid and community codes, a position rounded to 4 decimals (about 10 m), the event
    time; `compliance` is a worker's patrol status change in a grid; `incident_status` an
    incident's move (`incident_id`, `version`, `action`, `from_status`, `to_status`,
    `assignee`, `escalated_to`, its codes and position, `at`), placed by its grid as the
    incident's own reads are. A supervisor gets what happens under its area code prefix,
    an admin everything; a worker's token is 403
    `forbidden`, none 401. `status` says whether the feed is live; a comment pings every
    15 s; a client too slow to keep up gets `dropped` and the stream ends (reconnect).
    Errors: `outside_area` (403), `invalid_code`, `invalid_types` (422).
    """
    chosen = stream_filter(principal, code, types)
    live = _live_stream(request)
    live.feed.ensure_started()
    name = f"{principal.name} (token {principal.token_id})"
    shutdown = anyio.Event()
    return EventSourceResponse(
        _events(live.hub, chosen, name, shutdown),
        ping=PING_S,
        send_timeout=SEND_TIMEOUT_S,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
