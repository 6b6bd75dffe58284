"""Calling a worker from the map: what a call says, and when a failed delivery is retried.

A supervisor presses "notify" beside a worker of the at-risk or missed list; the call is
recorded (`notify_deliveries`) and sent as JSON to the city's webhook (its SMS or
messaging gateway, `WANGGE_NOTIFY_WEBHOOK_URL`). A receiver that is down or answers
anything but 2xx is tried again after a delay that doubles from `retry_base_s` up to
`retry_max_s`, `max_attempts` times in all; then the call is `failed`. Every attempt is
kept (`notify_attempts`). Each attempt carries the same `delivery_id`, so a receiver that
took a call but whose answer was lost can drop the repeat.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import urlsplit

MAX_MESSAGE_LENGTH: Final = 500
"""Characters of a supervisor's message: an SMS or two, in any script."""

DeliveryState = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class NotifyConfig:
    """Where calls go and how they are retried (settings: WANGGE_NOTIFY_*)."""

    #: http(s) URL the calls are POSTed to; None: calling is off (the route says 503).
    webhook_url: str | None = None
    max_attempts: int = 8
    retry_base_s: float = 5.0
    retry_max_s: float = 900.0
    #: Seconds one attempt may take, connecting and reading the answer.
    timeout_s: float = 5.0
    #: Seconds between the sender's looks for due calls when nothing wakes it.
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        if self.webhook_url is not None:
            check_webhook_url(self.webhook_url)
        if self.max_attempts < 1 or self.retry_base_s <= 0 or self.retry_max_s < self.retry_base_s:
            raise ValueError("need max_attempts >= 1 and 0 < retry_base_s <= retry_max_s")
        if self.timeout_s <= 0 or self.poll_s <= 0:
            raise ValueError("need timeout_s > 0 and poll_s > 0")


def check_webhook_url(url: str) -> str:
    """The URL if it is an absolute http or https URL with a host; else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the notify webhook must be an http(s) URL with a host, got {url!r}")
    return url


def retry_delay(attempts: int, config: NotifyConfig) -> timedelta:
    """How long after the `attempts`-th failed attempt the next one is made."""
    exponent = min(max(attempts - 1, 0), 30)  # 2**30 times any base is past every cap
    return timedelta(seconds=min(config.retry_base_s * 2**exponent, config.retry_max_s))


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt leaves: the delivery's new state and, if pending, its next try."""

    state: DeliveryState
    next_attempt_at: datetime | None


def after_attempt(
    attempts: int, delivered: bool, at: datetime, config: NotifyConfig
) -> AttemptOutcome:
    """The state after the `attempts`-th attempt (counting it), made at `at`."""
    if delivered:
        return AttemptOutcome("delivered", None)
    if attempts >= config.max_attempts:
        return AttemptOutcome("failed", None)
    return AttemptOutcome("pending", at + retry_delay(attempts, config))


def call_body(
    *,
    delivery_id: uuid.UUID,
    worker_id: str,
    worker_name: str | None,
    requested_by: str,
    requested_at: datetime,
    week: str | None,
    status: str | None,
    message: str | None,
) -> dict[str, Any]:
    """The JSON object the webhook receives for a call (docs/NOTIFY.md)."""
    return {
        "type": "wangge.worker_call",
        "delivery_id": str(delivery_id),
        "worker_id": worker_id,
        "worker_name": worker_name,
        "week": week,
        "status": status,
        "message": message,
        "requested_by": requested_by,
        "requested_at": requested_at.isoformat(),
    }
