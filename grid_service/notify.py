"""Calling a worker from the map over HTTP, and the sender that delivers the calls.

`POST /api/v1/workers/{id}/notify` records a call (geodata.notify says what it holds and
how it is retried; geodata.db.notify_store keeps it) and wakes the sender, a thread of the
API process that POSTs due calls to `WANGGE_NOTIFY_WEBHOOK_URL` and records every
attempt. `GET` on the same path lists the worker's latest calls with their state. Both are
for a supervisor whose area holds a grid of the worker (the scope of the worker's
patrols), or an admin.
"""

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from geodata.accounts import OutsideArea, Principal, Role
from geodata.compliance.report import parse_week
from geodata.db import accounts_store, notify_store
from geodata.db.notify_store import Delivery
from geodata.errors import WorkerNotFound
from geodata.notify import MAX_MESSAGE_LENGTH, NotifyConfig, after_attempt, call_body
from grid_service.auth import require_roles
from grid_service.deps import EngineDep, StoredText
from grid_service.errors import ErrorBody
from grid_service.routing import add_routes

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["notify"])

CALLS_LISTED: Final = 20
ERROR_TEXT_LIMIT: Final = 300
"""Characters of a receiver's error kept per attempt."""

Caller = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR, Role.ADMIN, limit_rate=True))]
Reader = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR, Role.ADMIN))]
WorkerId = Annotated[str, Path(pattern=r"^W[0-9]{5}$", examples=["W00001"])]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": ErrorBody, "description": "bad_request: the body is not JSON"},
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden or outside_area"},
    404: {"model": ErrorBody, "description": "worker_not_found (to an admin)"},
    422: {"model": ErrorBody, "description": "invalid_request or invalid_week"},
}
_POST_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_ERRORS,
    429: {"model": ErrorBody, "description": "rate_limited: retry after Retry-After seconds"},
    503: {"model": ErrorBody, "description": "notify_unavailable: no webhook is configured"},
}


class CallCreate(BaseModel):
    """What the supervisor adds to a call: the week and status seen, and a message."""

    model_config = ConfigDict(extra="forbid")

    week: StoredText | None = Field(default=None, max_length=8, examples=["2020-W37"])
    status: Literal["met", "on_track", "at_risk", "missed"] | None = None
    message: StoredText | None = Field(default=None, max_length=MAX_MESSAGE_LENGTH)


class CallPublic(BaseModel):
    """A call and where its delivery stands."""

    delivery_id: uuid.UUID
    worker_id: str
    requested_by: str
    requested_at: datetime
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None


class CallsPublic(BaseModel):
    """A worker's latest calls, newest first."""

    worker_id: str
    calls: list[CallPublic]


def _public(delivery: Delivery) -> CallPublic:
    return CallPublic(
        delivery_id=delivery.delivery_id,
        worker_id=delivery.worker_id,
        requested_by=delivery.requested_by,
        requested_at=delivery.requested_at,
        state=delivery.state,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        delivered_at=delivery.delivered_at,
        last_error=delivery.last_error,
    )


def _worker_in_scope(engine: Engine, principal: Principal, worker_id: str) -> str | None:
    """The worker's name, once the caller may call them: 403 `outside_area` alike for an
    unknown worker and one of another area (a supervisor cannot probe ids), 404 to an admin."""
    with Session(engine) as session:
        grid_codes = accounts_store.worker_grid_codes(session, worker_id)
        name = session.execute(
            text("SELECT name FROM workers WHERE worker_id = :w"), {"w": worker_id}
        ).scalar_one_or_none()
    if principal.role is not Role.ADMIN and not principal.can_read_worker(worker_id, grid_codes):
        raise OutsideArea(f"worker {worker_id} has no grid in the area {principal.area_prefix}")
    if name is None:
        raise WorkerNotFound(f"no worker has the id {worker_id}")
    return str(name)


@router.post(
    "/workers/{worker_id}/notify",
    status_code=202,
    response_model=CallPublic,
    responses=_POST_ERRORS,
)
async def call_worker(
    request: Request, engine: EngineDep, principal: Caller, worker_id: WorkerId, body: CallCreate
) -> CallPublic | JSONResponse:
    """Call a worker: the call is recorded and sent to the notify webhook, retried with
    backoff until the receiver answers 2xx (docs/NOTIFY.md). Answers 202 with the call,
    `pending` until delivered. Errors: 403 `outside_area`, 404 `worker_not_found`,
    422 `invalid_week`, 503 `notify_unavailable` when no webhook is configured."""
    if body.week is not None:
        parse_week(body.week)
    name = await run_in_threadpool(_worker_in_scope, engine, principal, worker_id)
    sender: NotifySender | None = getattr(request.app.state, "notify_sender", None)
    if sender is None:
        return JSONResponse(
            {"code": "notify_unavailable", "detail": "calling is off: no notify webhook is set"},
            status_code=503,
        )
    now = datetime.now(UTC)
    delivery_id = uuid.uuid4()
    payload = call_body(
        delivery_id=delivery_id,
        worker_id=worker_id,
        worker_name=name,
        requested_by=principal.name,
        requested_at=now,
        week=body.week,
        status=body.status,
        message=body.message,
    )

    def record() -> Delivery:
        with engine.begin() as conn:
            return notify_store.record_call(
                conn,
                delivery_id=delivery_id,
                worker_id=worker_id,
                requested_by=principal.name,
                requested_at=now,
                body=payload,
            )

    delivery = await run_in_threadpool(record)
    logger.info("call %s to worker %s by %s recorded", delivery_id, worker_id, principal.name)
    sender.wake()
    return _public(delivery)


@router.get("/workers/{worker_id}/notify", response_model=CallsPublic, responses=_ERRORS)
def list_worker_calls(engine: EngineDep, principal: Reader, worker_id: WorkerId) -> CallsPublic:
    """A worker's latest calls (up to 20), newest first, each with its delivery state and
    attempts. The scope and errors of POST on the same path."""
    _worker_in_scope(engine, principal, worker_id)
    with engine.connect() as conn:
        calls = notify_store.worker_calls(conn, worker_id, CALLS_LISTED)
    return CallsPublic(worker_id=worker_id, calls=[_public(call) for call in calls])


# --------------------------------------------------------------------------- the sender


class NotifySender:
    """A thread that POSTs due calls to the webhook and records each attempt; woken by a
    new call, else it looks every `poll_s`. Several API processes may each run one."""

    def __init__(self, engine: Engine, config: NotifyConfig, batch: int = 20) -> None:
        if config.webhook_url is None:
            raise ValueError("a sender needs a webhook URL")
        self._engine = engine
        self._config = config
        self._url: str = config.webhook_url
        self._batch = batch
        self._woken = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-sender", daemon=True)

    def start(self) -> None:
        """Start sending."""
        self._thread.start()

    def stop(self) -> None:
        """Finish the attempt under way and stop; a claimed call is retried after its lease."""
        self._stopping.set()
        self._woken.set()
        self._thread.join(timeout=self._config.timeout_s + 5)

    def wake(self) -> None:
        """Look for due calls now."""
        self._woken.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = self.send_due()
            except Exception:  # the database away: log, and look again after a pause
                logger.exception("notify sender: could not read the due calls")
                sent = 0
            if sent == 0:
                self._woken.wait(self._config.poll_s)
                self._woken.clear()

    def send_due(self) -> int:
        """Claim the due calls and make one attempt at each; how many were tried."""
        now = datetime.now(UTC)
        lease = timedelta(seconds=self._config.timeout_s * 2 + 10)
        with self._engine.begin() as conn:
            due = notify_store.claim_due(conn, now, lease, self._batch)
        for delivery in due:
            if self._stopping.is_set():
                break
            self._attempt(delivery)
        return len(due)

    def _attempt(self, delivery: Delivery) -> None:
        status, error = self._post(delivery)
        at = datetime.now(UTC)
        delivered = status is not None and 200 <= status < 300
        outcome = after_attempt(delivery.attempts + 1, delivered, at, self._config)
        with self._engine.begin() as conn:
            notify_store.record_attempt(
                conn, delivery, at=at, http_status=status, error=error, outcome=outcome
            )
        attempt = delivery.attempts + 1
        if delivered:
            logger.info("call %s delivered on attempt %d", delivery.delivery_id, attempt)
        elif outcome.state == "failed":
            logger.error(
                "call %s failed for good after %d attempts: %s",
                delivery.delivery_id,
                attempt,
                error,
            )
        else:
            logger.warning(
                "call %s attempt %d failed (%s); next at %s",
                delivery.delivery_id,
                attempt,
                error,
                outcome.next_attempt_at,
            )

    def _post(self, delivery: Delivery) -> tuple[int | None, str | None]:
        """One POST of the call: the receiver's status, and an error unless it was 2xx."""
        request = urllib.request.Request(
            self._url,
            data=json.dumps(delivery.body, ensure_ascii=False).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "wangge-notify/1",
                "X-Wangge-Delivery": str(delivery.delivery_id),
            },
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self._config.timeout_s) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad answer
            return None, f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
        logger.debug("webhook answered %d in %.3f s", status, time.monotonic() - started)
        return status, None if 200 <= status < 300 else f"HTTP {status}"


def install_notify(app: FastAPI) -> None:
    """Add the call routes to `app`; the sender is started by the app's lifespan."""
    add_routes(app, router)


def start_notify_sender(engine: Engine, config: NotifyConfig) -> NotifySender | None:
    """A started sender when a webhook is configured, else None (calls answer 503)."""
    if config.webhook_url is None:
        return None
    sender = NotifySender(engine, config)
    sender.start()
    return sender
