"""Phones for the fault matrix: workers posting check-in batches and retrying like a phone.

Each phone posts its batches through `POST /api/v1/checkins`, one after another, each
with event_ids of its own. A batch that fails (503, a dropped connection, a timeout) is
posted again, the same events, until the gateway answers 202 or the phone's patience
runs out; 202 is what "accepted" means, and what must never be lost.
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psycopg

from tests.integration.pipeline_support import Placement, checkin_event

BATCH_SIZE = 10
BATCH_INTERVAL_S = 1.0
RETRY_PAUSE_S = 0.5
PATIENCE_S = 60.0
"""How long a phone keeps retrying one batch before it gives up (and the test fails)."""

WEEK_MINUTES = int(6.5 * 24 * 60)
"""A phone's clock wraps before the week ends, so every check-in stays in 2020-W37."""


def walk_minute(index: int) -> int:
    """When a phone's `index`-th check-in was taken: walks of 12 fixes 2 minutes apart.

    The 45-minute pause between walks is more than the patrol gap, so each walk is a
    patrol of its own (12 fixes over 22 minutes: a valid one).
    """
    walk, step = divmod(index, 12)
    return (walk * (11 * 2 + 45) + step * 2) % WEEK_MINUTES


@dataclass(frozen=True)
class Accepted:
    """A batch the gateway answered 202 to."""

    event_ids: tuple[str, ...]
    first_posted: float
    accepted_at: float
    attempts: int


@dataclass
class Phone:
    """One worker's phone: its token, its spot inside its grid, what it sent."""

    placement: Placement
    token: str
    sent: int = 0
    accepted: list[Accepted] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    given_up: list[tuple[str, ...]] = field(default_factory=list)
    posting: bool = False

    def next_batch(self) -> list[dict[str, object]]:
        """The next batch of fresh check-ins on this phone's walk."""
        spot = self.placement
        batch = [
            checkin_event(spot.worker_id, spot.lon, spot.lat, walk_minute(self.sent + i))
            for i in range(BATCH_SIZE)
        ]
        self.sent += BATCH_SIZE
        return batch

    def _send(self, client: httpx.Client, batch: list[dict[str, object]]) -> httpx.Response | None:
        """One attempt; None (and the error counted) when the connection failed."""
        self.posting = True
        try:
            answer = client.post(
                "/api/v1/checkins",
                json={"checkins": batch},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.TransportError as exc:
            self.answers[type(exc).__name__] += 1
            return None
        finally:
            self.posting = False
        self.answers[str(answer.status_code)] += 1
        return answer

    def post(self, client: httpx.Client, batch: list[dict[str, object]]) -> None:
        """Post one batch until it is accepted; retry the very same events on failure."""
        ids = tuple(str(e["event_id"]) for e in batch)
        first = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            pause = RETRY_PAUSE_S
            answer = self._send(client, batch)
            if answer is not None:
                if answer.status_code == 202:
                    self.accepted.append(Accepted(ids, first, time.monotonic(), attempts))
                    return
                if answer.status_code in (429, 503):
                    retry_after = float(answer.headers.get("Retry-After", RETRY_PAUSE_S))
                    pause = min(max(retry_after, RETRY_PAUSE_S), 5.0)
                else:
                    # Not a phone's problem to retry: 4xx is a bug in this test, any other
                    # 5xx a broken promise (an absent dependency is 503).
                    self.unexpected.append(f"{answer.status_code} {answer.text[:200]}")
                    if answer.status_code < 500:
                        return
            if time.monotonic() - first > PATIENCE_S:
                self.given_up.append(ids)
                return
            time.sleep(pause)


class Phones:
    """Phones posting in threads until told to stop; each finishes the batch in hand."""

    def __init__(self, base: str, phones: list[Phone]) -> None:
        self.base = base
        self.phones = phones
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(p,), name=f"phone-{p.placement.worker_id}")
            for p in phones
        ]

    def _run(self, phone: Phone) -> None:
        with httpx.Client(base_url=self.base, timeout=20) as client:
            while not self._stop.is_set():
                phone.post(client, phone.next_batch())
                self._stop.wait(BATCH_INTERVAL_S)

    def start(self) -> None:
        """Start posting."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Post no new batch; wait for the ones in hand (bounded by a phone's patience)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=PATIENCE_S + 30)

    def in_flight(self) -> bool:
        """Whether a phone is waiting for an answer right now."""
        return any(p.posting for p in self.phones)

    def accepted(self, posted_since: float | None = None) -> list[Accepted]:
        """Accepted batches, optionally only those first posted at or after a time."""
        batches = [b for p in self.phones for b in list(p.accepted)]
        if posted_since is None:
            return batches
        return [b for b in batches if b.first_posted >= posted_since]

    def accepted_ids(self, posted_since: float | None = None) -> list[str]:
        """Event ids of accepted batches (see `accepted`)."""
        return [i for b in self.accepted(posted_since) for i in b.event_ids]

    def answers(self) -> dict[str, int]:
        """How often each answer (status code or transport error) came back."""
        total: Counter[str] = Counter()
        for phone in self.phones:
            total.update(phone.answers)
        return dict(sorted(total.items()))

    def unexpected(self) -> list[str]:
        """Answers a phone should never get."""
        return [u for p in self.phones for u in p.unexpected]

    def given_up(self) -> int:
        """Check-ins in batches that were never accepted within a phone's patience."""
        return sum(len(ids) for p in self.phones for ids in p.given_up)


def stored_ids(database_url: str, event_ids: list[str]) -> set[str] | None:
    """Which of `event_ids` are in `checkins`; None while the database does not answer."""
    try:
        with psycopg.connect(database_url, connect_timeout=3) as conn:
            rows = conn.execute(
                "SELECT event_id::text FROM checkins WHERE event_id = ANY(%s::uuid[])",
                (event_ids,),
            ).fetchall()
    except psycopg.OperationalError:
        return None
    return {str(r[0]) for r in rows}


def wait_stored(database_url: str, event_ids: list[str], limit_s: float, stall_s: float) -> float:
    """Wait until every id is stored: up to `limit_s`, or until nothing new came for
    `stall_s`; return when the last one was seen (monotonic time)."""
    start = last_progress = time.monotonic()
    seen = -1
    while True:
        found = stored_ids(database_url, event_ids)
        now = time.monotonic()
        if found is not None and len(found) > seen:
            seen, last_progress = len(found), now
        if seen == len(event_ids) or now - start > limit_s or now - last_progress > stall_s:
            return now
        time.sleep(0.25)
