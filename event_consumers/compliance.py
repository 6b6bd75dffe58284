"""The compliance engine: folds check-in assignments into patrols and weekly statuses.

It reads `grid.assignments.v1` (keyed by grid, so one (worker, grid) is always handled by
one consumer) and keeps its own copy of the check-ins, so it depends on nothing but the
topic. An event is folded into the weeks whose reading window holds it, and only the
local days whose walks it changes are cut again (`geodata.compliance.incremental`), so a
check-in costs the same on Sunday as on Monday. The event-time watermark is the minimum
over partitions of their newest event times, a partition read to its end not holding it
back (`geodata.compliance.watermark`); each member of the group stores its own partitions'
and takes the watermark from every partition's. When the watermark crosses a local
midnight, every assigned worker of the open weeks is re-evaluated, because statuses also
change as days run out. Status changes go to an outbox in the same transaction and are
published exactly once after it commits.
"""

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import psycopg
from pydantic import ValidationError

from event_consumers import metrics
from event_consumers.batch import OwnPartitions
from event_consumers.grid_snapshot import batch_snapshot
from event_consumers.records import InboundRecord, OutboundRecord, dead_letter
from geodata.compliance import (
    CheckinRecord,
    ComplianceConfig,
    ComplianceKey,
    IsoWeek,
    checkin_window,
    is_week_final,
    local_date,
    required_patrols,
    status_as_of,
    weeks_reading,
)
from geodata.compliance.incremental import WeekFold, WeekFolds
from geodata.compliance.watermark import PartitionWatermark
from geodata.contract import Topics
from geodata.db import compliance_store as store
from geodata.db.grid_cache import GridSnapshotCache
from geodata.events import (
    DEFAULT_TIME_LIMITS,
    EventRefused,
    IncidentAssignment,
    RefusalReason,
    check_event_time,
    parse_assignment,
    refusal_from,
)
from geodata.staffing import AssignmentPeriod, WorkerRoster

logger = logging.getLogger(__name__)


_JSON_SPACE: Final = b" \t\n\r"


def decode_assignment(raw: bytes, now: datetime, tz: ZoneInfo) -> tuple[CheckinRecord, bool] | None:
    """The check-in an assignment carries (its time in `tz`, the rule's zone) and whether
    it is in the poster's own grid.

    None for an incident's assignment (not a patrol); EventRefused with the contract's
    reason for anything else the contract or the time bounds refuse.
    """
    try:
        event = parse_assignment(raw)
    except ValidationError as exc:
        if raw.lstrip(_JSON_SPACE)[:1] != b"{":
            raise EventRefused(
                RefusalReason.INVALID_JSON, "an assignment must be a JSON object"
            ) from None
        raise refusal_from(exc) from None
    if isinstance(event, IncidentAssignment):
        return None
    # One assignment from the far future would end every open week at once.
    check_event_time(event.recorded_at, now, "recorded_at", DEFAULT_TIME_LIMITS)
    return CheckinRecord.from_assignment(event, tz), bool(event.in_assigned_grid)


class ComplianceHandler:
    """Keeps patrols and statuses up to date from check-in assignments."""

    def __init__(
        self, grids: GridSnapshotCache, topics: Topics, config: ComplianceConfig | None = None
    ) -> None:
        self.topic = topics.assignments
        self.topics = topics
        self.grids = grids
        # The staff of the batch being handled, from the snapshot it started with.
        self._roster = WorkerRoster([], {})
        self.config = config or ComplianceConfig()
        self.folds = WeekFolds()
        #: This member's partitions when the batch was polled; None when not told (a
        #: batch handled outside the runner), and then the batch's own partitions count.
        self._partitions: OwnPartitions | None = None

    def reset(self) -> None:
        """After a rolled-back batch: the state lives in the database, drop the copy."""
        self.folds.clear()

    def partitions_changed(self) -> None:
        """Another member may have folded check-ins of our keys in: drop the copy."""
        self.folds.clear()

    def note_partitions(self, partitions: OwnPartitions) -> None:
        """Before `handle`: this member's partitions, and which hold nothing unread."""
        self._partitions = partitions

    def handle(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> list[OutboundRecord]:
        """Store the batch's check-ins, re-evaluate what they touch, queue status changes."""
        self._roster = batch_snapshot(self.grids).roster
        outgoing: list[OutboundRecord] = []
        parsed: list[tuple[CheckinRecord, bool]] = []
        partitions: list[int] = []
        tz = self.config.tz
        for record in records:
            try:
                decoded = decode_assignment(record.value or b"", now, tz)
            except EventRefused as refused:
                letter = dead_letter(record, refused.reason, refused.detail, self.topics.deadletter)
                outgoing.append(letter)
                metrics.EVENTS_REFUSED.labels(self.topic, refused.reason).inc()
                continue
            if decoded is not None:
                parsed.append(decoded)
                partitions.append(record.partition)

        # A check-in is its event id at its event time: a redelivery (both the same) is
        # skipped, an id reused at another time is another check-in (docs/HISTORY.md).
        new_keys = store.insert_checkins(conn, parsed)
        metrics.EVENTS_DUPLICATE.labels(self.topic).inc(len(parsed) - len(new_keys))
        watermark, evaluated_day = store.lock_clock(conn)
        # Every member's partitions, read under the clock's lock: ours are updated below.
        event_time = PartitionWatermark(store.load_partitions(conn, self.topic))

        touched: dict[ComplianceKey, list[CheckinRecord]] = {}
        late: list[store.CheckinKey] = []
        for (checkin, _), partition in zip(parsed, partitions, strict=True):
            stored_key = (checkin.event_id, checkin.recorded_at)
            if stored_key not in new_keys:
                continue
            new_keys.discard(stored_key)  # a repeat within the batch counts once
            week = IsoWeek.week_of(checkin.recorded_at, self.config.tz)
            if watermark is not None and is_week_final(week, watermark, self.config):
                late.append(stored_key)
                continue
            event_time.observe(partition, checkin.recorded_at)
            if checkin.grid_code is not None:
                for reading in weeks_reading(checkin.recorded_at, self.config):
                    key = ComplianceKey(checkin.worker_id, checkin.grid_code, reading)
                    touched.setdefault(key, []).append(checkin)
        store.mark_late(conn, late)
        metrics.EVENTS_LATE.labels(self.topic).inc(len(late))
        own = self._partitions or OwnPartitions(
            frozenset(r.partition for r in records), frozenset(), topic_partitions=0
        )
        store.save_partitions(conn, self.topic, event_time.settle(own.assigned, own.read_to_end))
        # Partitions past the topic's count were left by an earlier topic of the same name.
        watermark_before = watermark
        watermark = event_time.advance(watermark, own.topic_partitions or None)
        if watermark is None:
            return outgoing

        open_keys = {
            k: new
            for k, new in touched.items()
            if not is_week_final(k.week, watermark, self.config)
        }
        current = self._evaluate_touched(conn, open_keys, watermark)
        today = local_date(watermark, self.config.tz)
        if watermark_before is not None and watermark > watermark_before:
            # Walks folded ahead of the watermark count from when they became valid.
            current.update(
                self._evaluate_stored(
                    conn,
                    store.keys_valid_between(conn, watermark_before, watermark),
                    watermark,
                    skip=set(current),
                )
            )
        if evaluated_day is None or today > evaluated_day:
            # From the last evaluated day's week, and back to any week this batch touched
            # (the very first batch may hold weeks before the watermark's).
            first = min([IsoWeek.of_date(evaluated_day or today), *(k.week for k in open_keys)])
            current.update(self._evaluate_everyone(conn, first, watermark, skip=set(current)))
            evaluated_day = today
            self._forget_final_weeks(watermark)
        store.save_clock(conn, watermark, evaluated_day)

        previous = store.load_statuses(conn, current)
        changed = [
            (key, previous[key].status if key in previous else None, status)
            for key, status in sorted(current.items())
            if previous.get(key) != status
        ]
        final_weeks = {k.week for k in current if is_week_final(k.week, watermark, self.config)}
        published = store.record_statuses(conn, changed, watermark, final_weeks)
        store.mark_final(
            conn,
            IsoWeek.week_of(watermark - self.config.allowed_lateness, self.config.tz).previous(),
        )
        if published:
            metrics.STATUS_CHANGES.inc(published)
            store.notify_outbox(conn)
        return outgoing

    def _periods(self, worker_id: str, grid_code: str) -> list[AssignmentPeriod]:
        return [p for p in self._roster.periods_of(worker_id) if p.grid_code == grid_code]

    def _forget_final_weeks(self, watermark: datetime) -> None:
        final = {k for k in self.folds.held_keys() if is_week_final(k.week, watermark, self.config)}
        for key in final:
            self.folds.discard(key)

    def _folds(
        self, conn: psycopg.Connection, keys: dict[ComplianceKey, list[CheckinRecord]]
    ) -> dict[ComplianceKey, tuple[WeekFold, set[date]]]:
        """Fold each key's new check-ins in; with each fold, the days cut again."""
        result = {}
        rebuilt: dict[ComplianceKey, WeekFold] = {}
        missing: dict[ComplianceKey, list[AssignmentPeriod]] = {}
        for key, new in keys.items():
            periods = self._periods(key.worker_id, key.grid_code)
            fold = self.folds.get(key)
            if fold is None:
                missing[key] = periods
            elif fold.periods != frozenset(periods):
                # The roster changed: usability and what is owed are judged afresh.
                rebuilt[key] = fold.with_periods(periods, new)
            else:
                result[key] = (fold, fold.add(new))
        # Read after this batch's insert, so these hold its new check-ins already; the
        # stored patrols may predate a roster change, so every day is cut and rewritten.
        spans = [(k.worker_id, k.grid_code, *checkin_window(k.week, self.config)) for k in missing]
        stored = store.load_checkins(conn, spans)
        for key, periods in missing.items():
            checkins = stored.get((key.worker_id, key.grid_code), [])
            rebuilt[key] = WeekFold.built(key, periods, self.config, checkins)
        for key, fold in rebuilt.items():
            self.folds.put(fold)
            result[key] = (fold, set(fold.days))
        return result

    def _evaluate_touched(
        self,
        conn: psycopg.Connection,
        keys: dict[ComplianceKey, list[CheckinRecord]],
        watermark: datetime,
    ) -> dict[ComplianceKey, store.StoredStatus]:
        """Fold each touched key's new check-ins in, rewrite the days cut, and its status."""
        result = {}
        patrols: dict[ComplianceKey, dict[date, list[store.PatrolRow]]] = {}
        for key, (fold, days) in sorted(self._folds(conn, keys).items()):
            if days:
                patrols[key] = {
                    day: [store.PatrolRow(p.patrol, p.valid_at) for p in fold.patrols.get(day, ())]
                    for day in days
                }
            if fold.required == 0:
                # Not assigned to this grid that week (a walk in the neighbour's grid):
                # no patrols can count, and "met, 0 of 0" would only be noise to publish.
                continue
            status = fold.status(watermark)
            result[key] = store.StoredStatus(status.status, status.counted, status.required)
        store.replace_patrol_days(conn, patrols)
        return result

    def _evaluate_stored(
        self,
        conn: psycopg.Connection,
        keys: Sequence[ComplianceKey],
        watermark: datetime,
        skip: set[ComplianceKey],
    ) -> dict[ComplianceKey, store.StoredStatus]:
        """Status of the given keys from their stored patrols (open weeks, not in `skip`)."""
        wanted = [
            k for k in keys if k not in skip and not is_week_final(k.week, watermark, self.config)
        ]
        counted = store.counted_days_of(conn, wanted, watermark, self.config.max_counted_per_day)
        statuses = {k: self._stored_status(k, counted.get(k, {}), watermark) for k in wanted}
        # Not assigned that week: no status, as in `_evaluate_touched`.
        return {k: status for k, status in statuses.items() if status.required}

    def _stored_status(
        self, key: ComplianceKey, per_day: dict[date, int], watermark: datetime
    ) -> store.StoredStatus:
        """A key's status at the watermark from its counted patrols per day."""
        required = required_patrols(
            self._periods(key.worker_id, key.grid_code), key.week, self.config
        )
        status = status_as_of(per_day, required, key.week, watermark, self.config)
        return store.StoredStatus(status, sum(per_day.values()), required)

    def _evaluate_everyone(
        self,
        conn: psycopg.Connection,
        first: IsoWeek,
        watermark: datetime,
        skip: set[ComplianceKey],
    ) -> dict[ComplianceKey, store.StoredStatus]:
        """Status of every assigned (worker, grid) in the weeks up to the watermark's."""
        result = {}
        last = IsoWeek.week_of(watermark, self.config.tz)
        # Weeks final long before this watermark are frozen: a jump in event time (a replay
        # followed by live events) must not re-evaluate years of weeks in one batch.
        oldest_open = IsoWeek.week_of(
            watermark - self.config.allowed_lateness - timedelta(days=7), self.config.tz
        )
        week = max(first, oldest_open)
        while week <= last:
            tz = self.config.tz
            counted = store.counted_days(conn, week, watermark, self.config.max_counted_per_day)
            for worker, grid in self._roster.pairs_during(week.start(tz), week.end(tz)):
                key = ComplianceKey(worker, grid, week)
                if key in skip:
                    continue
                result[key] = self._stored_status(key, counted.get((worker, grid), {}), watermark)
            week = week.next()
        return result
