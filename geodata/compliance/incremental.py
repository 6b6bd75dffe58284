"""One (worker, grid, week) folded check-in by check-in, re-deciding only the days touched.

`evaluate_week` rebuilds a week from all its check-ins, so a fix on Sunday costs seven
days of work and a fix on Monday one. A `WeekFold` keeps the week's usable check-ins in
order and its patrols per local day; a new check-in extends (or joins) the walk around
it, and only the local days whose patrols that walk can change are cut again, with the
rule's own `is_usable` and `build_patrols`. The usual fix, the newest of the walk going
on, only grows that walk's patrol without reading its day again. Its patrols and status
are always those of `evaluate_week` on the same check-ins as of the newest of them (the
property tests hold it to that and to the reference reading).

A fold is a copy in memory: the engine builds it (`built`) from the stored check-ins of
the week's reading window (after a restart, an eviction or a rolled-back batch), and
builds it again whenever the assignment periods it judged usability with change.
"""

from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from uuid import UUID

from geodata.compliance.config import ComplianceConfig
from geodata.compliance.patrols import (
    CheckinRecord,
    Patrol,
    is_usable,
    patrols_of_ordered,
    valid_at,
)
from geodata.compliance.weekly import (
    ComplianceKey,
    checkin_window,
    required_patrols,
    status_as_of,
)
from geodata.compliance.weeks import day_start, local_date
from geodata.events import ComplianceStatus
from geodata.staffing import AssignmentPeriod

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class DayPatrol:
    """A patrol and the time it became valid (None while invalid)."""

    patrol: Patrol
    valid_at: datetime | None


@dataclass(frozen=True, slots=True)
class FoldStatus:
    """How the week stands: its status, counted patrols and what is owed."""

    status: ComplianceStatus
    counted: int
    required: int


class WeekFold:
    """The usable check-ins and per-day patrols of one (worker, grid, week)."""

    def __init__(
        self,
        key: ComplianceKey,
        periods: Iterable[AssignmentPeriod],
        config: ComplianceConfig,
    ) -> None:
        self.key = key
        self.config = config
        #: The pair's assignment periods that usability and what is owed were judged with.
        self.periods = frozenset(p for p in periods if (p.worker_id, p.grid_code) == key[:2])
        self.window = checkin_window(key.week, config)
        self.days = frozenset(key.week.days())
        self.required = required_patrols(self.periods, key.week, config)
        #: Every check-in of the window once, usable or not, by (recorded_at, event_id), a
        #: check-in's identity: a change of periods re-reads it.
        self.checkins: dict[tuple[datetime, UUID], CheckinRecord] = {}
        # The usable ones in that order, as `unique_checkins` orders them.
        self._order: list[tuple[datetime, UUID]] = []
        self._usable: dict[tuple[datetime, UUID], CheckinRecord] = {}
        self.patrols: dict[date, tuple[DayPatrol, ...]] = {}

    def __len__(self) -> int:
        return len(self.checkins)

    @classmethod
    def built(
        cls,
        key: ComplianceKey,
        periods: Iterable[AssignmentPeriod],
        config: ComplianceConfig,
        checkins: Iterable[CheckinRecord],
    ) -> "WeekFold":
        """A fold of `checkins` with every day of the week cut once (a rebuild: after a
        restart, an eviction, or when the periods change). Folding them in one by one
        would find each one's walk and cut its days, and every day would be cut anyway."""
        fold = cls(key, periods, config)
        for checkin in checkins:
            fold._hold(checkin)
        for day in fold.days:
            fold._cut_day(day)
        return fold

    def add(self, checkins: Iterable[CheckinRecord]) -> set[date]:
        """Fold new check-ins in; the local days of the week whose patrols were cut again.

        Check-ins of other keys, outside the window or already held are ignored. Only the
        walks around the new usable check-ins can change, so only the days those walks
        start on (or started on before they joined) are cut again.
        """
        days: set[date] = set()
        touched: list[datetime] = []
        for checkin in checkins:
            identity = self._hold(checkin)
            if identity is None:
                continue
            # The usual fix: the newest, on the walk going on. Until another day is due to
            # be cut, its patrol is current and only it grows.
            grown = None if touched else self._extend_newest_walk(identity)
            if grown is None:
                touched.append(checkin.recorded_at)
            else:
                days.add(grown)
        cut: set[date] = set()
        for t in touched:
            first, last = self._walk_around(t)
            cut.update(self._local_days(first, last))
        for day in sorted(cut):
            self._cut_day(day)
        return days | cut

    def with_periods(
        self, periods: Iterable[AssignmentPeriod], more: Iterable[CheckinRecord] = ()
    ) -> "WeekFold":
        """The same check-ins (and `more`) folded afresh under other assignment periods,
        every day cut once."""
        return WeekFold.built(self.key, periods, self.config, [*self.checkins.values(), *more])

    def _hold(self, checkin: CheckinRecord) -> tuple[datetime, UUID] | None:
        """Keep a check-in of this key's window not held yet; its identity if it is usable
        (and so in the walks), else None."""
        identity = (checkin.recorded_at, checkin.event_id)
        window_from, window_to = self.window
        if (
            checkin.worker_id != self.key.worker_id
            or checkin.grid_code != self.key.grid_code
            or not window_from <= checkin.recorded_at < window_to
            or identity in self.checkins
        ):
            return None
        self.checkins[identity] = checkin
        if not is_usable(checkin, self.periods, self.config):
            return None
        self._usable[identity] = checkin
        insort(self._order, identity)
        return identity

    def status(self, as_of: datetime) -> FoldStatus:
        """The week's status at `as_of`: a patrol counts from the moment it became valid, so
        a walk folded ahead of the watermark (another partition's backlog holds it back)
        counts once the watermark passes it, as `evaluate_week` at `as_of` counts it."""
        cap = self.config.max_counted_per_day
        counted = {
            day: min(n, cap)
            for day, patrols in self.patrols.items()
            if (n := sum(p.valid_at is not None and p.valid_at <= as_of for p in patrols))
        }
        status = status_as_of(counted, self.required, self.key.week, as_of, self.config)
        return FoldStatus(status, sum(counted.values()), self.required)

    def all_patrols(self) -> list[DayPatrol]:
        """Every patrol of the week, in start order."""
        return [p for day in sorted(self.patrols) for p in self.patrols[day]]

    # ------------------------------------------------------------------ walks and days

    def _walk_around(self, t: datetime) -> tuple[datetime, datetime]:
        """The first and last check-in times of the walk holding the check-in at `t`."""
        order, gap = self._order, self.config.patrol_gap
        i = j = bisect_left(order, (t,))
        while i > 0 and order[i][0] - order[i - 1][0] <= gap:
            i -= 1
        while j + 1 < len(order) and order[j + 1][0] - order[j][0] <= gap:
            j += 1
        return order[i][0], order[j][0]

    def _local_days(self, first: datetime, last: datetime) -> list[date]:
        # Every day the walk spans: it starts on the first, and the walks it joined
        # started on one of them.
        tz = self.config.tz
        day, end = local_date(first, tz), local_date(last, tz)
        days = []
        while day <= end:
            if day in self.days:
                days.append(day)
            day += ONE_DAY
        return days

    def _extend_newest_walk(self, identity: tuple[datetime, UUID]) -> date | None:
        """Grow the newest walk's patrol by the check-in `identity` just folded; the day it
        belongs to, or None when `identity` is not that case and its days must be cut again.

        What `_cut_day` would give, without re-reading the day: the walks before it are
        the same, and validity is decided by the check-ins up to the one that first meets
        both thresholds, so a valid walk stays valid, a flagged one stays flagged and only
        one still too short (or with too few check-ins) is judged again.
        """
        order, config = self._order, self.config
        if len(order) < 2 or order[-1] != identity or not self.patrols:
            return None
        previous, t = order[-2][0], identity[0]
        if t - previous > config.patrol_gap:
            return None  # a new walk
        day = max(self.patrols)
        held = self.patrols[day]
        patrol = held[-1].patrol
        if patrol.end != previous:
            return None  # the walk began before the week, or is not the newest patrol
        if patrol.invalid_reason in (None, "mocked_location", "implausible_speed"):
            longer = replace(
                patrol, end=t.astimezone(config.tz), checkin_count=patrol.checkin_count + 1
            )
            grown = DayPatrol(longer, held[-1].valid_at)
        else:
            run = [self._usable[i] for i in order[-patrol.checkin_count - 1 :]]
            (longer,) = patrols_of_ordered(run, config)
            counted_before = sum(p.patrol.counted for p in held[:-1])
            if longer.counted and counted_before >= config.max_counted_per_day:
                longer = replace(longer, count_reason="already_counted_today")
            grown = DayPatrol(longer, valid_at(longer, run, config))
        self.patrols[day] = (*held[:-1], grown)
        return day

    def _cut_day(self, day: date) -> None:
        """Cut the walks that start on `day` again with the rule's `build_patrols`."""
        order, gap, tz = self._order, self.config.patrol_gap, self.config.tz
        i = bisect_left(order, (day_start(day, tz),))
        # Skip a walk begun the day before that runs on past midnight.
        while 0 < i < len(order) and order[i][0] - order[i - 1][0] <= gap:
            i += 1
        j = bisect_left(order, (day_start(day + ONE_DAY, tz),), lo=i)
        # Take in the end of a walk begun on `day` that runs on past the next midnight.
        while i < j < len(order) and order[j][0] - order[j - 1][0] <= gap:
            j += 1
        records = [self._usable[identity] for identity in order[i:j]]
        if not records:
            self.patrols.pop(day, None)
            return
        self.patrols[day] = tuple(
            DayPatrol(p, valid_at(p, records, self.config))
            for p in patrols_of_ordered(records, self.config)
        )


#: How many puts between two counts of every held fold's size.
RECOUNT_PUTS = 256


class WeekFolds:
    """The folds held in memory; beyond `max_checkins` in all, the least recently used are
    dropped down to nine tenths of it.

    Only a copy of what PostgreSQL holds: right while this consumer owns the keys'
    partitions and every batch that touched them committed, so the engine clears it when
    a batch is rolled back and when partitions change hands.
    """

    def __init__(self, max_checkins: int = 1_000_000) -> None:
        self.max_checkins = max_checkins
        self._folds: OrderedDict[ComplianceKey, WeekFold] = OrderedDict()
        # The folds' sizes as last counted, and their sum. A fold grows after it is put, so
        # the sum is redone (a walk over every fold) every RECOUNT_PUTS puts, not at each:
        # with the city's keys held that walk was a fortieth of the engine's time.
        self._counted: dict[ComplianceKey, int] = {}
        self._held = 0
        self._puts = 0

    def __len__(self) -> int:
        return sum(len(f) for f in self._folds.values())

    def _recount(self) -> None:
        self._counted = {key: len(fold) for key, fold in self._folds.items()}
        self._held = sum(self._counted.values())

    def get(self, key: ComplianceKey) -> WeekFold | None:
        """The key's fold if held."""
        fold = self._folds.get(key)
        if fold is not None:
            self._folds.move_to_end(key)
        return fold

    def put(self, fold: WeekFold) -> None:
        """Hold a fold, dropping the least recently used beyond `max_checkins`."""
        self._folds[fold.key] = fold
        self._folds.move_to_end(fold.key)
        size = len(fold)
        self._held += size - self._counted.get(fold.key, 0)
        self._counted[fold.key] = size
        self._puts += 1
        if self._puts % RECOUNT_PUTS == 0 or self._held > self.max_checkins:
            self._recount()
        if self._held <= self.max_checkins:
            return
        # Down to nine tenths of the limit, so that the next puts do not each recount.
        while self._held > self.max_checkins * 0.9 and len(self._folds) > 1:
            key, dropped = self._folds.popitem(last=False)
            self._held -= self._counted.pop(key, len(dropped))

    def held_keys(self) -> list[ComplianceKey]:
        """The keys held, least recently used first."""
        return list(self._folds)

    def discard(self, key: ComplianceKey) -> None:
        """Forget one key (its week is final and will not be evaluated again)."""
        self._folds.pop(key, None)
        self._held -= self._counted.pop(key, 0)

    def clear(self) -> None:
        """Forget everything."""
        self._folds.clear()
        self._counted.clear()
        self._held = 0
