"""The open weeks' compliance held in memory, and what a change to it touches.

A `HeldWeek` holds what `geodata.db.compliance_read.compliance_report` reads for a week:
every (worker, grid) with an assignment period overlapping it, and when each of their
valid patrols became valid, per local day. Its `report` then runs the same pure rules
(`evaluate_pairs`, `report_items`) on the same inputs, so it answers exactly as the
database would for any `as_of`, without a query. Between two changes the answer moves
only when the local day turns or a patrol's `valid_at` is passed (`steady_span`).

`AnswerCache` keeps a rendered answer per (week, level, code) until a change touches it:
a change to one (worker, grid) touches the codes that are prefixes of that grid's code
(the grid, its community, street and district, the whole city), and no other.
"""

import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from geodata.compliance.config import ComplianceConfig
from geodata.compliance.report import (
    CODE_LENGTH,
    ComplianceReport,
    Level,
    PairKey,
    check_code,
    evaluate_pairs,
    report_items,
)
from geodata.compliance.weeks import IsoWeek, day_start, local_date
from geodata.errors import GridNotFound
from geodata.staffing import AssignmentPeriod

ValidTimes = Mapping[date, tuple[datetime, ...]]
"""When each valid patrol of a (worker, grid) became valid, per local day, in order."""

AREA_LEVELS: Final[tuple[Level, ...]] = ("grid", "community", "street", "district")
"""The levels whose items carry a name."""


def open_weeks(now: datetime, config: ComplianceConfig) -> tuple[IsoWeek, ...]:
    """The weeks whose statuses can still change at `now`: this week, and the last one
    until `allowed_lateness` after its end (late check-ins may still count for it)."""
    return OpenWeeks.at(now, config).weeks


@dataclass(frozen=True, slots=True)
class OpenWeeks:
    """The open weeks at an instant, and the span [since, until) they stay the same."""

    weeks: tuple[IsoWeek, ...]
    #: In UTC, as the wall clock is read: comparing datetimes of one tzinfo skips asking
    #: a zone for its offset, which is most of the cost on a request's path.
    since: datetime
    until: datetime

    @classmethod
    def at(cls, now: datetime, config: ComplianceConfig) -> "OpenWeeks":
        """The open weeks at `now` (see `open_weeks`) and how long they hold."""
        tz = config.tz
        current = IsoWeek.week_of(now, tz)
        previous = current.previous()
        closes = previous.end(tz) + config.allowed_lateness
        if now < closes:
            since, until = current.start(tz), min(closes, current.end(tz))
            return cls((previous, current), since.astimezone(UTC), until.astimezone(UTC))
        since, until = max(closes, current.start(tz)), current.end(tz)
        return cls((current,), since.astimezone(UTC), until.astimezone(UTC))

    def hold_at(self, now: datetime) -> bool:
        """Whether these are still the open weeks at `now`."""
        return self.since <= now < self.until


@dataclass(frozen=True, slots=True)
class HeldPair:
    """One (worker, grid) of a week: its assignment periods and its valid patrols' times."""

    periods: tuple[AssignmentPeriod, ...]
    valid_at: ValidTimes

    def valid_per_day(self, as_of: datetime) -> dict[date, int]:
        """Patrols valid by `as_of` per local day (days without one left out)."""
        counts = {day: bisect_right(times, as_of) for day, times in self.valid_at.items()}
        return {day: n for day, n in counts.items() if n > 0}


@dataclass(frozen=True)
class HeldNames:
    """Every grid code ever, and the names the report's items carry, by level."""

    grid_codes: frozenset[str]
    by_level: Mapping[Level, Mapping[str, str]]

    def of(self, level: Level) -> Mapping[str, str]:
        """The names of `level`'s items (none for workers)."""
        return self.by_level.get(level, {})


class HeldWeek:
    """A week's pairs as the database holds them; immutable (a change makes a new one)."""

    def __init__(
        self, week: IsoWeek, pairs: Mapping[PairKey, HeldPair], worker_names: Mapping[str, str]
    ) -> None:
        self.week = week
        self.pairs = dict(pairs)
        self.worker_names = dict(worker_names)
        # Every valid_at of the week in order: where the answer can change within a day.
        self._valid_ats = sorted(
            t for pair in self.pairs.values() for times in pair.valid_at.values() for t in times
        )

    @classmethod
    def build(
        cls,
        week: IsoWeek,
        periods: Iterable[AssignmentPeriod],
        valid_at: Mapping[PairKey, ValidTimes],
        worker_names: Mapping[str, str],
    ) -> "HeldWeek":
        """Hold the pairs of `periods`; patrols of pairs without a period are left out, as
        the report leaves them out."""
        spans: dict[PairKey, list[AssignmentPeriod]] = {}
        for period in periods:
            spans.setdefault((period.worker_id, period.grid_code), []).append(period)
        pairs = {key: HeldPair(tuple(p), valid_at.get(key, {})) for key, p in spans.items()}
        return cls(week, pairs, worker_names)

    def with_valid_at(self, changed: Mapping[PairKey, ValidTimes]) -> tuple["HeldWeek", set[str]]:
        """This week with the pairs' patrol times replaced, and the grid codes of the pairs
        whose times actually changed (unchanged pairs and unheld ones touch nothing)."""
        pairs = dict(self.pairs)
        touched: set[str] = set()
        for key, times in changed.items():
            held = pairs.get(key)
            if held is None or held.valid_at == times:
                continue
            pairs[key] = HeldPair(held.periods, times)
            touched.add(key[1])
        if not touched:
            return self, touched
        return HeldWeek(self.week, pairs, self.worker_names), touched

    def report(
        self,
        as_of: datetime,
        names: HeldNames,
        config: ComplianceConfig,
        *,
        level: Level = "worker",
        code: str | None = None,
    ) -> ComplianceReport:
        """`compliance_report` of this week at `as_of`, from memory: the same rules on the
        same rows (GridNotFound for an unknown 15-digit code, as there)."""
        prefix = check_code(code, level)
        under = {key: pair for key, pair in self.pairs.items() if key[1].startswith(prefix)}
        if not under and len(prefix) == CODE_LENGTH["grid"] and prefix not in names.grid_codes:
            raise GridNotFound(f"no grid has the code {prefix}")
        periods = [period for pair in under.values() for period in pair.periods]
        valid = {key: pair.valid_per_day(as_of) for key, pair in under.items() if pair.valid_at}
        workers = evaluate_pairs(periods, valid, self.worker_names, self.week, as_of, config)
        items = report_items(workers, level, names.of(level))
        return ComplianceReport(week=self.week, as_of=as_of, level=level, code=prefix, items=items)

    def steady_span(self, as_of: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[from, to) around `as_of` within which every report of this week is the one at
        `as_of`: statuses read the time only through its local day, and counts through the
        patrols valid by it, so the span ends at local midnight or the next `valid_at`."""
        day = local_date(as_of, tz)
        start, end = day_start(day, tz), day_start(day + timedelta(days=1), tz)
        i = bisect_right(self._valid_ats, as_of)
        if i > 0:
            start = max(start, self._valid_ats[i - 1])
        if i < len(self._valid_ats):
            end = min(end, self._valid_ats[i])
        return start, end


# --------------------------------------------------------------------------- answers

AnswerKey = tuple[IsoWeek, Level, str]
"""(week, level, code prefix; '' for the whole city)."""

#: What an entry costs beyond its bytes (key, span, node), roughly.
ENTRY_OVERHEAD_BYTES: Final = 300
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024


def prefixes(grid_codes: Iterable[str]) -> set[str]:
    """Every code a change to these grids touches: each grid code's prefixes, '' included."""
    return {code[:n] for code in grid_codes for n in range(len(code) + 1)}


@dataclass(frozen=True, slots=True)
class _Answer:
    body: bytes
    start: datetime
    end: datetime


class AnswerCache:
    """Rendered answers by (week, level, code), each for the span of time it holds in.

    Thread-safe. An answer is dropped by a change touching its code (`invalidate`), by
    a reload (`clear`), or beyond `max_bytes` (least recently used first). `generation`
    moves with each of those, so that an answer rendered from the state before one is
    not kept after it (`put` refuses it).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.generation = 0
        self._answers: OrderedDict[AnswerKey, _Answer] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def size_bytes(self) -> int:
        """Bytes held, overhead included; never above `max_bytes`."""
        return self._bytes

    def get(self, key: AnswerKey, at: datetime) -> bytes | None:
        """The answer kept under `key` if it holds at `at`; None otherwise."""
        with self._lock:
            answer = self._answers.get(key)
            if answer is None or not answer.start <= at < answer.end:
                return None
            self._answers.move_to_end(key)
            return answer.body

    def put(
        self, key: AnswerKey, body: bytes, span: tuple[datetime, datetime], generation: int
    ) -> bool:
        """Keep `body` for `span` unless the cache moved on since `generation`; whether kept."""
        cost = len(body) + ENTRY_OVERHEAD_BYTES
        with self._lock:
            if generation != self.generation or cost > self.max_bytes:
                return False
            self._drop(key)
            # UTC, as `OpenWeeks`: the span is compared on every request.
            start, end = span
            self._answers[key] = _Answer(body, start.astimezone(UTC), end.astimezone(UTC))
            self._bytes += cost
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._answers)))
            return True

    def invalidate(self, week: IsoWeek, grid_codes: Collection[str]) -> int:
        """Drop the week's answers whose code a change to these grids touches; how many."""
        if not grid_codes:
            return 0
        touched = prefixes(grid_codes)
        with self._lock:
            self.generation += 1
            stale = [k for k in self._answers if k[0] == week and k[2] in touched]
            for key in stale:
                self._drop(key)
            return len(stale)

    def clear(self) -> None:
        """Drop every answer."""
        with self._lock:
            self.generation += 1
            self._answers.clear()
            self._bytes = 0

    def _drop(self, key: AnswerKey) -> None:
        answer = self._answers.pop(key, None)
        if answer is not None:
            self._bytes -= len(answer.body) + ENTRY_OVERHEAD_BYTES
