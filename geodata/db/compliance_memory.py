"""The open weeks' compliance, held by the API and kept up to date from the database.

`ComplianceMemory` loads each open week (`held.open_weeks`) in one snapshot: the
assignment periods, the valid patrols' times, the names, the stamp of the staff and
boundary tables and the highest patrol id. A background thread then follows the
compliance engine's writes every `refresh_s`: the pairs whose patrols were written
after the last id seen are read again in one snapshot, and only the answers whose area
holds one of their grids are dropped. A moved stamp (a staff or boundary import), or a
new open week, loads everything again.

Why the patrols and not the compliance outbox: the outbox (`compliance_changes`, the
stream the map follows) records a change of status only, while an answer also carries
the counted patrols and their days, which change without one (a Monday patrol leaves a
pair on_track at 1 of 3), and the status as of now, which changes at local midnight
before the engine's event-time watermark has reached it. The patrol rows are what the
outbox's changes are computed from and what the recomputed answer reads, so the answer
from memory equals it. Reading the database rather than the topic also makes the state
whole after an API restart (a load), after a missed poll (the next one reads from the
same id) and in every API process alike.

Without a gap: the engine writes patrols only while it holds the compliance clock's row
lock (`compliance_store.lock_clock`), so patrol ids become visible in the order they
were taken, and a load reads the highest id in the same snapshot as the rows: every
later write has a higher id. A pair's patrols are replaced whole (never all deleted:
check-ins are only ever added), so a pair that changed has a new id.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.compliance.held import (
    AREA_LEVELS,
    DEFAULT_MAX_BYTES,
    AnswerCache,
    HeldNames,
    HeldWeek,
    OpenWeeks,
    open_weeks,
)
from geodata.compliance.report import ComplianceReport, Level
from geodata.db.compliance_read import (
    fetch_names,
    fetch_periods,
    fetch_valid_times,
    last_patrol_id,
    patrols_written_since,
    read_snapshot,
)
from geodata.db.grid_cache import SNAPSHOT_TABLES
from geodata.db.stamps import read_stamp

logger = logging.getLogger(__name__)

STALE_AFTER_REFRESHES: Final = 4
"""Refresh intervals after the last successful one's start beyond which memory is not
answered from (the caller reads the database instead)."""

RENDER_LOCKS: Final = 64
"""Locks that keys are spread over (a fixed number, however many codes are asked for)."""


def utc_now() -> datetime:
    """The wall clock, aware."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class _State:
    """What one load (and the polls since) hold; replaced whole, never changed."""

    weeks: Mapping[IsoWeek, HeldWeek]
    names: HeldNames
    stamp: str
    last_patrol_id: int


class ComplianceMemory:
    """The open weeks' reports from memory, and their rendered answers until a change."""

    def __init__(
        self,
        engine: Engine,
        config: ComplianceConfig,
        refresh_s: float,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Refreshed every `refresh_s` once started (0: never, and nothing is answered)."""
        if refresh_s < 0:
            raise ValueError("refresh_s must be >= 0")
        self.engine = engine
        self.config = config
        self.refresh_s = refresh_s
        self.answers = AnswerCache(max_bytes)
        self._clock = clock
        self._monotonic = monotonic
        self._state: _State | None = None
        self._open = OpenWeeks.at(clock(), config)
        self._refreshed_at = -float("inf")
        self._render_locks = tuple(threading.Lock() for _ in range(RENDER_LOCKS))
        # One refresh at a time (the thread's, or a caller's).
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def now(self) -> datetime:
        """The time answers are for: the wall clock (a test's clock in tests)."""
        return self._clock()

    # ----------------------------------------------------------------- answering

    def cached(self, week: IsoWeek, level: Level, code: str, now: datetime) -> bytes | None:
        """The answer rendered before for (week, level, code) if it still holds at `now`
        and memory is fresh; None otherwise. No I/O and no computing."""
        if self._fresh_state(week, now) is None:
            return None
        return self.answers.get((week, level, code), now)

    def answer(
        self,
        week: IsoWeek,
        level: Level,
        code: str,
        now: datetime,
        render: Callable[[ComplianceReport], bytes],
    ) -> bytes | None:
        """The week's report at `now` rendered by `render`, from memory (kept until a
        change touches it); None when memory cannot answer: the week is not open, or
        not loaded, or the last refresh is too old. No I/O."""
        key = (week, level, code)
        body = self.cached(week, level, code, now)
        if body is not None:
            return body
        # One thread renders a key at a time: after a change, the clients asking for the
        # same area wait for that one answer rather than each rendering it again.
        with self._render_locks[hash(key) % len(self._render_locks)]:
            # The generation before the state: a state replaced after this read moves the
            # generation, so an answer rendered from an older state is never kept.
            generation = self.answers.generation
            state = self._fresh_state(week, now)
            if state is None:
                return None
            body = self.answers.get(key, now)
            if body is not None:
                return body
            held = state.weeks[week]
            body = render(held.report(now, state.names, self.config, level=level, code=code))
            self.answers.put(key, body, held.steady_span(now, self.config.tz), generation)
            return body

    def _fresh_state(self, week: IsoWeek, now: datetime) -> _State | None:
        state = self._state
        if state is None or week not in state.weeks or week not in self._open_at(now):
            return None
        if self._monotonic() - self._refreshed_at > STALE_AFTER_REFRESHES * self.refresh_s:
            return None
        return state

    def _open_at(self, now: datetime) -> tuple[IsoWeek, ...]:
        # Asked on every request: worked out again only when `now` leaves the span of the
        # last answer (a few times a week), as the calendar arithmetic costs microseconds.
        known = self._open
        if not known.hold_at(now):
            known = self._open = OpenWeeks.at(now, self.config)
        return known.weeks

    # ----------------------------------------------------------------- refreshing

    def refresh(self) -> None:
        """Load the open weeks, or apply the patrols written since the last refresh.

        Blocks on the database; raises SQLAlchemyError when it is away (the state is kept,
        and goes stale `STALE_AFTER_REFRESHES` intervals later).
        """
        with self._refresh_lock:
            started = self._monotonic()
            state = self._state
            wanted = open_weeks(self._clock(), self.config)
            with read_snapshot(self.engine) as connection:
                stamp = read_stamp(connection, SNAPSHOT_TABLES)
                if state is None or state.stamp != stamp or set(state.weeks) != set(wanted):
                    self._load(connection, wanted, stamp)
                else:
                    self._apply(connection, state)
            self._refreshed_at = started

    def _load(self, connection: Connection, weeks: tuple[IsoWeek, ...], stamp: str) -> None:
        last_id = last_patrol_id(connection)
        names = HeldNames(
            frozenset(fetch_names(connection, "grid", "")),
            {level: fetch_names(connection, level, "") for level in AREA_LEVELS},
        )
        held = {}
        for week in weeks:
            periods, worker_names = fetch_periods(connection, week, "", self.config)
            held[week] = HeldWeek.build(
                week, periods, fetch_valid_times(connection, week), worker_names
            )
        self._state = _State(held, names, stamp, last_id)
        self.answers.clear()
        logger.info(
            "compliance memory loaded: %s",
            ", ".join(f"{week} ({len(held[week].pairs)} pairs)" for week in weeks),
        )

    def _apply(self, connection: Connection, state: _State) -> None:
        written, last_id = patrols_written_since(connection, state.last_patrol_id)
        if last_id == state.last_patrol_id:
            return
        weeks = dict(state.weeks)
        touched: dict[IsoWeek, set[str]] = {}
        for week, held in state.weeks.items():
            pairs = written.get(str(week), set()) & held.pairs.keys()
            if pairs:
                times = fetch_valid_times(connection, week, pairs)
                weeks[week], touched[week] = held.with_valid_at(
                    {p: times.get(p, {}) for p in pairs}
                )
        # The state first, then the generation (in invalidate): see `answer`.
        self._state = _State(weeks, state.names, state.stamp, last_id)
        for week, grid_codes in touched.items():
            self.answers.invalidate(week, grid_codes)

    # ----------------------------------------------------------------- the thread

    def ensure_started(self) -> None:
        """Start refreshing every `refresh_s` in a daemon thread, unless it runs, was
        stopped, or `refresh_s` is 0. Cheap once started: routes call it on each request,
        so an API nobody asks compliance of never loads or polls it."""
        if self._thread is not None or self._stop.is_set() or self.refresh_s == 0:
            return
        with self._thread_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="compliance-memory", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """Stop the thread (for good) and wait for it."""
        with self._thread_lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.refresh()
                if failing:
                    logger.info("refreshing the compliance memory works again")
                failing = False
            except SQLAlchemyError:
                # The database is away: memory goes stale and the routes read it themselves.
                # Said once per outage, not twice a second.
                if not failing:
                    logger.warning("refreshing the compliance memory failed", exc_info=True)
                failing = True
            except Exception:
                # A bug, not the database: keep the API up, say so loudly, try again.
                logger.exception("refreshing the compliance memory failed unexpectedly")
            self._stop.wait(self.refresh_s)
