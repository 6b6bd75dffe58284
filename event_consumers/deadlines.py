"""The deadline engine: a priority queue of open cases' due moments, driven by event time.

No cron scans the incidents. At start the engine loads the open cases' due moments into a
heap; from then on it learns every filing and transition from the incident status outbox
(each change carries the case's new `due_at`), read by id as the outbox's NOTIFY wakes it.
When its clock passes the earliest due moment it calls `deadline_store.apply_due` for that
case in a transaction of its own (transition, history and outbox row together), which
decides from the locked row: a restart, a second engine or a stale heap entry changes
nothing twice. docs/DEADLINES.md says which clock and why.
"""

import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import psycopg

from geodata.db import deadline_store, incident_outbox
from geodata.deadlines import DeadlineTable

logger = logging.getLogger(__name__)

#: How long a hole in the outbox's ids (a transaction that took an id and has not committed
#: yet, or rolled back) is waited for before the engine reads past it.
GAP_TIMEOUT_S: Final = 10.0
#: How often the city's table and calendar are read again (an edit applies from then on).
TABLE_REFRESH_S: Final = 30.0


class Clock(Protocol):
    """What the engine asks the time of, and tells the event times it sees."""

    def now(self) -> datetime | None:
        """The engine's present; None: no time known yet (nothing falls due)."""
        ...

    def observe(self, event_time: datetime) -> None:
        """An event of this time was seen."""
        ...


class EventTimeClock:
    """Event time: the newest event time seen (a watermark), running on at the wall clock's
    rate since it was seen, so that a quiet night still passes; never backwards."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._mark: datetime | None = None
        self._seen_at = 0.0

    def now(self) -> datetime | None:
        """The watermark plus the wall time since it was seen."""
        if self._mark is None:
            return None
        return self._mark + timedelta(seconds=self._monotonic() - self._seen_at)

    def observe(self, event_time: datetime) -> None:
        """Move the watermark forward to `event_time` if it is ahead of the present."""
        current = self.now()
        if current is None or event_time > current:
            self._mark = event_time
            self._seen_at = self._monotonic()


class ManualClock:
    """A clock a test sets: event times seen do not move it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start

    def now(self) -> datetime | None:
        """The time the test set."""
        return self._now

    def set(self, moment: datetime) -> None:
        """Set the present (tests only move it forward)."""
        self._now = moment

    def observe(self, event_time: datetime) -> None:
        """Ignored: the test decides."""


class DeadlineEngine:
    """One process's queue of due moments and the loop that acts on them."""

    def __init__(
        self,
        database_url: str,
        clock: Clock,
        *,
        gap_timeout_s: float = GAP_TIMEOUT_S,
        on_applied: Callable[[datetime, datetime], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.clock = clock
        self.gap_timeout_s = gap_timeout_s
        #: Told (due moment, wall time of its commit) after each change: the benchmark's probe.
        self.on_applied = on_applied
        self._conn: psycopg.Connection | None = None
        self._heap: list[tuple[datetime, uuid.UUID]] = []
        self._due: dict[uuid.UUID, datetime] = {}
        self._after = 0  # every outbox id up to this one is read
        self._seen: set[int] = set()  # ids above `_after` already read
        self._gap_since: float | None = None
        self._table: DeadlineTable | None = None
        self._table_read_at = 0.0

    # ----------------------------------------------------------------- state

    @property
    def queued(self) -> int:
        """How many open cases the engine holds a due moment for."""
        return len(self._due)

    def next_due(self) -> datetime | None:
        """The earliest due moment queued."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        return self._conn

    def close(self) -> None:
        """Close the engine's connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def load(self) -> None:
        """Queue every open case's due moment and start reading the outbox after now."""
        conn = self._connection()
        with conn.transaction():
            # The outbox position first: a change committed after it is read again, harmless.
            row = conn.execute(
                "SELECT coalesce(max(id), 0) FROM incident_status_changes"
            ).fetchone()
            self._after = int(row[0]) if row else 0
            dues = deadline_store.open_dues(conn)
            latest = conn.execute(
                "SELECT max((body->>'at')::timestamptz) FROM incident_status_changes WHERE id > %s",
                (self._after - 1000,),
            ).fetchone()
        self._seen.clear()
        self._heap = [(due.due_at, due.incident_id) for due in dues]
        heapq.heapify(self._heap)
        self._due = {due.incident_id: due.due_at for due in dues}
        if latest and latest[0] is not None:
            self.clock.observe(latest[0])
        logger.info("deadline engine: %d open cases queued", len(self._due))

    def _push(self, incident_id: uuid.UUID, due_at: datetime | None) -> None:
        if due_at is None:
            self._due.pop(incident_id, None)
            return
        if self._due.get(incident_id) == due_at:
            return
        self._due[incident_id] = due_at
        heapq.heappush(self._heap, (due_at, incident_id))

    def _drop_stale(self) -> None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)

    # ----------------------------------------------------------------- reading changes

    def read_changes(self, limit: int = 10000) -> int:
        """Queue what the outbox's new changes say; the number of changes read."""
        conn = self._connection()
        rows = conn.execute(
            "SELECT id, incident_id, body->>'at', body->>'due_at', body->>'to_status'"
            " FROM incident_status_changes WHERE id > %s ORDER BY id LIMIT %s",
            (self._after, limit),
        ).fetchall()
        read = 0
        for outbox_id, incident_id, at, due_at, to_status in rows:
            if outbox_id in self._seen:
                continue
            self._seen.add(int(outbox_id))
            read += 1
            self.clock.observe(datetime.fromisoformat(at))
            if to_status in ("closed", "cancelled"):
                self._push(incident_id, None)
            elif due_at is not None:
                self._push(incident_id, datetime.fromisoformat(due_at))
        self._advance_read_position()
        return read

    def _advance_read_position(self) -> None:
        while self._after + 1 in self._seen:
            self._after += 1
            self._seen.discard(self._after)
        if not self._seen:
            self._gap_since = None
            return
        # A hole below a read id: a transaction still open, or one rolled back.
        now = time.monotonic()
        if self._gap_since is None:
            self._gap_since = now
        elif now - self._gap_since > self.gap_timeout_s:
            logger.info("outbox ids after %d: a hole waited for too long, read past", self._after)
            self._after = min(self._seen)
            self._gap_since = None
            self._advance_read_position()

    # ----------------------------------------------------------------- acting

    def table(self) -> DeadlineTable:
        """The city's table, read again every TABLE_REFRESH_S."""
        if self._table is None or time.monotonic() - self._table_read_at > TABLE_REFRESH_S:
            self._table = deadline_store.load_table(self._connection())
            self._table_read_at = time.monotonic()
        return self._table

    def apply_due(self) -> int:
        """Act on every due moment the clock has passed; the number of changes queued."""
        now = self.clock.now()
        if now is None:
            return 0
        conn = self._connection()
        table = self.table()
        applied = 0
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return applied
            due_at, incident_id = heapq.heappop(self._heap)
            del self._due[incident_id]
            with conn.transaction():
                outcome = deadline_store.apply_due(conn, incident_id, now, table)
            if outcome.change is not None:
                applied += 1
                if self.on_applied is not None:
                    self.on_applied(due_at, datetime.now(UTC))
            if outcome.next_due is not None:
                self._push(incident_id, outcome.next_due.due_at)

    def step(self) -> int:
        """Read the outbox, then act on what fell due: one turn of the loop."""
        self.read_changes()
        return self.apply_due()

    def seconds_to_next_due(self) -> float | None:
        """Wall seconds until the earliest due moment by this clock (None: nothing queued)."""
        due = self.next_due()
        now = self.clock.now()
        if due is None or now is None:
            return None
        return max(0.0, (due - now).total_seconds())


class DeadlineEngineThread(threading.Thread):
    """Runs an engine in the intake stage's process: woken by the outbox's NOTIFY, by its
    next due moment, or every `idle_s` at the latest (the clock runs on at night)."""

    def __init__(self, engine: DeadlineEngine, idle_s: float = 1.0) -> None:
        super().__init__(name="wangge-deadlines", daemon=True)
        self.engine = engine
        self.idle_s = idle_s
        self._stopping = threading.Event()

    def run(self) -> None:
        """Load, then loop until stopped; a failure is logged and retried after a pause."""
        while not self._stopping.is_set():
            try:
                self._loop()
            except psycopg.Error:
                # The queue is rebuilt from the rows: nothing is lost by starting over.
                logger.warning("deadline engine: a database error; reloading", exc_info=True)
                self.engine.close()
                self._stopping.wait(2.0)
        self.engine.close()

    def _loop(self) -> None:
        self.engine.load()
        with psycopg.connect(self.engine.database_url, autocommit=True) as listener:
            incident_outbox.listen_outbox(listener)
            while not self._stopping.is_set():
                self.engine.step()
                wait = self.engine.seconds_to_next_due()
                timeout = self.idle_s if wait is None else min(self.idle_s, wait)
                for _ in listener.notifies(timeout=max(timeout, 0.01), stop_after=1):
                    pass

    def stop(self) -> None:
        """Stop after the current turn."""
        self._stopping.set()
        self.join(timeout=10)
